//! `multilevel._core.Accumulator`: the cross-product A = [Z X y]'W[Z X y] of a linear mixed
//! model built from batches of rows (a stream of Arrow record batches or Parquet row groups, a
//! Dask partition, a Spark task), merged with other accumulators, serialised to bytes, and
//! turned into an `LmmProblem` that fits as one built from all the rows at once.
//!
//! Each batch's NumPy arrays are borrowed for the call (never copied) and added with the GIL
//! released, in the fixed lanes of `model::lanes` on the accumulator's threads; the bytes are
//! `model::wire`'s versioned layout. The accumulator also carries the moments of lme4's start
//! (`model::moments`), so a problem built from it has the same start as the in-memory one.
//!
//! By default it centres, as the in-memory pass does (`model::transform`): the first batch's
//! means of y and of X's non-intercept columns are subtracted from every batch's rows (and
//! columns far from unit size are scaled by powers of two) before they are summed;
//! accumulators of other shifts convert to these when merged, and the problem restores beta,
//! sigma, theta, b and the objective of the original rows.

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::error::LmmError;
use crate::exec::Exec;
use crate::lmm::LmmProblem;
use crate::model::crossprod::RowChunk;
use crate::model::lanes::LaneAccumulator;
use crate::model::remat::ReTermShape;
use crate::model::wire;
use crate::py::errors::catch_panic;
use crate::py::problem::PyLmmProblem;

fn shape_error(message: String) -> PyErr {
    LmmError::Shape(message).into()
}

/// What `obj` is, for an error message: its type, and for an array its dtype and dimensions.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string());
    match (obj.getattr("dtype"), obj.getattr("ndim")) {
        (Ok(dtype), Ok(ndim)) => format!("a {ndim}-D {ty} of {dtype}"),
        _ => format!("a {ty}"),
    }
}

/// `obj` as a read-only 1-D array of `T` (`kind` names the dtype in the message).
fn array1<'py, T: numpy::Element>(
    name: &str,
    kind: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    let array = obj.cast::<PyArray1<T>>().map_err(|_| {
        shape_error(format!(
            "{name} must be a 1-D {kind} NumPy array, got {}",
            describe(obj)
        ))
    })?;
    array
        .try_readonly()
        .map_err(|e| shape_error(format!("{name} is being written elsewhere: {e}")))
}

/// `obj` as a read-only 2-D float64 array.
fn array2<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray2<'py, f64>> {
    let array = obj.cast::<PyArray2<f64>>().map_err(|_| {
        shape_error(format!(
            "{name} must be a 2-D float64 NumPy array in Fortran order, got {}",
            describe(obj)
        ))
    })?;
    array
        .try_readonly()
        .map_err(|e| shape_error(format!("{name} is being written elsewhere: {e}")))
}

fn contiguous<'a, T: numpy::Element>(
    name: &str,
    a: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        shape_error(format!(
            "{name} must be contiguous (use np.ascontiguousarray)"
        ))
    })
}

fn fortran<'a>(name: &str, a: &'a PyReadonlyArray2<'_, f64>) -> PyResult<&'a [f64]> {
    if !a.is_fortran_contiguous() {
        return Err(shape_error(format!(
            "{name} must be in Fortran (column-major) order: use np.asfortranarray"
        )));
    }
    a.as_slice()
        .map_err(|e| shape_error(format!("{name}: {e}")))
}

/// The cross-product of a linear mixed model, accumulated from batches of rows.
///
/// ``Accumulator(n_levels, q, p, threads=0, diagonal=None, centre=True)``: one random-effects
/// term per entry of ``n_levels`` (its number of levels) and ``q`` (its number of columns of Z);
/// ``p`` fixed-effect columns; ``threads`` for each ``add`` (0: all cores; the sums do not
/// depend on it); ``diagonal`` marks uncorrelated terms (default: none); ``centre`` shifts y and
/// X's non-intercept columns by the first batch's means (and scales columns far from size 1 by
/// powers of two) before summing, so that a response of 1e8 + 300 keeps its digits. Add
/// batches with ``add``, combine partial accumulators with ``merge`` (or ``to_bytes`` /
/// ``from_bytes`` across processes) and fit with ``problem()``.
#[pyclass(module = "multilevel._core", name = "Accumulator")]
pub struct PyAccumulator {
    inner: LaneAccumulator,
    exec: Exec,
}

impl PyAccumulator {
    fn shape_of(&self) -> Vec<ReTermShape> {
        self.inner.shapes().to_vec()
    }
}

