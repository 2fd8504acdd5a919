//! Block types of the cross-products and of the blocked Cholesky factor.
//!
//! MixedModels.jl keeps each block of L in the cheapest type that can hold it (its
//! `UniformBlockDiagonal` and `BlockedSparse`; lme4 keeps one CHOLMOD sparse factor). Here:
//! `BlockDiag`, n square q x q blocks on a diagonal (a term's own block of A, and of L when no
//! fill-in reaches it), and `SparseBlocks`, a sparse matrix of q_i x q_j blocks compressed by
//! block column (the blocks of A between two terms, and of L below the diagonal when nothing
//! fills them in). Each small block is a column-major slice of f64. Dense blocks (the rows of
//! D = [X y]) are faer matrices.

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
    #[must_use]
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
    #[must_use]
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
