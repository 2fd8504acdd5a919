//! `multilevel._core.Solution`: the linear mixed model at one theta (`lmm::Solution`: beta,
//! the conditional modes u and b = Lambda u, sigma, the objective and its parts ldL2, ldRX2 and
//! pwrss, the unscaled covariance of beta, lambda per term), as read-only attributes that give
//! NumPy arrays.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use crate::lmm::{LmmProblem, Solution};
use crate::model::remat::ReTermShape;

/// The linear mixed model at one theta: estimates and the parts of the objective.
///
/// Returned by ``LmmProblem.solution``; ``FitResult`` (from ``LmmProblem.fit``) extends it.
/// Every attribute is read-only; arrays are new NumPy arrays on each access.
#[pyclass(module = "multilevel._core", name = "Solution", frozen, subclass)]
pub struct PySolution {
    sol: Solution,
    shapes: Vec<ReTermShape>,
    p: usize,
    nobs: usize,
}

impl PySolution {
    /// The solution of `problem` (its term shapes, p and nobs).
    pub fn new(problem: &LmmProblem, sol: Solution) -> Self {
        PySolution {
            sol,
            shapes: problem.shapes().to_vec(),
            p: problem.p(),
            nobs: problem.nobs(),
        }
    }

    /// The main numbers, for `__repr__`.
    pub fn describe(&self) -> String {
        format!(
            "objective={:?}, sigma={:?}, theta={:?}, nobs={}",
            self.sol.objective, self.sol.sigma, self.sol.theta, self.nobs
        )
    }

    /// Per term, a (levels, q) array of a level-major vector.
    fn per_term<'py>(
        &self,
        py: Python<'py>,
        v: &[Vec<f64>],
    ) -> PyResult<Vec<Bound<'py, PyArray2<f64>>>> {
        v.iter()
            .zip(&self.shapes)
            .map(|(x, s)| PyArray1::from_slice(py, x).reshape([s.n_levels, s.q]))
            .collect()
    }
}

#[pymethods]
impl PySolution {
    /// Relative covariance parameters (lme4's ``theta``).
    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.sol.theta.clone().into_pyarray(py)
    }

    /// Fixed-effect estimates.
    #[getter]
    fn beta<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.sol.beta.clone().into_pyarray(py)
    }

    /// Spherical random effects, per term an array (levels, q).
    #[getter]
    fn u<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArray2<f64>>>> {
        self.per_term(py, &self.sol.u)
    }

    /// Conditional modes b = Lambda u, per term an array (levels, q).
    #[getter]
    fn b<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArray2<f64>>>> {
        self.per_term(py, &self.sol.b)
    }

    /// Residual standard deviation.
    #[getter]
    fn sigma(&self) -> f64 {
        self.sol.sigma
    }

    /// The REML criterion or -2 log-likelihood (ML) at theta.
    #[getter]
    fn objective(&self) -> f64 {
        self.sol.objective
    }

    /// Penalised weighted residual sum of squares.
    #[getter]
    fn pwrss(&self) -> f64 {
        self.sol.pwrss
    }

    /// log det(L_Z)^2 (lme4's ``ldL2``).
    #[getter]
    fn ld_l2(&self) -> f64 {
        self.sol.ld_l2
    }

    /// log det(R_X)^2 (lme4's ``ldRX2``).
    #[getter]
    fn ld_rx2(&self) -> f64 {
        self.sol.ld_rx2
    }

    /// (p, p) array: the covariance of beta is sigma^2 times this.
    #[getter]
    fn vcov_unscaled<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        // Symmetric, so the column-major buffer reads the same row-major.
        PyArray1::from_slice(py, &self.sol.vcov_unscaled).reshape([self.p, self.p])
    }

    /// Per term the (q, q) lower-triangular relative covariance factor lambda.
    #[getter]
    fn lambda_<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyArray2<f64>>>> {
        self.sol
            .lambdas
            .iter()
            .zip(&self.shapes)
            .map(|(l, s)| {
                let q = s.q;
                let row_major: Vec<f64> = (0..q * q).map(|k| l[(k / q) + (k % q) * q]).collect();
                PyArray1::from_vec(py, row_major).reshape([q, q])
            })
            .collect()
    }

    /// Number of observations (rows with a non-zero weight).
    #[getter]
    fn nobs(&self) -> usize {
        self.nobs
    }

    fn __repr__(&self) -> String {
        format!("Solution({})", self.describe())
    }
}
