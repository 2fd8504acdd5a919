//! The model's data as the core owns them, in the order a fit reads them: the random-effects
//! terms (`remat`: a term's shape, grouping codes and Z columns, and Lambda(theta)), the row
//! source that hands their rows out in chunks (`source`), the blocked cross-product
//! A = [Z X y]'W[Z X y] accumulated from those chunks (`crossprod`, with the row kernels of
//! its dense blocks in `dense`, its sparse pair blocks in `pairs`, the pass in fixed lanes in `lanes`, the moments of lme4's start in
//! `moments` and the serialised form of a partial accumulator in `wire`), and lme4's
//! moment-based start (`start`); the change of variables that keeps A's digits (`transform`).
//!
//! MixedModels.jl keeps the same objects in `remat.jl` (`ReMat`) and `linearmixedmodel.jl`
//! (the `A` blocks); lme4 in `lmerMod`'s `reTrms` and `mkLmerDevfun`.

pub mod crossprod;
pub(crate) mod dense;
pub mod lanes;
pub mod moments;
pub mod pairs;
pub mod remat;
pub mod source;
pub mod start;
pub mod transform;
pub mod wire;