// PyO3 extracts the lists of the arguments as owned vectors.
#[allow(clippy::needless_pass_by_value)]
#[pymethods]
impl PyAccumulator {
    #[new]
    #[pyo3(signature = (n_levels, q, p, threads=0, diagonal=None, centre=true))]
    fn new(
        n_levels: Vec<usize>,
        q: Vec<usize>,
        p: usize,
        threads: usize,
        diagonal: Option<Vec<bool>>,
        centre: bool,
    ) -> PyResult<Self> {
        let diagonal = diagonal.unwrap_or_else(|| vec![false; n_levels.len()]);
        if q.len() != n_levels.len() || diagonal.len() != n_levels.len() {
            return Err(shape_error(format!(
                "n_levels, q and diagonal describe {}, {} and {} terms",
                n_levels.len(),
                q.len(),
                diagonal.len()
            )));
        }
        if let Some(k) = q.iter().position(|&q| q == 0) {
            return Err(shape_error(format!("term {k} has q = 0 columns")));
        }
        let shapes: Vec<ReTermShape> = n_levels
            .iter()
            .zip(&q)
            .zip(&diagonal)
            .map(|((&n_levels, &q), &diagonal)| ReTermShape {
                n_levels,
                q,
                diagonal,
            })
            .collect();
        catch_panic(|| {
            let mut inner = LaneAccumulator::new(&shapes, p);
            inner.set_centre(centre)?;
            Ok(PyAccumulator {
                inner,
                exec: Exec::new(threads),
            })
        })
    }

    /// Adds one batch of rows.
    ///
    /// ``y`` (n,) float64; ``X`` (n, p) float64 in Fortran order; ``terms`` one ``(codes, Z)``
    /// per term, ``codes`` (n,) int32 0-based levels and ``Z`` (n, q) float64 in Fortran order;
    /// optional prior ``weights`` and ``offset`` (n,) float64. The arrays are read in place,
    /// with the GIL released. A bad batch (a wrong dtype, shape or order, a code outside its
    /// term's levels: the error names the term and the row of the batch) adds nothing.
    #[pyo3(signature = (y, x, terms, weights=None, offset=None))]
    fn add(
        &mut self,
        py: Python<'_>,
        y: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        terms: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
        weights: Option<&Bound<'_, PyAny>>,
        offset: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let shapes = self.shape_of();
        let p = self.inner.p();
        if terms.len() != shapes.len() {
            return Err(shape_error(format!(
                "{} terms given, the accumulator has {}",
                terms.len(),
                shapes.len()
            )));
        }
        let y = array1::<f64>("y", "float64", y)?;
        let n = y.len();
        let x = array2("X", x)?;
        if x.shape() != [n, p] {
            return Err(shape_error(format!(
                "X is {:?}, expected ({n}, {p}) for {n} rows of y and p = {p}",
                x.shape()
            )));
        }
        let mut codes = Vec::with_capacity(terms.len());
        let mut zs = Vec::with_capacity(terms.len());
        for (k, (c, z)) in terms.iter().enumerate() {
            let c = array1::<i32>(&format!("terms[{k}] codes"), "int32", c)?;
            let z = array2(&format!("terms[{k}] Z"), z)?;
            if c.len() != n || z.shape() != [n, shapes[k].q] {
                return Err(shape_error(format!(
                    "terms[{k}]: {} codes and Z of shape {:?}, expected {n} and ({n}, {})",
                    c.len(),
                    z.shape(),
                    shapes[k].q
                )));
            }
            codes.push(c);
            zs.push(z);
        }
        let weights = weights
            .map(|w| array1::<f64>("weights", "float64", w))
            .transpose()?;
        let offset = offset
            .map(|o| array1::<f64>("offset", "float64", o))
            .transpose()?;
        let chunk = RowChunk {
            y: contiguous("y", &y)?,
            x: fortran("X", &x)?,
            codes: codes
                .iter()
                .enumerate()
                .map(|(k, c)| contiguous(&format!("terms[{k}] codes"), c))
                .collect::<PyResult<_>>()?,
            z: zs
                .iter()
                .enumerate()
                .map(|(k, z)| fortran(&format!("terms[{k}] Z"), z))
                .collect::<PyResult<_>>()?,
            weights: weights
                .as_ref()
                .map(|w| contiguous("weights", w))
                .transpose()?,
            offset: offset
                .as_ref()
                .map(|o| contiguous("offset", o))
                .transpose()?,
        };
        let (inner, exec) = (&mut self.inner, &self.exec);
        // Ctrl-C stops the pass (and leaves the accumulator with part of the batch).
        let _watch = crate::py::interrupt::Watch::new();
        catch_panic(|| py.detach(|| inner.add(&chunk, exec)).map_err(PyErr::from))
    }

