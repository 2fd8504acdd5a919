//! The GLMM objectives at (theta, beta), as lme4 computes them (`glmerLaplace`, `glmerAGQ`):
//!
//! - Laplace (nAGQ = 1) and the nAGQ = 0 stage: `ldL2 + ||u*||^2 + aic(y, n, mu*, wt, sum d)`,
//!   ldL2 = log det(L_Z)^2 at the weights of the mode and aic R's family$aic (exactly
//!   -2 log p(y | u*) for the binomial, Poisson and negative binomial; with the dispersion
//!   sum d / sum wt plugged in and 2 added for Gamma and inverse Gaussian, lme4's definition).
//! - Adaptive Gauss-Hermite quadrature (nAGQ > 1, one scalar term): L is diagonal and the
//!   integral factors by level j. With devc_j(u) = sum_{rows of j} d + u^2 and s_j = 1 / L_jj,
//!   `sum_j devc_j(u*_j) + ldL2 - 2 sum_j log M_j`,
//!   `M_j = sum_k w_k exp(z_k^2 / 2 - (devc_j(u*_j + s_j z_k) - devc_j(u*_j)) / 2)`,
//!   with (z_k, w_k) the Gauss-Hermite rule for the standard normal (weights summing to 1,
//!   lme4's `GHrule`). As in lme4 this uses the deviance residuals, not aic.

use crate::error::{LmmError, Result};
use crate::glmm::agq::gauss_hermite;
use crate::glmm::pirls::Pirls;

/// The Laplace objective at the state PIRLS left (the mode at theta and beta).
pub fn laplace(p: &Pirls) -> f64 {
    let d = p.data;
    // Only the families with a dispersion read the deviance in their aic.
    let dev: f64 = if d.family.dist.has_dispersion() {
        (0..d.n())
            .map(|r| d.family.dev_resid(d.y[r], p.mu[r], d.weights[r]))
            .sum()
    } else {
        0.0
    };
    p.ld_l2() + p.sqr_u() + d.aic(&p.mu, dev)
}

/// The AGQ objective with `nagq` nodes at the state PIRLS left (one scalar term).
pub fn agq(p: &Pirls, nagq: usize) -> Result<f64> {
    let d = p.data;
    let shapes = p.shapes();
    if shapes.len() != 1 || shapes[0].q != 1 {
        return Err(LmmError::Shape(
            "adaptive Gauss-Hermite quadrature (nagq > 1) needs a single scalar random-effects \
             term"
                .into(),
        ));
    }
    let term = &d.terms[0];
    let levels = shapes[0].n_levels;
    let lambda = p.lambdas[0][0];
    let codes = term.codes();
    let z = term.z();
    let n = d.n();
    // L_jj^2 = 1 + lambda^2 sum_{rows of j} w z^2, and eta without the random effect.
    let mut l2 = vec![1.0; levels];
    let u = &p.u[0];
    let mut eta_fixed = p.eta.clone();
    for r in 0..n {
        let j = codes[r] as usize;
        l2[j] += lambda * lambda * p.w[r] * z[r] * z[r];
        eta_fixed[r] -= z[r] * lambda * u[j];
    }
    let devc = |shift: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let link = d.family.link;
        let mut out: Vec<f64> = (0..levels).map(|j| (u[j] + shift(j)).powi(2)).collect();
        for r in 0..n {
            let j = codes[r] as usize;
            let mu = link.linkinv(eta_fixed[r] + z[r] * lambda * (u[j] + shift(j)));
            out[j] += d.family.dev_resid(d.y[r], mu, d.weights[r]);
        }
        out
    };
    let sd: Vec<f64> = l2.iter().map(|v| 1.0 / v.sqrt()).collect();
    let devc0 = devc(&|_| 0.0);
    let (nodes, weights) = gauss_hermite(nagq);
    let mut mult = vec![0.0; levels];
    for (&zk, &wk) in nodes.iter().zip(&weights) {
        if zk == 0.0 {
            for m in &mut mult {
                *m += wk;
            }
            continue;
        }
        let dk = devc(&|j| zk * sd[j]);
        for j in 0..levels {
            mult[j] += wk * (0.5 * zk * zk - 0.5 * (dk[j] - devc0[j])).exp();
        }
    }
    let ld_l2: f64 = l2.iter().map(|v| v.ln()).sum();
    Ok(devc0.iter().sum::<f64>() + ld_l2 - 2.0 * mult.iter().map(|m| m.ln()).sum::<f64>())
}
