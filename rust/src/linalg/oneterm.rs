//! The profiled objective of a model with one random-effects term, in one pass over its levels.
//!
//! With a single term, Lambda' Z'WZ Lambda + I is block diagonal (one q x q block M_l per
//! level) and the blocked factor of Bates et al. (2015, section 3) is an "arrow":
//!
//! ```text
//!   M_l = lambda' A_l lambda + I = L_l L_l'         (A_l = Z_l'WZ_l, q x q)
//!   S   = D'WD - sum_l (D'WZ_l) H_l (Z_l'WD) = R R'  (H_l = lambda M_l^-1 lambda', D = [X y])
//! ```
//!
//! so ldL2 = sum_l log det M_l, ldRX2 = 2 sum_{a < p} log R_aa and pwrss = R_pp^2: what
//! `blocked::BlockedCholesky::update` computes for one term (lme4 and MixedModels.jl have no
//! such shortcut: they update the factor). Here it is done in two sweeps
//! that suit a long list of tiny blocks: a scalar pass over the levels for det M_l and H_l
//! (closed form for q = 1 and 2), then the (p + 1)(p + 2) / 2 entries of the sum as dot
//! products of length levels x q over a row-major copy of D'WZ, made once (when that copy would
//! exceed `MAX_COPY` values, the sum is taken level by level from D'WZ itself). No allocation
//! per evaluation. This is the evaluation that the optimiser repeats; the blocked factor is still
//! used for the solution at the optimum.

use crate::error::{LmmError, Result};
use crate::linalg::scale::{inflate_2x2, inflate_scalar, scale_inflate_block_with};
use crate::linalg::small::chol_small;
use crate::model::crossprod::CrossProducts;

/// Largest row-major copy of D'WZ kept for the evaluation (64 MB of f64).
const MAX_COPY: usize = 1 << 23;

/// Scratch and the transposed D'WZ for the one-pass evaluation of a one-term model.
#[derive(Clone, Debug)]
pub struct OneTerm {
    q: usize,
    n_levels: usize,
    pd: usize,
    /// Row i of D'WZ (length levels x q) at `dz_rows[i * nq..(i + 1) * nq]`; empty when
    /// larger than `MAX_COPY` (then the Schur complement is taken level by level).
    dz_rows: Vec<f64>,
    /// Per level, the lower triangle of H_l by columns (q (q + 1) / 2 values).
    h: Vec<f64>,
    /// One row of (D'WZ) blockdiag(H_l).
    e: Vec<f64>,
    /// S, then R ((p + 1) x (p + 1), column-major, lower triangle).
    s: Vec<f64>,
    /// q x q scratch of `levels_any`: lambda' A_l (t), M_l and L_l (m), L_l^-1 lambda' (v).
    t: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
}

/// log det(L_Z)^2, log det(R_X)^2 and pwrss at one theta.
#[derive(Clone, Copy, Debug)]
pub struct Determinants {
    pub ld_l2: f64,
    pub ld_rx2: f64,
    pub pwrss: f64,
}

impl OneTerm {
    /// The evaluator for a model with exactly one random-effects term.
    pub fn new(a: &CrossProducts) -> Option<Self> {
        Self::with_copy_limit(a, MAX_COPY)
    }

    fn with_copy_limit(a: &CrossProducts, max_copy: usize) -> Option<Self> {
        if a.shapes.len() != 1 {
            return None;
        }
        let shape = a.shapes[0];
        let (q, pd) = (shape.q, a.p + 1);
        let nq = shape.n_levels * q;
        let dz = &a.dz[0];
        let by_rows = pd * nq <= max_copy;
        let mut dz_rows = vec![0.0; if by_rows { pd * nq } else { 0 }];
        if by_rows {
            for (c, col) in dz.chunks_exact(pd).enumerate() {
                for (i, v) in col.iter().enumerate() {
                    dz_rows[i * nq + c] = *v;
                }
            }
        }
        Some(OneTerm {
            q,
            n_levels: shape.n_levels,
            pd,
            dz_rows,
            h: vec![0.0; shape.n_levels * q * (q + 1) / 2],
            e: vec![0.0; if by_rows { nq } else { pd * q }],
            s: vec![0.0; pd * pd],
            t: vec![0.0; q * q],
            m: vec![0.0; q * q],
            v: vec![0.0; q * q],
        })
    }

