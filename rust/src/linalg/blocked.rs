//! The blocked Cholesky factor L(theta) of
//!
//! ```text
//!   [ Lambda' Z'WZ Lambda + I   Lambda' Z'WD ]
//!   [ D'WZ Lambda               D'WD         ]   = L L',    D = [X y]
//! ```
//!
//! for structures that no fill-in makes dense: one term, or nested terms with the finer term
//! first (Bates et al. 2015, eq. 18, in the blocked form of MixedModels.jl's `updateL!`;
//! lme4 factors the same matrix with CHOLMOD). Block row and column k < K belong to
//! random-effects term k, block K to D. The factor is computed left-looking, one block column at
//! a time: initialise from the scaled cross-products (`scale.rs`), subtract the products of the
//! blocks to the left, factor the diagonal block, solve the blocks below.
//!
//! The block kinds are fixed by the structure and known statically:
//! - L[j][j] (a term's own block) is block diagonal, one q x q block per level (`BlockDiag`);
//! - L[i][j] (i > j, two terms) is sparse (`SparseBlocks`), with A's pattern plus the fill-in
//!   of the products to its left, found in the symbolic step;
//! - the D row L[K][j] and the D block L[K][K] are dense.
//!
//! The symbolic step (`BlockedCholesky::new`) declines a structure where fill-in would reach a
//! diagonal block (crossed factors): those are factored in the supernodal form, with a
//! fill-reducing ordering, as lme4 does with CHOLMOD (`factor::LFactor` chooses).
//!
//! `ldL2` is log det of the random-effects part squared, `ldRX2` that of the X part, and
//! `pwrss` the square of the last diagonal element of L (the penalised weighted residual sum
//! of squares).

use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltError, LltParams,
};
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::linalg::blocks::{BlockDiag, SparseBlocks};
use crate::linalg::scale::{scale_block, scale_dz_column, scale_inflate_block};
use crate::linalg::small::{
    chol_small, right_solve_lt, solve_l_small, solve_lt_small, sub_product,
};
use crate::model::crossprod::CrossProducts;
use crate::model::remat::ReTermShape;

/// A dense block with at most this many rows and columns is handled by the plain loops of
/// `small.rs`, without faer's dispatch and scratch allocation.
const SMALL: usize = 16;

/// Dense operations below this size run sequentially; above it, on the threads of the handle.
const PAR_THRESHOLD: usize = 192;

/// The blocked factor: its block structure, the scatter maps from A into it, and its values.
#[derive(Clone, Debug)]
pub struct BlockedCholesky {
    shapes: Vec<ReTermShape>,
    pd: usize,
    /// L[j][j] for each term j.
    diag: Vec<BlockDiag>,
    /// `below[i][j]` = L[i][j] for terms j < i.
    below: Vec<Vec<SparseBlocks>>,
    /// `a_to_l[i][j][k]`: where block k of A[i][j] lies in `below[i][j]`.
    a_to_l: Vec<Vec<Vec<usize>>>,
    /// The D row: `d_row[j]` = L[K][j], (p + 1) x size_j.
    d_row: Vec<Mat<f64>>,
    /// The D block L[K][K], (p + 1) x (p + 1), lower triangular.
    d: Mat<f64>,
    /// Parallelism of the dense products and factor of a large D block.
    par: Par,
}

