//! Powell's UPDATE (BOBYQA, Powell 2009, section 4; NLopt's `bobyqa.c`, `update_`) and the
//! parts of the driver around it: the values of the Lagrange functions at xopt + d and the
//! updating formula's beta (H w for w the new point's row of the interpolation system), the
//! choice of the point to replace (the largest denominator sigma = alpha beta + tau^2,
//! weighted towards far points), the rank-two update of H = [zmat zmat', bmat'; bmat, .] for
//! the new point, and the model's least Frobenius-norm change (pq, hq, gopt) for the new
//! value, with Powell's switch to the least Frobenius-norm interpolant when its gradient is
//! much the smaller.

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

use super::{dot, Bobyqa, NONE};

impl Bobyqa {
    /// The model's change from xopt to xopt + d (w[npt..] holds xpt_k . d).
    pub(super) fn predicted_change(&self) -> f64 {
        let n = self.n;
        let npt = self.npt;
        let mut vquad = dot(&self.d, &self.gopt);
        let mut ih = 0;
        for j in 0..n {
            for i in 0..=j {
                let mut temp = self.d[i] * self.d[j];
                if i == j {
                    temp *= 0.5;
                }
                vquad += self.hq[ih] * temp;
                ih += 1;
            }
        }
        for k in 0..npt {
            let t = self.w[npt + k];
            vquad += 0.5 * self.pq[k] * (t * t);
        }
        vquad
    }

    /// The values at xopt + d of the Lagrange functions (vlag; the last n entries are the
    /// matching part of H w) and the updating formula's beta, for the step d. Leaves
    /// xpt_k . d in w[npt + k]. Returns (beta, |d|^2).
    pub(super) fn lagrange_and_beta(&mut self, kopt: usize, xoptsq: f64) -> (f64, f64) {
        let n = self.n;
        let npt = self.npt;
        let d = &self.d[..n];
        let xopt = &self.xopt[..n];
        let (w, wd) = self.w.split_at_mut(npt);
        let wd = &mut wd[..npt];
        let vlag = &mut self.vlag[..npt + n];
        for (k, (row, brow)) in self
            .xpt
            .chunks_exact(n)
            .zip(self.bmat.chunks_exact(n))
            .take(npt)
            .enumerate()
        {
            let mut suma = 0.0;
            let mut sumb = 0.0;
            let mut sum = 0.0;
            for j in 0..n {
                suma += row[j] * d[j];
                sumb += row[j] * xopt[j];
                sum += brow[j] * d[j];
            }
            w[k] = suma * (0.5 * suma + sumb);
            vlag[k] = sum;
            wd[k] = suma;
        }
        let mut beta = 0.0;
        for zc in self.zmat.chunks_exact(npt) {
            let sum = dot(zc, w);
            beta -= sum * sum;
            for (v, z) in vlag.iter_mut().zip(zc) {
                *v += sum * z;
            }
        }
        let mut dsq = 0.0;
        let mut bsum = 0.0;
        let mut dx = 0.0;
        for j in 0..n {
            dsq += d[j] * d[j];
            let mut sum = 0.0;
            for (wk, brow) in w.iter().zip(self.bmat.chunks_exact(n)) {
                sum += wk * brow[j];
            }
            bsum += sum * d[j];
            let jp = npt + j;
            for (b, di) in self.bmat[jp * n..(jp + 1) * n].iter().zip(d) {
                sum += b * di;
            }
            vlag[jp] = sum;
            bsum += sum * d[j];
            dx += d[j] * xopt[j];
        }
        let beta = dx * dx + dsq * (xoptsq + dx + dx + 0.5 * dsq) + beta - bsum;
        self.vlag[kopt] += 1.0;
        (beta, dsq)
    }