    /// The determinants and pwrss for the q x q lower-triangular template `lambda`
    /// (column-major).
    pub fn evaluate(&mut self, a: &CrossProducts, lambda: &[f64]) -> Result<Determinants> {
        let log_det = match self.q {
            1 => self.levels1(&a.diag[0], lambda[0])?,
            2 => self.levels2(&a.diag[0], lambda)?,
            _ => self.levels_any(&a.diag[0], lambda)?,
        };
        if self.dz_rows.is_empty() {
            self.schur_by_levels(&a.dd, &a.dz[0]);
        } else {
            self.schur(&a.dd);
        }
        self.finish(log_det)
    }

    /// q = 1: M_l = lambda^2 A_l + 1, H_l = lambda^2 / M_l. Returns sum_l log M_l.
    fn levels1(&mut self, diag: &[f64], lam: f64) -> Result<f64> {
        let lam2 = lam * lam;
        let mut log_det = 0.0;
        let mut prod = 1.0f64;
        for (l, (h, &al)) in self.h.iter_mut().zip(diag).enumerate() {
            let m = inflate_scalar(lam2, al);
            if !(m > 0.0 && m.is_finite()) {
                return Err(not_pd(l));
            }
            *h = lam2 / m;
            prod *= m;
            if prod > 1e200 {
                log_det += prod.ln();
                prod = 1.0;
            }
        }
        Ok(log_det + prod.ln())
    }

    /// q = 2 (an intercept and a slope, the usual vector term): M_l inverted in closed form, one
    /// division per level. Returns sum_l log det M_l.
    fn levels2(&mut self, diag: &[f64], lambda: &[f64]) -> Result<f64> {
        let (l00, l10, l11) = (lambda[0], lambda[1], lambda[3]);
        let mut log_det = 0.0;
        let mut prod = 1.0f64;
        for (l, (h, al)) in self
            .h
            .chunks_exact_mut(3)
            .zip(diag.chunks_exact(4))
            .enumerate()
        {
            let (m00, m10, m11) = inflate_2x2(al, l00, l10, l11);
            let det = m00 * m11 - m10 * m10;
            if !(m00 > 0.0 && det > 0.0 && det.is_finite()) {
                return Err(not_pd(2 * l + usize::from(m00 > 0.0)));
            }
            prod *= det;
            if prod > 1e200 {
                log_det += prod.ln();
                prod = 1.0;
            }
            // G = M^-1, H = lambda G lambda'.
            let r = 1.0 / det;
            let (g00, g10, g11) = (m11 * r, -m10 * r, m00 * r);
            let u10 = l10 * g00 + l11 * g10;
            let u11 = l10 * g10 + l11 * g11;
            h[0] = l00 * g00 * l00;
            h[1] = u10 * l00;
            h[2] = u10 * l10 + u11 * l11;
        }
        Ok(log_det + prod.ln())
    }

