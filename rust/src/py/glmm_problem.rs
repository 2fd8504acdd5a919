//! `multilevel._core.GlmmProblem`: a generalized linear mixed model over the caller's arrays
//! (y, X, the random-effects terms, prior weights, offset) and a family, answering
//! `objective(theta, beta, nagq)` (lme4's devfun at both stages) and `fit(nagq, beta0)`
//! (lme4's two-stage fit, `glmm::fit`). Work runs with the GIL released; a panic of the core
//! becomes `InternalError`; ctrl-C stops the work within one PIRLS iteration or one evaluation
//! and raises `KeyboardInterrupt` (`interrupt::Watch`).
//!
//! The arrays are copied once into the problem (owned), unlike `LmmProblem`, which borrows them.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::glmm::family::{Distribution, Family, Link};
use crate::glmm::fit;
use crate::glmm::pirls::{GlmmData, Pirls};
use crate::model::remat::{ReMat, ReTermShape};
use crate::py::errors::catch_panic;
use crate::py::glmm_fit::PyGlmmFit;
use crate::py::interrupt::Watch;

/// One random-effects term as Python hands it over: (codes, n_levels, Z, diagonal).
type TermArg<'py> = (
    Bound<'py, PyArray1<i32>>,
    usize,
    Bound<'py, PyArray2<f64>>,
    bool,
);

struct OwnedTerm {
    codes: Vec<i32>,
    z: Vec<f64>,
    shape: ReTermShape,
}

/// A GLMM ready to be evaluated and fitted.
#[pyclass(module = "multilevel._core", name = "GlmmProblem", frozen)]
pub struct PyGlmmProblem {
    y: Vec<f64>,
    x: Vec<f64>,
    p: usize,
    terms: Vec<OwnedTerm>,
    weights: Vec<f64>,
    offset: Vec<f64>,
    family: Family,
    threads: usize,
}

fn column_major(a: &Bound<'_, PyArray2<f64>>) -> Vec<f64> {
    let v = a.readonly();
    let arr = v.as_array();
    let (n, m) = (arr.nrows(), arr.ncols());
    let mut out = Vec::with_capacity(n * m);
    for j in 0..m {
        out.extend(arr.column(j).iter().copied());
    }
    out
}

fn vec1<T: numpy::Element + Copy>(a: &PyReadonlyArray1<'_, T>) -> Vec<T> {
    a.as_array().iter().copied().collect()
}

impl PyGlmmProblem {
    fn with_data<T>(&self, f: impl FnOnce(&GlmmData) -> Result<T>) -> Result<T> {
        let terms = self
            .terms
            .iter()
            .enumerate()
            .map(|(k, t)| ReMat::new(k, t.shape, &t.codes, &t.z))
            .collect::<Result<Vec<_>>>()?;
        let data = GlmmData {
            y: &self.y,
            x: &self.x,
            p: self.p,
            terms,
            weights: self.weights.clone(),
            offset: self.offset.clone(),
            family: self.family,
        };
        f(&data)
    }

    fn lower_bounds(&self) -> Vec<f64> {
        self.terms
            .iter()
            .flat_map(|t| t.shape.lower_bounds())
            .collect()
    }
}

#[pymethods]
impl PyGlmmProblem {
    #[new]
    #[pyo3(signature = (y, x, terms, family, link, weights=None, offset=None, threads=0, nb_theta=None))]
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
    fn new(
        y: PyReadonlyArray1<'_, f64>,
        x: &Bound<'_, PyArray2<f64>>,
        terms: Vec<TermArg<'_>>,
        family: &str,
        link: &str,
        weights: Option<PyReadonlyArray1<'_, f64>>,
        offset: Option<PyReadonlyArray1<'_, f64>>,
        threads: usize,
        nb_theta: Option<f64>,
    ) -> PyResult<Self> {
        let dist = Distribution::from_name(family, nb_theta).ok_or_else(|| {
            LmmError::Shape(format!("unknown family {family:?} (or NB theta missing)"))
        })?;
        let link = Link::from_name(link)
            .ok_or_else(|| LmmError::Shape(format!("unknown link {link:?}")))?;
        let y = vec1(&y);
        let n = y.len();
        if x.shape()[0] != n {
            return Err(LmmError::Shape(format!("X has {} rows, y has {n}", x.shape()[0])).into());
        }
        let p = x.shape()[1];
        let mut owned = Vec::new();
        for (k, (codes, n_levels, z, diagonal)) in terms.into_iter().enumerate() {
            if z.shape()[0] != n || codes.len() != n {
                return Err(
                    LmmError::Shape(format!("term {k} has the wrong number of rows")).into(),
                );
            }
            owned.push(OwnedTerm {
                codes: vec1(&codes.readonly()),
                shape: ReTermShape {
                    n_levels,
                    q: z.shape()[1],
                    diagonal,
                },
                z: column_major(&z),
            });
        }
        let weights = weights.map_or_else(|| vec![1.0; n], |w| vec1(&w));
        let offset = offset.map_or_else(|| vec![0.0; n], |o| vec1(&o));
        if weights.len() != n || offset.len() != n {
            return Err(LmmError::Shape("weights and offset need one value per row".into()).into());
        }
        Ok(PyGlmmProblem {
            y,
            x: column_major(x),
            p,
            terms: owned,
            weights,
            offset,
            family: Family::new(dist, link),
            threads,
        })
    }

    /// lme4's devfun: the Laplace (nagq = 1) or AGQ (nagq > 1) objective at (theta, beta),
    /// or with `beta=None` the nagq = 0 objective with beta estimated in PIRLS.
    #[pyo3(signature = (theta, beta=None, nagq=1))]
    #[allow(clippy::needless_pass_by_value)]
    fn objective(
        &self,
        py: Python<'_>,
        theta: Vec<f64>,
        beta: Option<Vec<f64>>,
        nagq: usize,
    ) -> PyResult<f64> {
        catch_panic(|| {
            let _watch = Watch::new();
            py.detach(|| {
                self.with_data(|data| {
                    let mut p = Pirls::new(data, Exec::new(self.threads));
                    if beta.is_none() {
                        p.beta = vec![0.0; data.p];
                    }
                    let nagq = if beta.is_none() { 0 } else { nagq };
                    fit::objective(&mut p, &theta, beta.as_deref(), nagq)
                })
            })
            .map_err(PyErr::from)
        })
    }

    /// lme4's two-stage fit from the GLM's coefficients `beta0` (and theta0, 1 on the
    /// diagonals by default).
    #[pyo3(signature = (nagq, beta0, theta0=None))]
    #[allow(clippy::needless_pass_by_value)]
    fn fit(
        &self,
        py: Python<'_>,
        nagq: usize,
        beta0: Vec<f64>,
        theta0: Option<Vec<f64>>,
    ) -> PyResult<PyGlmmFit> {
        if nagq > 1 && (self.terms.len() != 1 || self.terms[0].shape.q != 1) {
            return Err(LmmError::Shape(
                "nagq > 1 needs a single scalar random-effects term".into(),
            )
            .into());
        }
        let theta0 =
            theta0.unwrap_or_else(|| self.terms.iter().flat_map(|t| t.shape.theta0()).collect());
        let lower = self.lower_bounds();
        let out = catch_panic(|| {
            let _watch = Watch::new();
            py.detach(|| {
                self.with_data(|data| {
                    fit::fit(data, Exec::new(self.threads), &beta0, &theta0, &lower, nagq)
                })
            })
            .map_err(PyErr::from)
        })?;
        Ok(PyGlmmFit::new(out))
    }
}
