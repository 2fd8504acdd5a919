//! Powell's PRELIM (BOBYQA, Powell 2009, section 2; NLopt's `bobyqa.c`, `prelim_`): the
//! initial 2n + 1 interpolation points xbase and xbase +- rho_begin e_i (one-sided, +rho_begin
//! and +2 rho_begin, from a bound), the quadratic model they determine (gradient and diagonal
//! second derivatives by divided differences) and the initial inverse H of the interpolation
//! system in its factored form (bmat, zmat), which for three points on a line is explicit.

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

use super::{moderate, Bobyqa};

/// NLopt's default initial step of a derivative-free method for each variable
/// (`nlopt_set_default_initial_step`): a quarter of a finite range, three quarters of the
/// distance to a nearby bound, otherwise |x|, otherwise 1. For lme4's start (theta = 1 on a
/// lower bound of 0, theta = 0 unbounded) the steps are 0.75 and 1.
pub fn default_initial_steps(x: &[f64], lower: &[f64], upper: &[f64], steps: &mut [f64]) {
    for i in 0..x.len() {
        let (lb, ub, xi) = (lower[i], upper[i], x[i]);
        let mut step = f64::INFINITY;
        if ub.is_finite() && lb.is_finite() && (ub - lb) * 0.25 < step && ub > lb {
            step = (ub - lb) * 0.25;
        }
        if ub.is_finite() && ub - xi < step && ub > xi {
            step = (ub - xi) * 0.75;
        }
        if lb.is_finite() && xi - lb < step && xi > lb {
            step = (xi - lb) * 0.75;
        }
        if step.is_infinite() {
            if ub.is_finite() && (ub - xi).abs() < step.abs() {
                step = (ub - xi) * 1.1;
            }
            if lb.is_finite() && (xi - lb).abs() < step.abs() {
                step = (xi - lb) * 1.1;
            }
        }
        if step.is_infinite() || step.abs() < f64::MIN_POSITIVE {
            step = xi;
        }
        if step.is_infinite() || step == 0.0 {
            step = 1.0;
        }
        steps[i] = step;
    }
}

impl Bobyqa {
    /// Powell's placing of the start (in his BOBYQA, before BOBYQB): the bounds must be at
    /// least 2 rho_begin apart, and a start within rho_begin of a bound moves onto the bound or
    /// to rho_begin from it, so that the initial points are feasible. Sets sl and su (the
    /// bounds relative to the start); false for bounds too close or a NaN.
    pub(super) fn place_start(
        &mut self,
        x: &mut [f64],
        lower: &[f64],
        upper: &[f64],
        rhobeg: f64,
    ) -> bool {
        let n = self.n;
        for j in 0..n {
            let room = upper[j] - lower[j];
            if room.is_nan() || room < 2.0 * rhobeg || x[j].is_nan() {
                return false;
            }
            let mut sl = lower[j] - x[j];
            let mut su = upper[j] - x[j];
            if sl >= -rhobeg {
                if sl >= 0.0 {
                    x[j] = lower[j];
                    sl = 0.0;
                    su = upper[j] - lower[j];
                } else {
                    x[j] = lower[j] + rhobeg;
                    sl = -rhobeg;
                    su = (upper[j] - x[j]).max(rhobeg);
                }
            } else if su <= rhobeg {
                if su <= 0.0 {
                    x[j] = upper[j];
                    sl = lower[j] - upper[j];
                    su = 0.0;
                } else {
                    x[j] = upper[j] - rhobeg;
                    sl = (lower[j] - x[j]).min(-rhobeg);
                    su = rhobeg;
                }
            }
            self.sl[j] = sl;
            self.su[j] = su;
        }
        true
    }

