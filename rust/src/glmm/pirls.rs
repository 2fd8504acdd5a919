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
//! below 1e-10 (lme4 stops at a relative change of pdev of 1e-7), and
//! the factor is then recomputed at the weights of the mode, so that log det L^2 belongs to
//! u* exactly.
//!
//! The calls into the LMM's linear algebra (`accumulate`, `BlockedCholesky`) are all in
//! `Pirls::refactor` and `Pirls::solve`.

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::glmm::family::Family;
use crate::linalg::factor::{Factor, LFactor};
use crate::model::crossprod::accumulate;
use crate::model::remat::{self, ReMat, ReTermShape};
use crate::model::source::MemorySource;

/// Largest step (in u and beta) at convergence.
const STEP_TOL: f64 = 1e-10;
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
/// the weights of the mode.
pub struct Pirls<'a> {
    pub data: &'a GlmmData<'a>,
    shapes: Vec<ReTermShape>,
    exec: Exec,
    chol: Option<LFactor>,
    pub lambdas: Vec<Vec<f64>>,
    pub beta: Vec<f64>,
    pub u: Vec<Vec<f64>>,
    pub eta: Vec<f64>,
    pub mu: Vec<f64>,
    /// Working weights at the last refactorisation.
    pub w: Vec<f64>,
    pub iterations: usize,
}

