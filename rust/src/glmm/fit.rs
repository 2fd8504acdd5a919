//! lme4's two-stage GLMM fit (`glmer`): stage 1 (nAGQ = 0) minimises the Laplace objective over
//! theta with beta estimated inside PIRLS; stage 2 (nAGQ >= 1) minimises the Laplace or AGQ
//! objective over (theta, beta) jointly from stage 1's estimates, with u* warm-started. Both
//! stages use BOBYQA (lme4: bobyqa, then Nelder-Mead; the deviance is what is compared). After
//! the fit, the covariance of beta is lme4's Hessian-based one (`calc.derivs`, `use.hessian`):
//! the Hessian H of the objective over (theta, beta) by central finite differences (lme4's
//! `deriv12`, step 1e-4), vcov(beta) = the beta block of (H / 2)^-1; the nAGQ = 0 fit uses
//! the PIRLS approximation (R_X R_X')^-1 instead.
//!
//! Interrupts (`exec::request_interrupt`, ctrl-C): BOBYQA stops before its next evaluation,
//! PIRLS before its next iteration and the Hessian before its next evaluation; the fit then
//! returns `LmmError::Interrupted` (an evaluation that saw the request gives +inf or NaN to
//! its caller, which is never taken for a result).

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::glmm::laplace;
use crate::glmm::pirls::{GlmmData, Pirls};
use crate::linalg::factor::Factor;
use crate::linalg::small::{chol_small, solve_l_small, solve_lt_small};
use crate::optim::bobyqa::{default_initial_steps, Bobyqa, BobyqaStatus, Tolerances};

/// Finite-difference step of lme4's `deriv12`.
const FD_STEP: f64 = 1e-4;

/// What one optimiser stage did.
#[derive(Clone, Debug)]
pub struct StageSummary {
    pub x0: Vec<f64>,
    pub x: Vec<f64>,
    pub f0: f64,
    pub f: f64,
    pub n_eval: usize,
    pub status: String,
}

/// A fitted GLMM.
#[derive(Clone, Debug)]
pub struct GlmmFit {
    pub nagq: usize,
    pub theta: Vec<f64>,
    pub beta: Vec<f64>,
    pub u: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
    /// The objective at the estimates (lme4's `-2 logLik`).
    pub objective: f64,
    /// p x p column-major.
    pub vcov: Vec<f64>,
    /// (theta, beta) Hessian of the objective, column-major (empty for nAGQ = 0).
    pub hessian: Vec<f64>,
    /// (theta, beta) gradient of the objective by central differences from the Hessian's
    /// evaluations (lme4's `deriv12` gradient; empty for nAGQ = 0).
    pub gradient: Vec<f64>,
    pub eta: Vec<f64>,
    pub mu: Vec<f64>,
    /// Working weights at the mode.
    pub weights: Vec<f64>,
    /// Per term, levels x (q x q) column-major blocks of Lambda (L_Z L_Z')^-1 Lambda' at the
    /// mode (lme4's `condVar` for families without a dispersion).
    pub condvar: Vec<Vec<f64>>,
    pub stage1: StageSummary,
    pub stage2: Option<StageSummary>,
}

/// The GLMM objective at theta with beta profiled (nagq = 0 stage) or at (theta, beta).
pub fn objective(p: &mut Pirls, theta: &[f64], beta: Option<&[f64]>, nagq: usize) -> Result<f64> {
    p.run(theta, beta)?;
    if nagq > 1 {
        laplace::agq(p, nagq)
    } else {
        Ok(laplace::laplace(p))
    }
}

fn minimize(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x: &mut [f64],
    lower: &[f64],
    steps: Option<&[f64]>,
    tol: &Tolerances,
) -> Result<StageSummary> {
    let n = x.len();
    let x0 = x.to_vec();
    let f0 = f(x);
    let upper = vec![f64::INFINITY; n];
    let mut s = vec![0.0; n];
    default_initial_steps(x, lower, &upper, &mut s);
    if let Some(st) = steps {
        for i in 0..n {
            s[i] = s[i].min(st[i]);
        }
    }
    let mut tol = *tol;
    tol.max_eval = tol.max_eval.max(2 * n + 2);
    let mut solver = Bobyqa::new(n);
    let out = solver.minimize_scaled(&mut *f, x, lower, &upper, &s, &tol);
    crate::exec::check_interrupt()?;
    if out.status == BobyqaStatus::InvalidArgs {
        return Err(LmmError::Optimizer(format!(
            "BOBYQA rejected the start {x0:?} or the bounds"
        )));
    }
    if !out.f.is_finite() {
        return Err(LmmError::Optimizer(
            "no parameter gave a finite objective".into(),
        ));
    }
    let status = out.status.outcome();
    Ok(StageSummary {
        x0,
        x: x.to_vec(),
        f0,
        f: out.f,
        n_eval: out.n_eval,
        status: status.into(),
    })
}