impl BlockedCholesky {
    /// The symbolic step: every block's pattern from A's. `None` when fill-in would make a
    /// term's own block of L dense (crossed factors, or nested ones coarse first).
    pub fn new(a: &CrossProducts, exec: &Exec) -> Option<Self> {
        let shapes = a.shapes.clone();
        let nt = shapes.len();
        let pd = a.p + 1;
        let mut below: Vec<Vec<SparseBlocks>> = Vec::with_capacity(nt);
        let mut a_to_l: Vec<Vec<Vec<usize>>> = Vec::with_capacity(nt);
        for i in 0..nt {
            let mut row: Vec<SparseBlocks> = Vec::with_capacity(i);
            let mut maps = Vec::with_capacity(i);
            for (j, row_j) in below.iter().enumerate() {
                // L[i][j]: A[i][j]'s pattern and the fill-in of L[i][k] L[j][k]', k < j.
                let mut extra = Vec::new();
                for (lik, ljk) in row.iter().zip(row_j) {
                    extra.extend(product_pattern(lik, ljk));
                }
                let s = &a.pairs[i][j];
                let pattern = s.zeroed_pattern().with_extra_pattern(&extra);
                let map = (0..s.n_col_levels)
                    .flat_map(|c| (s.col_ptr[c]..s.col_ptr[c + 1]).map(move |k| (k, c)))
                    .map(|(k, c)| {
                        pattern
                            .find(s.row_idx[k] as usize, c)
                            .expect("A's pattern is inside L's")
                    })
                    .collect();
                maps.push(map);
                row.push(pattern);
            }
            // L[i][i] stays block diagonal when each block column to its left holds at most
            // one block (then L[i][k] L[i][k]' touches only the diagonal blocks).
            let fills_in = row
                .iter()
                .any(|s| (0..s.n_col_levels).any(|c| s.col_ptr[c + 1] - s.col_ptr[c] > 1));
            if fills_in {
                return None;
            }
            below.push(row);
            a_to_l.push(maps);
        }
        let threads = exec.threads();
        Some(BlockedCholesky {
            diag: shapes
                .iter()
                .map(|s| BlockDiag::zeros(s.n_levels, s.q))
                .collect(),
            d_row: shapes.iter().map(|s| Mat::zeros(pd, s.size())).collect(),
            d: Mat::zeros(pd, pd),
            shapes,
            pd,
            below,
            a_to_l,
            par: if threads > 1 {
                Par::rayon(threads)
            } else {
                Par::Seq
            },
        })
    }

    /// L[j][j] for each term j.
    pub fn diagonal_blocks(&self) -> &[BlockDiag] {
        &self.diag
    }

    /// L[i][j] for terms j < i.
    pub fn below_diagonal(&self, i: usize, j: usize) -> &SparseBlocks {
        &self.below[i][j]
    }

