//! The weighted cross-products of one PIRLS iteration, A(w) = [Z D]' W [Z D] with
//! D = [X r] (or D = [r] when beta is held fixed), refilled in place: the structure of A (the
//! levels each term has, the pairs of levels that crossed terms share) does not change with
//! the weights, so it is found once per fit and every iteration only sums `w z_a z_b`,
//! `w d_i z_a` and `w d_i d_j` into the blocks it already has. lme4 does the same through the
//! fixed sparsity pattern of its CHOLMOD factor (`updateXwts`, `updateDecomp` in
//! `predModule.cpp`); MixedModels.jl through `reweight!` on its stored `A` blocks.
//!
//! Each row carries, for every pair of crossed terms (k > j), the index of the block
//! `Z_k' W Z_j` it adds to (found by a sort of the level pairs once), so that an iteration is
//! one pass over compact arrays: the codes, Z's columns, the weights and D. The blocks are laid
//! out as `model::crossprod::CrossProducts` has them, so the LMM's factor (`LFactor`) takes A
//! as it is.

use crate::error::{LmmError, Result};
use crate::linalg::blocks::SparseBlocks;
use crate::model::crossprod::CrossProducts;
use crate::model::remat::{ReMat, ReTermShape};
use crate::model::transform::Transform;

/// Rows gathered into a row-major buffer of D at a time.
const BLOCK: usize = 256;

/// A, its structure fixed, and each row's block index in each pair of crossed terms.
pub struct WeightedCross {
    a: CrossProducts,
    /// pair_idx[k][j][r], j < k: the block of `pairs[k][j]` that row r adds to (`u32::MAX`
    /// for a row of prior weight 0).
    pair_idx: Vec<Vec<Vec<u32>>>,
    /// D row-major for one block of rows.
    dbuf: Vec<f64>,
}

impl WeightedCross {
    /// The structure of A for `terms` and a D of `pd` columns, from the rows of non-zero prior
    /// weight.
    pub fn new(terms: &[ReMat], prior: &[f64], pd: usize) -> Result<WeightedCross> {
        if pd == 0 {
            return Err(LmmError::Shape("D needs at least one column".into()));
        }
        let shapes: Vec<ReTermShape> = terms.iter().map(ReMat::shape).collect();
        let mut pairs = Vec::with_capacity(terms.len());
        let mut pair_idx = Vec::with_capacity(terms.len());
        for (k, tk) in terms.iter().enumerate() {
            let mut row_pairs = Vec::with_capacity(k);
            let mut row_idx = Vec::with_capacity(k);
            for tj in &terms[..k] {
                let (blocks, idx) = pair_pattern(tk, tj, prior);
                row_pairs.push(blocks);
                row_idx.push(idx);
            }
            pairs.push(row_pairs);
            pair_idx.push(row_idx);
        }
        let nobs = prior.iter().filter(|&&w| w != 0.0).count();
        let a = CrossProducts {
            diag: shapes
                .iter()
                .map(|s| vec![0.0; s.n_levels * s.q * s.q])
                .collect(),
            dz: shapes.iter().map(|s| vec![0.0; pd * s.size()]).collect(),
            dd: vec![0.0; pd * pd],
            shapes,
            p: pd - 1,
            nobs,
            sum_log_w: 0.0,
            pairs,
            // The GLMM's working weights change every iteration: no centring or scaling.
            transform: Transform::identity(),
        };
        Ok(WeightedCross {
            a,
            pair_idx,
            dbuf: vec![0.0; BLOCK * pd],
        })
    }

    /// A as last filled.
    pub fn a(&self) -> &CrossProducts {
        &self.a
    }

