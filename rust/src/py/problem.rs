//! `multilevel._core.LmmProblem`: a linear mixed model built from the caller's NumPy arrays
//! (the cross-product A = [Z X y]'W[Z X y] of `model::crossprod` and lme4's start of
//! `model::start`, both read through the in-memory row source over those arrays), answering
//! objective(theta), solution(theta), fit and condvar calls (`lmm`, `optim`).
//!
//! The arrays are borrowed, never copied: the object holds references to them (`HeldRows`) so
//! that later passes over the rows borrow them again. Work runs with the GIL released, on the
//! threads of the problem's execution handle, and a panic of the core becomes `InternalError`.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::lmm::LmmProblem;
use crate::model::crossprod::accumulate_with;
use crate::model::remat::{ReMat, ReTermShape};
use crate::model::source::MemorySource;
use crate::model::start::lme4_start;
use crate::optim::bobyqa::Tolerances;
use crate::optim::{self, FitOptions};
use crate::py::convergence_check::PyConvergenceCheck;
use crate::py::errors::{catch_panic, internal_error, InternalError};
use crate::py::fit_result::PyFitResult;
use crate::py::interrupt::Watch;
use crate::py::optimizer_summary::PyOptimizerSummary;
use crate::py::solution::PySolution;

/// One random-effects term as Python hands it over: (codes, n_levels, Z, diagonal).
type TermArg<'py> = (
    Bound<'py, PyArray1<i32>>,
    usize,
    Bound<'py, PyArray2<f64>>,
    bool,
);

/// A held term: its codes and Z arrays (references, not copies) and its shape.
struct HeldTerm {
    codes: Py<PyArray1<i32>>,
    z: Py<PyArray2<f64>>,
    shape: ReTermShape,
}

/// The caller's input arrays, held by reference for the life of the problem (no copies), so
/// that every pass over the rows (the cross-products and lme4's start now; PIRLS and the
/// parametric bootstrap later) borrows them again from Rust (`with_source`). The design layer
/// creates these arrays for the problem and does not change them afterwards.
struct HeldRows {
    y: Py<PyArray1<f64>>,
    x: Py<PyArray2<f64>>,
    p: usize,
    terms: Vec<HeldTerm>,
    weights: Option<Py<PyArray1<f64>>>,
    offset: Option<Py<PyArray1<f64>>>,
}

fn shape_error(message: String) -> PyErr {
    LmmError::Shape(message).into()
}

fn readonly1<'py, T: numpy::Element>(
    py: Python<'py>,
    a: &Py<PyArray1<T>>,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    a.bind(py)
        .try_readonly()
        .map_err(|e| shape_error(format!("an input array is being written elsewhere: {e}")))
}

fn readonly2<'py>(py: Python<'py>, a: &Py<PyArray2<f64>>) -> PyResult<PyReadonlyArray2<'py, f64>> {
    a.bind(py)
        .try_readonly()
        .map_err(|e| shape_error(format!("an input array is being written elsewhere: {e}")))
}

fn contiguous<'a, T: numpy::Element>(
    name: &str,
    a: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|e| shape_error(format!("{name} must be contiguous: {e}")))
}

fn fortran<'a>(name: &str, a: &'a PyReadonlyArray2<'_, f64>) -> PyResult<&'a [f64]> {
    if !a.is_fortran_contiguous() {
        return Err(shape_error(format!(
            "{name} must be a Fortran-ordered (column-major) float64 array: use np.asfortranarray"
        )));
    }
    a.as_slice()
        .map_err(|e| shape_error(format!("{name}: {e}")))
}

impl HeldRows {
    /// Holds the arguments of the constructor after checking their numbers of rows.
    fn new(
        y: &Bound<'_, PyArray1<f64>>,
        x: &Bound<'_, PyArray2<f64>>,
        terms: Vec<TermArg<'_>>,
        weights: Option<&Bound<'_, PyArray1<f64>>>,
        offset: Option<&Bound<'_, PyArray1<f64>>>,
    ) -> PyResult<Self> {
        let n = y.len();
        if x.shape()[0] != n {
            return Err(shape_error(format!(
                "X has {} rows, y has {n}",
                x.shape()[0]
            )));
        }
        for (k, (_, _, z, _)) in terms.iter().enumerate() {
            if z.shape()[0] != n {
                return Err(shape_error(format!(
                    "Z of term {k} has {} rows, y has {n}",
                    z.shape()[0]
                )));
            }
        }
        Ok(HeldRows {
            y: y.clone().unbind(),
            x: x.clone().unbind(),
            p: x.shape()[1],
            terms: terms
                .into_iter()
                .map(|(codes, n_levels, z, diagonal)| HeldTerm {
                    shape: ReTermShape {
                        n_levels,
                        q: z.shape()[1],
                        diagonal,
                    },
                    codes: codes.unbind(),
                    z: z.unbind(),
                })
                .collect(),
            weights: weights.map(|w| w.clone().unbind()),
            offset: offset.map(|o| o.clone().unbind()),
        })
    }

