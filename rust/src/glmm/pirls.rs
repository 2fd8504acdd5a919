//! Penalised iteratively reweighted least squares (PIRLS): the conditional modes u* of the
//! penalised deviance `pdev(u) = sum_r d(y_r, mu_r(u), wt_r) + ||u||^2` with
//! eta = offset + X beta + Z Lambda(theta) u and mu = g^-1(eta) (lme4's `pwrssUpdate`,
//! MixedModels.jl's `pirls!`). Each iteration forms the working weights
//! w = wt mu_eta(eta)^2 / V(mu) and the working response z = eta + (y - mu) / mu_eta(eta),
//! accumulates the weighted cross-products of [Z X z - offset] in one pass over the rows
//! (the LMM's accumulator, `sqrt(w)` folded in), refactors the LMM's blocked Cholesky at
//! Lambda(theta) (symbolic once per fit, numeric per iteration) and solves the penalised
//! weighted least-squares problem: for u with beta fixed (`L_Z' u = c_u - L_XZ' beta`), or
//! for beta and u jointly (the nAGQ = 0 stage, beta unpenalised, as the LMM's solution). The
//! step is halved while the penalised deviance increases (steps below 1e-6, where pdev's
//! change is below its rounding error, are taken whole). Iteration stops when the step is
//! below 1e-8 for a canonical link while the optimiser searches, 1e-10 otherwise and for the
//! finite-difference Hessian (lme4 stops at a relative change of pdev of 1e-7), and
//! the factor is then recomputed at the weights of the mode, so that log det L^2 belongs to
//! u* exactly.
//!
//! The calls into the LMM's linear algebra (`accumulate`, `BlockedCholesky`) are all in
//! `Pirls::refactor` and `Pirls::solve`.

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::glmm::family::Family;
use crate::glmm::wcross::WeightedCross;
use crate::linalg::factor::{Factor, LFactor};
use crate::model::remat::{ReMat, ReTermShape};

/// Largest step (in u and beta) at convergence while the optimiser searches, for a canonical
/// link: PIRLS is then Newton's method, its steps shrink quadratically, and the mode is known
/// to about the square of this (1e-6 moved grouseticks' gradient check and let a separated
/// fit converge).
const STEP_TOL_SEARCH: f64 = 1e-8;
/// Largest step at convergence otherwise (a non-canonical link converges linearly) and for the
/// finite-difference derivatives, whose step of 1e-4 divides the objective's error by 1e-8.
pub const STEP_TOL_TIGHT: f64 = 1e-10;
/// Steps below this size are taken whole, without comparing the penalised deviance.
const SMALL_STEP: f64 = 1e-6;
const MAX_ITER: usize = 200;
const MAX_HALVINGS: usize = 40;

/// The data of a GLMM: response (proportions for a binomial with trials as weights), X (n x p
/// column-major), the random-effects terms, prior weights and offset (owned, 1 and 0 when not
/// given), and the family.
pub struct GlmmData<'a> {
    pub y: &'a [f64],
    pub x: &'a [f64],
    pub p: usize,
    pub terms: Vec<ReMat<'a>>,
    pub weights: Vec<f64>,
    pub offset: Vec<f64>,
    pub family: Family,
}

impl GlmmData<'_> {
    pub fn n(&self) -> usize {
        self.y.len()
    }

    pub fn shapes(&self) -> Vec<ReTermShape> {
        self.terms.iter().map(ReMat::shape).collect()
    }

    /// The deviance residuals at mu.
    pub fn dev_resids(&self, mu: &[f64]) -> Vec<f64> {
        (0..self.n())
            .map(|r| self.family.dev_resid(self.y[r], mu[r], self.weights[r]))
            .collect()
    }

    /// R's family$aic at mu (the binomial trials are the prior weights, as for a cbind response
    /// or proportions with weights).
    pub fn aic(&self, mu: &[f64], dev: f64) -> f64 {
        self.family
            .aic(self.y, &self.weights, mu, &self.weights, dev)
    }
}

