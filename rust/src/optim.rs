//! Fitting, as lme4's `lmer` does it: BOBYQA (Powell 2009, `crate::bobyqa`) over theta within
//! lme4's bounds, set up as lme4's default optimiser (`nloptwrap`: NLopt's BOBYQA with NLopt's
//! initial steps and rescaling, `xtol_rel = 1e-4`, `xtol_abs = 1e-8`, `ftol_abs = 1e-8`,
//! `maxeval = 1e5`), from lme4's start (`lme4_start` for models of scalar intercepts), so that
//! it evaluates the points lme4 evaluates; an optimiser summary; and the post-fit checks lme4
//! makes (`checkConv`): gradient and Hessian of the objective by finite differences, the
//! gradient scaled by the Hessian's Cholesky factor, and whether the fit is singular (a
//! diagonal theta element on its bound of 0). Where lme4's settings stop before its gradient
//! test passes, Newton steps from those derivatives finish the fit.

use crate::bobyqa::{default_initial_steps, Bobyqa, BobyqaStatus, Tolerances};

use crate::crossprod::RowChunk;
use crate::error::{LmmError, Result};
use crate::lmm::{LmmProblem, Solution};
use crate::remat::ReTermShape;

/// How to fit.
#[derive(Clone, Debug)]
pub struct FitOptions {
    pub reml: bool,
    pub theta0: Option<Vec<f64>>,
    pub max_fun: Option<usize>,
    /// Stopping rules; `max_eval` is replaced by `max_fun` when that is given.
    pub tolerances: Tolerances,
    /// Run the finite-difference convergence check after the fit.
    pub check: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            reml: true,
            theta0: None,
            max_fun: None,
            tolerances: Tolerances::lme4(),
            check: true,
        }
    }
}

/// What the optimiser did.
#[derive(Clone, Debug)]
pub struct OptimizerSummary {
    pub theta0: Vec<f64>,
    pub theta: Vec<f64>,
    pub f0: f64,
    pub f: f64,
    pub n_eval: usize,
    pub status: String,
    pub message: String,
}

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
/// Newton steps after a fit that fails the gradient test.
const MAX_NEWTON_STEPS: usize = 2;

pub struct Fit {
    pub solution: Solution,
    pub optimizer: OptimizerSummary,
    pub check: Option<ConvergenceCheck>,
}

pub fn fit(problem: &mut LmmProblem, options: &FitOptions) -> Result<Fit> {
    let n = problem.n_theta();
    let lower = problem.lower_bounds();
    let upper = vec![f64::INFINITY; n];
    let mut theta = options.theta0.clone().unwrap_or_else(|| problem.theta0());
    if theta.len() != n {
        return Err(LmmError::Theta(format!(
            "start has {} values, the model has {n}",
            theta.len()
        )));
    }
    for (t, lo) in theta.iter_mut().zip(&lower) {
        if *t < *lo {
            *t = *lo;
        }
    }
    let theta0 = theta.clone();
    let reml = options.reml;
    let f0 = problem
        .objective_value(&theta0, reml)
        .unwrap_or(f64::INFINITY);
    let mut tolerances = options.tolerances;
    if let Some(m) = options.max_fun {
        tolerances.max_eval = m;
    }
    tolerances.max_eval = tolerances.max_eval.max(2 * n + 2);
    let mut steps = vec![0.0; n];
    default_initial_steps(&theta, &lower, &upper, &mut steps);
    let mut solver = Bobyqa::new(n);
    // The factor at the best point so far is kept aside: the solution is computed there.
    let mut best = f64::INFINITY;
    let outcome = solver.minimize_scaled(
        |t| {
            let f = problem.objective_value(t, reml).unwrap_or(f64::INFINITY);
            if f < best {
                best = f;
                problem.keep_factor();
            }
            f
        },
        &mut theta,
        &lower,
        &upper,
        &steps,
        &tolerances,
    );
    if outcome.status == BobyqaStatus::InvalidArgs {
        return Err(LmmError::Optimizer(format!(
            "BOBYQA rejected the start {theta0:?} or the bounds"
        )));
    }
    if outcome.f.is_nan() || outcome.f >= 1e300 {
        return Err(LmmError::Optimizer(
            "no theta gave a finite objective".into(),
        ));
    }
    let status = match outcome.status {
        s if s.converged() => "converged",
        BobyqaStatus::MaxEvalReached => "max_fun",
        _ => "failure",
    };
    let mut message = outcome.status.message().to_string();
    let mut n_eval = outcome.n_eval;
    let mut f_best = outcome.f;
    let mut check = if options.check {
        Some(convergence_check(
            problem,
            &theta,
            reml,
            &lower,
            Some(f_best),
        )?)
    } else {
        None
    };
    // Where lme4's settings stop short of its own gradient test (lme4 then warns "failed to
    // converge"), Newton steps from the check's finite-difference derivatives finish the job:
    // one evaluation each, kept only when it lowers the objective.
    let mut newton = 0;
    while let Some(c) = &check {
        let Some(step) = c.newton_step.as_ref().filter(|_| !c.converged) else {
            break;
        };
        if newton >= MAX_NEWTON_STEPS || n_eval >= tolerances.max_eval {
            break;
        }
        let trial: Vec<f64> = theta
            .iter()
            .zip(step)
            .zip(&lower)
            .map(|((t, s), lo)| (t + s).max(*lo))
            .collect();
        n_eval += 1;
        let f_trial = problem
            .objective_value(&trial, reml)
            .unwrap_or(f64::INFINITY);
        if f_trial >= f_best {
            break;
        }
        problem.keep_factor();
        theta = trial;
        f_best = f_trial;
        newton += 1;
        check = Some(convergence_check(
            problem,
            &theta,
            reml,
            &lower,
            Some(f_best),
        )?);
    }
    if newton > 0 {
        message.push_str(&format!(
            "; then {newton} Newton step(s) from the finite-difference derivatives"
        ));
    }
    // Factor at the final theta (the check moved L), so the solution is there.
    let solution = problem.solution(&theta, reml)?;
    let optimizer = OptimizerSummary {
        theta0,
        theta: theta.clone(),
        f0,
        f: solution.objective,
        n_eval,
        status: status.to_string(),
        message,
    };
    Ok(Fit {
        solution,
        optimizer,
        check,
    })
}

