//! The factor L(theta): the scaled cross-products Lambda' A Lambda + diag(I, 0) and their
//! Cholesky factor, in the form the model's structure calls for.
//!
//! `scale` forms the blocks of the matrix, `small` holds the dense kernels of small blocks,
//! `blocks` the block types; `factor` is the interface the objective and its users call
//! (`Factor`, and `LFactor`, which chooses a form); `blocked` is the blocked form of
//! MixedModels.jl's `updateL!` (nested structures), the supernodal form (crossed structures,
//! as lme4's CHOLMOD factor) runs its widest dense blocks with `dense_llt` on a `team` of
//! threads (`supernodal/`); `oneterm` evaluates the objective of a one-term model without
//! forming L.

pub mod blocked;
pub mod blocks;
pub mod dense_llt;
pub mod factor;
pub mod oneterm;
pub mod scale;
pub mod small;
pub mod supernodal;
pub mod team;
