//! GLM families as R defines them (`binomial`, `poisson`, `Gamma`, `inverse.gaussian`,
//! MASS's `negative.binomial(theta)`, `gaussian`): the link g (linkfun), its inverse
//! (linkinv) and derivative d mu / d eta (mu_eta), clamped as R clamps them; the variance
//! function V(mu); the deviance residuals d(y, mu, wt); and `aic(y, n, mu, wt, dev)`, R's
//! family$aic: -2 log p(y | mu) summed over rows (binomial, Poisson, negative binomial), with
//! the dispersion dev / sum(wt) plugged in and 2 added for Gamma and inverse Gaussian. lme4's
//! Laplace objective adds this aic to ldL2 + ||u||^2 (lme4's `glmFamily` wraps R's family
//! objects; MixedModels.jl's counterparts are GLM.jl's `Link`s and `devresid`).
//! python/multilevel/families.py is the Python face of the same functions and
//! tests/reference/glmm/families.json holds R's values.

use super::special::{dnorm, ln_gamma, pnorm, qnorm};

/// R's `.Machine$double.eps`, the clamp of the links.
pub const EPS: f64 = f64::EPSILON;
const LOGIT_THRESH: f64 = 30.0;

/// A link function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Logit,
    Probit,
    Cloglog,
    Log,
    Identity,
    Inverse,
    Sqrt,
    InverseSquare,
}

impl Link {
    /// R's name of the link.
    pub fn from_name(name: &str) -> Option<Link> {
        Some(match name {
            "logit" => Link::Logit,
            "probit" => Link::Probit,
            "cloglog" => Link::Cloglog,
            "log" => Link::Log,
            "identity" => Link::Identity,
            "inverse" => Link::Inverse,
            "sqrt" => Link::Sqrt,
            "1/mu^2" => Link::InverseSquare,
            _ => return None,
        })
    }

    /// eta = g(mu).
    pub fn linkfun(self, mu: f64) -> f64 {
        match self {
            Link::Logit => (mu / (1.0 - mu)).ln(),
            Link::Probit => qnorm(mu),
            Link::Cloglog => (-(-mu).ln_1p()).ln(),
            Link::Log => mu.ln(),
            Link::Identity => mu,
            Link::Inverse => 1.0 / mu,
            Link::Sqrt => mu.sqrt(),
            Link::InverseSquare => 1.0 / (mu * mu),
        }
    }

    /// mu = g^-1(eta), clamped away from the boundary as R does.
    pub fn linkinv(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                let t = if eta < -LOGIT_THRESH {
                    EPS
                } else if eta > LOGIT_THRESH {
                    1.0 / EPS
                } else {
                    eta.exp()
                };
                t / (1.0 + t)
            }
            Link::Probit => {
                let thresh = -qnorm_eps();
                pnorm(eta.clamp(-thresh, thresh))
            }
            Link::Cloglog => (-(-eta.exp()).exp_m1()).clamp(EPS, 1.0 - EPS),
            Link::Log => eta.exp().max(EPS),
            Link::Identity => eta,
            Link::Inverse => 1.0 / eta,
            Link::Sqrt => eta * eta,
            Link::InverseSquare => 1.0 / eta.sqrt(),
        }
    }

    /// d mu / d eta, clamped below at EPS where R clamps it.
    /// (linkinv(eta), mu_eta(eta)) with one exponential for the logit link (the same values as
    /// the two functions).
    #[inline]
    pub fn linkinv_mu_eta(self, eta: f64) -> (f64, f64) {
        if self == Link::Logit && eta.abs() <= LOGIT_THRESH {
            let e = eta.exp();
            let d = 1.0 + e;
            (e / d, e / (d * d))
        } else {
            (self.linkinv(eta), self.mu_eta(eta))
        }
    }

    pub fn mu_eta(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                if eta.abs() <= LOGIT_THRESH {
                    let e = eta.exp();
                    e / ((1.0 + e) * (1.0 + e))
                } else {
                    EPS
                }
            }
            Link::Probit => dnorm(eta).max(EPS),
            Link::Cloglog => {
                let e = eta.min(700.0);
                (e.exp() * (-e.exp()).exp()).max(EPS)
            }
            Link::Log => eta.exp().max(EPS),
            Link::Identity => 1.0,
            Link::Inverse => -1.0 / (eta * eta),
            Link::Sqrt => 2.0 * eta,
            Link::InverseSquare => -1.0 / (2.0 * eta.powf(1.5)),
        }
    }
}

