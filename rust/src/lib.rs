//! multilevel: the numerical core of the `multilevel` Python package.
//!
//! Linear mixed models in the penalised least-squares form of lme4 (Bates, Maechler, Bolker and
//! Walker 2015), factored blockwise as in MixedModels.jl.

pub mod error;
pub mod exec;
pub mod linalg;
pub mod lmm;
pub mod model;
pub mod optim;

#[cfg(feature = "python")]
mod py;
