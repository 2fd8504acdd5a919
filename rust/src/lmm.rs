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

use rayon::prelude::*;

use crate::cholesky::BlockedCholesky;
use crate::crossprod::CrossProducts;
use crate::error::{LmmError, Result};
use crate::remat::{self, ReTermShape};

/// A model ready to be evaluated: the cross-products and the factor they determine.
#[derive(Clone, Debug)]
pub struct LmmProblem {
    pub a: CrossProducts,
    pub chol: BlockedCholesky,
    /// The theta at which `chol` was last updated successfully.
    current: Option<Vec<f64>>,
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
    pub fn new(a: CrossProducts) -> Result<Self> {
        if a.shapes.is_empty() {
            return Err(LmmError::Shape(
                "a linear mixed model needs at least one random-effects term".into(),
            ));
        }
        let chol = BlockedCholesky::new(&a)?;
        Ok(LmmProblem {
            a,
            chol,
            current: None,
        })
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
            .flat_map(|s| s.lower_bounds())
            .collect()
    }

    pub fn theta0(&self) -> Vec<f64> {
        self.a.shapes.iter().flat_map(|s| s.theta0()).collect()
    }

    /// Updates L for theta (a no-op when theta is the one last factored).
    pub fn set_theta(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.n_theta() {
            return Err(LmmError::Theta(format!(
                "{} values given, the model has {}",
                theta.len(),
                self.n_theta()
            )));
        }
        if let Some(i) = theta.iter().position(|t| !t.is_finite()) {
            return Err(LmmError::Theta(format!("element {i} is not finite")));
        }
        if self.current.as_deref() == Some(theta) {
            return Ok(());
        }
        self.current = None;
        let lambdas = remat::lambdas(&self.a.shapes, theta);
        self.chol.update(&self.a, &lambdas)?;
        self.current = Some(theta.to_vec());
        Ok(())
    }

    fn criterion(&self, reml: bool) -> f64 {
        let n = self.a.nobs as f64;
        let p = self.a.p as f64;
        let pwrss = self.chol.pwrss();
        let two_pi = 2.0 * std::f64::consts::PI;
        let ld = self.chol.ld_l2() - self.a.sum_log_w;
        if reml {
            let nmp = n - p;
            ld + self.chol.ld_rx2() + nmp * (1.0 + (two_pi * pwrss / nmp).ln())
        } else {
            ld + n * (1.0 + (two_pi * pwrss / n).ln())
        }
    }

    /// The objective (-2 log-likelihood, or the REML criterion) at theta.
    pub fn objective(&mut self, theta: &[f64], reml: bool) -> Result<f64> {
        self.set_theta(theta)?;
        Ok(self.criterion(reml))
    }

    /// beta, u, b, sigma and the unscaled covariance of beta at theta.
    pub fn solution(&mut self, theta: &[f64], reml: bool) -> Result<Solution> {
        self.set_theta(theta)?;
        let objective = self.criterion(reml);
        let p = self.a.p;
        let d = self.chol.d_block();
        // R_X' beta = c_beta, with R_X' the upper triangle of the transposed X block of L.
        let mut beta: Vec<f64> = (0..p).map(|j| d[(p, j)]).collect();
        for j in (0..p).rev() {
            let mut s = beta[j];
            for k in j + 1..p {
                s -= d[(k, j)] * beta[k];
            }
            beta[j] = s / d[(j, j)];
        }
        // L_Z' u = c_u - L_XZ' beta.
        let mut u = self.chol.random_effects_rhs(&beta);
        self.chol.solve_lzt(&mut u);
        let lambdas = remat::lambdas(&self.a.shapes, theta);
        let b = u
            .iter()
            .zip(&self.a.shapes)
            .zip(&lambdas)
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
        // (R_X R_X')^-1 through the inverse of the lower-triangular X block.
        let mut rinv = vec![0.0; p * p];
        for c in 0..p {
            rinv[c + c * p] = 1.0;
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
        let pwrss = self.chol.pwrss();
        let n = self.a.nobs as f64;
        let denom = if reml { n - p as f64 } else { n };
        Ok(Solution {
            theta: theta.to_vec(),
            objective,
            beta,
            u,
            b,
            sigma: (pwrss / denom).sqrt(),
            pwrss,
            ld_l2: self.chol.ld_l2(),
            ld_rx2: self.chol.ld_rx2(),
            vcov_unscaled: vcov,
            lambdas,
        })
    }

    /// Per term, the levels x (q x q) diagonal blocks of Lambda (L_Z L_Z')^-1 Lambda'
    /// (lme4's `condVar` divided by sigma^2), column-major.
    pub fn condvar(&mut self, theta: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.set_theta(theta)?;
        let shapes = self.a.shapes.clone();
        let lambdas = remat::lambdas(&shapes, theta);
        let chol = &self.chol;
        let out = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let q = s.q;
                let blocks: Vec<Vec<f64>> = (0..s.n_levels)
                    .into_par_iter()
                    .map(|lev| {
                        // W = L_Z^-1 E for the q unit vectors of this level; block = W'W.
                        let cols: Vec<Vec<Vec<f64>>> = (0..q)
                            .map(|a| {
                                let mut x: Vec<Vec<f64>> =
                                    shapes.iter().map(|t| vec![0.0; t.size()]).collect();
                                x[k][lev * q + a] = 1.0;
                                chol.solve_lz(&mut x);
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
                        let lam = &lambdas[k];
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
                    })
                    .collect();
                blocks.concat()
            })
            .collect();
        Ok(out)
    }
}