    /// Refills A with the working weights `w` and D's columns `d` (pd slices of n rows).
    pub fn fill(&mut self, terms: &[ReMat], w: &[f64], d: &[&[f64]]) -> &CrossProducts {
        let pd = d.len();
        debug_assert_eq!(pd, self.a.p + 1);
        let a = &mut self.a;
        a.dd.fill(0.0);
        for v in &mut a.diag {
            v.fill(0.0);
        }
        for v in &mut a.dz {
            v.fill(0.0);
        }
        for row in &mut a.pairs {
            for blocks in row {
                blocks.data.fill(0.0);
            }
        }
        let n = w.len();
        let mut start = 0;
        while start < n {
            let end = n.min(start + BLOCK);
            for r in start..end {
                let dr = &mut self.dbuf[(r - start) * pd..(r - start + 1) * pd];
                for (x, col) in dr.iter_mut().zip(d) {
                    *x = col[r];
                }
            }
            let rows = Rows {
                start,
                end,
                w,
                d: &self.dbuf,
                pd,
            };
            add_dd(&mut a.dd, &rows);
            for (k, t) in terms.iter().enumerate() {
                let (diag, dz) = (&mut a.diag[k][..], &mut a.dz[k][..]);
                match t.shape().q {
                    1 => add_term::<1>(diag, dz, t, &rows),
                    2 => add_term::<2>(diag, dz, t, &rows),
                    3 => add_term::<3>(diag, dz, t, &rows),
                    _ => add_term_any(diag, dz, t, &rows),
                }
                for (j, tj) in terms[..k].iter().enumerate() {
                    add_pair(&mut a.pairs[k][j], &self.pair_idx[k][j], t, tj, &rows);
                }
            }
            start = end;
        }
        for j in 0..pd {
            for i in j + 1..pd {
                a.dd[j + i * pd] = a.dd[i + j * pd];
            }
        }
        &self.a
    }
}

/// The blocks Z_k' Z_j (k > j) that rows of non-zero prior weight reach, and each row's block.
fn pair_pattern(tk: &ReMat, tj: &ReMat, prior: &[f64]) -> (SparseBlocks, Vec<u32>) {
    let (sk, sj) = (tk.shape(), tj.shape());
    let nk = sk.n_levels as u64;
    let (ck, cj) = (tk.codes(), tj.codes());
    let key = |r: usize| u64::from(cj[r].unsigned_abs()) * nk + u64::from(ck[r].unsigned_abs());
    let mut keys: Vec<u64> = (0..prior.len())
        .filter(|&r| prior[r] != 0.0)
        .map(key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let bs = sk.q * sj.q;
    let triplets: Vec<(u32, u32)> = keys
        .iter()
        .map(|&k| ((k % nk) as u32, (k / nk) as u32))
        .collect();
    let blocks = SparseBlocks::from_triplets(
        sk.n_levels,
        sj.n_levels,
        sk.q,
        sj.q,
        &triplets,
        &vec![0.0; keys.len() * bs],
    );
    let idx = (0..prior.len())
        .map(|r| {
            if prior[r] == 0.0 {
                u32::MAX
            } else {
                keys.binary_search(&key(r)).map_or(u32::MAX, |i| i as u32)
            }
        })
        .collect();
    (blocks, idx)
}

/// A block of rows: the weights of rows start..end and D row-major from `start`.
struct Rows<'a> {
    start: usize,
    end: usize,
    w: &'a [f64],
    d: &'a [f64],
    pd: usize,
}

impl Rows<'_> {
    #[inline]
    fn d(&self, r: usize) -> &[f64] {
        let i = r - self.start;
        &self.d[i * self.pd..(i + 1) * self.pd]
    }
}

/// D'WD, lower triangle.
fn add_dd(dd: &mut [f64], rows: &Rows) {
    let pd = rows.pd;
    for r in rows.start..rows.end {
        let w = rows.w[r];
        if w == 0.0 {
            continue;
        }
        let d = rows.d(r);
        for j in 0..pd {
            let wdj = w * d[j];
            let col = &mut dd[j * pd..(j + 1) * pd];
            for i in j..pd {
                col[i] += d[i] * wdj;
            }
        }
    }
}

/// Z_k'WZ_k and D'WZ_k for a term of Q columns.
fn add_term<const Q: usize>(diag: &mut [f64], dz: &mut [f64], t: &ReMat, rows: &Rows) {
    let pd = rows.pd;
    let n = t.n_rows();
    let (codes, zall) = (t.codes(), t.z());
    for r in rows.start..rows.end {
        let w = rows.w[r];
        if w == 0.0 {
            continue;
        }
        let l = codes[r].unsigned_abs() as usize;
        let z: [f64; Q] = std::array::from_fn(|a| zall[r + a * n]);
        let wz: [f64; Q] = std::array::from_fn(|b| w * z[b]);
        let blk = &mut diag[l * Q * Q..(l + 1) * Q * Q];
        for b in 0..Q {
            for a in 0..Q {
                blk[a + b * Q] += z[a] * wz[b];
            }
        }
        let d = rows.d(r);
        let dzl = &mut dz[l * Q * pd..(l + 1) * Q * pd];
        for (b, col) in dzl.chunks_exact_mut(pd).enumerate() {
            for (c, &di) in col.iter_mut().zip(d) {
                *c += di * wz[b];
            }
        }
    }
}

