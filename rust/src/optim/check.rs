//! lme4's checks after a fit (`checkConv`, with the derivatives of `deriv12`): the gradient g
//! and Hessian H of the objective at the optimum by central finite differences (step 1e-4),
//! the gradient scaled by the Hessian's Cholesky factor, solve(chol(H), g), whose largest
//! element (where it is smaller than |g|) must stay below 0.002, and whether the fit is
//! singular (a parameter with lower bound 0, a diagonal element of a relative covariance
//! factor, within 1e-4 of it; lme4's `isSingular`). The Newton step -H^-1 g over the free
//! parameters is returned too: `fit` uses it to finish fits that fail the gradient test.

use crate::error::Result;
use crate::linalg::small::{chol_small, solve_l_small, solve_lt_small};
use crate::optim::Objective;

/// lme4's post-fit checks.
#[derive(Clone, Debug)]
pub struct ConvergenceCheck {
    pub gradient: Vec<f64>,
    /// n_theta x n_theta, column-major.
    pub hessian: Vec<f64>,
    pub scaled_gradient: Vec<f64>,
    pub converged: bool,
    pub singular: bool,
    pub message: String,
    /// -H^-1 g over the parameters off their bounds (0 on the others), when H is positive
    /// definite there.
    pub newton_step: Option<Vec<f64>>,
}

/// lme4's tolerance on the scaled gradient (`check.conv.grad`).
pub const GRADIENT_TOLERANCE: f64 = 2e-3;
/// lme4's tolerance of `isSingular`.
pub const SINGULAR_TOLERANCE: f64 = 1e-4;
/// Finite-difference step (lme4's `deriv12` default).
const FD_STEP: f64 = 1e-4;

/// Finite-difference gradient and Hessian at theta, as lme4's `deriv12` (central differences
/// with step 1e-4; the mixed second differences use f(x + h e_i + h e_j) and
/// f(x - h e_i - h e_j) with the points already evaluated for the gradient, 2 evaluations per
/// pair where lme4 takes 4), and lme4's verdicts (`checkConv`): singular when a diagonal
/// element is below 1e-4, and then no gradient test; otherwise failed when
/// max(min(|solve(chol(H), g)|, |g|)) exceeds 0.002. `f_theta` is the objective at theta when
/// the caller has it (it saves an evaluation).
pub fn convergence_check<O: Objective + ?Sized>(
    objective: &mut O,
    theta: &[f64],
    lower: &[f64],
    f_theta: Option<f64>,
) -> Result<ConvergenceCheck> {
    let n = theta.len();
    let (gradient, hessian) = derivatives(objective, theta, f_theta)?;
    let on_bound: Vec<bool> = (0..n)
        .map(|i| lower[i] == 0.0 && theta[i] < SINGULAR_TOLERANCE)
        .collect();
    let singular = on_bound.iter().any(|&b| b);
    // Scaled gradient over the parameters off their bound: solve(chol(H), g) as lme4 (which
    // stops at a singular fit before this test).
    let free: Vec<usize> = (0..n).filter(|&i| !on_bound[i]).collect();
    let mut check = ConvergenceCheck {
        scaled_gradient: vec![0.0; n],
        gradient,
        hessian,
        converged: true,
        singular,
        message: String::new(),
        newton_step: None,
    };
    if !free.is_empty() && !singular {
        gradient_test(&mut check, &free);
    }
    Ok(check)
}

/// The gradient and the Hessian (column-major) of the objective at theta by central
/// differences; the objective at theta is `f_theta` when given.
fn derivatives<O: Objective + ?Sized>(
    objective: &mut O,
    theta: &[f64],
    f_theta: Option<f64>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = theta.len();
    let h = FD_STEP;
    let f0 = if let Some(v) = f_theta {
        v
    } else {
        objective.value(theta)?
    };
    // The points, evaluated together (two at a time where that is faster): theta +- h e_i for
    // each i, then theta +- h (e_i + e_j) for each pair j < i.
    let shifted = |steps: &[(usize, f64)]| {
        let mut x = theta.to_vec();
        for &(i, d) in steps {
            x[i] = theta[i] + d;
        }
        x
    };
    let mut points = Vec::with_capacity(n * n + n);
    for i in 0..n {
        points.push(shifted(&[(i, h)]));
        points.push(shifted(&[(i, -h)]));
    }
    for i in 0..n {
        for j in 0..i {
            points.push(shifted(&[(i, h), (j, h)]));
            points.push(shifted(&[(i, -h), (j, -h)]));
        }
    }
    let values = objective.values(&points)?;
    let fp: Vec<f64> = (0..n).map(|i| values[2 * i]).collect();
    let fm: Vec<f64> = (0..n).map(|i| values[2 * i + 1]).collect();
    let mut mixed = values[2 * n..].chunks_exact(2);
    let gradient: Vec<f64> = (0..n).map(|i| (fp[i] - fm[i]) / (2.0 * h)).collect();
    let mut hessian = vec![0.0; n * n];
    for i in 0..n {
        hessian[i + i * n] = (fp[i] - 2.0 * f0 + fm[i]) / (h * h);
        for j in 0..i {
            let pair = mixed.next().expect("two values per pair");
            let (fpp, fmm) = (pair[0], pair[1]);
            let v = (fpp - fp[i] - fp[j] + 2.0 * f0 - fm[i] - fm[j] + fmm) / (2.0 * h * h);
            hessian[i + j * n] = v;
            hessian[j + i * n] = v;
        }
    }
    Ok((gradient, hessian))
}

/// lme4's gradient test over the parameters `free` (off their bounds): the scaled gradient,
/// the verdict and its message, and the Newton step.
fn gradient_test(check: &mut ConvergenceCheck, free: &[usize]) {
    let n = check.gradient.len();
    let m = free.len();
    let mut hs: Vec<f64> = free
        .iter()
        .flat_map(|&j| free.iter().map(move |&i| (i, j)))
        .map(|(i, j)| check.hessian[i + j * n])
        .collect();
    let g: Vec<f64> = free.iter().map(|&i| check.gradient[i]).collect();
    if chol_small(&mut hs, m).is_ok() {
        // chol(H) in R is the upper factor U = L'; solve(U, g) is back substitution.
        let mut s = g.clone();
        solve_lt_small(&hs, m, &mut s);
        // H^-1 g = L'^-1 L^-1 g.
        let mut hg = g.clone();
        solve_l_small(&hs, m, &mut hg);
        solve_lt_small(&hs, m, &mut hg);
        let mut step = vec![0.0; n];
        for (k, &i) in free.iter().enumerate() {
            step[i] = -hg[k];
        }
        check.newton_step = Some(step);
        for (k, &i) in free.iter().enumerate() {
            check.scaled_gradient[i] = s[k];
        }
        let worst = s
            .iter()
            .zip(&g)
            .fold(0.0f64, |a, (v, w)| a.max(v.abs().min(w.abs())));
        if worst > GRADIENT_TOLERANCE {
            check.converged = false;
            check.message = format!(
                "Model failed to converge with max|grad| = {worst:.6} (tol = {GRADIENT_TOLERANCE})"
            );
        }
    } else {
        // lme4: "unable to evaluate scaled gradient".
        let worst = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        check.scaled_gradient.clone_from(&check.gradient);
        check.converged = false;
        check.message = format!(
            "Model failed to converge: unable to evaluate scaled gradient (degenerate \
             Hessian), max|grad| = {worst:.6}"
        );
    }
}
