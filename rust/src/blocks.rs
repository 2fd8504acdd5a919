//! Block types of the blocked Cholesky factor and the small dense kernels they need.
//!
//! MixedModels.jl keeps each block of L in the cheapest type that can hold it: a diagonal or
//! block-diagonal matrix for a term's own block when no fill-in reaches it, a sparse matrix of
//! q_i x q_j blocks for the blocks below the first term, dense matrices elsewhere. The same three
//! types are here. Small q x q blocks are column-major slices of f64.

use faer::Mat;

/// `n` square blocks of size q x q on a diagonal, each column-major.
#[derive(Clone, Debug)]
pub struct BlockDiag {
    pub q: usize,
    pub n: usize,
    pub data: Vec<f64>,
}

impl BlockDiag {
    pub fn zeros(n: usize, q: usize) -> Self {
        BlockDiag {
            q,
            n,
            data: vec![0.0; n * q * q],
        }
    }
    pub fn block(&self, l: usize) -> &[f64] {
        let qq = self.q * self.q;
        &self.data[l * qq..(l + 1) * qq]
    }
    pub fn block_mut(&mut self, l: usize) -> &mut [f64] {
        let qq = self.q * self.q;
        &mut self.data[l * qq..(l + 1) * qq]
    }
}

/// A sparse matrix of qr x qc blocks, compressed by block column: the blocks of block column c
/// are `col_ptr[c]..col_ptr[c + 1]`, their block rows `row_idx`, sorted within each column.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseBlocks {
    pub n_row_levels: usize,
    pub n_col_levels: usize,
    pub qr: usize,
    pub qc: usize,
    pub col_ptr: Vec<usize>,
    pub row_idx: Vec<u32>,
    pub data: Vec<f64>,
}

impl SparseBlocks {
    /// Builds from (row level, column level) keys with their blocks, in any order.
    pub fn from_triplets(
        n_row_levels: usize,
        n_col_levels: usize,
        qr: usize,
        qc: usize,
        keys: &[(u32, u32)],
        values: &[f64],
    ) -> Self {
        let bs = qr * qc;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by_key(|&t| (keys[t].1, keys[t].0));
        let mut col_ptr = vec![0usize; n_col_levels + 1];
        for &(_, c) in keys {
            col_ptr[c as usize + 1] += 1;
        }
        for c in 0..n_col_levels {
            col_ptr[c + 1] += col_ptr[c];
        }
        let row_idx = order.iter().map(|&t| keys[t].0).collect();
        let mut data = Vec::with_capacity(values.len());
        for &t in &order {
            data.extend_from_slice(&values[t * bs..(t + 1) * bs]);
        }
        SparseBlocks {
            n_row_levels,
            n_col_levels,
            qr,
            qc,
            col_ptr,
            row_idx,
            data,
        }
    }

    /// An empty pattern (no blocks) of the given shape.
    pub fn empty(n_row_levels: usize, n_col_levels: usize, qr: usize, qc: usize) -> Self {
        Self::from_triplets(n_row_levels, n_col_levels, qr, qc, &[], &[])
    }

    /// The same pattern with every value zero.
    pub fn zeroed_pattern(&self) -> Self {
        let mut s = self.clone();
        s.data.iter_mut().for_each(|v| *v = 0.0);
        s
    }

    pub fn nnz_blocks(&self) -> usize {
        self.row_idx.len()
    }

    pub fn block_size(&self) -> usize {
        self.qr * self.qc
    }

    /// Index of block (r, c) in the block list, if present.
    pub fn find(&self, r: usize, c: usize) -> Option<usize> {
        let lo = self.col_ptr[c];
        let hi = self.col_ptr[c + 1];
        self.row_idx[lo..hi]
            .binary_search(&(r as u32))
            .ok()
            .map(|k| lo + k)
    }

    /// Every stored block as (block row, block column, column-major qr x qc values), in
    /// column order.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize, &[f64])> + '_ {
        let bs = self.block_size();
        (0..self.n_col_levels).flat_map(move |c| {
            (self.col_ptr[c]..self.col_ptr[c + 1]).map(move |k| {
                (
                    self.row_idx[k] as usize,
                    c,
                    &self.data[k * bs..(k + 1) * bs],
                )
            })
        })
    }

    /// The union of this pattern with extra (row, col) keys; values of existing blocks kept.
    pub fn with_extra_pattern(&self, extra: &[(u32, u32)]) -> Self {
        if extra.is_empty() {
            return self.clone();
        }
        let bs = self.block_size();
        let mut keys = Vec::with_capacity(self.nnz_blocks() + extra.len());
        let mut values = Vec::with_capacity((self.nnz_blocks() + extra.len()) * bs);
        for (r, c, blk) in self.blocks() {
            keys.push((r as u32, c as u32));
            values.extend_from_slice(blk);
        }
        let mut extra: Vec<(u32, u32)> = extra.to_vec();
        extra.sort_unstable();
        extra.dedup();
        for &(r, c) in &extra {
            if self.find(r as usize, c as usize).is_none() {
                keys.push((r, c));
                values.extend(std::iter::repeat_n(0.0, bs));
            }
        }
        Self::from_triplets(
            self.n_row_levels,
            self.n_col_levels,
            self.qr,
            self.qc,
            &keys,
            &values,
        )
    }

    /// Dense copy (for tests and small problems).
    pub fn to_dense(&self) -> Mat<f64> {
        let mut m = Mat::<f64>::zeros(self.n_row_levels * self.qr, self.n_col_levels * self.qc);
        for (r, c, blk) in self.blocks() {
            for b in 0..self.qc {
                for a in 0..self.qr {
                    m[(r * self.qr + a, c * self.qc + b)] = blk[a + b * self.qr];
                }
            }
        }
        m
    }
}