    /// The initial 2n + 1 points: xbase and xbase +- rho_begin along each coordinate (or
    /// +rho_begin and +2 rho_begin from a lower bound, and the mirror image at an upper bound),
    /// with the model they determine (its Hessian diagonal) and the initial H.
    /// Returns the evaluations made and the index of the best point.
    pub(super) fn initial_points<F: FnMut(&[f64]) -> f64>(
        &mut self,
        f: &mut F,
        x0: &[f64],
        xl: &[f64],
        xu: &[f64],
        rhobeg: f64,
    ) -> (usize, usize) {
        let n = self.n;
        let npt = self.npt;
        self.xbase.copy_from_slice(x0);
        self.xpt.fill(0.0);
        self.bmat.fill(0.0);
        self.hq.fill(0.0);
        self.pq.fill(0.0);
        self.zmat.fill(0.0);
        self.gopt.fill(0.0);
        let rhosq = rhobeg * rhobeg;
        let mut kopt = 0;
        let mut fbeg = 0.0;
        let mut stepa = 0.0;
        let mut stepb = 0.0;
        for k in 0..npt {
            if (1..=n).contains(&k) {
                let j = k - 1;
                stepa = if self.su[j] == 0.0 { -rhobeg } else { rhobeg };
                self.xpt[k * n + j] = stepa;
            } else if k > n {
                let j = k - n - 1;
                stepa = self.xpt[(j + 1) * n + j];
                stepb = -rhobeg;
                if self.sl[j] == 0.0 {
                    stepb = (2.0 * rhobeg).min(self.su[j]);
                }
                if self.su[j] == 0.0 {
                    stepb = (-2.0 * rhobeg).max(self.sl[j]);
                }
                self.xpt[k * n + j] = stepb;
            }
            for i in 0..n {
                let p = self.xpt[k * n + i];
                let mut v = (self.xbase[i] + p).max(xl[i]).min(xu[i]);
                if p == self.sl[i] {
                    v = xl[i];
                }
                if p == self.su[i] {
                    v = xu[i];
                }
                self.x[i] = v;
            }
            let fk = moderate(f(&self.x));
            self.fval[k] = fk;
            if k == 0 {
                fbeg = fk;
                kopt = 0;
            } else if fk < self.fval[kopt] {
                kopt = k;
            }
            if (1..=n).contains(&k) {
                // First divided difference along coordinate k - 1.
                self.gopt[k - 1] = (fk - fbeg) / stepa;
            } else if k > n {
                let j = k - n - 1;
                // Second divided difference, and the derivative at xbase from all three.
                let temp = (fk - fbeg) / stepb;
                let diff = stepb - stepa;
                self.hq[j * (j + 1) / 2 + j] = 2.0 * (temp - self.gopt[j]) / diff;
                self.gopt[j] = (self.gopt[j] * stepb - temp * stepa) / diff;
                // With steps on both sides, keep the lower value at the first of the pair.
                if stepa * stepb < 0.0 && fk < self.fval[j + 1] {
                    self.fval[k] = self.fval[j + 1];
                    self.fval[j + 1] = fk;
                    if kopt == k {
                        kopt = j + 1;
                    }
                    self.xpt[(j + 1) * n + j] = stepb;
                    self.xpt[k * n + j] = stepa;
                }
                // H for three points on a line: the derivatives at xbase of their Lagrange
                // functions (bmat) and their second divided difference (zmat).
                let b0 = -(stepa + stepb) / (stepa * stepb);
                let bk = -0.5 / self.xpt[(j + 1) * n + j];
                self.bmat[j] = b0;
                self.bmat[k * n + j] = bk;
                self.bmat[(j + 1) * n + j] = -b0 - bk;
                let z0 = std::f64::consts::SQRT_2 / (stepa * stepb);
                let zk = std::f64::consts::FRAC_1_SQRT_2 / rhosq;
                self.zmat[j * npt] = z0;
                self.zmat[k + j * npt] = zk;
                self.zmat[(j + 1) + j * npt] = -z0 - zk;
            }
        }
        (npt, kopt)
    }
}