impl<'a> Pirls<'a> {
    pub fn new(data: &'a GlmmData<'a>, exec: Exec) -> Pirls<'a> {
        let shapes = data.shapes();
        let u = shapes.iter().map(|s| vec![0.0; s.size()]).collect();
        let n = data.n();
        Pirls {
            data,
            lambdas: shapes.iter().map(|s| vec![0.0; s.q * s.q]).collect(),
            shapes,
            exec,
            chol: None,
            beta: vec![0.0; data.p],
            u,
            eta: vec![0.0; n],
            mu: vec![0.0; n],
            w: vec![0.0; n],
            iterations: 0,
        }
    }

    pub fn shapes(&self) -> &[ReTermShape] {
        &self.shapes
    }

    /// The factor at the last refactorisation.
    pub fn chol(&self) -> Option<&LFactor> {
        self.chol.as_ref()
    }

    /// eta = offset + X beta + Z Lambda u.
    fn eta_of(&self, beta: &[f64], u: &[Vec<f64>]) -> Result<Vec<f64>> {
        let d = self.data;
        let n = d.n();
        let mut eta = d.offset.clone();
        for (j, bj) in beta.iter().enumerate() {
            let col = &d.x[j * n..(j + 1) * n];
            for (e, xv) in eta.iter_mut().zip(col) {
                *e += xv * bj;
            }
        }
        let b = b_of(&self.shapes, &self.lambdas, u);
        for (t, bk) in d.terms.iter().zip(&b) {
            t.mul_add(bk, &mut eta)?;
        }
        Ok(eta)
    }

    /// The penalised deviance at eta and u, and mu.
    fn pdev(&self, eta: &[f64], u: &[Vec<f64>]) -> (f64, Vec<f64>) {
        let link = self.data.family.link;
        let mu: Vec<f64> = eta.iter().map(|&e| link.linkinv(e)).collect();
        let dev: f64 = self.data.dev_resids(&mu).iter().sum();
        let sqr_u: f64 = u.iter().flatten().map(|v| v * v).sum();
        (dev + sqr_u, mu)
    }

    /// Working weights and response at the current eta and mu; accumulates the weighted
    /// cross-products and refactors L at the current lambdas.
    fn refactor(&mut self) -> Result<()> {
        let d = self.data;
        let link = d.family.link;
        let n = d.n();
        let mut z = vec![0.0; n];
        for (r, zr) in z.iter_mut().enumerate() {
            let me = link.mu_eta(self.eta[r]);
            self.w[r] = d.weights[r] * me * me / d.family.variance(self.mu[r]);
            *zr = self.eta[r] + (d.y[r] - self.mu[r]) / me;
        }
        let source = MemorySource::new(
            &z,
            d.x,
            d.p,
            d.terms.clone(),
            Some(&self.w),
            Some(&d.offset),
        )?;
        let a = accumulate(&source, &self.exec)?.finish();
        if let Some(c) = &mut self.chol {
            c.update(&a, &self.lambdas)?;
        } else {
            let mut c = LFactor::analyse(&a, &self.exec)?;
            c.update(&a, &self.lambdas)?;
            self.chol = Some(c);
        }
        Ok(())
    }

    /// The penalised least-squares solution at the current factor: u for the given beta, or
    /// (beta, u) jointly.
    fn solve(&self, beta: Option<&[f64]>) -> (Vec<f64>, Vec<Vec<f64>>) {
        let chol = self.chol.as_ref().expect("factored before solving");
        let beta = beta.map_or_else(|| chol.fixed_effects(), <[f64]>::to_vec);
        let mut u = chol.random_effects_rhs(&beta);
        chol.solve_lzt(&mut u);
        (beta, u)
    }

    /// Runs PIRLS at theta: with `beta` given, for u alone; with `None`, for beta and u jointly
    /// (starting from the current beta). Starts from the current u (warm start).
    pub fn run(&mut self, theta: &[f64], beta: Option<&[f64]>) -> Result<()> {
        self.lambdas = remat::lambdas(&self.shapes, theta);
        if let Some(b) = beta {
            self.beta = b.to_vec();
        }
        let eta = self.eta_of(&self.beta, &self.u)?;
        let (mut pdev, mu) = self.pdev(&eta, &self.u);
        if !pdev.is_finite() {
            // A warm start that does not fit this theta: start from u = 0.
            for uk in &mut self.u {
                uk.fill(0.0);
            }
        }
        self.eta = self.eta_of(&self.beta, &self.u)?;
        (pdev, self.mu) = if pdev.is_finite() {
            (pdev, mu)
        } else {
            self.pdev(&self.eta, &self.u)
        };
        let mut converged = false;
        for it in 1..=MAX_ITER {
            self.iterations = it;
            self.refactor()?;
            let (beta_new, u_new) = self.solve(beta);
            let step_b: Vec<f64> = beta_new
                .iter()
                .zip(&self.beta)
                .map(|(a, b)| a - b)
                .collect();
            let step_u: Vec<Vec<f64>> = u_new
                .iter()
                .zip(&self.u)
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
                .collect();
            let max_step = step_b
                .iter()
                .chain(step_u.iter().flatten())
                .fold(0.0_f64, |m, v| m.max(v.abs()));
            // Near the mode pdev changes by less than its rounding error (quadratically in the
            // step), so it cannot judge a small Newton step: take it whole.
            let mut fac = 1.0;
            let mut accepted = None;
            for _ in 0..MAX_HALVINGS {
                let b: Vec<f64> = self
                    .beta
                    .iter()
                    .zip(&step_b)
                    .map(|(x, s)| x + fac * s)
                    .collect();
                let u: Vec<Vec<f64>> = self
                    .u
                    .iter()
                    .zip(&step_u)
                    .map(|(x, s)| x.iter().zip(s).map(|(a, c)| a + fac * c).collect())
                    .collect();
                let eta = self.eta_of(&b, &u)?;
                let (pd, mu) = self.pdev(&eta, &u);
                if pd.is_finite() && (pd <= pdev * (1.0 + 1e-15) || max_step < SMALL_STEP) {
                    accepted = Some((b, u, eta, mu, pd));
                    break;
                }
                fac /= 2.0;
            }
            let Some((b, u, eta, mu, pd)) = accepted else {
                return Err(LmmError::Optimizer(
                    "PIRLS: step halving failed to reduce the penalised deviance".into(),
                ));
            };
            (self.beta, self.u, self.eta, self.mu) = (b, u, eta, mu);
            pdev = pd;
            if max_step * fac < STEP_TOL {
                converged = true;
                break;
            }
        }
        if !converged {
            return Err(LmmError::Optimizer(format!(
                "PIRLS did not converge in {MAX_ITER} iterations"
            )));
        }
        // The factor at the weights of the mode.
        self.refactor()
    }

    /// log det(L_Z)^2 at the last refactorisation.
    pub fn ld_l2(&self) -> f64 {
        self.chol.as_ref().map_or(f64::NAN, Factor::ld_l2)
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
