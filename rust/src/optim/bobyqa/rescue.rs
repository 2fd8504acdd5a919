//! Powell's RESCUE, in the form this implementation takes (BOBYQA, Powell 2009; NLopt's
//! `bobyqa.c`, `rescue_`): when rounding has damaged the denominator of the updating formula,
//! the base point moves to the best point (`shift_base`, which keeps H and the model
//! unchanged, as Powell's driver does when the step is small next to |xopt|) and H, the
//! inverse of the interpolation system [A 1 Y'; 1' 0 0; Y 0 0] with A_ij = (y_i . y_j)^2 / 2,
//! is recomputed exactly from the current points, with no new evaluations (Powell's RESCUE
//! instead moves points and evaluates f again).

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

use super::{dot, Bobyqa};

impl Bobyqa {
    /// Moves xbase to xbase + xopt, updating bmat, the explicit Hessian and the points so that
    /// H and the model are unchanged.
    pub(super) fn shift_base(&mut self, xoptsq: f64) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let fracsq = 0.25 * xoptsq;
        let mut sumpq = 0.0;
        for k in 0..npt {
            sumpq += self.pq[k];
            let mut sum = -0.5 * xoptsq;
            for i in 0..n {
                sum += self.xpt[k * n + i] * self.xopt[i];
            }
            self.w[npt + k] = sum;
            let temp = fracsq - 0.5 * sum;
            for i in 0..n {
                self.w[i] = self.bmat[k * n + i];
                self.vlag[i] = sum * self.xpt[k * n + i] + temp * self.xopt[i];
                let ip = npt + i;
                for j in 0..=i {
                    self.bmat[ip * n + j] += self.w[i] * self.vlag[j] + self.vlag[i] * self.w[j];
                }
            }
        }
        for jj in 0..nptm {
            let mut sumz = 0.0;
            let mut sumw = 0.0;
            for k in 0..npt {
                sumz += self.zmat[k + jj * npt];
                self.vlag[k] = self.w[npt + k] * self.zmat[k + jj * npt];
                sumw += self.vlag[k];
            }
            for j in 0..n {
                let mut sum = (fracsq * sumz - 0.5 * sumw) * self.xopt[j];
                for k in 0..npt {
                    sum += self.vlag[k] * self.xpt[k * n + j];
                }
                self.w[j] = sum;
                for k in 0..npt {
                    self.bmat[k * n + j] += sum * self.zmat[k + jj * npt];
                }
            }
            for i in 0..n {
                let ip = i + npt;
                let temp = self.w[i];
                for j in 0..=i {
                    self.bmat[ip * n + j] += temp * self.w[j];
                }
            }
        }
        let mut ih = 0;
        for j in 0..n {
            self.w[j] = -0.5 * sumpq * self.xopt[j];
            for k in 0..npt {
                self.w[j] += self.pq[k] * self.xpt[k * n + j];
                self.xpt[k * n + j] -= self.xopt[j];
            }
            for i in 0..=j {
                self.hq[ih] += self.w[i] * self.xopt[j] + self.xopt[i] * self.w[j];
                self.bmat[(npt + i) * n + j] = self.bmat[(npt + j) * n + i];
                ih += 1;
            }
        }
        for i in 0..n {
            self.xbase[i] += self.xopt[i];
            self.xnew[i] -= self.xopt[i];
            self.sl[i] -= self.xopt[i];
            self.su[i] -= self.xopt[i];
            self.xopt[i] = 0.0;
        }
    }

    /// Recomputes H from the current points: the inverse of the interpolation system
    /// `[A 1 Y'; 1' 0 0; Y 0 0]`, A_ij = (y_i . y_j)^2 / 2, by Gauss-Jordan elimination with
    /// partial pivoting; its leading npt x npt block (positive semi-definite of rank npt - n - 1)
    /// is factored as zmat zmat' by a pivoted Cholesky factorisation. False when the points do
    /// not determine a model.
    pub(super) fn recompute_h(&mut self) -> bool {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let nk = npt + n + 1;
        let a = &mut self.kkt;
        let inv = &mut self.kkt_inv;
        a.fill(0.0);
        inv.fill(0.0);
        for i in 0..npt {
            let yi = &self.xpt[i * n..(i + 1) * n];
            for j in 0..npt {
                let t = dot(yi, &self.xpt[j * n..(j + 1) * n]);
                a[i * nk + j] = 0.5 * t * t;
            }
            a[i * nk + npt] = 1.0;
            a[npt * nk + i] = 1.0;
            for l in 0..n {
                a[i * nk + npt + 1 + l] = yi[l];
                a[(npt + 1 + l) * nk + i] = yi[l];
            }
        }
        for i in 0..nk {
            inv[i * nk + i] = 1.0;
        }
        for c in 0..nk {
            let p = (c..nk)
                .max_by(|&r, &s| a[r * nk + c].abs().total_cmp(&a[s * nk + c].abs()))
                .unwrap_or(c);
            let piv = a[p * nk + c];
            if piv == 0.0 || !piv.is_finite() {
                return false;
            }
            if p != c {
                for j in 0..nk {
                    a.swap(p * nk + j, c * nk + j);
                    inv.swap(p * nk + j, c * nk + j);
                }
            }
            let r = 1.0 / piv;
            for j in 0..nk {
                a[c * nk + j] *= r;
                inv[c * nk + j] *= r;
            }
            for i in 0..nk {
                if i == c {
                    continue;
                }
                let m = a[i * nk + c];
                if m != 0.0 {
                    for j in 0..nk {
                        a[i * nk + j] -= m * a[c * nk + j];
                        inv[i * nk + j] -= m * inv[c * nk + j];
                    }
                }
            }
        }
        for k in 0..npt {
            for l in 0..n {
                self.bmat[k * n + l] = inv[k * nk + npt + 1 + l];
            }
        }
        for r in 0..n {
            for l in 0..n {
                self.bmat[(npt + r) * n + l] = inv[(npt + 1 + r) * nk + npt + 1 + l];
            }
        }
        // Omega (symmetrised) into the top-left of `a`, then zmat by pivoted Cholesky.
        for i in 0..npt {
            for j in 0..npt {
                a[i * nk + j] = 0.5 * (inv[i * nk + j] + inv[j * nk + i]);
            }
        }
        let scale = (0..npt).fold(0.0f64, |m, i| m.max(a[i * nk + i].abs()));
        for c in 0..nptm {
            let p = (0..npt)
                .max_by(|&r, &s| a[r * nk + r].total_cmp(&a[s * nk + s]))
                .unwrap_or(0);
            let dp = a[p * nk + p];
            if dp.is_nan() || dp <= 1e-14 * scale {
                return false;
            }
            let sd = dp.sqrt();
            for k in 0..npt {
                self.zmat[k + c * npt] = a[k * nk + p] / sd;
            }
            for i in 0..npt {
                let zi = self.zmat[i + c * npt];
                for j in 0..npt {
                    a[i * nk + j] -= zi * self.zmat[j + c * npt];
                }
            }
        }
        true
    }
}