/// b = Lambda u for each term (level-major).
pub fn b_of(shapes: &[ReTermShape], lambdas: &[Vec<f64>], u: &[Vec<f64>]) -> Vec<Vec<f64>> {
    u.iter()
        .zip(shapes)
        .zip(lambdas)
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
        .collect()
}

/// The state of PIRLS at one (theta, beta): the modes, the linear predictor and the factor at
/// the weights of the mode, and the working memory that the iterations reuse.
pub struct Pirls<'a> {
    pub data: &'a GlmmData<'a>,
    shapes: Vec<ReTermShape>,
    exec: Exec,
    /// Per mode (0: u alone with D = [r], 1: beta and u jointly with D = [X r]) the structure
    /// of A and the factor on it.
    cross: [Option<WeightedCross>; 2],
    factors: [Option<LFactor>; 2],
    /// The mode of the last run.
    mode: usize,
    pub lambdas: Vec<Vec<f64>>,
    pub beta: Vec<f64>,
    pub u: Vec<Vec<f64>>,
    pub eta: Vec<f64>,
    pub mu: Vec<f64>,
    /// d mu / d eta at eta.
    mu_eta: Vec<f64>,
    /// Working weights at the last refactorisation.
    pub w: Vec<f64>,
    pub iterations: usize,
    /// The convergence tolerance of the runs (`STEP_TOL_SEARCH` or `STEP_TOL_TIGHT`).
    step_tol: f64,
    /// offset + X beta for the beta of the last eta.
    eta_fixed: Vec<f64>,
    /// The last column of D.
    work: Vec<f64>,
    /// A trial step's eta and mu, and Lambda u.
    eta_try: Vec<f64>,
    mu_try: Vec<f64>,
    mu_eta_try: Vec<f64>,
    b_try: Vec<Vec<f64>>,
    u_try: Vec<Vec<f64>>,
    beta_try: Vec<f64>,
}

