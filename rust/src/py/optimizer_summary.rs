//! `multilevel._core.OptimizerSummary`: what BOBYQA did in one fit (`optim::OptimizerSummary`:
//! start and end theta and objective, number of evaluations, status and message), as lme4's
//! `optinfo`.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use crate::optim::OptimizerSummary;

/// What the optimiser did: start and final theta and objective, evaluations, status.
///
/// ``status`` is ``"converged"``, ``"max_fun"`` (the evaluation limit was reached) or
/// ``"failure"``; ``message`` says why the optimiser stopped.
#[pyclass(module = "multilevel._core", name = "OptimizerSummary", frozen)]
pub struct PyOptimizerSummary {
    summary: OptimizerSummary,
}

impl PyOptimizerSummary {
    pub fn new(summary: OptimizerSummary) -> Self {
        PyOptimizerSummary { summary }
    }

    pub fn summary(&self) -> &OptimizerSummary {
        &self.summary
    }
}

#[pymethods]
impl PyOptimizerSummary {
    /// The starting theta (lme4's start, moved onto the bounds).
    #[getter]
    fn theta0<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.summary.theta0.clone().into_pyarray(py)
    }

    /// The final theta.
    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.summary.theta.clone().into_pyarray(py)
    }

    /// The objective at theta0.
    #[getter]
    fn f0(&self) -> f64 {
        self.summary.f0
    }

    /// The objective at theta.
    #[getter]
    fn f(&self) -> f64 {
        self.summary.f
    }

    /// Number of objective evaluations.
    #[getter]
    fn n_eval(&self) -> usize {
        self.summary.n_eval
    }

    /// ``"converged"``, ``"max_fun"`` or ``"failure"``.
    #[getter]
    fn status(&self) -> &str {
        &self.summary.status
    }

    /// Why the optimiser stopped.
    #[getter]
    fn message(&self) -> &str {
        &self.summary.message
    }

    fn __repr__(&self) -> String {
        format!(
            "OptimizerSummary(status={:?}, n_eval={}, f={:?})",
            self.summary.status, self.summary.n_eval, self.summary.f
        )
    }
}
