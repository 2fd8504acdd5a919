//! Fitting: BOBYQA (Powell 2009, `crate::bobyqa`) over theta within lme4's bounds, set up as
//! lme4's default optimiser (`nloptwrap`: NLopt's BOBYQA with NLopt's initial steps and
//! rescaling, `xtol_rel = 1e-4`, `xtol_abs = 1e-8`, `ftol_abs = 1e-8`, `maxeval = 1e5`), an
//! optimiser summary, and the post-fit checks lme4 makes
//! (`checkConv`): gradient and Hessian of the objective by finite differences, the gradient
//! scaled by the Hessian's Cholesky factor, and whether the fit is singular (a diagonal theta
//! element on its bound of 0).

use crate::bobyqa::{default_initial_steps, Bobyqa, BobyqaStatus, Tolerances};

use crate::error::{LmmError, Result};
use crate::lmm::{LmmProblem, Solution};

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
}

/// lme4's tolerance on the scaled gradient (`check.conv.grad`).
pub const GRADIENT_TOLERANCE: f64 = 2e-3;
/// lme4's tolerance of `isSingular`.
pub const SINGULAR_TOLERANCE: f64 = 1e-4;
/// Finite-difference step (lme4's `deriv12` default).
const FD_STEP: f64 = 1e-4;

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
    let f0 = problem.objective(&theta0, reml).unwrap_or(f64::INFINITY);
    let mut tolerances = options.tolerances;
    if let Some(m) = options.max_fun {
        tolerances.max_eval = m;
    }
    tolerances.max_eval = tolerances.max_eval.max(2 * n + 2);
    let mut steps = vec![0.0; n];
    default_initial_steps(&theta, &lower, &upper, &mut steps);
    let mut solver = Bobyqa::new(n);
    let outcome = solver.minimize_scaled(
        |t| problem.objective(t, reml).unwrap_or(f64::INFINITY),
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
    // The solver returns its best point; factor there so the solution is at that theta.
    let solution = problem.solution(&theta, reml)?;
    let optimizer = OptimizerSummary {
        theta0,
        theta: theta.clone(),
        f0,
        f: solution.objective,
        n_eval: outcome.n_eval,
        status: status.to_string(),
        message: outcome.status.message().to_string(),
    };
    let check = if options.check {
        Some(convergence_check(problem, &theta, reml, &lower)?)
    } else {
        None
    };
    // The check moved L; put it back at the optimum.
    problem.set_theta(&theta)?;
    Ok(Fit {
        solution,
        optimizer,
        check,
    })
}

/// Finite-difference gradient and Hessian at theta, as lme4's `deriv12`, and lme4's verdicts.
pub fn convergence_check(
    problem: &mut LmmProblem,
    theta: &[f64],
    reml: bool,
    lower: &[f64],
) -> Result<ConvergenceCheck> {
    let n = theta.len();
    let h = FD_STEP;
    let mut f = |t: &[f64]| problem.objective(t, reml);
    let f0 = f(theta)?;
    let mut fp = vec![0.0; n];
    let mut fm = vec![0.0; n];
    let mut x = theta.to_vec();
    for i in 0..n {
        x[i] = theta[i] + h;
        fp[i] = f(&x)?;
        x[i] = theta[i] - h;
        fm[i] = f(&x)?;
        x[i] = theta[i];
    }
    let gradient: Vec<f64> = (0..n).map(|i| (fp[i] - fm[i]) / (2.0 * h)).collect();
    let mut hessian = vec![0.0; n * n];
    for i in 0..n {
        hessian[i + i * n] = (fp[i] - 2.0 * f0 + fm[i]) / (h * h);
        for j in 0..i {
            x[i] = theta[i] + h;
            x[j] = theta[j] + h;
            let fpp = f(&x)?;
            x[i] = theta[i] - h;
            x[j] = theta[j] - h;
            let fmm = f(&x)?;
            x[i] = theta[i];
            x[j] = theta[j];
            let v = (fpp - fp[i] - fp[j] + 2.0 * f0 - fm[i] - fm[j] + fmm) / (2.0 * h * h);
            hessian[i + j * n] = v;
            hessian[j + i * n] = v;
        }
    }
    let on_bound: Vec<bool> = (0..n)
        .map(|i| lower[i] == 0.0 && theta[i] < SINGULAR_TOLERANCE)
        .collect();
    let singular = on_bound.iter().any(|&b| b);
    // Scaled gradient over the parameters off their bound: solve(chol(H), g) as lme4.
    let free: Vec<usize> = (0..n).filter(|&i| !on_bound[i]).collect();
    let m = free.len();
    let mut scaled_gradient = vec![0.0; n];
    let mut message = String::new();
    let mut converged = true;
    if m > 0 {
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
                for (k, &i) in free.iter().enumerate() {
                    scaled_gradient[i] = s[k];
                }
                let worst = s.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                if worst > GRADIENT_TOLERANCE {
                    converged = false;
                    message = format!("Model failed to converge with max|grad| = {worst:.6} (tol = {GRADIENT_TOLERANCE})");
                }
            }
            Err(_) => {
                let worst = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                scaled_gradient.clone_from(&gradient);
                if worst > GRADIENT_TOLERANCE {
                    converged = false;
                    message = format!(
                        "Model failed to converge: degenerate Hessian, max|grad| = {worst:.6}"
                    );
                }
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
    })
}
