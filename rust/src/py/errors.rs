//! Errors at the boundary. Each variant of `LmmError` maps to its own Python exception class
//! of `multilevel.exceptions` (one `match`, as polars' error.rs), so that users catch the
//! package's own hierarchy; a Rust panic (a bug of the core, never an input problem) is caught
//! before it reaches Python and raised as `multilevel._core.InternalError`, which asks the user
//! to report it, instead of pyo3's `PanicException` (a `BaseException` that `except Exception`
//! does not catch).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;

use crate::error::LmmError;

pyo3::create_exception!(
    multilevel._core,
    InternalError,
    PyException,
    "A bug in multilevel's Rust core (a panic caught at the boundary). Please report it to the \
     multilevel developers with the call that raised it."
);

/// The Python exception for a core error: the class of `multilevel.exceptions` named for its
/// variant, with the error's message (so `?` turns an `LmmError` into it).
impl From<LmmError> for PyErr {
    fn from(err: LmmError) -> PyErr {
        to_py(&err)
    }
}

/// See `From<LmmError> for PyErr`.
pub fn to_py(err: &LmmError) -> PyErr {
    let class = match err {
        LmmError::Interrupted => return crate::py::interrupt::interrupted_error(),
        LmmError::Shape(_) => "ShapeError",
        LmmError::Code { .. } => "CodeError",
        LmmError::Theta(_) => "ThetaError",
        LmmError::NotPositiveDefinite { .. } => "NotPositiveDefiniteError",
        LmmError::Optimizer(_) => "OptimizerError",
    };
    let message = err.to_string();
    Python::attach(|py| {
        match py
            .import("multilevel.exceptions")
            .and_then(|m| m.getattr(class))
        {
            Ok(cls) => match cls.call1((message.clone(),)) {
                Ok(instance) => PyErr::from_value(instance),
                Err(e) => e,
            },
            // Only when the package itself is broken (the core imported on its own).
            Err(_) => PyRuntimeError::new_err(format!("{class}: {message}")),
        }
    })
}

/// `InternalError` for a caught panic, with the panic's message.
pub fn internal_error(payload: &(dyn Any + Send)) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    InternalError::new_err(format!(
        "internal error in multilevel's Rust core: {what}. This is a bug, not a problem with \
         your data: please report it to the multilevel developers with the call that raised it"
    ))
}

/// Runs `f`; a panic inside it becomes `InternalError` (see the module's documentation).
pub fn catch_panic<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(internal_error(&*payload)))
}

/// Panics inside the boundary's guard: lets the tests check that a panic of the core reaches
/// Python as `InternalError`.
#[pyfunction]
pub fn _panic_for_tests() -> PyResult<()> {
    catch_panic(|| panic!("a deliberate panic (multilevel._core._panic_for_tests)"))
}
