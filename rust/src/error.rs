//! The one error type of the core. Each variant maps to one Python exception class in
//! `py/errors.rs`; variants carry the data that the message needs.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum LmmError {
    /// Arrays whose lengths or shapes disagree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A grouping code outside 0..n_levels.
    #[error("random-effects term {term}: code {code} at row {row} is outside 0..{n_levels}")]
    Code {
        term: usize,
        row: usize,
        code: i64,
        n_levels: usize,
    },
    /// Theta of the wrong length or with a non-finite entry.
    #[error("theta: {0}")]
    Theta(String),
    /// A matrix that should be positive definite is not (for example a rank-deficient X).
    #[error("{what} is not positive definite (pivot {pivot})")]
    NotPositiveDefinite { what: String, pivot: usize },
    /// The optimiser could not run.
    #[error("optimizer: {0}")]
    Optimizer(String),
    /// The caller asked the work to stop (ctrl-C: `exec::request_interrupt`).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, LmmError>;
