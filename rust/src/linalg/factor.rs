//! The factor L(theta) as one interface: what the objective, the solution and (later) PIRLS and
//! inference need from it, whichever form serves the model.
//!
//! ```text
//!   P [ Lambda' Z'WZ Lambda + I   Lambda' Z'WD ] P' = L L' = [ L_Z   0  ] [ L_Z   0  ]'
//!     [ D'WZ Lambda               D'WD         ]             [ L_DZ  L_D ] [ L_DZ  L_D ],
//! ```
//!
//! D = [X y], L_D = [R_X' 0; r' sqrt(pwrss)] (Bates et al. 2015, eqs. 18 and 34). A form does
//! its symbolic analysis once, from the structure of A (`Factor::analyse`); `update` is the
//! numeric step at one theta, and may be called again with a new A of the same structure (new
//! weights in PIRLS) on the same symbolic analysis. lme4 keeps one CHOLMOD factor (`Lfactor`,
//! updated by `updateL`); MixedModels.jl one blocked `L` updated by `updateL!`.
//!
//! Two forms: `BlockedCholesky` (`blocked.rs`), when no fill-in reaches a diagonal block, and
//! the supernodal `SupernodalCholesky` otherwise. `LFactor` chooses between them once, at its
//! symbolic step, and dispatches each call with one `match` (no virtual call per block).

use faer::MatRef;

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::linalg::blocked::BlockedCholesky;
use crate::linalg::supernodal::{KeptValues, SupernodalCholesky};
use crate::model::crossprod::CrossProducts;

/// The largest supernodal factor (in values, 64 MB) of which a second copy is kept aside
/// (`Factor::swap_values`).
pub const KEEP_MAX_VALUES: usize = 1 << 23;

/// A numeric factor L(theta) on a fixed symbolic analysis.
pub trait Factor {
    /// The symbolic step, once per structure of A, for the threads of `exec`.
    fn analyse(a: &CrossProducts, exec: &Exec) -> Result<Self>
    where
        Self: Sized;

    /// The numeric step: L from A (of the structure analysed) and the per-term q x q
    /// lower-triangular templates lambda (column-major).
    fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()>;

    /// log det(L_Z)^2.
    fn ld_l2(&self) -> f64;

    /// The lower-triangular (p + 1) x (p + 1) block L_D.
    fn d_block(&self) -> MatRef<'_, f64>;

    /// log det(R_X)^2: the first p diagonal elements of L_D.
    fn ld_rx2(&self) -> f64 {
        let m = self.d_block();
        2.0 * (0..m.nrows() - 1).map(|a| m[(a, a)].ln()).sum::<f64>()
    }

    /// The penalised weighted residual sum of squares: the last diagonal element of L_D,
    /// squared.
    fn pwrss(&self) -> f64 {
        let m = self.d_block();
        let r = m[(m.nrows() - 1, m.nrows() - 1)];
        r * r
    }

    /// beta from L_D: R_X' beta = c_beta, with R_X' the upper triangle of the transposed X
    /// block of L_D (the conditional estimate at the factored theta).
    fn fixed_effects(&self) -> Vec<f64> {
        let d = self.d_block();
        let p = d.nrows() - 1;
        let mut beta: Vec<f64> = (0..p).map(|j| d[(p, j)]).collect();
        for j in (0..p).rev() {
            let mut s = beta[j];
            for k in j + 1..p {
                s -= d[(k, j)] * beta[k];
            }
            beta[j] = s / d[(j, j)];
        }
        beta
    }

    /// (R_X R_X')^-1 (p x p, column-major) through the inverse of the lower-triangular X
    /// block of L_D: the covariance of beta over sigma^2.
    fn vcov_unscaled(&self) -> Vec<f64> {
        let d = self.d_block();
        let p = d.nrows() - 1;
        let mut rinv = vec![0.0; p * p];
        for c in 0..p {
            for i in c..p {
                let mut s = if i == c { 1.0 } else { 0.0 };
                for k in c..i {
                    s -= d[(i, k)] * rinv[k + c * p];
                }
                rinv[i + c * p] = s / d[(i, i)];
            }
        }
        let mut vcov = vec![0.0; p * p];
        for j in 0..p {
            for i in 0..p {
                vcov[i + j * p] = (i.max(j)..p)
                    .map(|k| rinv[k + i * p] * rinv[k + j * p])
                    .sum();
            }
        }
        vcov
    }

    /// For each term, c_u - L_DZ' [beta; 0] (the right-hand side of L_Z' u = ...), level-major.
    fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>>;

    /// x <- L_Z^{-1} x for a blocked vector of random effects (one Vec per term).
    fn solve_lz(&self, x: &mut [Vec<f64>]);

    /// x <- L_Z^{-T} x for a blocked vector of random effects.
    fn solve_lzt(&self, x: &mut [Vec<f64>]);

    /// Exchanges the numeric values with `kept` in constant time, so that a factor can be kept
    /// aside while others are computed; false (and nothing done) when this form does not keep
    /// factors (cheap to recompute, or too large to copy).
    fn swap_values(&mut self, kept: &mut KeptValues) -> bool;

    /// Whether the numeric step splits its work between threads (see `set_serial`).
    fn is_parallel(&self) -> bool;

    /// With `serial`, the numeric step runs on the calling thread alone (to the same values,
    /// to the last bit), so that two factors can be updated at once on different threads.
    fn set_serial(&mut self, serial: bool);
}

