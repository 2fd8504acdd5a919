//! The linear mixed model at a given theta: the profiled objective (ML deviance or REML
//! criterion), the conditional estimates beta, u, b and sigma, the unscaled covariance of beta,
//! and the conditional covariances of b.
//!
//! With pwrss the penalised weighted residual sum of squares, ldL2 = log det(L_Z)^2,
//! ldRX2 = log det(R_X)^2 and ldW = sum log w (Bates et al. 2015, eqs. 34 and 41; lme4's
//! `lmerResp::Laplace`; MixedModels.jl's `objective`):
//!
//! ```text
//!   ML:   ldL2 - ldW + n (1 + log(2 pi pwrss / n))
//!   REML: ldL2 - ldW + ldRX2 + (n - p)(1 + log(2 pi pwrss / (n - p)))
//! ```
//!
//! One evaluation reads `criterion(update_l(set_theta(theta)))`, as MixedModels.jl's
//! `objective(updateL!(setθ!(m, θ)))`: `set_theta` checks theta (the one check) and fills the
//! per-term lambda templates (`remat.rs`); `update_l` runs the numeric step of the factor
//! (`linalg::factor`), unless L is already at theta or was kept aside there (`keep_factor`);
//! `criterion` reads ldL2, ldRX2 and pwrss off L. A one-term model's optimiser evaluations skip
//! L altogether (`linalg::oneterm`). The execution handle given to `new` is passed down to the
//! factor's symbolic step and used for the parallel passes here.

use rayon::prelude::*;

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::linalg::factor::{Factor, LFactor};
use crate::linalg::oneterm::OneTerm;
use crate::linalg::supernodal::KeptValues;
use crate::model::crossprod::CrossProducts;
use crate::model::remat::{self, ReTermShape};

/// A model ready to be evaluated: the cross-products and the factor they determine.
#[derive(Clone, Debug)]
pub struct LmmProblem {
    pub a: CrossProducts,
    /// L(theta), in the form the structure of A calls for.
    pub factor: LFactor,
    /// The threads this problem may use.
    exec: Exec,
    /// The theta set last (`set_theta`) and its per-term lambda templates.
    theta: Vec<f64>,
    lambdas: Vec<Vec<f64>>,
    /// The theta at which `factor` was last updated successfully (when `factored`).
    current: Vec<f64>,
    factored: bool,
    /// The one-pass evaluator when the model has a single term (the optimiser's objective).
    one_term: Option<OneTerm>,
    /// lme4's data-based start, when it has one (see `optim::lme4_start`).
    start: Option<Vec<f64>>,
    /// A factor kept aside by `keep_factor`, and its theta.
    kept: KeptValues,
    kept_theta: Option<Vec<f64>>,
}

/// Everything the model gives at one theta.
#[derive(Clone, Debug)]
pub struct Solution {
    pub theta: Vec<f64>,
    pub objective: f64,
    pub beta: Vec<f64>,
    /// Spherical random effects, one vector per term, level-major (q values per level).
    pub u: Vec<Vec<f64>>,
    /// b = Lambda u, laid out as u.
    pub b: Vec<Vec<f64>>,
    pub sigma: f64,
    pub pwrss: f64,
    pub ld_l2: f64,
    pub ld_rx2: f64,
    /// (X' V^-1 X)^-1 sigma^-2, p x p column-major: vcov(beta) = sigma^2 vcov_unscaled.
    pub vcov_unscaled: Vec<f64>,
    /// Per-term q x q lambda templates, column-major.
    pub lambdas: Vec<Vec<f64>>,
}

impl LmmProblem {
    /// The model of the cross-products `a`, its factor analysed for the threads of `exec`.
    pub fn new(a: CrossProducts, exec: &Exec) -> Result<Self> {
        if a.shapes.is_empty() {
            return Err(LmmError::Shape(
                "a linear mixed model needs at least one random-effects term".into(),
            ));
        }
        if let Some(k) = a.shapes.iter().position(|s| s.q == 0) {
            return Err(LmmError::Shape(format!(
                "random-effects term {k} has no columns"
            )));
        }
        let factor = LFactor::analyse(&a, exec)?;
        let lambdas = a.shapes.iter().map(|s| vec![0.0; s.q * s.q]).collect();
        let one_term = OneTerm::new(&a);
        Ok(LmmProblem {
            a,
            factor,
            exec: exec.clone(),
            theta: Vec::new(),
            lambdas,
            current: Vec::new(),
            factored: false,
            one_term,
            start: None,
            kept: KeptValues::default(),
            kept_theta: None,
        })
    }

