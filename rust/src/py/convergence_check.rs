//! `multilevel._core.ConvergenceCheck`: lme4's checks after a fit (`optim::ConvergenceCheck`,
//! lme4's `checkConv`): the gradient and Hessian of the objective by finite differences, the
//! gradient scaled by the Hessian's Cholesky factor, whether it passes, and whether the fit is
//! singular.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use crate::optim::ConvergenceCheck;

/// lme4's checks after a fit: finite-difference gradient and Hessian of the objective at the
/// final theta, the scaled gradient, and the verdicts.
#[pyclass(module = "multilevel._core", name = "ConvergenceCheck", frozen)]
pub struct PyConvergenceCheck {
    check: ConvergenceCheck,
}

impl PyConvergenceCheck {
    pub fn new(check: ConvergenceCheck) -> Self {
        PyConvergenceCheck { check }
    }
}

#[pymethods]
impl PyConvergenceCheck {
    /// Gradient of the objective at theta (finite differences).
    #[getter]
    fn gradient<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.check.gradient.clone().into_pyarray(py)
    }

    /// (n_theta, n_theta) Hessian of the objective at theta (finite differences).
    #[getter]
    fn hessian<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let n = self.check.gradient.len();
        PyArray1::from_slice(py, &self.check.hessian).reshape([n, n])
    }

    /// The gradient scaled by the Hessian's Cholesky factor (lme4's ``check.conv.grad``).
    #[getter]
    fn scaled_gradient<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.check.scaled_gradient.clone().into_pyarray(py)
    }

    /// True when max |scaled gradient| is within lme4's tolerance (2e-3).
    #[getter]
    fn converged(&self) -> bool {
        self.check.converged
    }

    /// True when theta is on its boundary (lme4's ``isSingular``).
    #[getter]
    fn singular(&self) -> bool {
        self.check.singular
    }

    /// What the check found, in words.
    #[getter]
    fn message(&self) -> &str {
        &self.check.message
    }

    fn __repr__(&self) -> String {
        format!(
            "ConvergenceCheck(converged={}, singular={}, message={:?})",
            if self.check.converged {
                "True"
            } else {
                "False"
            },
            if self.check.singular { "True" } else { "False" },
            self.check.message
        )
    }
}
