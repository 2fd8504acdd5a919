//! multilevel: the numerical core of the `multilevel` Python package.
//!
//! Linear mixed models in the penalised least-squares form of lme4 (Bates, Maechler, Bolker and
//! Walker 2015), factored blockwise as in MixedModels.jl.

pub mod bobyqa;
pub mod crossprod;
pub mod error;
pub mod exec;
pub mod linalg;
pub mod lmm;
pub mod optim;
pub mod remat;
pub mod supernodal;

// MERGE: the old paths, kept for the other branches until the merge removes them.
pub use linalg::blocked as cholesky;
pub use linalg::{dense_llt, oneterm, team};
/// MERGE: old path of the block types, the small kernels and the scaling.
pub mod blocks {
    pub use crate::linalg::blocks::*;
    pub use crate::linalg::scale::scale_block;
    pub use crate::linalg::small::{chol_small, right_solve_lt, solve_l_small, solve_lt_small};
}

#[cfg(feature = "python")]
mod py;