impl Factor for BlockedCholesky {
    fn analyse(a: &CrossProducts, exec: &Exec) -> Result<Self> {
        BlockedCholesky::new(a, exec).ok_or_else(|| {
            LmmError::Shape(
                "fill-in reaches a diagonal block: the blocked form does not apply".into(),
            )
        })
    }
    fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        BlockedCholesky::update(self, a, lambdas)
    }
    fn ld_l2(&self) -> f64 {
        BlockedCholesky::ld_l2(self)
    }
    fn d_block(&self) -> MatRef<'_, f64> {
        BlockedCholesky::d_block(self)
    }
    fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        BlockedCholesky::random_effects_rhs(self, beta)
    }
    fn solve_lz(&self, x: &mut [Vec<f64>]) {
        BlockedCholesky::solve_lz(self, x);
    }
    fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        BlockedCholesky::solve_lzt(self, x);
    }
    /// The blocked form is cheap to refactor: nothing is kept.
    fn swap_values(&mut self, _kept: &mut KeptValues) -> bool {
        false
    }
    fn is_parallel(&self) -> bool {
        false
    }
    fn set_serial(&mut self, _serial: bool) {}
}

impl Factor for SupernodalCholesky {
    fn analyse(a: &CrossProducts, exec: &Exec) -> Result<Self> {
        SupernodalCholesky::new(a, exec)
    }
    fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        SupernodalCholesky::update(self, a, lambdas)
    }
    fn ld_l2(&self) -> f64 {
        SupernodalCholesky::ld_l2(self)
    }
    fn d_block(&self) -> MatRef<'_, f64> {
        SupernodalCholesky::d_block(self).as_ref()
    }
    fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        SupernodalCholesky::random_effects_rhs(self, beta)
    }
    fn solve_lz(&self, x: &mut [Vec<f64>]) {
        SupernodalCholesky::solve_lz(self, x);
    }
    fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        SupernodalCholesky::solve_lzt(self, x);
    }
    /// Up to `KEEP_MAX_VALUES` values; a very large factor is not copied.
    fn swap_values(&mut self, kept: &mut KeptValues) -> bool {
        if self.n_values() > KEEP_MAX_VALUES {
            return false;
        }
        SupernodalCholesky::swap_values(self, kept);
        true
    }
    fn is_parallel(&self) -> bool {
        SupernodalCholesky::is_parallel(self)
    }
    fn set_serial(&mut self, serial: bool) {
        SupernodalCholesky::set_serial(self, serial);
    }
}

/// The factor of a model in the form its structure calls for.
#[derive(Clone, Debug)]
pub enum LFactor {
    /// No fill-in reaches a diagonal block: one term, or nested terms finest first.
    Blocked(BlockedCholesky),
    /// Crossed terms (or nested ones coarse first): a supernodal factor with a fill-reducing
    /// ordering. On InstEval the dense block that fill-in would create cost more to factor than
    /// the whole supernodal factor, and random crossings of two or three factors (24 x 6 to
    /// 3000 x 1000 levels) were never faster in the blocked form with dense blocks, which was
    /// therefore removed.
    Supernodal(Box<SupernodalCholesky>),
}

impl From<BlockedCholesky> for LFactor {
    fn from(b: BlockedCholesky) -> Self {
        LFactor::Blocked(b)
    }
}

impl From<SupernodalCholesky> for LFactor {
    fn from(s: SupernodalCholesky) -> Self {
        LFactor::Supernodal(Box::new(s))
    }
}

impl LFactor {
    /// The blocked form, if this is it.
    pub fn blocked(&self) -> Option<&BlockedCholesky> {
        match self {
            LFactor::Blocked(b) => Some(b),
            LFactor::Supernodal(_) => None,
        }
    }

    /// The supernodal form, if this is it.
    pub fn supernodal(&self) -> Option<&SupernodalCholesky> {
        match self {
            LFactor::Blocked(_) => None,
            LFactor::Supernodal(s) => Some(s),
        }
    }
}

/// Each call goes to the form chosen, through one `match`.
macro_rules! dispatch {
    ($self:expr, $method:ident($($arg:expr),*)) => {
        match $self {
            LFactor::Blocked(f) => <BlockedCholesky as Factor>::$method(f $(, $arg)*),
            LFactor::Supernodal(f) => <SupernodalCholesky as Factor>::$method(f $(, $arg)*),
        }
    };
}

impl Factor for LFactor {
    /// The blocked form when no fill-in reaches a diagonal block, the supernodal one otherwise.
    fn analyse(a: &CrossProducts, exec: &Exec) -> Result<Self> {
        Ok(match BlockedCholesky::new(a, exec) {
            Some(b) => LFactor::Blocked(b),
            None => LFactor::Supernodal(Box::new(SupernodalCholesky::analyse(a, exec)?)),
        })
    }
    fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        dispatch!(self, update(a, lambdas))
    }
    fn ld_l2(&self) -> f64 {
        dispatch!(self, ld_l2())
    }
    fn d_block(&self) -> MatRef<'_, f64> {
        dispatch!(self, d_block())
    }
    fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        dispatch!(self, random_effects_rhs(beta))
    }
    fn solve_lz(&self, x: &mut [Vec<f64>]) {
        dispatch!(self, solve_lz(x));
    }
    fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        dispatch!(self, solve_lzt(x));
    }
    fn swap_values(&mut self, kept: &mut KeptValues) -> bool {
        dispatch!(self, swap_values(kept))
    }
    fn is_parallel(&self) -> bool {
        dispatch!(self, is_parallel())
    }
    fn set_serial(&mut self, serial: bool) {
        dispatch!(self, set_serial(serial));
    }
}
