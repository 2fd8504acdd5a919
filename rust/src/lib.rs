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

// MERGE: the old paths, kept until every branch is merged.
pub use linalg::blocked as cholesky;
pub use linalg::{dense_llt, oneterm, supernodal, team};
pub use model::{crossprod, remat};
pub use optim::bobyqa;
/// MERGE: old path of the block types, the small kernels and the scaling.
pub mod blocks {
    pub use crate::linalg::blocks::*;
    pub use crate::linalg::scale::scale_block;
    pub use crate::linalg::small::{chol_small, right_solve_lt, solve_l_small, solve_lt_small};
}

#[cfg(feature = "python")]
mod py;