/// Finite-difference gradient and Hessian at theta, as lme4's `deriv12` (central differences
/// with step 1e-4; the mixed second differences use f(x + h e_i + h e_j) and
/// f(x - h e_i - h e_j) with the points already evaluated for the gradient, 2 evaluations per
/// pair where lme4 takes 4), and lme4's verdicts (`checkConv`): singular when a diagonal
/// element is below 1e-4, and then no gradient test; otherwise failed when
/// max(min(|solve(chol(H), g)|, |g|)) exceeds 0.002. `f_theta` is the objective at theta when
/// the caller has it (it saves an evaluation).
pub fn convergence_check(
    problem: &mut LmmProblem,
    theta: &[f64],
    reml: bool,
    lower: &[f64],
    f_theta: Option<f64>,
) -> Result<ConvergenceCheck> {
    let n = theta.len();
    let h = FD_STEP;
    let mut f = |t: &[f64]| problem.objective_value(t, reml);
    let f0 = match f_theta {
        Some(v) => v,
        None => f(theta)?,
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
    let values = problem.objective_values(&points, reml)?;
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
    let on_bound: Vec<bool> = (0..n)
        .map(|i| lower[i] == 0.0 && theta[i] < SINGULAR_TOLERANCE)
        .collect();
    let singular = on_bound.iter().any(|&b| b);
    // Scaled gradient over the parameters off their bound: solve(chol(H), g) as lme4 (which
    // stops at a singular fit before this test).
    let free: Vec<usize> = (0..n).filter(|&i| !on_bound[i]).collect();
    let m = free.len();
    let mut scaled_gradient = vec![0.0; n];
    let mut message = String::new();
    let mut converged = true;
    let mut newton_step = None;
    if m > 0 && !singular {
        let mut hs: Vec<f64> = free
            .iter()
            .flat_map(|&j| free.iter().map(move |&i| (i, j)))
            .map(|(i, j)| hessian[i + j * n])
            .collect();
        let g: Vec<f64> = free.iter().map(|&i| gradient[i]).collect();
        match crate::blocks::chol_small(&mut hs, m) {
            Ok(()) => {
                // chol(H) in R is the upper factor U = L'; solve(U, g) is back substitution.
                let mut s = g.clone();
                crate::blocks::solve_lt_small(&hs, m, &mut s);
                // H^-1 g = L'^-1 L^-1 g.
                let mut hg = g.clone();
                crate::blocks::solve_l_small(&hs, m, &mut hg);
                crate::blocks::solve_lt_small(&hs, m, &mut hg);
                let mut step = vec![0.0; n];
                for (k, &i) in free.iter().enumerate() {
                    step[i] = -hg[k];
                }
                newton_step = Some(step);
                for (k, &i) in free.iter().enumerate() {
                    scaled_gradient[i] = s[k];
                }
                let worst = s
                    .iter()
                    .zip(&g)
                    .fold(0.0f64, |a, (v, w)| a.max(v.abs().min(w.abs())));
                if worst > GRADIENT_TOLERANCE {
                    converged = false;
                    message = format!("Model failed to converge with max|grad| = {worst:.6} (tol = {GRADIENT_TOLERANCE})");
                }
            }
            Err(_) => {
                // lme4: "unable to evaluate scaled gradient".
                let worst = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                scaled_gradient.clone_from(&gradient);
                converged = false;
                message = format!(
                    "Model failed to converge: unable to evaluate scaled gradient (degenerate \
                     Hessian), max|grad| = {worst:.6}"
                );
            }
        }
    }
    Ok(ConvergenceCheck {
        gradient,
        hessian,
        scaled_gradient,
        converged,
        singular,
        message,
        newton_step,
    })
}

/// lme4's start for a model whose random terms are all scalar intercepts, each with its own
/// grouping factor (lme4's `mkLmerDevfun`): with v_k the variance of the group means of the
/// response for factor k (`var(ave(y, f_k))`) and v_e = var(y) - sum v_k, theta_k =
/// sqrt(v_k / v_e) when v_e > 0. As lme4, it uses the response as given (no offset, no
/// weights) and every row. `None` when the rule does not apply.
pub fn lme4_start(chunk: &RowChunk, shapes: &[ReTermShape]) -> Option<Vec<f64>> {
    let n = chunk.y.len();
    if n < 2 || shapes.is_empty() {
        return None;
    }
    for (k, s) in shapes.iter().enumerate() {
        if s.q != 1 || chunk.z[k].len() != n || chunk.codes[k].len() != n {
            return None;
        }
        if chunk.z[k].iter().any(|&z| z != 1.0) {
            return None;
        }
    }
    // One theta per distinct grouping factor: two terms on the same factor break the rule.
    for k in 0..shapes.len() {
        for j in 0..k {
            if shapes[k].n_levels == shapes[j].n_levels && chunk.codes[k] == chunk.codes[j] {
                return None;
            }
        }
    }
    let y = chunk.y;
    let mean = |v: &mut dyn Iterator<Item = f64>, len: f64| -> f64 {
        let s: f64 = v.sum();
        s / len
    };
    let nf = n as f64;
    let mut ybar = mean(&mut y.iter().copied(), nf);
    ybar += y.iter().map(|v| v - ybar).sum::<f64>() / nf;
    let sst: f64 = y.iter().map(|v| (v - ybar) * (v - ybar)).sum();
    let mut ssb = Vec::with_capacity(shapes.len());
    for (k, s) in shapes.iter().enumerate() {
        let mut sum = vec![0.0; s.n_levels];
        let mut count = vec![0usize; s.n_levels];
        for (r, &c) in chunk.codes[k].iter().enumerate() {
            let c = usize::try_from(c).ok().filter(|&c| c < s.n_levels)?;
            sum[c] += y[r];
            count[c] += 1;
        }
        // Sum over rows of (group mean - overall mean)^2.
        let v: f64 = sum
            .iter()
            .zip(&count)
            .filter(|(_, &m)| m > 0)
            .map(|(&t, &m)| {
                let d = t / m as f64 - ybar;
                m as f64 * d * d
            })
            .sum();
        ssb.push(v);
    }
    let ve = sst - ssb.iter().sum::<f64>();
    if ve.is_nan() || ve <= 0.0 {
        return None;
    }
    let theta: Vec<f64> = ssb.iter().map(|v| (v / ve).sqrt()).collect();
    theta.iter().all(|t| t.is_finite()).then_some(theta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_levels: usize, q: usize) -> ReTermShape {
        ReTermShape {
            n_levels,
            q,
            diagonal: false,
        }
    }

    #[test]
    fn lme4_start_is_the_ratio_of_moments() {
        // Two crossed factors; R: v <- sapply(list(f, g), function(f) var(ave(y, f)));
        // sqrt(v / (var(y) - sum(v))) gives the values below.
        let y = [1.0, 2.0, 4.0, 3.0, 7.0, 5.0, 6.0, 9.0];
        let f = [0, 0, 1, 1, 2, 2, 3, 3];
        let g = [0, 1, 0, 1, 0, 1, 0, 1];
        let ones = [1.0; 8];
        let x = [1.0; 8];
        let chunk = RowChunk {
            y: &y,
            x: &x,
            codes: vec![&f, &g],
            z: vec![&ones, &ones],
            weights: None,
            offset: None,
        };
        let shapes = [shape(4, 1), shape(2, 1)];
        let t = lme4_start(&chunk, &shapes).expect("the rule applies");
        // Group means by f: 1.5, 3.5, 6, 7.5 (mean 4.625); by g: 4.5, 4.75.
        let ybar = 4.625;
        let ssb_f: f64 = [1.5, 3.5, 6.0, 7.5]
            .iter()
            .map(|m: &f64| 2.0 * (m - ybar).powi(2))
            .sum();
        let ssb_g: f64 = [4.5, 4.75]
            .iter()
            .map(|m: &f64| 4.0 * (m - ybar).powi(2))
            .sum();
        let sst: f64 = y.iter().map(|v| (v - ybar).powi(2)).sum();
        let ve = sst - ssb_f - ssb_g;
        assert!((t[0] - (ssb_f / ve).sqrt()).abs() < 1e-14);
        assert!((t[1] - (ssb_g / ve).sqrt()).abs() < 1e-14);
        // Not for a term with a slope, nor for two terms on one factor.
        let z2 = [1.0; 16];
        let chunk2 = RowChunk {
            z: vec![&z2, &ones],
            codes: vec![&f, &g],
            ..chunk
        };
        assert!(lme4_start(&chunk2, &[shape(4, 2), shape(2, 1)]).is_none());
        let chunk3 = RowChunk {
            y: &y,
            x: &x,
            codes: vec![&f, &f],
            z: vec![&ones, &ones],
            weights: None,
            offset: None,
        };
        assert!(lme4_start(&chunk3, &[shape(4, 1), shape(4, 1)]).is_none());
    }
}