    /// The numeric step: L(theta) from A and the per-term lambda templates.
    pub fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        let nt = self.shapes.len();
        for j in 0..nt {
            self.initialise_column(a, lambdas, j);
            for k in 0..j {
                self.subtract_left(j, k)?;
            }
            self.factor_diagonal(j)?;
            let dj = &self.diag[j];
            for row_i in &mut self.below[j + 1..] {
                right_solve_sparse(&mut row_i[j], dj);
            }
            right_solve_dense(&mut self.d_row[j], dj);
        }
        // The D block: D'WD - sum_k L[K][k] L[K][k]', then its factor.
        let pd = self.pd;
        for c in 0..pd {
            self.d
                .col_as_slice_mut(c)
                .copy_from_slice(&a.dd[c * pd..(c + 1) * pd]);
        }
        for k in 0..nt {
            self.sub_d_product(k);
        }
        dense_cholesky(&mut self.d, par_for(self.par, pd)).map_err(|pivot| {
            LmmError::NotPositiveDefinite {
                what: "the fixed-effects block of L".into(),
                pivot,
            }
        })
    }

    /// Block column j < K of the scaled, inflated cross-product: L[j][j], L[i][j] (i > j) and
    /// L[K][j].
    // Index loops mirror the block formulas (L[i][j] from A[i][j], lambda_i and lambda_j).
    #[allow(clippy::needless_range_loop)]
    fn initialise_column(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>], j: usize) {
        let nt = self.shapes.len();
        let q = self.shapes[j].q;
        let lam = &lambdas[j];
        let own = &a.diag[j];
        let dj = &mut self.diag[j];
        for lev in 0..dj.n {
            scale_inflate_block(
                &own[lev * q * q..(lev + 1) * q * q],
                lam,
                q,
                dj.block_mut(lev),
            );
        }
        for i in j + 1..nt {
            let qi = self.shapes[i].q;
            let bs = qi * q;
            let src = &a.pairs[i][j];
            let t = &mut self.below[i][j];
            t.data.fill(0.0);
            for (k, &pos) in self.a_to_l[i][j].iter().enumerate() {
                scale_block(
                    &src.data[k * bs..(k + 1) * bs],
                    &lambdas[i],
                    qi,
                    lam,
                    q,
                    &mut t.data[pos * bs..(pos + 1) * bs],
                );
            }
        }
        // D'WZ_j Lambda_j: each level's (p + 1) x q slab times lambda_j.
        let pd = self.pd;
        let m = &mut self.d_row[j];
        for (lev, slab) in a.dz[j].chunks_exact(pd * q).enumerate() {
            for b in 0..q {
                scale_dz_column(slab, lam, q, b, m.col_as_slice_mut(lev * q + b));
            }
        }
    }

    /// Block column j < K minus the products of block column k < j: L[i][j] -= L[i][k] L[j][k]'
    /// for i = j (block diagonal), j < i < K (sparse) and i = K (the dense D row).
    fn subtract_left(&mut self, j: usize, k: usize) -> Result<()> {
        let (upper, lower) = self.below.split_at_mut(j + 1);
        let ljk = &upper[j][k];
        sub_own_product(&mut self.diag[j], ljk);
        for (off, row_i) in lower.iter_mut().enumerate() {
            let (left, target) = row_i.split_at_mut(j);
            sub_sparse_product(&mut target[0], &left[k], ljk)
                .map_err(|e| internal(&format!("L[{}][{j}]: {e}", j + 1 + off)))?;
        }
        let (d_left, d_target) = self.d_row.split_at_mut(j);
        sub_dense_sparse(&mut d_target[0], &d_left[k], ljk);
        Ok(())
    }

    /// L[K][K] -= L[K][k] L[K][k]' (lower triangle).
    fn sub_d_product(&mut self, k: usize) {
        let (t, pm) = (&mut self.d, &self.d_row[k]);
        if t.nrows() <= SMALL {
            sub_product(t, pm, pm, true);
            return;
        }
        let par = par_for(self.par, t.nrows().max(pm.ncols()));
        triangular::matmul(
            t.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            pm.as_ref(),
            BlockStructure::Rectangular,
            pm.as_ref().transpose(),
            BlockStructure::Rectangular,
            -1.0,
            par,
        );
    }

    fn factor_diagonal(&mut self, j: usize) -> Result<()> {
        let d = &mut self.diag[j];
        let q = d.q;
        for lev in 0..d.n {
            chol_small(d.block_mut(lev), q).map_err(|piv| LmmError::NotPositiveDefinite {
                what: format!("block {j} of L"),
                pivot: lev * q + piv,
            })?;
        }
        Ok(())
    }

    /// log det(L_Z)^2 over the random-effects blocks.
    pub fn ld_l2(&self) -> f64 {
        let mut s = 0.0;
        for d in &self.diag {
            for lev in 0..d.n {
                let b = d.block(lev);
                for a in 0..d.q {
                    s += b[a + a * d.q].ln();
                }
            }
        }
        2.0 * s
    }

    /// The lower-triangular (p + 1) x (p + 1) D block of L.
    pub fn d_block(&self) -> MatRef<'_, f64> {
        self.d.as_ref()
    }

    /// For each term, c_u - L_XZ' beta from the D row of blocks.
    pub fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        let p = self.pd - 1;
        self.d_row
            .iter()
            .map(|m| {
                (0..m.ncols())
                    .map(|c| {
                        let col = m.col_as_slice(c);
                        col[p] - (0..p).map(|j| col[j] * beta[j]).sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }

    /// x <- L_Z^{-1} x for a blocked vector of random effects (one Vec per term).
    pub fn solve_lz(&self, x: &mut [Vec<f64>]) {
        for (j, d) in self.diag.iter().enumerate() {
            let (head, tail) = x.split_at_mut(j + 1);
            let xj = &mut head[j];
            for lev in 0..d.n {
                solve_l_small(d.block(lev), d.q, &mut xj[lev * d.q..(lev + 1) * d.q]);
            }
            for (off, xi) in tail.iter_mut().enumerate() {
                mul_sub(&self.below[j + 1 + off][j], xj, xi);
            }
        }
    }

    /// x <- L_Z^{-T} x for a blocked vector of random effects.
    pub fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        for (j, d) in self.diag.iter().enumerate().rev() {
            let (head, tail) = x.split_at_mut(j + 1);
            let xj = &mut head[j];
            for (off, xi) in tail.iter().enumerate() {
                mul_t_sub(&self.below[j + 1 + off][j], xi, xj);
            }
            for lev in 0..d.n {
                solve_lt_small(d.block(lev), d.q, &mut xj[lev * d.q..(lev + 1) * d.q]);
            }
        }
    }
}

/// `par` for a dense operation of size n, sequential below `PAR_THRESHOLD`.
fn par_for(par: Par, n: usize) -> Par {
    if n >= PAR_THRESHOLD {
        par
    } else {
        Par::Seq
    }
}

/// (row, col) keys of the blocks of P Q' for sparse P (rows of term i) and Q (rows of term j)
/// sharing their block columns.
fn product_pattern(p: &SparseBlocks, q: &SparseBlocks) -> Vec<(u32, u32)> {
    let mut keys = Vec::new();
    for c in 0..p.n_col_levels {
        for kp in p.col_ptr[c]..p.col_ptr[c + 1] {
            for kq in q.col_ptr[c]..q.col_ptr[c + 1] {
                keys.push((p.row_idx[kp], q.row_idx[kq]));
            }
        }
    }
    keys
}

/// buf (qi x qj) = pb qb' for a qi x qk block pb and a qj x qk block qb.
fn block_product(pb: &[f64], qi: usize, qb: &[f64], qj: usize, qk: usize, buf: &mut [f64]) {
    for b in 0..qj {
        for a in 0..qi {
            let mut s = 0.0;
            for e in 0..qk {
                s += pb[a + e * qi] * qb[b + e * qj];
            }
            buf[a + b * qi] = s;
        }
    }
}

/// L[j][j] -= L[j][k] L[j][k]': with at most one block per block column of L[j][k] (the
/// symbolic step's condition), each block column updates one diagonal block.
fn sub_own_product(target: &mut BlockDiag, p: &SparseBlocks) {
    let (qi, qk) = (p.qr, p.qc);
    let bs = qi * qk;
    let mut buf = vec![0.0; qi * qi];
    for c in 0..p.n_col_levels {
        debug_assert!(p.col_ptr[c + 1] - p.col_ptr[c] <= 1);
        for kp in p.col_ptr[c]..p.col_ptr[c + 1] {
            let r = p.row_idx[kp] as usize;
            let pb = &p.data[kp * bs..(kp + 1) * bs];
            block_product(pb, qi, pb, qi, qk, &mut buf);
            target
                .block_mut(r)
                .iter_mut()
                .zip(&buf)
                .for_each(|(v, x)| *v -= x);
        }
    }
}

/// target -= P Q' for sparse P = L[i][k] and Q = L[j][k], into the sparse L[i][j].
fn sub_sparse_product(
    target: &mut SparseBlocks,
    p: &SparseBlocks,
    q: &SparseBlocks,
) -> std::result::Result<(), &'static str> {
    let (qi, qk, qj) = (p.qr, p.qc, q.qr);
    let mut buf = vec![0.0; qi * qj];
    for c in 0..p.n_col_levels {
        for kp in p.col_ptr[c]..p.col_ptr[c + 1] {
            let r1 = p.row_idx[kp] as usize;
            let pb = &p.data[kp * qi * qk..(kp + 1) * qi * qk];
            for kq in q.col_ptr[c]..q.col_ptr[c + 1] {
                let r2 = q.row_idx[kq] as usize;
                let qb = &q.data[kq * qj * qk..(kq + 1) * qj * qk];
                block_product(pb, qi, qb, qj, qk, &mut buf);
                let pos = target
                    .find(r1, r2)
                    .ok_or("fill-in outside the symbolic pattern")?;
                let tb = &mut target.data[pos * qi * qj..(pos + 1) * qi * qj];
                tb.iter_mut().zip(&buf).for_each(|(v, x)| *v -= x);
            }
        }
    }
    Ok(())
}