/// (R_X R_X')^-1 from the X block of the current factor (the nAGQ = 0 covariance, unscaled).
pub fn rx_vcov(p: &Pirls) -> Vec<f64> {
    let np = p.data.p;
    match p.chol() {
        // A factor of the u-alone runs has no X block.
        Some(chol) if chol.d_block().nrows() == np + 1 => chol.vcov_unscaled(),
        _ => vec![f64::NAN; np * np],
    }
}

/// Central finite-difference Hessian of f at x (column-major) and the central gradient from
/// the same evaluations (lme4's `deriv12`). An error of `f` (an interrupt: 2n^2 + 1 evaluations
/// can take minutes on a large model) ends it at once.
fn hessian(f: &mut dyn FnMut(&[f64]) -> Result<f64>, x: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = x.len();
    let h = FD_STEP;
    let f0 = f(x)?;
    let mut hess = vec![0.0; n * n];
    let mut xp = x.to_vec();
    let mut fp = vec![0.0; n];
    let mut fm = vec![0.0; n];
    for i in 0..n {
        xp[i] = x[i] + h;
        fp[i] = f(&xp)?;
        xp[i] = x[i] - h;
        fm[i] = f(&xp)?;
        xp[i] = x[i];
        hess[i + i * n] = (fp[i] - 2.0 * f0 + fm[i]) / (h * h);
    }
    let grad = fp
        .iter()
        .zip(&fm)
        .map(|(a, b)| (a - b) / (2.0 * h))
        .collect();
    for i in 0..n {
        for j in 0..i {
            let mut v = 0.0;
            for (si, sj, sign) in [
                (1.0, 1.0, 1.0),
                (1.0, -1.0, -1.0),
                (-1.0, 1.0, -1.0),
                (-1.0, -1.0, 1.0),
            ] {
                xp[i] = x[i] + si * h;
                xp[j] = x[j] + sj * h;
                v += sign * f(&xp)?;
            }
            xp[i] = x[i];
            xp[j] = x[j];
            let hij = v / (4.0 * h * h);
            hess[i + j * n] = hij;
            hess[j + i * n] = hij;
        }
    }
    Ok((hess, grad))
}

/// The inverse of a symmetric positive definite matrix (column-major) by Cholesky, or None.
fn spd_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = a.to_vec();
    chol_small(&mut l, n).ok()?;
    let mut inv = vec![0.0; n * n];
    for (c, x) in inv.chunks_exact_mut(n).enumerate() {
        x[c] = 1.0;
        solve_l_small(&l, n, x);
        solve_lt_small(&l, n, x);
    }
    Some(inv)
}