impl<'a> Pirls<'a> {
    pub fn new(data: &'a GlmmData<'a>, exec: Exec) -> Pirls<'a> {
        let shapes = data.shapes();
        let u: Vec<Vec<f64>> = shapes.iter().map(|s| vec![0.0; s.size()]).collect();
        let n = data.n();
        Pirls {
            data,
            lambdas: shapes.iter().map(|s| vec![0.0; s.q * s.q]).collect(),
            shapes,
            exec,
            cross: [None, None],
            factors: [None, None],
            mode: 0,
            beta: vec![0.0; data.p],
            b_try: u.clone(),
            u_try: u.clone(),
            u,
            eta: vec![0.0; n],
            mu: vec![0.0; n],
            mu_eta: vec![0.0; n],
            mu_eta_try: vec![0.0; n],
            w: vec![0.0; n],
            iterations: 0,
            step_tol: if data.family.is_canonical() {
                STEP_TOL_SEARCH
            } else {
                STEP_TOL_TIGHT
            },
            eta_fixed: vec![0.0; n],
            work: vec![0.0; n],
            eta_try: vec![0.0; n],
            mu_try: vec![0.0; n],
            beta_try: vec![0.0; data.p],
        }
    }

    pub fn shapes(&self) -> &[ReTermShape] {
        &self.shapes
    }

    /// The factor at the last refactorisation.
    pub fn chol(&self) -> Option<&LFactor> {
        self.factors[self.mode].as_ref()
    }

    /// eta_fixed = offset + X beta.
    fn set_eta_fixed(eta_fixed: &mut [f64], d: &GlmmData, beta: &[f64]) {
        let n = d.n();
        eta_fixed.copy_from_slice(&d.offset);
        for (j, bj) in beta.iter().enumerate() {
            let col = &d.x[j * n..(j + 1) * n];
            for (e, xv) in eta_fixed.iter_mut().zip(col) {
                *e += xv * bj;
            }
        }
    }

    /// eta_try = eta_fixed + Z Lambda u_try; mu_try; returns the penalised deviance (with
    /// `with_dev`; otherwise 0, for a step that is taken whole).
    fn trial(&mut self, with_dev: bool) -> Result<f64> {
        let d = self.data;
        for (((bk, uk), s), lam) in self
            .b_try
            .iter_mut()
            .zip(&self.u_try)
            .zip(&self.shapes)
            .zip(&self.lambdas)
        {
            lambda_times(s, lam, uk, bk);
        }
        self.eta_try.copy_from_slice(&self.eta_fixed);
        for (t, bk) in d.terms.iter().zip(&self.b_try) {
            t.mul_add(bk, &mut self.eta_try)?;
        }
        let (fam, link) = (d.family, d.family.link);
        for r in 0..d.n() {
            let (mu, me) = link.linkinv_mu_eta(self.eta_try[r]);
            self.mu_try[r] = mu;
            self.mu_eta_try[r] = me;
        }
        if !with_dev {
            return Ok(0.0);
        }
        let mut dev = 0.0;
        for r in 0..d.n() {
            dev += fam.dev_resid(d.y[r], self.mu_try[r], d.weights[r]);
        }
        let sqr_u: f64 = self.u_try.iter().flatten().map(|v| v * v).sum();
        Ok(dev + sqr_u)
    }

    /// Working weights and response at the current eta and mu; refills A and refactors L at
    /// the current lambdas.
    fn refactor(&mut self, joint: bool) -> Result<()> {
        let d = self.data;
        for r in 0..d.n() {
            let me = self.mu_eta[r];
            self.w[r] = d.weights[r] * me * me / d.family.variance(self.mu[r]);
            // z - offset (joint) or z - offset - X beta (u alone), z the working response.
            let base = if joint {
                self.eta[r] - d.offset[r]
            } else {
                self.eta[r] - self.eta_fixed[r]
            };
            self.work[r] = base + (d.y[r] - self.mu[r]) / me;
        }
        let m = usize::from(joint);
        if self.cross[m].is_none() {
            let pd = if joint { d.p + 1 } else { 1 };
            self.cross[m] = Some(WeightedCross::new(&d.terms, &d.weights, pd)?);
        }
        let cross = self.cross[m].as_mut().expect("made above");
        let n = d.n();
        let mut cols: Vec<&[f64]> = Vec::with_capacity(d.p + 1);
        if joint {
            cols.extend((0..d.p).map(|j| &d.x[j * n..(j + 1) * n]));
        }
        cols.push(&self.work);
        let a = cross.fill(&d.terms, &self.w, &cols);
        if let Some(c) = &mut self.factors[m] {
            c.update(a, &self.lambdas)?;
        } else {
            let mut c = LFactor::analyse(a, &self.exec)?;
            c.update(a, &self.lambdas)?;
            self.factors[m] = Some(c);
        }
        self.mode = m;
        Ok(())
    }

    /// The penalised least-squares solution at the current factor into (beta_try, u_try): u
    /// for the current beta, or (beta, u) jointly.
    fn solve(&mut self, joint: bool) {
        let chol = self.factors[usize::from(joint)]
            .as_ref()
            .expect("factored before solving");
        let mut u = if joint {
            let beta = chol.fixed_effects();
            let u = chol.random_effects_rhs(&beta);
            self.beta_try.copy_from_slice(&beta);
            u
        } else {
            self.beta_try.copy_from_slice(&self.beta);
            chol.random_effects_rhs(&[])
        };
        chol.solve_lzt(&mut u);
        self.u_try = u;
    }

    /// Runs PIRLS at theta: with `beta` given, for u alone; with `None`, for beta and u jointly
    /// (starting from the current beta). Starts from the current u (warm start).
    pub fn run(&mut self, theta: &[f64], beta: Option<&[f64]>) -> Result<()> {
        crate::exec::check_interrupt()?;
        let joint = beta.is_none();
        for (s, (lam, t)) in self.shapes.iter().zip(
            self.lambdas
                .iter_mut()
                .zip(theta_chunks(&self.shapes, theta)),
        ) {
            s.fill_lambda(t, lam);
        }
        if let Some(b) = beta {
            self.beta.copy_from_slice(b);
        }
        Self::set_eta_fixed(&mut self.eta_fixed, self.data, &self.beta);
        self.u_try.clone_from(&self.u);
        let mut pdev = self.trial(true)?;
        if !pdev.is_finite() {
            // A warm start that does not fit this theta: start from u = 0.
            for uk in &mut self.u {
                uk.fill(0.0);
            }
            self.u_try.clone_from(&self.u);
            pdev = self.trial(true)?;
        }
        std::mem::swap(&mut self.eta, &mut self.eta_try);
        std::mem::swap(&mut self.mu, &mut self.mu_try);
        std::mem::swap(&mut self.mu_eta, &mut self.mu_eta_try);
        let mut step_b = vec![0.0; self.data.p];
        let mut step_u: Vec<Vec<f64>> = self.u.clone();
        let mut converged = false;
        for it in 1..=MAX_ITER {
            self.iterations = it;
            self.refactor(joint)?;
            self.solve(joint);
            let mut max_step = 0.0_f64;
            for ((s, a), b) in step_b.iter_mut().zip(&self.beta_try).zip(&self.beta) {
                *s = a - b;
                max_step = max_step.max(s.abs());
            }
            for ((su, a), b) in step_u.iter_mut().zip(&self.u_try).zip(&self.u) {
                for ((s, x), y) in su.iter_mut().zip(a).zip(b) {
                    *s = x - y;
                    max_step = max_step.max(s.abs());
                }
            }
            // Near the mode pdev changes by less than its rounding error (quadratically in the
            // step), so it cannot judge a small Newton step: take it whole.
            let whole = max_step < SMALL_STEP;
            let mut fac = 1.0;
            let mut accepted = None;
            for _ in 0..MAX_HALVINGS {
                for ((t, x), s) in self.beta_try.iter_mut().zip(&self.beta).zip(&step_b) {
                    *t = x + fac * s;
                }
                for ((tu, xu), su) in self.u_try.iter_mut().zip(&self.u).zip(&step_u) {
                    for ((t, x), s) in tu.iter_mut().zip(xu).zip(su) {
                        *t = x + fac * s;
                    }
                }
                if joint {
                    Self::set_eta_fixed(&mut self.eta_fixed, self.data, &self.beta_try);
                }
                let pd = self.trial(!whole)?;
                if whole || (pd.is_finite() && pd <= pdev * (1.0 + 1e-15)) {
                    accepted = Some(pd);
                    break;
                }
                fac /= 2.0;
            }
            let Some(pd) = accepted else {
                return Err(LmmError::Optimizer(
                    "PIRLS: step halving failed to reduce the penalised deviance".into(),
                ));
            };
            std::mem::swap(&mut self.beta, &mut self.beta_try);
            std::mem::swap(&mut self.u, &mut self.u_try);
            std::mem::swap(&mut self.eta, &mut self.eta_try);
            std::mem::swap(&mut self.mu, &mut self.mu_try);
            std::mem::swap(&mut self.mu_eta, &mut self.mu_eta_try);
            if !whole {
                pdev = pd;
            }
            if max_step * fac < self.step_tol {
                converged = true;
                break;
            }
            // An iteration is a few passes over the rows: an interrupt waits for at most one.
            crate::exec::check_interrupt()?;
        }
        if !converged {
            return Err(LmmError::Optimizer(format!(
                "PIRLS did not converge in {MAX_ITER} iterations"
            )));
        }
        // The factor at the weights of the mode.
        self.refactor(joint)
    }

    /// Converge every later run to `STEP_TOL_TIGHT` (for finite differences of the objective).
    pub fn tighten(&mut self) {
        self.step_tol = STEP_TOL_TIGHT;
    }

    /// Refactors at the current mode with X's columns in D (after a run for u alone), so that
    /// the factor's D block holds R_X.
    pub fn refactor_with_x(&mut self) -> Result<()> {
        self.refactor(true)
    }

    /// log det(L_Z)^2 at the last refactorisation.
    pub fn ld_l2(&self) -> f64 {
        self.chol().map_or(f64::NAN, Factor::ld_l2)
    }

    /// ||u||^2.
    pub fn sqr_u(&self) -> f64 {
        self.u.iter().flatten().map(|v| v * v).sum()
    }

    /// b = Lambda u.
    pub fn b(&self) -> Vec<Vec<f64>> {
        b_of(&self.shapes, &self.lambdas, &self.u)
    }
}