    /// Updates bmat and zmat (H) for moving point knew to xopt + d, given vlag and beta from
    /// `lagrange_and_beta` and the denominator of the updating formula.
    pub(super) fn update(&mut self, knew: usize, beta: f64, denom: f64) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let ztest = 1e-20 * self.zmat.iter().fold(0.0f64, |m, z| m.max(z.abs()));
        // Rotations that leave only the first column of zmat nonzero in row knew.
        let (z0c, zrest) = self.zmat.split_at_mut(npt);
        for zj in zrest.chunks_exact_mut(npt).take(nptm - 1) {
            let b_k = zj[knew];
            if b_k.abs() > ztest {
                let a_k = z0c[knew];
                let temp = (a_k * a_k + b_k * b_k).sqrt();
                let tempa = a_k / temp;
                let tempb = b_k / temp;
                for (a, b) in z0c.iter_mut().zip(zj.iter_mut()) {
                    let (x, y) = (*a, *b);
                    *b = tempa * y - tempb * x;
                    *a = tempa * x + tempb * y;
                }
            }
            zj[knew] = 0.0;
        }
        let zk0 = z0c[knew];
        let vlag = &mut self.vlag[..npt + n];
        let w = &mut self.w[..npt + n];
        for (wi, z) in w.iter_mut().zip(z0c.iter()) {
            *wi = zk0 * z;
        }
        let alpha = w[knew];
        let tau = vlag[knew];
        vlag[knew] -= 1.0;
        let temp = denom.sqrt();
        let tempb = zk0 / temp;
        let tempa = tau / temp;
        for (z, v) in z0c.iter_mut().zip(vlag.iter()) {
            *z = tempa * *z - tempb * v;
        }
        let bmat = &mut self.bmat[..(npt + n) * n];
        for j in 0..n {
            let jp = npt + j;
            w[jp] = bmat[knew * n + j];
            let tempa = (alpha * vlag[jp] - tau * w[jp]) / denom;
            let tempb = (-beta * w[jp] - tau * vlag[jp]) / denom;
            for i in 0..npt {
                bmat[i * n + j] += tempa * vlag[i] + tempb * w[i];
            }
            for i in npt..=jp {
                let v = bmat[i * n + j] + (tempa * vlag[i] + tempb * w[i]);
                bmat[i * n + j] = v;
                bmat[jp * n + (i - npt)] = v;
            }
        }
    }

    /// Powell's choice of the interpolation point to drop for the new one: the largest
    /// denominator `beta * H_kk + vlag_k^2` of the updating formula, weighted by
    /// `max(1, (|xpt_k - centre|^2 / delsq)^2)` so that far points go first; the centre is
    /// xopt or, with `to_xnew`, xnew, and point `skip` is not considered. Returns (the point or
    /// NONE, its denominator, the largest weighted denominator, the largest weighted vlag_k^2).
    pub(super) fn point_to_replace(
        &self,
        beta: f64,
        delsq: f64,
        skip: usize,
        to_xnew: bool,
    ) -> (usize, f64, f64, f64) {
        let (mut knew, mut denom, mut scaden, mut biglsq) = (NONE, 0.0, 0.0, 0.0f64);
        for k in 0..self.npt {
            if k == skip {
                continue;
            }
            let hdiag = self.zmat_row_sq(k);
            let vk = self.vlag[k];
            let den = beta * hdiag + vk * vk;
            let dist = self.dist_sq_to(k, to_xnew);
            let temp = (dist / delsq * (dist / delsq)).max(1.0);
            if temp * den > scaden {
                scaden = temp * den;
                knew = k;
                denom = den;
            }
            biglsq = biglsq.max(temp * (vk * vk));
        }
        (knew, denom, scaden, biglsq)
    }

    /// sum_j zmat[k, j]^2: the diagonal element of the leading block of H for point k.
    fn zmat_row_sq(&self, k: usize) -> f64 {
        let mut s = 0.0;
        for z in self.zmat[k..].iter().step_by(self.npt) {
            s += z * z;
        }
        s
    }

    /// |xpt_k - xopt|^2, or |xpt_k - xnew|^2.
    pub(super) fn dist_sq_to(&self, k: usize, to_xnew: bool) -> f64 {
        let n = self.n;
        let c = if to_xnew { &self.xnew } else { &self.xopt };
        let mut s = 0.0;
        for (x, y) in self.xpt[k * n..(k + 1) * n].iter().zip(c) {
            let t = x - y;
            s += t * t;
        }
        s
    }

    /// After a trust-region step: when the least Frobenius-norm interpolant's projected
    /// gradient has been much smaller than the model's three times running, take it as the
    /// model.
    pub(super) fn maybe_replace_model(&mut self, kopt: usize, itest: &mut usize) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let fopt = self.fval[kopt];
        for k in 0..npt {
            self.vlag[k] = self.fval[k] - fopt;
            self.w[k] = 0.0;
        }
        for j in 0..nptm {
            let mut sum = 0.0;
            for k in 0..npt {
                sum += self.zmat[k + j * npt] * self.vlag[k];
            }
            for k in 0..npt {
                self.w[k] += sum * self.zmat[k + j * npt];
            }
        }
        for k in 0..npt {
            let sum = dot(&self.xpt[k * n..(k + 1) * n], &self.xopt);
            self.w[k + npt] = self.w[k];
            self.w[k] *= sum;
        }
        let mut gqsq = 0.0;
        let mut gisq = 0.0;
        for i in 0..n {
            let mut sum = 0.0;
            for k in 0..npt {
                sum = sum + self.bmat[k * n + i] * self.vlag[k] + self.xpt[k * n + i] * self.w[k];
            }
            let g = self.gopt[i];
            if self.xopt[i] == self.sl[i] {
                gqsq += g.min(0.0).powi(2);
                gisq += sum.min(0.0).powi(2);
            } else if self.xopt[i] == self.su[i] {
                gqsq += g.max(0.0).powi(2);
                gisq += sum.max(0.0).powi(2);
            } else {
                gqsq += g * g;
                gisq += sum * sum;
            }
            self.vlag[npt + i] = sum;
        }
        *itest += 1;
        if gqsq < 10.0 * gisq {
            *itest = 0;
        }
        if *itest >= 3 {
            for i in 0..n {
                self.gopt[i] = self.vlag[npt + i];
            }
            for k in 0..npt {
                self.pq[k] = self.w[npt + k];
            }
            self.hq.fill(0.0);
            *itest = 0;
        }
    }

    /// gopt += (model Hessian) v; the implicit part only when `implicit`.
    pub(super) fn add_hessian_times(&mut self, v: &[f64], implicit: bool) {
        let n = self.n;
        let g = &mut self.gopt[..n];
        let v = &v[..n];
        let mut ih = 0;
        for j in 0..n {
            let col = &self.hq[ih..=ih + j];
            let mut gj = g[j];
            for i in 0..j {
                gj += col[i] * v[i];
                g[i] += col[i] * v[j];
            }
            g[j] = gj + col[j] * v[j];
            ih += j + 1;
        }
        if implicit {
            for (row, &pk) in self.xpt.chunks_exact(n).zip(&self.pq) {
                let temp = pk * dot(row, v);
                for (gi, r) in g.iter_mut().zip(row) {
                    *gi += temp * r;
                }
            }
        }
    }

    /// Puts xnew in place of point knew, whose new value fx differs from the model's by
    /// diff: point knew's implicit second derivatives become explicit, then the least
    /// Frobenius-norm change of the model for the new value and its gradient at xopt. False
    /// when H has an infinite element (rounding errors).
    pub(super) fn absorb_new_point(&mut self, knew: usize, fx: f64, diff: f64) -> bool {
        let n = self.n;
        let npt = self.npt;
        let pqold = self.pq[knew];
        self.pq[knew] = 0.0;
        let mut ih = 0;
        for i in 0..n {
            let temp = pqold * self.xpt[knew * n + i];
            for j in 0..=i {
                self.hq[ih] += temp * self.xpt[knew * n + j];
                ih += 1;
            }
        }
        for zc in self.zmat.chunks_exact(npt) {
            let temp = diff * zc[knew];
            for (p, z) in self.pq.iter_mut().zip(zc) {
                *p += temp * z;
            }
        }
        self.fval[knew] = fx;
        self.xpt[knew * n..(knew + 1) * n].copy_from_slice(&self.xnew);
        self.w[..n].copy_from_slice(&self.bmat[knew * n..(knew + 1) * n]);
        for (k, row) in self.xpt.chunks_exact(n).enumerate() {
            let mut suma = 0.0;
            for zc in self.zmat.chunks_exact(npt) {
                suma += zc[knew] * zc[k];
            }
            if suma.is_infinite() {
                return false;
            }
            let sumb = dot(row, &self.xopt);
            let temp = suma * sumb;
            for (wi, r) in self.w[..n].iter_mut().zip(row) {
                *wi += temp * r;
            }
        }
        for i in 0..n {
            self.gopt[i] += diff * self.w[i];
        }
        true
    }
}