    /// The execution handle given at construction.
    pub fn exec(&self) -> &Exec {
        &self.exec
    }

    pub fn shapes(&self) -> &[ReTermShape] {
        &self.a.shapes
    }

    pub fn nobs(&self) -> usize {
        self.a.nobs
    }

    pub fn p(&self) -> usize {
        self.a.p
    }

    pub fn n_theta(&self) -> usize {
        remat::n_theta(&self.a.shapes)
    }

    pub fn lower_bounds(&self) -> Vec<f64> {
        self.a
            .shapes
            .iter()
            .flat_map(ReTermShape::lower_bounds)
            .collect()
    }

    /// lme4's start: the data-based one when set (`set_start`), otherwise the identity
    /// (1 on the diagonals, 0 elsewhere).
    /// With weights rescaled (`model::transform`), the start is taken in the units where the
    /// weights are of size 1 (theta~) and returned in theta's.
    pub fn theta0(&self) -> Vec<f64> {
        let start: Vec<f64> = match &self.start {
            Some(t) => t.clone(),
            None => self.a.shapes.iter().flat_map(ReTermShape::theta0).collect(),
        };
        let ts = self.theta_scale();
        start.into_iter().map(|t| t * ts).collect()
    }

    /// theta / theta~ (a power of two; 1 unless the weights were rescaled: `model::transform`).
    pub fn theta_scale(&self) -> f64 {
        self.a.transform.theta_scale()
    }

    /// Sets (or clears) the data-based start that `theta0` returns (in theta~'s units).
    pub fn set_start(&mut self, start: Option<Vec<f64>>) -> Result<()> {
        if let Some(t) = &start {
            let below = t.iter().zip(self.lower_bounds()).any(|(v, lo)| *v < lo);
            if below || self.check_theta(t).is_err() {
                return Err(LmmError::Theta(format!("start {t:?} is not a valid theta")));
            }
        }
        self.start = start;
        Ok(())
    }

    /// The one check of a theta given from outside: its length and finite values.
    fn check_theta(&self, theta: &[f64]) -> Result<()> {
        let n = self.n_theta();
        if theta.len() != n {
            return Err(LmmError::Theta(format!(
                "{} values given, the model has {n}",
                theta.len(),
            )));
        }
        if let Some(i) = theta.iter().position(|t| !t.is_finite()) {
            return Err(LmmError::Theta(format!("element {i} is not finite")));
        }
        Ok(())
    }

    /// Sets theta (checked) and the per-term lambda templates; L is not touched (`update_l`).
    pub fn set_theta(&mut self, theta: &[f64]) -> Result<&mut Self> {
        // Every evaluation passes here: the place to honour an interrupt between two of them.
        crate::exec::check_interrupt()?;
        self.check_theta(theta)?;
        self.theta.clear();
        self.theta.extend_from_slice(theta);
        let mut offset = 0;
        for (s, lam) in self.a.shapes.iter().zip(self.lambdas.iter_mut()) {
            let k = s.n_theta();
            s.fill_lambda(&theta[offset..offset + k], lam);
            offset += k;
        }
        let ts = self.a.transform.theta_scale();
        if ts != 1.0 {
            // Lambda~ = Lambda / sqrt(c) (`model::transform`).
            for v in self.lambdas.iter_mut().flatten() {
                *v /= ts;
            }
        }
        Ok(self)
    }

    /// Brings L to the theta set last: nothing to do when it is the one factored last; the
    /// factor kept aside by `keep_factor` when it is that one's; otherwise the numeric step.
    pub fn update_l(&mut self) -> Result<&mut Self> {
        if self.factored && self.current == self.theta {
            return Ok(self);
        }
        if self.kept_theta.as_ref() == Some(&self.theta) && self.factor.swap_values(&mut self.kept)
        {
            self.kept_theta = None;
        } else {
            self.factored = false;
            self.factor.update(&self.a, &self.lambdas)?;
        }
        self.current.clear();
        self.current.extend_from_slice(&self.theta);
        self.factored = true;
        Ok(self)
    }

    /// Sets aside the factor at the current theta (in constant time, by exchanging it with a
    /// second set of values), so that a later `update_l` there takes it back instead of
    /// factoring again: the optimiser keeps its best point's factor this way, and the solution
    /// after the fit (and the convergence check in between) costs one evaluation less. Does
    /// nothing for a one-term model (its objective does not factor), the blocked form or a
    /// very large factor.
    pub fn keep_factor(&mut self) {
        if self.factored && self.factor.swap_values(&mut self.kept) {
            self.kept_theta = Some(std::mem::take(&mut self.current));
            self.factored = false;
        }
    }