/// A block of the Cholesky factor.
#[derive(Clone, Debug)]
pub enum Block {
    Diag(BlockDiag),
    Sparse(SparseBlocks),
    Dense(Mat<f64>),
}

impl Block {
    pub fn is_dense(&self) -> bool {
        matches!(self, Block::Dense(_))
    }
}

/// In-place Cholesky of a small q x q column-major block (lower triangle used and written,
/// upper triangle zeroed). Returns the failing pivot on a non-positive one.
pub fn chol_small(a: &mut [f64], q: usize) -> Result<(), usize> {
    for j in 0..q {
        let mut d = a[j + j * q];
        for k in 0..j {
            d -= a[j + k * q] * a[j + k * q];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        a[j + j * q] = d;
        for i in j + 1..q {
            let mut s = a[i + j * q];
            for k in 0..j {
                s -= a[i + k * q] * a[j + k * q];
            }
            a[i + j * q] = s / d;
        }
        for i in 0..j {
            a[i + j * q] = 0.0;
        }
    }
    Ok(())
}

/// b <- b L^{-T} for an r x q column-major block b and lower-triangular q x q L.
pub fn right_solve_lt(b: &mut [f64], r: usize, l: &[f64], q: usize) {
    // Row by row: x L' = b_row  <=>  L x' = b_row', forward substitution.
    for i in 0..r {
        for j in 0..q {
            let mut s = b[i + j * r];
            for k in 0..j {
                s -= b[i + k * r] * l[j + k * q];
            }
            b[i + j * r] = s / l[j + j * q];
        }
    }
}

/// x <- L^{-1} x for lower-triangular q x q L.
pub fn solve_l_small(l: &[f64], q: usize, x: &mut [f64]) {
    for j in 0..q {
        let mut s = x[j];
        for k in 0..j {
            s -= l[j + k * q] * x[k];
        }
        x[j] = s / l[j + j * q];
    }
}

/// x <- L^{-T} x for lower-triangular q x q L.
pub fn solve_lt_small(l: &[f64], q: usize, x: &mut [f64]) {
    for j in (0..q).rev() {
        let mut s = x[j];
        for k in j + 1..q {
            s -= l[k + j * q] * x[k];
        }
        x[j] = s / l[j + j * q];
    }
}

/// out (qa x qb) = lambda_a' blk lambda_b, for a qa x qb block and lower-triangular templates.
pub fn scale_block(
    blk: &[f64],
    lambda_a: &[f64],
    qa: usize,
    lambda_b: &[f64],
    qb: usize,
    out: &mut [f64],
) {
    if qa == 1 && qb == 1 {
        out[0] = lambda_a[0] * (blk[0] * lambda_b[0]);
        return;
    }
    // tmp = blk lambda_b  (qa x qb); on the stack for the usual small blocks.
    let mut stack_buf = [0.0f64; 16];
    let mut heap_buf = Vec::new();
    let tmp: &mut [f64] = if qa * qb <= 16 {
        &mut stack_buf[..qa * qb]
    } else {
        heap_buf.resize(qa * qb, 0.0);
        &mut heap_buf
    };
    for j in 0..qb {
        for k in j..qb {
            let l = lambda_b[k + j * qb];
            if l != 0.0 {
                for i in 0..qa {
                    tmp[i + j * qa] += blk[i + k * qa] * l;
                }
            }
        }
    }
    // out = lambda_a' tmp
    for j in 0..qb {
        for i in 0..qa {
            let mut s = 0.0;
            for k in i..qa {
                s += lambda_a[k + i * qa] * tmp[k + j * qa];
            }
            out[i + j * qa] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cholesky_reconstructs() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        chol_small(&mut a, 2).unwrap();
        let l = a.clone();
        // L L' == original
        assert!((l[0] * l[0] - 4.0).abs() < 1e-14);
        assert!((l[1] * l[0] - 2.0).abs() < 1e-14);
        assert!((l[1] * l[1] + l[3] * l[3] - 3.0).abs() < 1e-14);
        assert_eq!(l[2], 0.0);
        assert!(chol_small(&mut [1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn sparse_blocks_round_trip() {
        let keys = [(2u32, 0u32), (0, 1), (1, 0)];
        let vals = [3.0, 1.0, 2.0];
        let s = SparseBlocks::from_triplets(3, 2, 1, 1, &keys, &vals);
        assert_eq!(s.col_ptr, vec![0, 2, 3]);
        assert_eq!(s.row_idx, vec![1, 2, 0]);
        assert_eq!(s.find(2, 0), Some(1));
        assert_eq!(s.find(0, 0), None);
        let d = s.to_dense();
        assert_eq!(d[(2, 0)], 3.0);
        assert_eq!(d[(0, 1)], 1.0);
    }

    #[test]
    fn scale_block_matches_dense_product() {
        let blk = [1.0, 2.0, 3.0, 4.0];
        let la = [1.0, 0.5, 0.0, 2.0];
        let lb = [3.0, -1.0, 0.0, 1.0];
        let mut out = [0.0; 4];
        scale_block(&blk, &la, 2, &lb, 2, &mut out);
        // la' * blk * lb computed by hand
        let t = |i: usize, j: usize| -> f64 {
            let mut s = 0.0;
            for k in 0..2 {
                for m in 0..2 {
                    s += la[k + i * 2] * blk[k + m * 2] * lb[m + j * 2];
                }
            }
            s
        };
        for j in 0..2 {
            for i in 0..2 {
                assert!((out[i + j * 2] - t(i, j)).abs() < 1e-14);
            }
        }
    }
}
