//! Generalized linear mixed models as lme4's `glmer` fits them (Bates et al. 2015; lme4's
//! `pwrssUpdate`, `glmerLaplace`, `glmerAGQ`; MixedModels.jl's generalizedlinearmixedmodel.jl):
//! the families (family.rs, with the special functions they need in special.rs), PIRLS for the
//! conditional modes on the LMM's blocked factor (pirls.rs), the Laplace and adaptive
//! Gauss-Hermite objectives (laplace.rs) and lme4's two-stage fit (fit.rs).

pub mod agq;
#[cfg(test)]
mod families_reference;
pub mod family;
pub mod fit;
pub mod laplace;
#[cfg(test)]
mod link_extremes_reference;
pub mod pirls;
pub mod special;
pub mod wcross;