    /// Any q: M_l = L_l L_l' by Cholesky, V = L_l^-1 lambda', H_l = V'V. Returns
    /// sum_l log det M_l.
    fn levels_any(&mut self, diag: &[f64], lambda: &[f64]) -> Result<f64> {
        let q = self.q;
        let qq = q * q;
        let nh = q * (q + 1) / 2;
        let (t, m, v) = (&mut self.t, &mut self.m, &mut self.v);
        let mut log_det = 0.0;
        let mut prod = 1.0f64;
        for l in 0..self.n_levels {
            // M_l = lambda' A_l lambda + I = L_l L_l'.
            scale_inflate_block_with(&diag[l * qq..(l + 1) * qq], lambda, q, t, m);
            chol_small(m, q).map_err(|j| not_pd(l * q + j))?;
            for j in 0..q {
                let d = m[j + j * q];
                prod *= d * d;
            }
            if prod > 1e200 {
                log_det += prod.ln();
                prod = 1.0;
            }
            // v = L^-1 lambda' (column c of lambda' is row c of lambda).
            for c in 0..q {
                for i in 0..q {
                    let mut s = lambda[c + i * q];
                    for k in 0..i {
                        s -= m[i + k * q] * v[k + c * q];
                    }
                    v[i + c * q] = s / m[i + i * q];
                }
            }
            // H = v'v, lower triangle by columns.
            let h = &mut self.h[l * nh..(l + 1) * nh];
            let mut k = 0;
            for b in 0..q {
                for a_ in b..q {
                    h[k] = (0..q).map(|i| v[i + a_ * q] * v[i + b * q]).sum();
                    k += 1;
                }
            }
        }
        Ok(log_det + prod.ln())
    }

    /// S = D'WD - (D'WZ) blockdiag(H_l) (Z'WD), lower triangle, into `self.s`.
    fn schur(&mut self, dd: &[f64]) {
        let (q, pd) = (self.q, self.pd);
        let nq = self.n_levels * q;
        self.s.copy_from_slice(dd);
        for i in 0..pd {
            let row = &self.dz_rows[i * nq..(i + 1) * nq];
            // e = row blockdiag(H_l).
            match q {
                1 => {
                    for ((e, x), h) in self.e.iter_mut().zip(row).zip(&self.h) {
                        *e = h * x;
                    }
                }
                2 => {
                    for ((e, x), h) in self
                        .e
                        .chunks_exact_mut(2)
                        .zip(row.chunks_exact(2))
                        .zip(self.h.chunks_exact(3))
                    {
                        e[0] = h[0] * x[0] + h[1] * x[1];
                        e[1] = h[1] * x[0] + h[2] * x[1];
                    }
                }
                _ => {
                    let nh = q * (q + 1) / 2;
                    for ((e, x), h) in self
                        .e
                        .chunks_exact_mut(q)
                        .zip(row.chunks_exact(q))
                        .zip(self.h.chunks_exact(nh))
                    {
                        for (a_, ea) in e.iter_mut().enumerate() {
                            let mut s = 0.0;
                            for (b, xb) in x.iter().enumerate() {
                                let (hi, lo) = if a_ >= b { (a_, b) } else { (b, a_) };
                                // Column lo of the packed lower triangle starts at
                                // lo q - lo (lo - 1) / 2.
                                s += h[lo * q - lo * (lo.saturating_sub(1)) / 2 + (hi - lo)] * xb;
                            }
                            *ea = s;
                        }
                    }
                }
            }
            // S_ij -= e . row_j for j <= i.
            for j in 0..=i {
                let rj = &self.dz_rows[j * nq..(j + 1) * nq];
                self.s[i + j * pd] -= dot4(&self.e, rj);
            }
        }
    }

    /// As `schur`, level by level from the column-major D'WZ: for each level, e_b = sum_a
    /// H_l[b, a] dz_l[:, a], then S -= sum_b e_b dz_l[:, b]' (lower triangle).
    fn schur_by_levels(&mut self, dd: &[f64], dz: &[f64]) {
        let (q, pd) = (self.q, self.pd);
        let nh = q * (q + 1) / 2;
        self.s.copy_from_slice(dd);
        let e = &mut self.e[..pd * q];
        for (dzl, h) in dz.chunks_exact(pd * q).zip(self.h.chunks_exact(nh)) {
            for (b, eb) in e.chunks_exact_mut(pd).enumerate() {
                eb.fill(0.0);
                for (a_, da) in dzl.chunks_exact(pd).enumerate() {
                    let (hi, lo) = if a_ >= b { (a_, b) } else { (b, a_) };
                    let hba = h[lo * q - lo * (lo.saturating_sub(1)) / 2 + (hi - lo)];
                    for (v, x) in eb.iter_mut().zip(da) {
                        *v += hba * x;
                    }
                }
            }
            for j in 0..pd {
                let sj = &mut self.s[j * pd + j..(j + 1) * pd];
                for (eb, db) in e.chunks_exact(pd).zip(dzl.chunks_exact(pd)) {
                    let c = db[j];
                    for (v, x) in sj.iter_mut().zip(&eb[j..]) {
                        *v -= x * c;
                    }
                }
            }
        }
    }