/// target -= P Q' for the dense D-row blocks target = L[K][j], P = L[K][k] and the sparse
/// Q = L[j][k].
fn sub_dense_sparse(target: &mut Mat<f64>, pm: &Mat<f64>, q: &SparseBlocks) {
    let (qk, qj) = (q.qc, q.qr);
    for c in 0..q.n_col_levels {
        for kq in q.col_ptr[c]..q.col_ptr[c + 1] {
            let r2 = q.row_idx[kq] as usize;
            let qb = &q.data[kq * qj * qk..(kq + 1) * qj * qk];
            for b in 0..qj {
                for e in 0..qk {
                    let coef = qb[b + e * qj];
                    if coef == 0.0 {
                        continue;
                    }
                    let src = pm.col_as_slice(c * qk + e);
                    let dst = target.col_as_slice_mut(r2 * qj + b);
                    for (v, x) in dst.iter_mut().zip(src) {
                        *v -= coef * x;
                    }
                }
            }
        }
    }
}

/// target <- target L^{-T} for a sparse L[i][j] and the block-diagonal L[j][j].
fn right_solve_sparse(t: &mut SparseBlocks, d: &BlockDiag) {
    let (qi, qj) = (t.qr, t.qc);
    for c in 0..t.n_col_levels {
        let lb = d.block(c);
        for k in t.col_ptr[c]..t.col_ptr[c + 1] {
            right_solve_lt(&mut t.data[k * qi * qj..(k + 1) * qi * qj], qi, lb, qj);
        }
    }
}

