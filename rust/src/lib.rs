//! multilevel: the numerical core of the `multilevel` Python package.
//!
//! Linear mixed models in the penalised least-squares form of lme4 (Bates, Maechler, Bolker and
//! Walker 2015), factored blockwise as in MixedModels.jl.

pub mod blocks;
pub mod bobyqa;
pub mod cholesky;
pub mod dense_llt;
pub mod error;
pub mod exec;
pub mod glmm;
pub mod lmm;
pub mod model;
pub mod oneterm;
pub mod optim;
#[path = "linalg/supernodal/mod.rs"]
pub mod supernodal;
pub mod team;

// MERGE: remove. The old paths, for the branches written against them.
pub use model::{crossprod, remat};

#[cfg(feature = "python")]
mod py;
