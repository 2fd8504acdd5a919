//! What the optimiser minimises: a function f(theta) of the covariance parameters with lower
//! bounds (upper bounds +infinity), as lme4's `nloptwrap` sees the deviance function that
//! `mkLmerDevfun` returns (MixedModels.jl: the `objective` of `fit!`). The trait keeps the
//! optimiser and lme4's post-fit check (`checkConv`) apart from the model: a linear mixed
//! model ([`LmmCriterion`]: the REML criterion or -2 log-likelihood of an `LmmProblem`) today,
//! GLMMs' Laplace approximation and profiles later.

use crate::error::Result;
use crate::lmm::LmmProblem;

/// A function of theta for the optimiser and the convergence check.
pub trait Objective {
    /// The number of parameters.
    fn n_params(&self) -> usize;

    /// The lower bound of each parameter (the upper bounds are +infinity).
    fn lower_bounds(&self) -> Vec<f64>;

    /// The default start.
    fn start(&self) -> Vec<f64>;

    /// f(theta). A wrong theta (its length, a non-finite element) is an error of the
    /// implementation's own check.
    fn value(&mut self, theta: &[f64]) -> Result<f64>;

    /// f at each of `thetas`, equal to the last bit to `value` one by one (an implementation
    /// may evaluate several at a time).
    fn values(&mut self, thetas: &[Vec<f64>]) -> Result<Vec<f64>> {
        thetas.iter().map(|t| self.value(t)).collect()
    }

    /// Keeps what the last `value` computed (the factor at its theta), as the best point so
    /// far, so that the results at the optimum cost no evaluation again. Nothing by default.
    fn keep_best(&mut self) {}
}

/// A linear mixed model's objective: the REML criterion, or -2 log-likelihood, as a function
/// of theta~ = theta / `theta_scale` (1 unless the prior weights were rescaled:
/// `model::transform`), so that the optimiser starts from the identity in units where the
/// weights are of size 1.
pub struct LmmCriterion<'a> {
    pub problem: &'a mut LmmProblem,
    pub reml: bool,
}

impl<'a> LmmCriterion<'a> {
    pub fn new(problem: &'a mut LmmProblem, reml: bool) -> Self {
        LmmCriterion { problem, reml }
    }
}

impl Objective for LmmCriterion<'_> {
    fn n_params(&self) -> usize {
        self.problem.n_theta()
    }

    fn lower_bounds(&self) -> Vec<f64> {
        self.problem.lower_bounds()
    }

    fn start(&self) -> Vec<f64> {
        let ts = self.problem.theta_scale();
        self.problem.theta0().into_iter().map(|t| t / ts).collect()
    }

    fn value(&mut self, theta: &[f64]) -> Result<f64> {
        let ts = self.problem.theta_scale();
        if ts == 1.0 {
            return self.problem.objective_value(theta, self.reml);
        }
        let theta: Vec<f64> = theta.iter().map(|t| t * ts).collect();
        self.problem.objective_value(&theta, self.reml)
    }

    fn values(&mut self, thetas: &[Vec<f64>]) -> Result<Vec<f64>> {
        let ts = self.problem.theta_scale();
        if ts == 1.0 {
            return self.problem.objective_values(thetas, self.reml);
        }
        let thetas: Vec<Vec<f64>> = thetas
            .iter()
            .map(|t| t.iter().map(|v| v * ts).collect())
            .collect();
        self.problem.objective_values(&thetas, self.reml)
    }

    fn keep_best(&mut self) {
        self.problem.keep_factor();
    }
}