    fn criterion_of(&self, ld_l2: f64, ld_rx2: f64, pwrss: f64, reml: bool) -> f64 {
        let n = self.a.nobs as f64;
        let p = self.a.p as f64;
        let two_pi = 2.0 * std::f64::consts::PI;
        let ld = ld_l2 - self.a.sum_log_w;
        let objective = if reml {
            let nmp = n - p;
            ld + ld_rx2 + nmp * (1.0 + (two_pi * pwrss / nmp).ln())
        } else {
            ld + n * (1.0 + (two_pi * pwrss / n).ln())
        };
        // A may be of shifted and scaled columns (`model::transform`): the original data's.
        self.a
            .transform
            .restore_objective(objective, n, self.a.p, reml)
    }

    /// The profiled objective from the factor as it stands.
    fn criterion(&self, reml: bool) -> f64 {
        self.criterion_of(
            self.factor.ld_l2(),
            self.factor.ld_rx2(),
            self.factor.pwrss(),
            reml,
        )
    }

    /// The objective (-2 log-likelihood, or the REML criterion) at theta; L is left factored
    /// at theta.
    pub fn objective(&mut self, theta: &[f64], reml: bool) -> Result<f64> {
        Ok(self.set_theta(theta)?.update_l()?.criterion(reml))
    }

    /// The objective at theta as the optimiser needs it: the same value as `objective`, but L is
    /// not necessarily left factored at theta. A one-term model is evaluated in one pass over
    /// its levels (`OneTerm`), with no allocation.
    pub fn objective_value(&mut self, theta: &[f64], reml: bool) -> Result<f64> {
        self.set_theta(theta)?;
        let at_theta = self.factored && self.current == self.theta;
        match self.one_term.as_mut() {
            Some(one) if !at_theta => {
                let d = one.evaluate(&self.a, &self.lambdas[0])?;
                Ok(self.criterion_of(d.ld_l2, d.ld_rx2, d.pwrss, reml))
            }
            _ => Ok(self.update_l()?.criterion(reml)),
        }
    }

