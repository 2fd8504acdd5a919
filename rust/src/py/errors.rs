//! One Python exception class per variant of `LmmError`, taken from `multilevel.exceptions` so
//! that users catch the package's own hierarchy.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::error::LmmError;

pub fn to_py(err: LmmError) -> PyErr {
    let class = match &err {
        LmmError::Shape(_) => "ShapeError",
        LmmError::Code { .. } => "CodeError",
        LmmError::Theta(_) => "ThetaError",
        LmmError::NotPositiveDefinite { .. } => "NotPositiveDefiniteError",
        LmmError::TooLarge { .. } => "TooLargeError",
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
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}
