//! `multilevel._core.GlmmFit`: the result of `GlmmProblem.fit` (`glmm::fit::GlmmFit`) as
//! owned NumPy arrays.

use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;

use crate::glmm::fit::{GlmmFit, StageSummary};

/// An optimiser stage for Python: (x0, x, f0, f, n_eval, status).
type Stage = (Vec<f64>, Vec<f64>, f64, f64, usize, String);

/// A fitted GLMM: theta, beta, u and b (per term), the objective (-2 logLik), vcov(beta),
/// the Hessian of the objective over (theta, beta), eta and mu at the mode, and the two
/// optimiser stages' summaries.
#[pyclass(module = "multilevel._core", name = "GlmmFit", frozen)]
pub struct PyGlmmFit {
    fit: GlmmFit,
}

impl PyGlmmFit {
    pub fn new(fit: GlmmFit) -> Self {
        PyGlmmFit { fit }
    }
}

fn square<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyArray2<f64>> {
    let n = (v.len() as f64).sqrt() as usize;
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| v[i + j * n]).collect())
        .collect();
    PyArray2::from_vec2(py, &rows).expect("square")
}

fn stage(s: &StageSummary) -> Stage {
    (
        s.x0.clone(),
        s.x.clone(),
        s.f0,
        s.f,
        s.n_eval,
        s.status.clone(),
    )
}

#[pymethods]
impl PyGlmmFit {
    #[getter]
    fn nagq(&self) -> usize {
        self.fit.nagq
    }
    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.fit.theta.clone().into_pyarray(py)
    }
    #[getter]
    fn beta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.fit.beta.clone().into_pyarray(py)
    }
    #[getter]
    fn u<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyArray1<f64>>> {
        self.fit
            .u
            .iter()
            .map(|v| v.clone().into_pyarray(py))
            .collect()
    }
    #[getter]
    fn b<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyArray1<f64>>> {
        self.fit
            .b
            .iter()
            .map(|v| v.clone().into_pyarray(py))
            .collect()
    }
    /// -2 logLik at the estimates (lme4's objective).
    #[getter]
    fn objective(&self) -> f64 {
        self.fit.objective
    }
    #[getter]
    fn vcov<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        square(py, &self.fit.vcov)
    }
    #[getter]
    fn hessian<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        square(py, &self.fit.hessian)
    }
    /// The gradient of the objective over (theta, beta) at the estimates by central
    /// differences (step 1e-4, from the Hessian's evaluations; empty for nagq = 0).
    #[getter]
    fn gradient<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.fit.gradient.clone().into_pyarray(py)
    }
    #[getter]
    fn eta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.fit.eta.clone().into_pyarray(py)
    }
    #[getter]
    fn mu<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.fit.mu.clone().into_pyarray(py)
    }
    /// Working weights at the mode.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.fit.weights.clone().into_pyarray(py)
    }
    /// Per term, the conditional covariances of b: levels x q x q (lme4's condVar, before
    /// scaling by sigma^2 for families with a dispersion).
    #[getter]
    fn condvar<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, numpy::PyArray3<f64>>> {
        self.fit
            .condvar
            .iter()
            .zip(&self.fit.b)
            .map(|(v, b)| {
                // b holds levels q values, v levels q^2.
                let q = v.len() / b.len().max(1);
                let levels = b.len() / q.max(1);
                let arr: Vec<Vec<Vec<f64>>> = (0..levels)
                    .map(|l| {
                        (0..q)
                            .map(|a| (0..q).map(|c| v[l * q * q + a + c * q]).collect())
                            .collect()
                    })
                    .collect();
                numpy::PyArray3::from_vec3(py, &arr).expect("levels x q x q blocks")
            })
            .collect()
    }
    /// Stage 1 (nagq = 0): (x0, x, f0, f, n_eval, status).
    #[getter]
    fn stage1(&self) -> Stage {
        stage(&self.fit.stage1)
    }
    /// Stage 2 ((theta, beta) jointly), or None for a nagq = 0 fit.
    #[getter]
    fn stage2(&self) -> Option<Stage> {
        self.fit.stage2.as_ref().map(stage)
    }
    fn __repr__(&self) -> String {
        format!(
            "GlmmFit(nagq={}, objective={}, theta={:?}, beta={:?})",
            self.fit.nagq, self.fit.objective, self.fit.theta, self.fit.beta
        )
    }
}
