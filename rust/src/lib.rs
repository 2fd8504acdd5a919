//! multilevel: the numerical core of the `multilevel` Python package.
//!
//! Linear mixed models in the penalised least-squares form of lme4 (Bates, Maechler, Bolker and
//! Walker 2015), factored blockwise as in MixedModels.jl; generalized linear mixed models by
//! PIRLS and the Laplace approximation or adaptive Gauss-Hermite quadrature on the same factor.

pub mod error;
pub mod exec;
pub mod glmm;
pub mod linalg;
pub mod lmm;
pub mod model;
pub mod optim;

#[cfg(feature = "python")]
mod py;