    /// Borrows the arrays (read-only, without copying) and hands the in-memory row source over
    /// them to `f`.
    fn with_source<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&MemorySource<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        let y = readonly1(py, &self.y)?;
        let x = readonly2(py, &self.x)?;
        let codes = self
            .terms
            .iter()
            .map(|t| readonly1(py, &t.codes))
            .collect::<PyResult<Vec<_>>>()?;
        let zs = self
            .terms
            .iter()
            .map(|t| readonly2(py, &t.z))
            .collect::<PyResult<Vec<_>>>()?;
        let weights = self
            .weights
            .as_ref()
            .map(|w| readonly1(py, w))
            .transpose()?;
        let offset = self.offset.as_ref().map(|o| readonly1(py, o)).transpose()?;
        let mut terms = Vec::with_capacity(self.terms.len());
        for (k, t) in self.terms.iter().enumerate() {
            let c = contiguous("codes", &codes[k])?;
            let z = fortran("Z", &zs[k])?;
            terms.push(ReMat::new(k, t.shape, c, z)?);
        }
        let source = MemorySource::new(
            contiguous("y", &y)?,
            fortran("X", &x)?,
            self.p,
            terms,
            weights
                .as_ref()
                .map(|w| contiguous("weights", w))
                .transpose()?,
            offset
                .as_ref()
                .map(|o| contiguous("offset", o))
                .transpose()?,
        )?;
        f(&source)
    }
}

/// A linear mixed model's cross-products, ready to evaluate and fit.
///
/// ``LmmProblem(y, X, terms, weights=None, offset=None, threads=0)``: ``y`` (n,) float64,
/// ``X`` (n, p) float64 in Fortran order, ``terms`` a list of ``(codes, n_levels, Z,
/// diagonal)`` with ``codes`` (n,) int32 (0-based levels) and ``Z`` (n, q) float64 in Fortran
/// order, optional prior ``weights`` and ``offset`` (n,) float64; ``threads`` the number of
/// threads of every parallel step (0: all cores; 1 gives the same numbers). The arrays are held
/// by reference, not copied: do not change them while the problem lives.
#[pyclass(module = "multilevel._core", name = "LmmProblem")]
pub struct PyLmmProblem {
    inner: LmmProblem,
    /// The threads of every pass and evaluation.
    exec: Exec,
    /// The input arrays, held for later passes over the rows (see `HeldRows`); `None` for a
    /// problem built from an `Accumulator`, whose rows are gone.
    // No pass reads them after construction yet; PIRLS and the bootstrap will.
    #[allow(dead_code)]
    rows: Option<HeldRows>,
    /// Set when a panic interrupted a call: the factor may be half updated, so the problem
    /// refuses further calls.
    poisoned: bool,
}

impl PyLmmProblem {
    /// A problem from cross-products accumulated elsewhere (`Accumulator.problem`): no rows held.
    pub(crate) fn from_problem(inner: LmmProblem, exec: Exec) -> Self {
        PyLmmProblem {
            inner,
            exec,
            rows: None,
            poisoned: false,
        }
    }

    /// Runs `f` on the model with the GIL released; a panic poisons the problem and becomes
    /// `InternalError`.
    fn run<T: Send>(
        &mut self,
        py: Python<'_>,
        f: impl FnOnce(&mut LmmProblem) -> Result<T> + Send,
    ) -> PyResult<T> {
        if self.poisoned {
            return Err(InternalError::new_err(
                "an earlier internal error left this LmmProblem unusable: build a new one",
            ));
        }
        let inner = &mut self.inner;
        let _watch = Watch::new();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| py.detach(|| f(inner))));
        match out {
            Ok(r) => r.map_err(PyErr::from),
            Err(payload) => {
                self.poisoned = true;
                Err(internal_error(&*payload))
            }
        }
    }
}