/// Fits the GLMM with `nagq` (0, 1 or more) from the GLM's beta and theta0.
pub fn fit(
    data: &GlmmData,
    exec: Exec,
    beta0: &[f64],
    theta0: &[f64],
    lower: &[f64],
    nagq: usize,
) -> Result<GlmmFit> {
    let mut p = Pirls::new(data, exec);
    p.beta = beta0.to_vec();
    let nth = theta0.len();
    let np = data.p;
    // Stage 1: theta, beta profiled in PIRLS.
    let mut theta = theta0.to_vec();
    let tol1 = Tolerances::lme4();
    let stage1 = {
        let mut f = |t: &[f64]| objective(&mut p, t, None, 0).unwrap_or(f64::INFINITY);
        minimize(&mut f, &mut theta, lower, None, &tol1)?
    };
    objective(&mut p, &theta, None, 0)?;
    let beta1 = p.beta.clone();
    let rx = rx_vcov(&p);
    if nagq == 0 {
        return Ok(finish(
            &p,
            0,
            theta,
            beta1,
            stage1.f,
            rx,
            (Vec::new(), Vec::new()),
            stage1,
            None,
        ));
    }
    // Stage 2: (theta, beta) jointly.
    let mut x: Vec<f64> = theta.iter().chain(&beta1).copied().collect();
    let mut lower2 = lower.to_vec();
    lower2.extend(std::iter::repeat_n(f64::NEG_INFINITY, np));
    let steps: Vec<f64> = (0..nth)
        .map(|_| 0.1)
        .chain((0..np).map(|j| 0.2 * rx[j + j * np].sqrt().clamp(1e-6, 10.0)))
        .collect();
    // rho_end 1e-7 of the scaled start steps (a tenth of theta's, a fifth of beta's standard
    // errors); 1e-8 took 7% more evaluations on VerbAgg, and 1e-6 a third fewer but left
    // grouseticks' flat optimum 0.014 of a standard error short.
    let tol2 = Tolerances {
        xtol_rel: 1e-6,
        xtol_abs: 1e-10,
        ftol_rel: 0.0,
        ftol_abs: 1e-9,
        max_eval: 100_000,
    };
    let stage2 = {
        let mut f = |v: &[f64]| {
            objective(&mut p, &v[..nth], Some(&v[nth..]), nagq).unwrap_or(f64::INFINITY)
        };
        minimize(&mut f, &mut x, &lower2, Some(&steps), &tol2)?
    };
    p.tighten();
    let (hess, grad) = {
        // A point where PIRLS fails gives NaN (and a NaN Hessian, handled below); an interrupt
        // stops the fit.
        let mut f = |v: &[f64]| match objective(&mut p, &v[..nth], Some(&v[nth..]), nagq) {
            Err(LmmError::Interrupted) => Err(LmmError::Interrupted),
            other => Ok(other.unwrap_or(f64::NAN)),
        };
        hessian(&mut f, &x)?
    };
    let value = objective(&mut p, &x[..nth], Some(&x[nth..]), nagq)?;
    let n = nth + np;
    let half: Vec<f64> = hess.iter().map(|h| h / 2.0).collect();
    let vcov = if let Some(inv) = spd_inverse(&half, n) {
        let mut v = vec![0.0; np * np];
        for j in 0..np {
            for i in 0..np {
                v[i + j * np] = inv[(nth + i) + (nth + j) * n];
            }
        }
        v
    } else {
        p.refactor_with_x()?;
        rx_vcov(&p)
    };
    let (theta, beta) = (x[..nth].to_vec(), x[nth..].to_vec());
    Ok(finish(
        &p,
        nagq,
        theta,
        beta,
        value,
        vcov,
        (hess, grad),
        stage1,
        Some(stage2),
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    p: &Pirls,
    nagq: usize,
    theta: Vec<f64>,
    beta: Vec<f64>,
    objective: f64,
    vcov: Vec<f64>,
    (hessian, gradient): (Vec<f64>, Vec<f64>),
    stage1: StageSummary,
    stage2: Option<StageSummary>,
) -> GlmmFit {
    GlmmFit {
        nagq,
        theta,
        beta,
        u: p.u.clone(),
        b: p.b(),
        objective,
        vcov,
        hessian,
        gradient,
        eta: p.eta.clone(),
        mu: p.mu.clone(),
        weights: p.w.clone(),
        condvar: condvar(p),
        stage1,
        stage2,
    }
}

/// The diagonal blocks of Lambda (L_Z L_Z')^-1 Lambda' at the current factor, per term.
pub fn condvar(p: &Pirls) -> Vec<Vec<f64>> {
    let shapes = p.shapes();
    let Some(chol) = p.chol() else {
        return shapes
            .iter()
            .map(|s| vec![f64::NAN; s.n_levels * s.q * s.q])
            .collect();
    };
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let q = s.q;
            let lam = &p.lambdas[k];
            let mut out = Vec::with_capacity(s.n_levels * q * q);
            for lev in 0..s.n_levels {
                // Columns of L_Z^-1 E for this level's q unit vectors; inner = their cross-products.
                let cols: Vec<Vec<Vec<f64>>> = (0..q)
                    .map(|a| {
                        let mut x: Vec<Vec<f64>> =
                            shapes.iter().map(|t| vec![0.0; t.size()]).collect();
                        x[k][lev * q + a] = 1.0;
                        chol.solve_lz(&mut x);
                        x
                    })
                    .collect();
                let dot = |x: &Vec<Vec<f64>>, y: &Vec<Vec<f64>>| -> f64 {
                    x.iter()
                        .zip(y)
                        .map(|(u, v)| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>())
                        .sum()
                };
                let inner: Vec<f64> = (0..q * q)
                    .map(|i| dot(&cols[i % q], &cols[i / q]))
                    .collect();
                for c in 0..q {
                    for a in 0..q {
                        let mut v = 0.0;
                        for e in 0..q {
                            for f in 0..q {
                                v += lam[a + e * q] * inner[e + f * q] * lam[c + f * q];
                            }
                        }
                        out.push(v);
                    }
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hessian_of_a_quadratic_and_its_gradient() {
        // f = x0^2 + 3 x0 x1 + 2 x1^2 - x1: H = [[2, 3], [3, 4]], gradient (2 x0 + 3 x1, 3 x0 +
        // 4 x1 - 1); central differences are exact on a quadratic up to rounding.
        let mut f = |v: &[f64]| Ok(v[0] * v[0] + 3.0 * v[0] * v[1] + 2.0 * v[1] * v[1] - v[1]);
        let (h, g) = hessian(&mut f, &[0.5, -1.0]).unwrap();
        for (a, b) in h.iter().zip([2.0, 3.0, 3.0, 4.0]) {
            assert!((a - b).abs() < 1e-6, "{h:?}");
        }
        for (a, b) in g.iter().zip([-2.0, -3.5]) {
            assert!((a - b).abs() < 1e-9, "{g:?}");
        }
    }

    #[test]
    fn an_interrupt_stops_the_hessian_at_once() {
        // 2 n^2 + 1 = 19 evaluations for n = 3; the interrupt comes at the seventh.
        let mut calls = 0;
        let mut f = |v: &[f64]| {
            calls += 1;
            if calls == 7 {
                Err(LmmError::Interrupted)
            } else {
                Ok(v.iter().map(|a| a * a).sum())
            }
        };
        let out = hessian(&mut f, &[1.0, 2.0, 3.0]);
        assert!(matches!(out, Err(LmmError::Interrupted)));
        assert_eq!(calls, 7);
    }
}
