//! multilevel: the numerical core of the `multilevel` Python package.
//!
//! Linear mixed models in the penalised least-squares form of lme4 (Bates, Maechler, Bolker and
//! Walker 2015), factored blockwise as in MixedModels.jl.

pub mod blocks;
pub mod bobyqa;
pub mod cholesky;
pub mod crossprod;
pub mod dense_llt;
pub mod error;
pub mod exec;
pub mod lmm;
pub mod oneterm;
pub mod optim;
pub mod remat;
#[path = "linalg/supernodal/mod.rs"]
pub mod supernodal;
pub mod team;

#[cfg(feature = "python")]
mod py;