/// Each term's share of theta.
fn theta_chunks<'t>(shapes: &[ReTermShape], theta: &'t [f64]) -> Vec<&'t [f64]> {
    let mut out = Vec::with_capacity(shapes.len());
    let mut at = 0;
    for s in shapes {
        let k = s.n_theta();
        out.push(&theta[at..at + k]);
        at += k;
    }
    out
}

/// b = Lambda u for one term (level-major), into `b`.
fn lambda_times(s: &ReTermShape, lam: &[f64], u: &[f64], b: &mut [f64]) {
    let q = s.q;
    if q == 1 {
        let l = lam[0];
        for (x, y) in b.iter_mut().zip(u) {
            *x = l * y;
        }
        return;
    }
    for lev in 0..s.n_levels {
        for a in 0..q {
            b[lev * q + a] = (0..=a).map(|e| lam[a + e * q] * u[lev * q + e]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glmm::family::{Distribution, Link};
    use crate::glmm::laplace;

    /// A small Poisson problem: 40 rows, 6 levels of one intercept term, an intercept and a
    /// covariate.
    fn rows() -> (Vec<f64>, Vec<f64>, Vec<i32>, Vec<f64>) {
        let n = 40;
        let mut y = Vec::new();
        let mut x = vec![1.0; n];
        let mut codes = Vec::new();
        for r in 0..n {
            let xv = (r as f64 * 0.37).sin();
            x.push(xv);
            codes.push((r % 6) as i32);
            y.push(f64::from(((r * 7 + 3) % 5) as u8) + if r % 6 == 2 { 3.0 } else { 0.0 });
        }
        (y, x, codes, vec![1.0; n])
    }

    #[test]
    fn mode_is_stationary_and_agq_with_one_node_is_laplace_minus_the_constant() {
        let (y, x, codes, z) = rows();
        let n = y.len();
        let shape = ReTermShape {
            n_levels: 6,
            q: 1,
            diagonal: false,
        };
        let data = GlmmData {
            y: &y,
            x: &x,
            p: 2,
            terms: vec![ReMat::new(0, shape, &codes, &z).expect("term")],
            weights: vec![1.0; n],
            offset: vec![0.0; n],
            family: Family::new(Distribution::Poisson, Link::Log),
        };
        let mut p = Pirls::new(&data, Exec::serial());
        let theta = [0.8];
        p.run(&theta, Some(&[0.5, 0.3])).expect("pirls");
        // d pdev / du = 0: u = lambda Z' (y - mu) for the canonical link.
        let mut grad = vec![0.0; 6];
        for r in 0..n {
            grad[codes[r] as usize] += theta[0] * (y[r] - p.mu[r]);
        }
        for (j, (u, g)) in p.u[0].iter().zip(&grad).enumerate() {
            assert!((u - g).abs() < 1e-10, "level {j}");
        }
        // AGQ with one node (z = 0, w = 1) is dev + ||u||^2 + ldL2; Laplace has aic for dev.
        let dev: f64 = data.dev_resids(&p.mu).iter().sum();
        let lap = laplace::laplace(&p);
        let agq1 = laplace::agq(&p, 1).expect("agq");
        let constant = data.aic(&p.mu, dev) - dev;
        assert!((lap - agq1 - constant).abs() < 1e-10 * lap.abs());
        // Joint PIRLS (nAGQ = 0): beta at its penalised optimum, X'(y - mu) = 0.
        p.run(&theta, None).expect("joint pirls");
        for j in 0..2 {
            let g: f64 = (0..n).map(|r| x[r + j * n] * (y[r] - p.mu[r])).sum();
            assert!(g.abs() < 1e-9, "column {j}: {g}");
        }
    }
}