/// target <- target L^{-T} for a dense D-row block L[K][j] and the block-diagonal L[j][j],
/// column by column (each a contiguous slice).
fn right_solve_dense(t: &mut Mat<f64>, d: &BlockDiag) {
    let q = d.q;
    for c in 0..d.n {
        let lb = d.block(c);
        for j in 0..q {
            for k in 0..j {
                let coef = lb[j + k * q];
                if coef != 0.0 {
                    let (src, dst) = two_cols(t, c * q + k, c * q + j);
                    for (v, x) in dst.iter_mut().zip(src) {
                        *v -= coef * x;
                    }
                }
            }
            let inv = 1.0 / lb[j + j * q];
            t.col_as_slice_mut(c * q + j)
                .iter_mut()
                .for_each(|v| *v *= inv);
        }
    }
}

/// Column `src` (read) and column `dst` (written) of a dense matrix, src < dst.
fn two_cols(m: &mut Mat<f64>, src: usize, dst: usize) -> (&[f64], &mut [f64]) {
    debug_assert!(src < dst);
    let (left, right) = m.as_mut().split_at_col_mut(dst);
    let src = left
        .col(src)
        .try_as_col_major()
        .expect("columns are contiguous");
    let dst = right
        .col_mut(0)
        .try_as_col_major_mut()
        .expect("columns are contiguous");
    (src.as_slice(), dst.as_slice_mut())
}

/// y -= B x for a sparse B.
fn mul_sub(s: &SparseBlocks, x: &[f64], y: &mut [f64]) {
    let (qr, qc) = (s.qr, s.qc);
    for (r, c, blk) in s.blocks() {
        for e in 0..qc {
            for a in 0..qr {
                y[r * qr + a] -= blk[a + e * qr] * x[c * qc + e];
            }
        }
    }
}

/// y -= B' x for a sparse B.
fn mul_t_sub(s: &SparseBlocks, x: &[f64], y: &mut [f64]) {
    let (qr, qc) = (s.qr, s.qc);
    for (r, c, blk) in s.blocks() {
        for e in 0..qc {
            let acc: f64 = (0..qr).map(|a| blk[a + e * qr] * x[r * qr + a]).sum();
            y[c * qc + e] -= acc;
        }
    }
}

fn internal(msg: &str) -> LmmError {
    LmmError::Shape(format!("internal error in the blocked Cholesky: {msg}"))
}

/// In-place lower Cholesky of the dense symmetric D block (lower triangle used); the strict
/// upper triangle is zeroed so the matrix is L afterwards. Returns the failing pivot.
fn dense_cholesky(m: &mut Mat<f64>, par: Par) -> std::result::Result<(), usize> {
    let n = m.nrows();
    if n <= SMALL {
        // The plain loops of `small.rs` on a contiguous copy.
        let mut buf = [0.0f64; SMALL * SMALL];
        let a = &mut buf[..n * n];
        for (j, col) in a.chunks_exact_mut(n).enumerate() {
            col.copy_from_slice(m.col_as_slice(j));
        }
        chol_small(a, n)?;
        for (j, col) in a.chunks_exact(n).enumerate() {
            m.col_as_slice_mut(j).copy_from_slice(col);
        }
        return Ok(());
    }
    let mut mem = faer::dyn_stack::MemBuffer::new(cholesky_in_place_scratch::<f64>(
        n,
        par,
        faer::Spec::default(),
    ));
    let stack = faer::dyn_stack::MemStack::new(&mut mem);
    let params: faer::Spec<LltParams, f64> = faer::Spec::default();
    cholesky_in_place(
        m.as_mut(),
        faer::linalg::cholesky::llt::factor::LltRegularization::default(),
        par,
        stack,
        params,
    )
    .map_err(|e| match e {
        LltError::NonPositivePivot { index } => index,
    })?;
    for j in 1..n {
        for i in 0..j {
            m[(i, j)] = 0.0;
        }
    }
    Ok(())
}
