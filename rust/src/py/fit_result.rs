//! `multilevel._core.FitResult`: a fit's solution at the optimum (a `Solution`, which it
//! extends) with the optimiser's summary and lme4's post-fit check (`optim::Fit`).

use pyo3::prelude::*;

use crate::py::convergence_check::PyConvergenceCheck;
use crate::py::optimizer_summary::PyOptimizerSummary;
use crate::py::solution::PySolution;

/// The result of ``LmmProblem.fit``: the ``Solution`` at the optimum, with ``optimizer`` (what
/// BOBYQA did) and ``check`` (lme4's gradient and singularity checks; ``None`` when the fit was
/// asked not to check).
#[pyclass(module = "multilevel._core", name = "FitResult", extends = PySolution, frozen)]
pub struct PyFitResult {
    optimizer: Py<PyOptimizerSummary>,
    check: Option<Py<PyConvergenceCheck>>,
}

impl PyFitResult {
    pub fn new(optimizer: Py<PyOptimizerSummary>, check: Option<Py<PyConvergenceCheck>>) -> Self {
        PyFitResult { optimizer, check }
    }
}

#[pymethods]
impl PyFitResult {
    /// What the optimiser did.
    #[getter]
    fn optimizer(&self, py: Python<'_>) -> Py<PyOptimizerSummary> {
        self.optimizer.clone_ref(py)
    }

    /// lme4's checks after the fit, or ``None``.
    #[getter]
    fn check(&self, py: Python<'_>) -> Option<Py<PyConvergenceCheck>> {
        self.check.as_ref().map(|c| c.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let status = &slf.get().optimizer.get().summary().status;
        format!(
            "FitResult({}, status={status:?})",
            slf.as_super().get().describe()
        )
    }
}