/// -qnorm(EPS)'s negative: the probit link's clamp is |eta| <= -qnorm(EPS).
fn qnorm_eps() -> f64 {
    // qnorm(2.220446049250313e-16) in R.
    -8.125_890_664_701_906
}

/// The distribution of the response.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Binomial,
    Poisson,
    Gamma,
    InverseGaussian,
    /// MASS's negative.binomial with its theta held fixed.
    NegativeBinomial(f64),
    Gaussian,
}

impl Distribution {
    /// R's family name (`negative.binomial` takes its theta separately).
    pub fn from_name(name: &str, nb_theta: Option<f64>) -> Option<Distribution> {
        Some(match name {
            "binomial" => Distribution::Binomial,
            "poisson" => Distribution::Poisson,
            "Gamma" => Distribution::Gamma,
            "inverse.gaussian" => Distribution::InverseGaussian,
            "negative.binomial" => Distribution::NegativeBinomial(nb_theta?),
            "gaussian" => Distribution::Gaussian,
            _ => return None,
        })
    }

    /// Whether the family has a dispersion parameter (lme4's `useSc`).
    pub fn has_dispersion(self) -> bool {
        matches!(
            self,
            Distribution::Gamma | Distribution::InverseGaussian | Distribution::Gaussian
        )
    }
}

/// A family: a distribution and a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Family {
    pub dist: Distribution,
    pub link: Link,
}

/// Largest integer whose log factorial is tabulated.
const LFACT_MAX: usize = 4096;

/// log(x!) for x >= 0: from a table for integers up to `LFACT_MAX` (the counts of binomial and
/// Poisson responses, so that aic costs no log Gamma per row), `ln_gamma(x + 1)` otherwise.
fn ln_factorial(x: f64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    if x >= 0.0 && x <= LFACT_MAX as f64 && x.fract() == 0.0 {
        let t = TABLE.get_or_init(|| (0..=LFACT_MAX).map(|i| ln_gamma(i as f64 + 1.0)).collect());
        t[x as usize]
    } else {
        ln_gamma(x + 1.0)
    }
}

/// y log(y / mu), 0 at y = 0.
fn ylogy(y: f64, mu: f64) -> f64 {
    if y > 0.0 {
        y * (y / mu).ln()
    } else {
        0.0
    }
}

/// x log(y), 0 at x = 0.
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    }
}

impl Family {
    /// Whether the link is the distribution's canonical one (PIRLS is then Newton's method).
    pub fn is_canonical(&self) -> bool {
        matches!(
            (self.dist, self.link),
            (Distribution::Binomial, Link::Logit)
                | (Distribution::Poisson, Link::Log)
                | (Distribution::Gaussian, Link::Identity)
        )
    }

    pub fn new(dist: Distribution, link: Link) -> Family {
        Family { dist, link }
    }

    /// V(mu).
    pub fn variance(&self, mu: f64) -> f64 {
        match self.dist {
            Distribution::Binomial => mu * (1.0 - mu),
            Distribution::Poisson => mu,
            Distribution::Gamma => mu * mu,
            Distribution::InverseGaussian => mu * mu * mu,
            Distribution::NegativeBinomial(th) => mu + mu * mu / th,
            Distribution::Gaussian => 1.0,
        }
    }

