//! The Python binding: `multilevel._core`. The only code that knows about Python.
//!
//! `LmmProblem` borrows the caller's NumPy arrays while it builds the cross-products (with the
//! GIL released), keeps only those, and answers objective, fit, solution and condvar calls.

mod errors;

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bobyqa::Tolerances;
use crate::crossprod::{accumulate_parallel, balanced_piece_rows, RowChunk, PIECE_ROWS};
use crate::lmm::{LmmProblem, Solution};
use crate::optim::{self, FitOptions};
use crate::remat::ReTermShape;
use errors::to_py;

type TermArg<'py> = (
    PyReadonlyArray1<'py, i32>,
    usize,
    PyReadonlyArray2<'py, f64>,
    bool,
);

fn fortran_slice<'a>(name: &str, a: &'a PyReadonlyArray2<'_, f64>) -> PyResult<&'a [f64]> {
    if !a.is_fortran_contiguous() {
        return Err(to_py(crate::error::LmmError::Shape(format!(
            "{name} must be a Fortran-ordered (column-major) float64 array: use np.asfortranarray"
        ))));
    }
    a.as_slice()
        .map_err(|e| to_py(crate::error::LmmError::Shape(format!("{name}: {e}"))))
}

fn contiguous<'a, T: numpy::Element>(
    name: &str,
    a: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|e| {
        to_py(crate::error::LmmError::Shape(format!(
            "{name} must be contiguous: {e}"
        )))
    })
}

/// A linear mixed model's cross-products, ready to evaluate and fit.
#[pyclass(module = "multilevel._core", name = "LmmProblem")]
pub struct PyLmmProblem {
    inner: LmmProblem,
}

#[pymethods]
impl PyLmmProblem {
    #[new]
    #[pyo3(signature = (y, x, terms, weights=None, offset=None))]
    fn new(
        py: Python<'_>,
        y: PyReadonlyArray1<'_, f64>,
        x: PyReadonlyArray2<'_, f64>,
        terms: Vec<TermArg<'_>>,
        weights: Option<PyReadonlyArray1<'_, f64>>,
        offset: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let n = y.len();
        if x.shape()[0] != n {
            return Err(to_py(crate::error::LmmError::Shape(format!(
                "X has {} rows, y has {n}",
                x.shape()[0]
            ))));
        }
        let p = x.shape()[1];
        let shapes: Vec<ReTermShape> = terms
            .iter()
            .map(|(_, n_levels, z, diagonal)| ReTermShape {
                n_levels: *n_levels,
                q: z.shape()[1],
                diagonal: *diagonal,
            })
            .collect();
        for (k, (_, _, z, _)) in terms.iter().enumerate() {
            if z.shape()[0] != n {
                return Err(to_py(crate::error::LmmError::Shape(format!(
                    "Z of term {k} has {} rows, y has {n}",
                    z.shape()[0]
                ))));
            }
        }
        let y_s = contiguous("y", &y)?;
        let x_s = fortran_slice("X", &x)?;
        let mut codes = Vec::with_capacity(terms.len());
        let mut zs = Vec::with_capacity(terms.len());
        for (c, _, z, _) in &terms {
            codes.push(contiguous("codes", c)?);
            zs.push(fortran_slice("Z", z)?);
        }
        let w_s = weights
            .as_ref()
            .map(|w| contiguous("weights", w))
            .transpose()?;
        let o_s = offset
            .as_ref()
            .map(|o| contiguous("offset", o))
            .transpose()?;
        let chunk = RowChunk {
            y: y_s,
            x: x_s,
            codes,
            z: zs,
            weights: w_s,
            offset: o_s,
        };
        let inner = py
            .detach(|| {
                let mut problem = accumulate_parallel(
                    &shapes,
                    p,
                    &chunk,
                    balanced_piece_rows(chunk.nrows(), PIECE_ROWS),
                )
                .and_then(|acc| LmmProblem::new(acc.finish(), &crate::exec::Exec::new(0)))?;
                problem.set_start(optim::lme4_start(&chunk, &shapes))?;
                Ok(problem)
            })
            .map_err(to_py)?;
        Ok(PyLmmProblem { inner })
    }

    #[getter]
    fn n_theta(&self) -> usize {
        self.inner.n_theta()
    }

    #[getter]
    fn nobs(&self) -> usize {
        self.inner.nobs()
    }

    #[getter]
    fn p(&self) -> usize {
        self.inner.p()
    }

