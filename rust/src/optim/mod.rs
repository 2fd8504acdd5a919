//! The optimiser, as lme4's default (`nloptwrap`): BOBYQA (Powell 2009, as NLopt's
//! `bobyqa.c` runs it) minimises an [`Objective`] of theta within its lower bounds
//! (`bobyqa/`), lme4's `checkConv` checks the result by finite differences (`check`), and
//! `fit` ties them together for a linear mixed model (`fit`).

pub mod bobyqa;
pub mod check;
pub mod fit;
pub mod objective;

pub use check::{convergence_check, ConvergenceCheck, GRADIENT_TOLERANCE, SINGULAR_TOLERANCE};
pub use fit::{fit, optimize, Fit, FitOptions, OptimizerSummary};
pub use objective::{LmmCriterion, Objective};