    /// The deviance residual d(y, mu, wt) (R's `dev.resids`).
    pub fn dev_resid(&self, y: f64, mu: f64, wt: f64) -> f64 {
        match self.dist {
            Distribution::Binomial => 2.0 * wt * (ylogy(y, mu) + ylogy(1.0 - y, 1.0 - mu)),
            Distribution::Poisson => {
                if y > 0.0 {
                    2.0 * wt * (ylogy(y, mu) - (y - mu))
                } else {
                    2.0 * mu * wt
                }
            }
            Distribution::Gamma => {
                let ratio = if y == 0.0 { 1.0 } else { y / mu };
                -2.0 * wt * (ratio.ln() - (y - mu) / mu)
            }
            Distribution::InverseGaussian => wt * (y - mu) * (y - mu) / (y * mu * mu),
            Distribution::NegativeBinomial(th) => {
                2.0 * wt * (y * (y.max(1.0) / mu).ln() - (y + th) * ((y + th) / (mu + th)).ln())
            }
            Distribution::Gaussian => wt * (y - mu) * (y - mu),
        }
    }

    /// R's `family$aic(y, n, mu, wt, dev)`: n the binomial trials (1 for a proportion
    /// response), `dev` the sum of the deviance residuals.
    pub fn aic(&self, y: &[f64], n: &[f64], mu: &[f64], wt: &[f64], dev: f64) -> f64 {
        let rows = y.iter().zip(mu).zip(wt);
        match self.dist {
            Distribution::Binomial => {
                let use_n = n.iter().any(|&v| v > 1.0);
                let mut s = 0.0;
                for (i, ((&y, &mu), &wt)) in rows.enumerate() {
                    let m = if use_n { n[i] } else { wt };
                    if m <= 0.0 {
                        continue;
                    }
                    let k = (m * y).round();
                    let size = m.round();
                    let logpmf = ln_factorial(size) - ln_factorial(k) - ln_factorial(size - k)
                        + xlogy(k, mu)
                        + if size - k == 0.0 {
                            0.0
                        } else {
                            (size - k) * (-mu).ln_1p()
                        };
                    s += wt / m * logpmf;
                }
                -2.0 * s
            }
            Distribution::Poisson => {
                -2.0 * rows
                    .map(|((&y, &mu), &wt)| (xlogy(y, mu) - mu - ln_factorial(y)) * wt)
                    .sum::<f64>()
            }
            Distribution::Gamma => {
                let sw: f64 = wt.iter().sum();
                let disp = dev / sw;
                let shape = 1.0 / disp;
                let lg = ln_gamma(shape);
                -2.0 * rows
                    .map(|((&y, &mu), &wt)| {
                        let scale = mu * disp;
                        (xlogy(shape - 1.0, y) - y / scale - lg - shape * scale.ln()) * wt
                    })
                    .sum::<f64>()
                    + 2.0
            }
            Distribution::InverseGaussian => {
                let sw: f64 = wt.iter().sum();
                let sly: f64 = y.iter().zip(wt).map(|(&y, &w)| y.ln() * w).sum();
                sw * (1.0 + (dev / sw * 2.0 * std::f64::consts::PI).ln()) + 3.0 * sly + 2.0
            }
            Distribution::NegativeBinomial(th) => {
                let c = -th * th.ln() + ln_gamma(th);
                2.0 * rows
                    .map(|((&y, &mu), &wt)| {
                        ((y + th) * (mu + th).ln() - xlogy(y, mu) + ln_factorial(y) + c
                            - ln_gamma(th + y))
                            * wt
                    })
                    .sum::<f64>()
            }
            Distribution::Gaussian => {
                let nobs = y.len() as f64;
                let slw: f64 = wt.iter().map(|w| w.ln()).sum();
                nobs * ((dev / nobs * 2.0 * std::f64::consts::PI).ln() + 1.0) + 2.0 - slw
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of R's family objects (tests/reference/glmm/families.json), pasted at full
    /// precision for three families; the Python tests compare every family with the file.
    fn close(a: f64, b: f64, tol: f64) -> bool {
        if b.is_nan() {
            // JSON has no infinity: R's Inf is stored as null.
            return !a.is_finite();
        }
        (a - b).abs() <= tol * b.abs().max(1e-300) || (a - b).abs() < 1e-300
    }

    #[test]
    fn logit_links_as_r() {
        let l = Link::Logit;
        let eta = [-40.0, -3.2, -0.4, 0.0, 1.7, 8.0, 40.0];
        let linkinv = [
            2.220_446_049_250_312_6e-16,
            0.039_165_722_796_764_356,
            0.401_312_339_887_548,
            0.5,
            0.845_534_734_916_465_2,
            0.999_664_649_869_533_5,
            0.999_999_999_999_999_8,
        ];
        let mu_eta = [
            2.220_446_049_250_313e-16,
            0.037_631_768_954_571_37,
            0.240_260_745_741_529_17,
            0.25,
            0.130_605_746_966_208_05,
            0.000_335_237_670_756_474_24,
            2.220_446_049_250_313e-16,
        ];
        for i in 0..eta.len() {
            assert!(close(l.linkinv(eta[i]), linkinv[i], 1e-14), "{i}");
            assert!(close(l.mu_eta(eta[i]), mu_eta[i], 1e-13), "{i}");
        }
        let fam = Family::new(Distribution::Binomial, l);
        let y = [0.0, 0.25, 0.5, 1.0, 1.0];
        let wt = [1.0, 4.0, 2.0, 1.0, 3.0];
        let mu = [0.02, 0.3, 0.5, 0.77, 0.999];
        let dev = [
            0.040_405_414_635_038_94,
            0.049_314_115_333_799_31,
            0.0,
            0.522_729_528_268_815,
            0.006_003_002_001_501_731,
        ];
        let mut sum = 0.0;
        for i in 0..5 {
            let d = fam.dev_resid(y[i], mu[i], wt[i]);
            assert!((d - dev[i]).abs() < 1e-14, "{i}");
            sum += d;
        }
        assert!(close(
            fam.aic(&y, &wt, &mu, &wt, sum),
            3.730_838_856_069_731,
            1e-12
        ));
        assert!(close(l.linkfun(0.02), -3.891_820_298_110_626_5, 1e-14));
    }

    #[test]
    fn every_family_as_r() {
        use crate::glmm::families_reference::ENTRIES;
        use crate::glmm::link_extremes_reference::EXTREMES;
        let mut checked = 0;
        for e in ENTRIES {
            let Some(link) = Link::from_name(e.link) else {
                continue; // cauchit: not offered
            };
            let dist = Distribution::from_name(e.family, e.theta).expect("a known family");
            let fam = Family::new(dist, link);
            let tag = format!("{} {}", e.family, e.link);
            for (i, &eta) in e.eta.iter().enumerate() {
                assert!(
                    close(link.linkinv(eta), e.linkinv[i], 1e-13),
                    "{tag} linkinv {i}"
                );
                assert!(
                    close(link.mu_eta(eta), e.mu_eta[i], 1e-13),
                    "{tag} mu_eta {i}"
                );
            }
            for (i, &mu) in e.mu.iter().enumerate() {
                assert!(
                    close(link.linkfun(mu), e.linkfun[i], 1e-13),
                    "{tag} linkfun {i}"
                );
                assert!(
                    close(fam.variance(mu), e.variance[i], 1e-14),
                    "{tag} variance {i}"
                );
            }
            let mut dev = 0.0;
            for i in 0..e.y.len() {
                let d = fam.dev_resid(e.y[i], e.mu[i], e.wt[i]);
                assert!(
                    (d - e.dev_resids[i]).abs() <= 1e-13 * e.dev_resids[i].abs().max(1.0),
                    "{tag} dev_resids {i}: {d} {}",
                    e.dev_resids[i]
                );
                dev += d;
            }
            let aic = fam.aic(e.y, e.n, e.mu, e.wt, dev);
            assert!(close(aic, e.aic, 1e-12), "{tag} aic {aic} {}", e.aic);
            checked += 1;
        }
        assert!(checked >= 18);
        for x in EXTREMES {
            let Some(link) = Link::from_name(x.link) else {
                continue;
            };
            for (i, &eta) in x.eta.iter().enumerate() {
                assert!(
                    close(link.linkinv(eta), x.linkinv[i], 1e-13),
                    "{} {i}",
                    x.link
                );
                assert!(
                    close(link.mu_eta(eta), x.mu_eta[i], 1e-12),
                    "{} {i}",
                    x.link
                );
            }
        }
    }
}