    #[getter]
    fn lower<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.lower_bounds().into_pyarray(py)
    }

    #[getter]
    fn theta0<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.theta0().into_pyarray(py)
    }

    /// The sum of log prior weights (lme4's ldW).
    #[getter]
    fn sum_log_weights(&self) -> f64 {
        self.inner.a.sum_log_w
    }

    /// The objective at theta: -2 log-likelihood (ML) or the REML criterion.
    fn objective(&mut self, py: Python<'_>, theta: Vec<f64>, reml: bool) -> PyResult<f64> {
        let inner = &mut self.inner;
        py.detach(|| inner.objective_value(&theta, reml))
            .map_err(to_py)
    }

    /// beta, u, b, sigma and the rest at theta, as a dict.
    fn solution<'py>(
        &mut self,
        py: Python<'py>,
        theta: Vec<f64>,
        reml: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inner = &mut self.inner;
        let sol = py.detach(|| inner.solution(&theta, reml)).map_err(to_py)?;
        solution_dict(py, &self.inner, &sol)
    }

    /// Fits by BOBYQA; returns the solution dict with `optimizer` and `check` added.
    #[pyo3(signature = (reml, theta0=None, max_fun=None, check=true, xtol_rel=1e-4, ftol_abs=1e-8))]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        reml: bool,
        theta0: Option<Vec<f64>>,
        max_fun: Option<usize>,
        check: bool,
        xtol_rel: f64,
        ftol_abs: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = FitOptions {
            reml,
            theta0,
            max_fun,
            tolerances: Tolerances {
                xtol_rel,
                ftol_abs,
                ..Tolerances::lme4()
            },
            check,
        };
        let inner = &mut self.inner;
        let fit = py.detach(|| optim::fit(inner, &options)).map_err(to_py)?;
        let d = solution_dict(py, &self.inner, &fit.solution)?;
        let o = PyDict::new(py);
        o.set_item("theta0", fit.optimizer.theta0.into_pyarray(py))?;
        o.set_item("theta", fit.optimizer.theta.into_pyarray(py))?;
        o.set_item("f0", fit.optimizer.f0)?;
        o.set_item("f", fit.optimizer.f)?;
        o.set_item("n_eval", fit.optimizer.n_eval)?;
        o.set_item("status", fit.optimizer.status)?;
        o.set_item("message", fit.optimizer.message)?;
        d.set_item("optimizer", o)?;
        if let Some(c) = fit.check {
            let n = c.gradient.len();
            let cd = PyDict::new(py);
            cd.set_item("gradient", c.gradient.into_pyarray(py))?;
            let h = PyArray1::from_vec(py, c.hessian).reshape([n, n])?;
            cd.set_item("hessian", h)?;
            cd.set_item("scaled_gradient", c.scaled_gradient.into_pyarray(py))?;
            cd.set_item("converged", c.converged)?;
            cd.set_item("singular", c.singular)?;
            cd.set_item("message", c.message)?;
            d.set_item("check", cd)?;
        } else {
            d.set_item("check", py.None())?;
        }
        Ok(d)
    }

    /// Per term, (levels, q, q) blocks of Lambda (L L')^-1 Lambda'; multiply by sigma^2.
    fn condvar<'py>(
        &mut self,
        py: Python<'py>,
        theta: Vec<f64>,
    ) -> PyResult<Vec<Bound<'py, PyArray3<f64>>>> {
        let inner = &mut self.inner;
        let blocks = py.detach(|| inner.condvar(&theta)).map_err(to_py)?;
        let shapes = self.inner.shapes().to_vec();
        blocks
            .into_iter()
            .zip(shapes)
            .map(|(v, s)| {
                // Column-major q x q blocks: transpose each to row-major for NumPy.
                let q = s.q;
                let mut out = vec![0.0; v.len()];
                for lev in 0..s.n_levels {
                    for a in 0..q {
                        for c in 0..q {
                            out[lev * q * q + a * q + c] = v[lev * q * q + a + c * q];
                        }
                    }
                }
                Ok(PyArray1::from_vec(py, out).reshape([s.n_levels, q, q])?)
            })
            .collect()
    }
}

fn per_term<'py>(
    py: Python<'py>,
    problem: &LmmProblem,
    v: &[Vec<f64>],
) -> PyResult<Vec<Bound<'py, PyArray2<f64>>>> {
    v.iter()
        .zip(problem.shapes())
        .map(|(x, s)| Ok(PyArray1::from_vec(py, x.clone()).reshape([s.n_levels, s.q])?))
        .collect()
}

fn solution_dict<'py>(
    py: Python<'py>,
    problem: &LmmProblem,
    sol: &Solution,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let p = problem.p();
    d.set_item("theta", sol.theta.clone().into_pyarray(py))?;
    d.set_item("beta", sol.beta.clone().into_pyarray(py))?;
    d.set_item("u", per_term(py, problem, &sol.u)?)?;
    d.set_item("b", per_term(py, problem, &sol.b)?)?;
    d.set_item("sigma", sol.sigma)?;
    d.set_item("objective", sol.objective)?;
    d.set_item("pwrss", sol.pwrss)?;
    d.set_item("ldL2", sol.ld_l2)?;
    d.set_item("ldRX2", sol.ld_rx2)?;
    // Symmetric, so the column-major buffer reads the same row-major.
    d.set_item(
        "vcov_unscaled",
        PyArray1::from_vec(py, sol.vcov_unscaled.clone()).reshape([p, p])?,
    )?;
    let lambdas: PyResult<Vec<_>> = sol
        .lambdas
        .iter()
        .zip(problem.shapes())
        .map(|(l, s)| {
            let q = s.q;
            let row_major: Vec<f64> = (0..q * q).map(|k| l[(k / q) + (k % q) * q]).collect();
            Ok(PyArray1::from_vec(py, row_major).reshape([q, q])?)
        })
        .collect();
    d.set_item("lambda_", lambdas?)?;
    d.set_item("nobs", problem.nobs())?;
    Ok(d)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLmmProblem>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