    /// Adds the rows of another accumulator of the same model (``n_levels``, ``q``,
    /// ``diagonal`` and ``p`` equal). The order of merges changes the sums only by rounding.
    /// When the other's rows were shifted or scaled differently (each centres on its own first
    /// batch), its sums are converted to this one's shifts as they are added.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, PyAccumulator>) -> PyResult<()> {
        let py = slf.py();
        if slf.is(other) {
            // Adding an accumulator to itself: merge a copy.
            let mut this = slf.borrow_mut();
            let inner = &mut this.inner;
            let copy = LaneAccumulator::from_accumulator(inner.collapse().clone());
            return catch_panic(|| py.detach(|| inner.merge(&copy)).map_err(PyErr::from));
        }
        let mut this = slf.borrow_mut();
        let theirs = other.borrow();
        let (inner, other) = (&mut this.inner, &theirs.inner);
        catch_panic(|| py.detach(|| inner.merge(other)).map_err(PyErr::from))
    }

    /// The accumulator as bytes: ``model/wire.rs``'s layout (version 2, little-endian, a magic
    /// header and a checksum). ``Accumulator.from_bytes`` reads it back; writing what was read
    /// gives the same bytes.
    #[pyo3(name = "to_bytes")]
    fn serialise<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &mut self.inner;
        let bytes = catch_panic(|| Ok(py.detach(|| wire::to_bytes(inner.collapse()))))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// An accumulator from ``to_bytes``'s output (``bytes`` or ``bytearray``, as a Spark binary
    /// column gives); a buffer that is not one (a wrong magic, version, length or checksum)
    /// raises ``ShapeError`` saying which.
    #[staticmethod]
    #[pyo3(signature = (data, threads=0))]
    fn from_bytes(py: Python<'_>, data: PyBackedBytes, threads: usize) -> PyResult<Self> {
        let data: &[u8] = &data;
        let acc = catch_panic(|| py.detach(|| wire::from_bytes(data)).map_err(PyErr::from))?;
        Ok(PyAccumulator {
            inner: LaneAccumulator::from_accumulator(acc),
            exec: Exec::new(threads),
        })
    }

    /// Pickling (Dask, multiprocessing) goes through ``to_bytes``.
    fn __reduce__<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let from_bytes = py.get_type::<PyAccumulator>().getattr("from_bytes")?;
        Ok((from_bytes, (self.serialise(py)?,)))
    }

    /// The linear mixed model of the rows added: an ``LmmProblem`` on the accumulator's
    /// threads, with lme4's start from the accumulated moments. The accumulator stays usable;
    /// with ``reset=True`` its sums move into the problem instead of being copied (one
    /// accumulator less at the peak of memory, for a caller done with it) and it is left empty,
    /// as new, whether or not the problem could be built.
    #[pyo3(signature = (reset=false))]
    fn problem(&mut self, py: Python<'_>, reset: bool) -> PyResult<PyLmmProblem> {
        let (shapes, p) = (self.shape_of(), self.inner.p());
        let (inner, exec) = (&mut self.inner, self.exec.clone());
        let for_problem = exec.clone();
        let problem = catch_panic(|| {
            py.detach(|| {
                let acc = if reset {
                    // As new: the same shapes and the same centring (its transform is taken
                    // again from the next first rows).
                    let mut empty = LaneAccumulator::new(&shapes, p);
                    empty.set_centre(inner.first().centre())?;
                    std::mem::replace(inner, empty).into_accumulator()
                } else {
                    inner.collapse().clone()
                };
                let start = acc.lme4_start();
                // Weights brought to geometric mean 1, as the in-memory pass does.
                let mut a = acc.finish();
                a.normalise_weights();
                let mut problem = LmmProblem::new(a, &for_problem)?;
                problem.set_start(start)?;
                Ok::<_, LmmError>(problem)
            })
            .map_err(PyErr::from)
        })?;
        Ok(PyLmmProblem::from_problem(problem, exec))
    }

    /// Rows added, whatever their weights.
    #[getter]
    fn nrows(&self) -> usize {
        self.inner.n_rows()
    }

    /// Rows added with a non-zero weight.
    #[getter]
    fn nobs(&self) -> usize {
        self.inner.nobs()
    }

    /// Number of fixed-effect columns.
    #[getter]
    fn p(&self) -> usize {
        self.inner.p()
    }

    /// Number of levels of each term.
    #[getter]
    fn n_levels(&self) -> Vec<usize> {
        self.inner.shapes().iter().map(|s| s.n_levels).collect()
    }

    /// Number of columns of Z of each term.
    #[getter]
    fn q(&self) -> Vec<usize> {
        self.inner.shapes().iter().map(|s| s.q).collect()
    }

    /// Whether each term is uncorrelated (diagonal).
    #[getter]
    fn diagonal(&self) -> Vec<bool> {
        self.inner.shapes().iter().map(|s| s.diagonal).collect()
    }

    /// Whether the first batch's means centre the rows (``centre=`` of the constructor).
    #[getter]
    fn centre(&self) -> bool {
        self.inner.first().centre()
    }

    /// The change of variables of the rows summed: ``(intercept, shift, scale)``, the column
    /// of X that is the intercept (``None``: nothing shifted), and per column of ``[X, y]``
    /// its shift (0 for the intercept) and its power-of-two scale; empty lists before the
    /// first rows of a centring accumulator, and for one that does not centre.
    #[getter]
    fn transform(&self) -> (Option<usize>, Vec<f64>, Vec<f64>) {
        let t = self.inner.first().transform();
        (t.pivot, t.shift.clone(), t.scale.clone())
    }

    /// Number of threads each ``add`` uses.
    #[getter]
    fn threads(&self) -> usize {
        self.exec.threads()
    }

    fn __repr__(&self) -> String {
        format!(
            "Accumulator(n_levels={:?}, q={:?}, p={}, nrows={})",
            self.n_levels(),
            self.q(),
            self.p(),
            self.nrows()
        )
    }
}
