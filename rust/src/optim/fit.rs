//! Fitting, as lme4's `lmer` does it with its default optimiser (`nloptwrap`: NLopt's BOBYQA
//! with NLopt's initial steps and rescaling, `xtol_rel = 1e-4`, `xtol_abs = 1e-8`,
//! `ftol_abs = 1e-8`, `maxeval = 1e5`), from lme4's start clamped to the bounds, so that it
//! evaluates the points lme4 evaluates; an optimiser summary; and lme4's post-fit check
//! (`checkConv`, `check.rs`). Where lme4's settings stop before its gradient test passes,
//! Newton steps from the check's derivatives finish the fit. [`optimize`] does this for any
//! [`Objective`]; [`fit`] for a linear mixed model, with its solution at the optimum.

use std::fmt::Write;

use crate::error::{LmmError, Result};
use crate::lmm::{LmmProblem, Solution};
use crate::optim::bobyqa::{default_initial_steps, Bobyqa, BobyqaStatus, Tolerances};
use crate::optim::check::{convergence_check, ConvergenceCheck};
use crate::optim::objective::{LmmCriterion, Objective};

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

/// Newton steps after a fit that fails the gradient test.
const MAX_NEWTON_STEPS: usize = 2;

/// A fitted linear mixed model: the solution at the optimum, the optimiser's summary and
/// lme4's check.
pub struct Fit {
    pub solution: Solution,
    pub optimizer: OptimizerSummary,
    pub check: Option<ConvergenceCheck>,
}

/// Fits a linear mixed model (the REML criterion or -2 log-likelihood, `options.reml`).
pub fn fit(problem: &mut LmmProblem, options: &FitOptions) -> Result<Fit> {
    let reml = options.reml;
    // The optimiser works on theta~ = theta / ts (`LmmCriterion`); the summary is in theta.
    let ts = problem.theta_scale();
    let mut options = options.clone();
    if let Some(t) = options.theta0.as_mut() {
        for v in t.iter_mut() {
            *v /= ts;
        }
    }
    let (mut optimizer, check) = optimize(&mut LmmCriterion::new(problem, reml), &options)?;
    for v in optimizer
        .theta0
        .iter_mut()
        .chain(optimizer.theta.iter_mut())
    {
        *v *= ts;
    }
    // Factor at the final theta (the check moved L), so the solution is there.
    let solution = problem.solution(&optimizer.theta, reml)?;
    optimizer.f = solution.objective;
    Ok(Fit {
        solution,
        optimizer,
        check,
    })
}

/// Minimises the objective as lme4's `nloptwrap` does, then checks the optimum as lme4's
/// `checkConv` (when `options.check`) and finishes with Newton steps where that check
/// fails. `options.reml` is the caller's business.
pub fn optimize<O: Objective + ?Sized>(
    objective: &mut O,
    options: &FitOptions,
) -> Result<(OptimizerSummary, Option<ConvergenceCheck>)> {
    let n = objective.n_params();
    let lower = objective.lower_bounds();
    let upper = vec![f64::INFINITY; n];
    let mut theta = options.theta0.clone().unwrap_or_else(|| objective.start());
    for (t, lo) in theta.iter_mut().zip(&lower) {
        if *t < *lo {
            *t = *lo;
        }
    }
    let theta0 = theta.clone();
    // The objective's own check of theta rejects a wrong start; any other failure is an
    // infinite value, which the optimiser steps away from.
    let f0 = match objective.value(&theta0) {
        Err(e @ LmmError::Theta(_)) => return Err(e),
        r => r.unwrap_or(f64::INFINITY),
    };
    let mut tolerances = options.tolerances;
    if let Some(m) = options.max_fun {
        tolerances.max_eval = m;
    }
    tolerances.max_eval = tolerances.max_eval.max(2 * n + 2);
    let mut steps = vec![0.0; n];
    default_initial_steps(&theta, &lower, &upper, &mut steps);
    let mut solver = Bobyqa::new(n);
    // What the objective computed at the best point so far is kept aside: the results at the
    // optimum are computed there.
    let mut best = f64::INFINITY;
    let outcome = solver.minimize_scaled(
        |t| {
            let f = objective.value(t).unwrap_or(f64::INFINITY);
            if f < best {
                best = f;
                objective.keep_best();
            }
            f
        },
        &mut theta,
        &lower,
        &upper,
        &steps,
        &tolerances,
    );
    crate::exec::check_interrupt()?;
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
    let mut summary = OptimizerSummary {
        theta0,
        theta,
        f0,
        f: outcome.f,
        n_eval: outcome.n_eval,
        status: status.to_string(),
        message: outcome.status.message().to_string(),
    };
    let check = if options.check {
        let check = convergence_check(objective, &summary.theta, &lower, Some(summary.f))?;
        newton_steps(objective, &mut summary, check, &lower, tolerances.max_eval)?
    } else {
        None
    };
    Ok((summary, check))
}

/// Where lme4's settings stop short of its own gradient test (lme4 then warns "failed to
/// converge"), Newton steps from the check's finite-difference derivatives finish the job:
/// one evaluation each, kept only when it lowers the objective. Returns the check at the
/// final point.
fn newton_steps<O: Objective + ?Sized>(
    objective: &mut O,
    summary: &mut OptimizerSummary,
    first: ConvergenceCheck,
    lower: &[f64],
    max_eval: usize,
) -> Result<Option<ConvergenceCheck>> {
    let mut check = first;
    let mut newton = 0;
    while let Some(step) = check.newton_step.as_ref().filter(|_| !check.converged) {
        if newton >= MAX_NEWTON_STEPS || summary.n_eval >= max_eval {
            break;
        }
        let trial: Vec<f64> = summary
            .theta
            .iter()
            .zip(step)
            .zip(lower)
            .map(|((t, s), lo)| (t + s).max(*lo))
            .collect();
        summary.n_eval += 1;
        let f_trial = objective.value(&trial).unwrap_or(f64::INFINITY);
        if f_trial >= summary.f {
            break;
        }
        objective.keep_best();
        summary.theta = trial;
        summary.f = f_trial;
        newton += 1;
        check = convergence_check(objective, &summary.theta, lower, Some(summary.f))?;
    }
    if newton > 0 {
        let _ = write!(
            summary.message,
            "; then {newton} Newton step(s) from the finite-difference derivatives"
        );
    }
    Ok(Some(check))
}