/// `add_term` for any q.
fn add_term_any(diag: &mut [f64], dz: &mut [f64], t: &ReMat, rows: &Rows) {
    let pd = rows.pd;
    let (n, q) = (t.n_rows(), t.shape().q);
    let (codes, zall) = (t.codes(), t.z());
    let mut wz = vec![0.0; q];
    for r in rows.start..rows.end {
        let w = rows.w[r];
        if w == 0.0 {
            continue;
        }
        let l = codes[r].unsigned_abs() as usize;
        for (a, x) in wz.iter_mut().enumerate() {
            *x = w * zall[r + a * n];
        }
        let blk = &mut diag[l * q * q..(l + 1) * q * q];
        for b in 0..q {
            for a in 0..q {
                blk[a + b * q] += zall[r + a * n] * wz[b];
            }
        }
        let d = rows.d(r);
        let dzl = &mut dz[l * q * pd..(l + 1) * q * pd];
        for (b, col) in dzl.chunks_exact_mut(pd).enumerate() {
            for (c, &di) in col.iter_mut().zip(d) {
                *c += di * wz[b];
            }
        }
    }
}

/// Z_k'WZ_j (k > j) into the blocks each row's index names.
fn add_pair(blocks: &mut SparseBlocks, idx: &[u32], tk: &ReMat, tj: &ReMat, rows: &Rows) {
    let (qk, qj) = (blocks.qr, blocks.qc);
    let bs = qk * qj;
    let n = tk.n_rows();
    let (zk, zj) = (tk.z(), tj.z());
    for r in rows.start..rows.end {
        let w = rows.w[r];
        if w == 0.0 || idx[r] == u32::MAX {
            continue;
        }
        let blk = &mut blocks.data[idx[r] as usize * bs..(idx[r] as usize + 1) * bs];
        if bs == 1 {
            blk[0] += zk[r] * (w * zj[r]);
            continue;
        }
        for b in 0..qj {
            let wzb = w * zj[r + b * n];
            for a in 0..qk {
                blk[a + b * qk] += zk[r + a * n] * wzb;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Exec;
    use crate::model::crossprod::accumulate;
    use crate::model::source::MemorySource;

    /// A equals the LMM accumulator's for two crossed terms (one of two columns) and weights.
    #[test]
    fn fill_matches_the_accumulator() {
        let n = 300;
        let y: Vec<f64> = (0..n).map(|r| (r as f64 * 0.7).sin()).collect();
        let mut x = vec![1.0; n];
        x.extend((0..n).map(|r| (r as f64 * 0.13).cos()));
        let c1: Vec<i32> = (0..n).map(|r| (r % 17) as i32).collect();
        let c2: Vec<i32> = (0..n).map(|r| ((r * 7) % 5) as i32).collect();
        let mut z1 = vec![1.0; n];
        z1.extend((0..n).map(|r| (r as f64 * 0.31).sin()));
        let z2 = vec![1.0; n];
        let s1 = ReTermShape {
            n_levels: 17,
            q: 2,
            diagonal: false,
        };
        let s2 = ReTermShape {
            n_levels: 5,
            q: 1,
            diagonal: false,
        };
        let terms = vec![
            ReMat::new(0, s1, &c1, &z1).expect("term"),
            ReMat::new(1, s2, &c2, &z2).expect("term"),
        ];
        let w: Vec<f64> = (0..n).map(|r| 0.5 + (r % 3) as f64).collect();
        let source = MemorySource::new(&y, &x, 2, terms.clone(), Some(&w), None).expect("source");
        let want = accumulate(&source, &Exec::serial())
            .expect("accumulate")
            .finish();
        let prior = vec![1.0; n];
        let mut wc = WeightedCross::new(&terms, &prior, 3).expect("pattern");
        let got = wc.fill(&terms, &w, &[&x[..n], &x[n..], &y]);
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(u, v)| (u - v).abs() <= 1e-12 * (1.0 + v.abs()))
        };
        assert!(close(&got.dd, &want.dd));
        for k in 0..2 {
            assert!(close(&got.diag[k], &want.diag[k]), "diag {k}");
            assert!(close(&got.dz[k], &want.dz[k]), "dz {k}");
        }
        let (g, h) = (&got.pairs[1][0], &want.pairs[1][0]);
        assert_eq!(g.col_ptr, h.col_ptr);
        assert_eq!(g.row_idx, h.row_idx);
        assert!(close(&g.data, &h.data));
    }
}