#[pymethods]
impl PyLmmProblem {
    #[new]
    #[pyo3(signature = (y, x, terms, weights=None, offset=None, threads=0))]
    fn new(
        py: Python<'_>,
        y: &Bound<'_, PyArray1<f64>>,
        x: &Bound<'_, PyArray2<f64>>,
        terms: Vec<TermArg<'_>>,
        weights: Option<&Bound<'_, PyArray1<f64>>>,
        offset: Option<&Bound<'_, PyArray1<f64>>>,
        threads: usize,
    ) -> PyResult<Self> {
        catch_panic(|| {
            let _watch = Watch::new();
            let rows = HeldRows::new(y, x, terms, weights, offset)?;
            let exec = Exec::new(threads);
            let inner = rows.with_source(py, |source| {
                py.detach(|| {
                    // The transform's column sums run on the fit's threads.
                    let t = exec.install(|| source.transform());
                    let a = accumulate_with(source, &exec, t)?.finish();
                    let mut problem = LmmProblem::new(a, &exec)?;
                    problem.set_start(lme4_start(source)?)?;
                    Ok::<_, LmmError>(problem)
                })
                .map_err(PyErr::from)
            })?;
            Ok(PyLmmProblem {
                inner,
                exec,
                rows: Some(rows),
                poisoned: false,
            })
        })
    }

    /// Number of covariance parameters theta.
    #[getter]
    fn n_theta(&self) -> usize {
        self.inner.n_theta()
    }

    /// Number of observations (rows with a non-zero weight).
    #[getter]
    fn nobs(&self) -> usize {
        self.inner.nobs()
    }

    /// Number of fixed-effect columns.
    #[getter]
    fn p(&self) -> usize {
        self.inner.p()
    }

    /// Number of threads the problem's passes and evaluations use.
    #[getter]
    fn threads(&self) -> usize {
        self.exec.threads()
    }

    /// lme4's lower bounds of theta: 0 on the diagonals, -inf elsewhere.
    #[getter]
    fn lower<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.lower_bounds().into_pyarray(py)
    }

    /// lme4's start: the moment-based one for scalar intercepts on distinct factors, otherwise
    /// 1 on the diagonals and 0 elsewhere.
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
        self.run(py, move |inner| inner.objective_value(&theta, reml))
    }

    /// beta, u, b, sigma and the rest at theta.
    fn solution(&mut self, py: Python<'_>, theta: Vec<f64>, reml: bool) -> PyResult<PySolution> {
        let sol = self.run(py, move |inner| inner.solution(&theta, reml))?;
        catch_panic(|| Ok(PySolution::new(&self.inner, sol)))
    }

    /// Fits by BOBYQA from theta0 (default: lme4's start); the solution at the optimum with
    /// the optimiser's summary and, when ``check``, lme4's post-fit checks.
    #[pyo3(signature = (reml, theta0=None, max_fun=None, check=true, xtol_rel=1e-4, ftol_abs=1e-8))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        &mut self,
        py: Python<'_>,
        reml: bool,
        theta0: Option<Vec<f64>>,
        max_fun: Option<usize>,
        check: bool,
        xtol_rel: f64,
        ftol_abs: f64,
    ) -> PyResult<Py<PyFitResult>> {
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
        let fit = self.run(py, |inner| optim::fit(inner, &options))?;
        catch_panic(|| {
            let solution = PySolution::new(&self.inner, fit.solution);
            let optimizer = Py::new(py, PyOptimizerSummary::new(fit.optimizer))?;
            let check = fit
                .check
                .map(|c| Py::new(py, PyConvergenceCheck::new(c)))
                .transpose()?;
            let init =
                PyClassInitializer::from(solution).add_subclass(PyFitResult::new(optimizer, check));
            Py::new(py, init)
        })
    }

    /// Per term, (levels, q, q) blocks of Lambda (L L')^-1 Lambda'; multiply by sigma^2.
    fn condvar<'py>(
        &mut self,
        py: Python<'py>,
        theta: Vec<f64>,
    ) -> PyResult<Vec<Bound<'py, PyArray3<f64>>>> {
        let blocks = self.run(py, move |inner| inner.condvar(&theta))?;
        let shapes = self.inner.shapes().to_vec();
        catch_panic(|| {
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
                    PyArray1::from_vec(py, out).reshape([s.n_levels, q, q])
                })
                .collect()
        })
    }
}