    /// The objective at each of `thetas`, as `objective_value` one by one would give them (to
    /// the last bit). When the factor splits each evaluation between the threads of the team,
    /// two evaluations run at a time instead, each on one thread (on this problem and on a
    /// copy): on two cores that takes about two thirds of the time, as a single evaluation
    /// does not keep both busy.
    pub fn objective_values(&mut self, thetas: &[Vec<f64>], reml: bool) -> Result<Vec<f64>> {
        if thetas.len() < 4 || self.exec.threads() < 2 || !self.factor.is_parallel() {
            return thetas
                .iter()
                .map(|t| self.objective_value(t, reml))
                .collect();
        }
        // The kept factor stays out of the way (and out of the copy) meanwhile.
        let kept = std::mem::take(&mut self.kept);
        let kept_theta = self.kept_theta.take();
        let mut other = self.clone();
        self.factor.set_serial(true);
        other.factor.set_serial(true);
        let (mine, theirs): (Vec<_>, Vec<_>) =
            thetas.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let (a, b) = std::thread::scope(|scope| {
            let helper = scope.spawn(move || {
                theirs
                    .iter()
                    .map(|(_, t)| other.objective_value(t, reml))
                    .collect::<Vec<_>>()
            });
            let a: Vec<_> = mine
                .iter()
                .map(|(_, t)| self.objective_value(t, reml))
                .collect();
            (a, helper.join())
        });
        self.factor.set_serial(false);
        self.kept = kept;
        self.kept_theta = kept_theta;
        let b = match b {
            Ok(b) => b,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let mut out = Vec::with_capacity(thetas.len());
        let (mut a, mut b) = (a.into_iter(), b.into_iter());
        for i in 0..thetas.len() {
            let v = if i % 2 == 0 { a.next() } else { b.next() };
            out.push(v.expect("one value per theta")?);
        }
        Ok(out)
    }

    /// beta, u, b, sigma and the unscaled covariance of beta at theta.
    pub fn solution(&mut self, theta: &[f64], reml: bool) -> Result<Solution> {
        let objective = self.set_theta(theta)?.update_l()?.criterion(reml);
        let beta = self.factor.fixed_effects();
        // L_Z' u = c_u - L_XZ' beta.
        let mut u = self.factor.random_effects_rhs(&beta);
        self.factor.solve_lzt(&mut u);
        let b = u
            .iter()
            .zip(&self.a.shapes)
            .zip(&self.lambdas)
            .map(|((uk, s), lam)| {
                let q = s.q;
                let mut bk = vec![0.0; uk.len()];
                for lev in 0..s.n_levels {
                    for a in 0..q {
                        bk[lev * q + a] = (0..=a).map(|e| lam[a + e * q] * uk[lev * q + e]).sum();
                    }
                }
                bk
            })
            .collect();
        let pwrss = self.factor.pwrss();
        let n = self.a.nobs as f64;
        let p = self.a.p;
        let denom = if reml { n - p as f64 } else { n };
        // Back from the shifted and scaled columns of A (`model::transform`).
        let t = &self.a.transform;
        let (sy, ts) = (t.y_scale(p), t.theta_scale());
        let unscale = |v: Vec<Vec<f64>>, by: f64| -> Vec<Vec<f64>> {
            if by == 1.0 {
                return v;
            }
            v.into_iter()
                .map(|x| x.into_iter().map(|e| e / by).collect())
                .collect()
        };
        Ok(Solution {
            theta: theta.to_vec(),
            objective,
            beta: t.restore_beta(&beta),
            u: unscale(unscale(u, sy), ts),
            b: unscale(b, sy),
            sigma: (pwrss / denom).sqrt() / sy / ts,
            pwrss: pwrss / sy / sy / t.w_scale(),
            ld_l2: self.factor.ld_l2(),
            ld_rx2: self.factor.ld_rx2() - 2.0 * t.log_x_scale(p) - p as f64 * t.w_scale().ln(),
            vcov_unscaled: t.restore_vcov(&self.factor.vcov_unscaled(), p),
            lambdas: unscale(self.lambdas.clone(), 1.0 / ts),
        })
    }

    /// Per term, the levels x (q x q) diagonal blocks of Lambda (L_Z L_Z')^-1 Lambda'
    /// (lme4's `condVar` divided by sigma^2), column-major; the levels are split between the
    /// threads of the handle.
    pub fn condvar(&mut self, theta: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.set_theta(theta)?.update_l()?;
        let (shapes, lambdas, factor) = (&self.a.shapes, &self.lambdas, &self.factor);
        let out = self.exec.install(|| {
            shapes
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let blocks: Vec<Vec<f64>> = (0..s.n_levels)
                        .into_par_iter()
                        .map(|lev| condvar_block(factor, shapes, &lambdas[k], k, lev))
                        .collect();
                    blocks.concat()
                })
                .collect()
        });
        // Lambda = Lambda~ sqrt(c) (`model::transform`): the blocks scale by c.
        let c = self.a.transform.w_scale();
        if c == 1.0 {
            return Ok(out);
        }
        Ok(out
            .into_iter()
            .map(|v: Vec<f64>| v.into_iter().map(|e| e * c).collect())
            .collect())
    }
}

/// The q x q block of level `lev` of term k in Lambda (L_Z L_Z')^-1 Lambda': with W = L_Z^-1 E
/// for the level's q unit vectors E, lambda W'W lambda'.
fn condvar_block(
    factor: &LFactor,
    shapes: &[ReTermShape],
    lam: &[f64],
    k: usize,
    lev: usize,
) -> Vec<f64> {
    let q = shapes[k].q;
    let cols: Vec<Vec<Vec<f64>>> = (0..q)
        .map(|a| {
            let mut x: Vec<Vec<f64>> = shapes.iter().map(|t| vec![0.0; t.size()]).collect();
            x[k][lev * q + a] = 1.0;
            factor.solve_lz(&mut x);
            x
        })
        .collect();
    let mut inner = vec![0.0; q * q];
    for a in 0..q {
        for c in 0..q {
            inner[a + c * q] = cols[a]
                .iter()
                .zip(&cols[c])
                .map(|(x, y)| x.iter().zip(y).map(|(u, v)| u * v).sum::<f64>())
                .sum();
        }
    }
    // lambda inner lambda'
    let mut blk = vec![0.0; q * q];
    for a in 0..q {
        for c in 0..q {
            let mut v = 0.0;
            for e in 0..q {
                for f in 0..q {
                    v += lam[a + e * q] * inner[e + f * q] * lam[c + f * q];
                }
            }
            blk[a + c * q] = v;
        }
    }
    blk
}