    /// Factors S and reads off the determinants; `log_det` is log det(L_Z)^2.
    fn finish(&mut self, log_det: f64) -> Result<Determinants> {
        let pd = self.pd;
        let s = &mut self.s;
        chol_small(s, pd).map_err(|pivot| LmmError::NotPositiveDefinite {
            what: "the fixed-effects block of L".into(),
            pivot,
        })?;
        let p = pd - 1;
        let ld_rx2 = 2.0 * (0..p).map(|a| s[a + a * pd].ln()).sum::<f64>();
        let r = s[p + p * pd];
        Ok(Determinants {
            ld_l2: log_det,
            ld_rx2,
            pwrss: r * r,
        })
    }
}

/// Dot product with four partial sums (so that it vectorises).
fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, ar) = a.split_at(a.len() - a.len() % 4);
    let (b4, br) = b.split_at(a4.len());
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

fn not_pd(pivot: usize) -> LmmError {
    LmmError::NotPositiveDefinite {
        what: "block 0 of L".into(),
        pivot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::crossprod::{CrossProdAccumulator, RowChunk};
    use crate::model::remat::ReTermShape;

    /// Both ways of forming the Schur complement give the same determinants.
    #[test]
    fn by_rows_and_by_levels_agree() {
        let mut state = 12345u64;
        let mut unif = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for q in 1..=3 {
            let (n, p, levels) = (120, 3, 11);
            let y: Vec<f64> = (0..n).map(|_| unif() * 4.0).collect();
            let x: Vec<f64> = (0..n * p)
                .map(|i| if i < n { 1.0 } else { unif() })
                .collect();
            let codes: Vec<i32> = (0..n).map(|i| (i * 7 % levels) as i32).collect();
            let z: Vec<f64> = (0..n * q)
                .map(|i| if i < n { 1.0 } else { unif() })
                .collect();
            let shapes = [ReTermShape {
                n_levels: levels,
                q,
                diagonal: false,
            }];
            let mut acc = CrossProdAccumulator::new(&shapes, p);
            acc.add(&RowChunk {
                y: &y,
                x: &x,
                codes: vec![&codes],
                z: vec![&z],
                weights: None,
                offset: None,
            })
            .unwrap();
            let a = acc.finish();
            let mut lambda = vec![0.0; q * q];
            for j in 0..q {
                for i in j..q {
                    lambda[i + j * q] = if i == j { 0.6 + 0.2 * i as f64 } else { 0.3 };
                }
            }
            let mut rows = OneTerm::with_copy_limit(&a, usize::MAX).unwrap();
            let mut levels_only = OneTerm::with_copy_limit(&a, 0).unwrap();
            assert!(!rows.dz_rows.is_empty() && levels_only.dz_rows.is_empty());
            let d1 = rows.evaluate(&a, &lambda).unwrap();
            let d2 = levels_only.evaluate(&a, &lambda).unwrap();
            let close = |u: f64, v: f64| (u - v).abs() <= 1e-12 * u.abs().max(1.0);
            assert!(close(d1.ld_l2, d2.ld_l2), "q {q}: {d1:?} vs {d2:?}");
            assert!(close(d1.ld_rx2, d2.ld_rx2), "q {q}: {d1:?} vs {d2:?}");
            assert!(close(d1.pwrss, d2.pwrss), "q {q}: {d1:?} vs {d2:?}");
        }
    }
}
