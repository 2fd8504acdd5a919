//! The blocked Cholesky factor L(theta) of
//!
//! ```text
//!   [ Lambda' Z'WZ Lambda + I   Lambda' Z'WD ]
//!   [ D'WZ Lambda               D'WD         ]   = L L',    D = [X y]
//! ```
//!
//! (Bates et al. 2015, eq. 18, in the blocked form of MixedModels.jl's `updateL!`). Block row
//! and column k < K belong to random-effects term k, block K to D. The factor is computed
//! left-looking, one block column at a time: initialise from the scaled cross-products, subtract
//! the products of the blocks to the left, factor the diagonal block, solve the blocks below.
//!
//! Block types are chosen once, symbolically, from the sparsity pattern of A:
//! - L[0][0] is block diagonal; L[j][j] (j > 0) stays block diagonal when nothing fills it in
//!   (nested factors), otherwise it is dense (crossed factors);
//! - L[i][j] (i > j) is sparse when L[j][j] is block diagonal and every block to its left is
//!   sparse (its pattern is A's plus the fill-in), otherwise dense;
//! - the D row is dense.
//!
//! When fill-in would make a diagonal block dense (crossed factors), the factor is kept instead
//! as a supernodal sparse Cholesky with a fill-reducing ordering (`supernodal.rs`, as lme4 does
//! with CHOLMOD): on InstEval the dense 1128 x 1128 block's factor alone cost more than the whole
//! supernodal factor, and structures too large for a dense block fit. `BlockedCholesky` chooses
//! the form once, in its symbolic step (`FactorMethod`), and offers the same accessors for both;
//! nested and single-term structures keep the blocked form.
//!
//! `ldL2` is log det of the random-effects part squared, `ldRX2` that of the X part, and
//! `pwrss` the square of the last diagonal element of L (the penalised weighted residual sum
//! of squares).

use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltParams,
};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, Par};

use crate::blocks::{chol_small, scale_block, Block, BlockDiag, SparseBlocks};
use crate::crossprod::CrossProducts;
use crate::error::{LmmError, Result};
use crate::remat::ReTermShape;
use crate::supernodal::{KeptValues, SupernodalCholesky};

/// The largest supernodal factor (in values, 64 MB) of which a second copy is kept aside
/// (`BlockedCholesky::swap_values`).
pub const KEEP_MAX_VALUES: usize = 1 << 23;

/// Largest dense diagonal block (rows) the fill-in fallback may create: 20000^2 doubles = 3.2 GB.
pub const DENSE_LIMIT: usize = 20_000;

/// Dense blocks with at most this many rows (or, for products, rows and columns) are handled by
/// the plain loops of `small`, without faer's dispatch and scratch allocation.
const SMALL: usize = 16;

/// With `FactorMethod::Auto`, the supernodal form is used once the dense diagonal blocks that
/// fill-in would create hold this many columns in all. Measured on random crossings of two or
/// three factors (24 x 6 to 3000 x 1000 levels), the supernodal form was never slower.
pub const SUPERNODAL_MIN: usize = 1;

/// Dense operations below this size run sequentially; above it, on the rayon pool.
const PAR_THRESHOLD: usize = 192;

fn par_for(n: usize) -> Par {
    if n >= PAR_THRESHOLD {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// Which form the factor takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorMethod {
    /// Blocked, unless fill-in would create dense blocks (`SUPERNODAL_MIN` columns in all):
    /// nested and single-term structures stay blocked, crossed ones become supernodal.
    Auto,
    /// Always the blocked form (dense blocks where fill-in reaches; may be `TooLarge`).
    Blocked,
    /// Always the supernodal sparse form.
    Supernodal,
}

/// The factor L(theta) in one of its two forms.
#[derive(Clone, Debug)]
pub struct BlockedCholesky {
    form: Form,
}

#[derive(Clone, Debug)]
enum Form {
    Blocks(Blocks),
    Supernodal(Box<SupernodalCholesky>),
}

impl From<SupernodalCholesky> for BlockedCholesky {
    fn from(s: SupernodalCholesky) -> Self {
        BlockedCholesky {
            form: Form::Supernodal(Box::new(s)),
        }
    }
}

impl BlockedCholesky {
    /// The symbolic step, choosing the form automatically.
    pub fn new(a: &CrossProducts) -> Result<Self> {
        Self::with_method(a, FactorMethod::Auto)
    }

    /// The symbolic step in the given form.
    pub fn with_method(a: &CrossProducts, method: FactorMethod) -> Result<Self> {
        let form = match method {
            FactorMethod::Supernodal => Form::Supernodal(Box::new(SupernodalCholesky::new(
                a,
                &crate::exec::Exec::new(0),
            )?)),
            FactorMethod::Blocked => Form::Blocks(Blocks::new(a, usize::MAX)?.allocated()?),
            FactorMethod::Auto => {
                let blocks = Blocks::new(a, SUPERNODAL_MIN)?;
                if blocks.dense_diagonal_size() >= SUPERNODAL_MIN {
                    Form::Supernodal(Box::new(SupernodalCholesky::new(
                        a,
                        &crate::exec::Exec::new(0),
                    )?))
                } else {
                    Form::Blocks(blocks.allocated()?)
                }
            }
        };
        Ok(BlockedCholesky { form })
    }

    /// The form chosen.
    pub fn method(&self) -> FactorMethod {
        match self.form {
            Form::Blocks(_) => FactorMethod::Blocked,
            Form::Supernodal(_) => FactorMethod::Supernodal,
        }
    }

    /// The blocks of L (`l[i][j]`, j <= i) in the blocked form.
    pub fn blocks(&self) -> Option<&[Vec<Block>]> {
        match &self.form {
            Form::Blocks(b) => Some(&b.l),
            Form::Supernodal(_) => None,
        }
    }

    /// The supernodal form, if chosen.
    pub fn supernodal(&self) -> Option<&SupernodalCholesky> {
        match &self.form {
            Form::Blocks(_) => None,
            Form::Supernodal(s) => Some(s),
        }
    }

    /// Whether the numeric step uses the thread team (see `set_serial`).
    pub fn is_parallel(&self) -> bool {
        match &self.form {
            Form::Blocks(_) => false,
            Form::Supernodal(s) => s.is_parallel(),
        }
    }

    /// Run the numeric step on the calling thread only (`SupernodalCholesky::set_serial`); the
    /// blocked form always does.
    pub fn set_serial(&mut self, serial: bool) {
        if let Form::Supernodal(s) = &mut self.form {
            s.set_serial(serial);
        }
    }

    /// Exchanges the factor's values with `kept` (see `LmmProblem::keep_factor`), in the
    /// supernodal form with at most `KEEP_MAX_VALUES` values; false (and nothing done)
    /// otherwise. The blocked form is cheap to refactor; a very large factor is not copied.
    pub fn swap_values(&mut self, kept: &mut KeptValues) -> bool {
        match &mut self.form {
            Form::Supernodal(s) if s.n_values() <= KEEP_MAX_VALUES => {
                s.swap_values(kept);
                true
            }
            _ => false,
        }
    }

    /// The numeric step: L(theta) from A and the per-term lambda templates.
    pub fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        match &mut self.form {
            Form::Blocks(b) => b.update(a, lambdas),
            Form::Supernodal(s) => s.update(a, lambdas),
        }
    }

    /// log det(L_Z)^2 over the random-effects blocks.
    pub fn ld_l2(&self) -> f64 {
        match &self.form {
            Form::Blocks(b) => b.ld_l2(),
            Form::Supernodal(s) => s.ld_l2(),
        }
    }

    /// The lower-triangular (p + 1) x (p + 1) D block of L.
    pub fn d_block(&self) -> &Mat<f64> {
        match &self.form {
            Form::Blocks(b) => b.d_block(),
            Form::Supernodal(s) => s.d_block(),
        }
    }

    /// log det(R_X)^2: the first p diagonal elements of the D block.
    pub fn ld_rx2(&self) -> f64 {
        let m = self.d_block();
        2.0 * (0..m.nrows() - 1).map(|a| m[(a, a)].ln()).sum::<f64>()
    }

    /// The penalised weighted residual sum of squares.
    pub fn pwrss(&self) -> f64 {
        let m = self.d_block();
        let r = m[(m.nrows() - 1, m.nrows() - 1)];
        r * r
    }

    /// For each term, c_u - L_XZ' beta (the right-hand side of L_Z' u = ...), level-major.
    pub fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        match &self.form {
            Form::Blocks(b) => b.random_effects_rhs(beta),
            Form::Supernodal(s) => s.random_effects_rhs(beta),
        }
    }

    /// x <- L_Z^{-1} x for a blocked vector of random effects (one Vec per term).
    pub fn solve_lz(&self, x: &mut [Vec<f64>]) {
        match &self.form {
            Form::Blocks(b) => b.solve_lz(x),
            Form::Supernodal(s) => s.solve_lz(x),
        }
    }

    /// x <- L_Z^{-T} x for a blocked vector of random effects.
    pub fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        match &self.form {
            Form::Blocks(b) => b.solve_lzt(x),
            Form::Supernodal(s) => s.solve_lzt(x),
        }
    }
}

/// The blocked form: its block structure and the scatter maps from A into it.
#[derive(Clone, Debug)]
struct Blocks {
    shapes: Vec<ReTermShape>,
    pd: usize,
    /// `l[i][j]` for `j <= i`, `i` in `0..=K`.
    l: Vec<Vec<Block>>,
    /// For a sparse L[i][j] (i > j, both terms): position in L of each block of A[i][j].
    a_to_l: Vec<Vec<Vec<usize>>>,
}

impl Blocks {
    /// The symbolic step: choose every block's type and pattern from A. Dense blocks are left
    /// empty until `allocated`. Stops early, with the blocks found so far, once the dense
    /// diagonal blocks hold `stop_at` columns (the caller will not use this form).
    // Index loops mirror the block formulas (L[i][j] from L[i][k] and L[j][k]).
    #[allow(clippy::needless_range_loop)]
    fn new(a: &CrossProducts, stop_at: usize) -> Result<Self> {
        let shapes = a.shapes.clone();
        let nt = shapes.len();
        let pd = a.p + 1;
        let mut l: Vec<Vec<Block>> = Vec::with_capacity(nt + 1);
        let mut a_to_l: Vec<Vec<Vec<usize>>> = vec![Vec::new(); nt];
        for i in 0..nt {
            let mut row: Vec<Block> = Vec::with_capacity(i + 1);
            for j in 0..i {
                // L[i][j]: sparse when L[j][j] is block diagonal and the blocks left of it are.
                let left_sparse = (0..j).all(|k| {
                    matches!(row[k], Block::Sparse(_)) && matches!(l[j][k], Block::Sparse(_))
                });
                if matches!(l[j][j], Block::Diag(_)) && left_sparse {
                    let mut extra = Vec::new();
                    for k in 0..j {
                        if let (Block::Sparse(p), Block::Sparse(q)) = (&row[k], &l[j][k]) {
                            extra.extend(product_pattern(p, q));
                        }
                    }
                    let pattern = a.pairs[i][j].zeroed_pattern().with_extra_pattern(&extra);
                    let map = (0..a.pairs[i][j].n_col_levels)
                        .flat_map(|c| {
                            let s = &a.pairs[i][j];
                            (s.col_ptr[c]..s.col_ptr[c + 1])
                                .map(move |k| (s.row_idx[k] as usize, c))
                        })
                        .map(|(r, c)| pattern.find(r, c).expect("A's pattern is inside L's"))
                        .collect();
                    a_to_l[i].push(map);
                    row.push(Block::Sparse(pattern));
                } else {
                    a_to_l[i].push(Vec::new());
                    row.push(Block::Dense(Mat::new()));
                }
            }
            // L[i][i]: block diagonal unless a block to its left fills it in.
            let no_fill = (0..i).all(|k| match &row[k] {
                Block::Sparse(s) => {
                    (0..s.n_col_levels).all(|c| s.col_ptr[c + 1] - s.col_ptr[c] <= 1)
                }
                _ => false,
            });
            if i == 0 || no_fill {
                row.push(Block::Diag(BlockDiag::zeros(
                    shapes[i].n_levels,
                    shapes[i].q,
                )));
            } else {
                row.push(Block::Dense(Mat::new()));
            }
            l.push(row);
            let dense: usize = (1..=i)
                .filter(|&k| l[k][k].is_dense())
                .map(|k| shapes[k].size())
                .sum();
            if dense >= stop_at {
                return Ok(Blocks {
                    shapes,
                    pd,
                    l,
                    a_to_l,
                });
            }
        }
        let mut last: Vec<Block> = shapes
            .iter()
            .map(|s| Block::Dense(Mat::zeros(pd, s.size())))
            .collect();
        last.push(Block::Dense(Mat::zeros(pd, pd)));
        l.push(last);
        Ok(Blocks {
            shapes,
            pd,
            l,
            a_to_l,
        })
    }

    /// Total size of the term blocks on the diagonal that fill-in makes dense.
    fn dense_diagonal_size(&self) -> usize {
        (0..self.shapes.len().min(self.l.len()))
            .filter(|&i| self.l[i][i].is_dense())
            .map(|i| self.shapes[i].size())
            .sum()
    }

    /// Allocates the dense blocks (zeroed), after checking their sizes against `DENSE_LIMIT`.
    fn allocated(mut self) -> Result<Self> {
        let nt = self.shapes.len();
        for i in 0..nt {
            for j in 0..=i {
                if self.l[i][j].is_dense() {
                    check_dense(i, self.shapes[i].size())?;
                    check_dense(j, self.shapes[j].size())?;
                    self.l[i][j] =
                        Block::Dense(Mat::zeros(self.shapes[i].size(), self.shapes[j].size()));
                }
            }
        }
        Ok(self)
    }

    /// The numeric step: L(theta) from A and the per-term lambda templates.
    fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        let nt = self.shapes.len();
        for j in 0..=nt {
            for i in j..=nt {
                self.initialise(a, lambdas, i, j);
            }

            for k in 0..j {
                for i in j..=nt {
                    let mut target = std::mem::replace(&mut self.l[i][j], Block::Dense(Mat::new()));
                    let result = sub_product(&mut target, &self.l[i][k], &self.l[j][k], i == j);
                    self.l[i][j] = target;
                    result?;
                }
            }
            self.factor_diagonal(j)?;
            for i in j + 1..=nt {
                let mut target = std::mem::replace(&mut self.l[i][j], Block::Dense(Mat::new()));
                let result = right_solve(&mut target, &self.l[j][j]);
                self.l[i][j] = target;
                result?;
            }
        }
        Ok(())
    }

    /// Block (i, j) of the scaled, inflated cross-product.
    fn initialise(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>], i: usize, j: usize) {
        let nt = self.shapes.len();
        let pd = self.pd;
        if i == nt && j == nt {
            let Block::Dense(m) = &mut self.l[i][j] else {
                unreachable!("the D block is dense")
            };
            for c in 0..pd {
                m.col_as_slice_mut(c)
                    .copy_from_slice(&a.dd[c * pd..(c + 1) * pd]);
            }
            return;
        }
        if i == nt {
            // D'WZ_j Lambda_j: each level's (pd x q) slab times lambda_j.
            let s = self.shapes[j];
            let q = s.q;
            let lam = &lambdas[j];
            let Block::Dense(m) = &mut self.l[i][j] else {
                unreachable!("the D row is dense")
            };
            let dz = &a.dz[j];
            for lev in 0..s.n_levels {
                for b in 0..q {
                    let col = m.col_as_slice_mut(lev * q + b);
                    col.iter_mut().for_each(|v| *v = 0.0);
                    for e in b..q {
                        let coef = lam[e + b * q];
                        if coef != 0.0 {
                            let src = &dz[(lev * q + e) * pd..(lev * q + e + 1) * pd];
                            for (v, x) in col.iter_mut().zip(src) {
                                *v += coef * x;
                            }
                        }
                    }
                }
            }
            return;
        }
        let si = self.shapes[i];
        let sj = self.shapes[j];
        let (qi, qj) = (si.q, sj.q);
        let mut stack = [0.0f64; 16];
        let mut heap = Vec::new();
        let buf: &mut [f64] = if qi * qj <= 16 {
            &mut stack[..qi * qj]
        } else {
            heap.resize(qi * qj, 0.0);
            &mut heap
        };
        if i == j {
            let diag = &a.diag[i];
            let lam = &lambdas[i];
            if let Block::Dense(m) = &mut self.l[i][i] {
                m.fill(0.0);
            }
            for lev in 0..si.n_levels {
                // lambda' A_l lambda + I, then placed in the block's own storage.
                scale_block(
                    &diag[lev * qi * qi..(lev + 1) * qi * qi],
                    lam,
                    qi,
                    lam,
                    qi,
                    buf,
                );
                for a_ in 0..qi {
                    buf[a_ + a_ * qi] += 1.0;
                }
                match &mut self.l[i][i] {
                    Block::Diag(d) => d.block_mut(lev).copy_from_slice(buf),
                    Block::Dense(m) => {
                        for b in 0..qi {
                            for a_ in 0..qi {
                                m[(lev * qi + a_, lev * qi + b)] = buf[a_ + b * qi];
                            }
                        }
                    }
                    Block::Sparse(_) => unreachable!("diagonal blocks are never sparse"),
                }
            }
            return;
        }
        let src = &a.pairs[i][j];
        let bs = qi * qj;
        let (li, lj) = (&lambdas[i], &lambdas[j]);
        match &mut self.l[i][j] {
            Block::Sparse(t) => {
                t.data.iter_mut().for_each(|v| *v = 0.0);
                for (k, &pos) in self.a_to_l[i][j].iter().enumerate() {
                    scale_block(&src.data[k * bs..(k + 1) * bs], li, qi, lj, qj, buf);
                    t.data[pos * bs..(pos + 1) * bs].copy_from_slice(buf);
                }
            }
            Block::Dense(m) => {
                m.fill(0.0);
                for (r, c, blk) in src.blocks() {
                    scale_block(blk, li, qi, lj, qj, buf);
                    for b in 0..qj {
                        for a_ in 0..qi {
                            m[(r * qi + a_, c * qj + b)] = buf[a_ + b * qi];
                        }
                    }
                }
            }
            Block::Diag(_) => unreachable!("off-diagonal blocks are never block diagonal"),
        }
    }

    fn factor_diagonal(&mut self, j: usize) -> Result<()> {
        let what = |j: usize, nt: usize| {
            if j == nt {
                "the fixed-effects block of L".to_string()
            } else {
                format!("block {j} of L")
            }
        };
        let nt = self.shapes.len();
        match &mut self.l[j][j] {
            Block::Diag(d) => {
                let q = d.q;
                for lev in 0..d.n {
                    chol_small(d.block_mut(lev), q).map_err(|piv| {
                        LmmError::NotPositiveDefinite {
                            what: what(j, nt),
                            pivot: lev * q + piv,
                        }
                    })?;
                }
                Ok(())
            }
            Block::Dense(m) => dense_cholesky(m).map_err(|pivot| LmmError::NotPositiveDefinite {
                what: what(j, nt),
                pivot,
            }),
            Block::Sparse(_) => unreachable!("diagonal blocks are never sparse"),
        }
    }

    /// log det(L_Z)^2 over the random-effects blocks.
    fn ld_l2(&self) -> f64 {
        let mut s = 0.0;
        for j in 0..self.shapes.len() {
            match &self.l[j][j] {
                Block::Diag(d) => {
                    for lev in 0..d.n {
                        let b = d.block(lev);
                        for a in 0..d.q {
                            s += b[a + a * d.q].ln();
                        }
                    }
                }
                Block::Dense(m) => {
                    for a in 0..m.nrows() {
                        s += m[(a, a)].ln();
                    }
                }
                Block::Sparse(_) => unreachable!("diagonal blocks are never sparse"),
            }
        }
        2.0 * s
    }

    /// The lower-triangular (p + 1) x (p + 1) D block of L.
    fn d_block(&self) -> &Mat<f64> {
        let nt = self.shapes.len();
        match &self.l[nt][nt] {
            Block::Dense(m) => m,
            _ => unreachable!("the D block is dense"),
        }
    }

    /// For each term, c_u - L_XZ' beta from the D row of blocks.
    fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        let nt = self.shapes.len();
        let p = self.pd - 1;
        (0..nt)
            .map(|k| {
                let Block::Dense(m) = &self.l[nt][k] else {
                    unreachable!("the D row is dense")
                };
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
    fn solve_lz(&self, x: &mut [Vec<f64>]) {
        let nt = self.shapes.len();
        for j in 0..nt {
            let (head, tail) = x.split_at_mut(j + 1);
            let xj = &mut head[j];
            solve_diag_block(&self.l[j][j], xj, false);
            for (off, xi) in tail.iter_mut().enumerate() {
                mul_sub(&self.l[j + 1 + off][j], xj, xi);
            }
        }
    }

    /// x <- L_Z^{-T} x for a blocked vector of random effects.
    fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        let nt = self.shapes.len();
        for j in (0..nt).rev() {
            let (head, tail) = x.split_at_mut(j + 1);
            let xj = &mut head[j];
            for (off, xi) in tail.iter().enumerate() {
                mul_t_sub(&self.l[j + 1 + off][j], xi, xj);
            }
            solve_diag_block(&self.l[j][j], xj, true);
        }
    }
}

fn check_dense(term: usize, size: usize) -> Result<()> {
    if size > DENSE_LIMIT {
        return Err(LmmError::TooLarge {
            term,
            size,
            limit: DENSE_LIMIT,
        });
    }
    Ok(())
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

/// In-place lower Cholesky of a dense symmetric matrix (lower triangle used); the strict upper
/// triangle is zeroed so the matrix is L afterwards.
fn dense_cholesky(m: &mut Mat<f64>) -> std::result::Result<(), usize> {
    let n = m.nrows();
    if n <= SMALL {
        return small::cholesky(m);
    }
    let par = par_for(n);
    let mut mem = faer::dyn_stack::MemBuffer::new(cholesky_in_place_scratch::<f64>(
        n,
        par,
        Default::default(),
    ));
    let stack = faer::dyn_stack::MemStack::new(&mut mem);
    let params: faer::Spec<LltParams, f64> = Default::default();
    cholesky_in_place(m.as_mut(), Default::default(), par, stack, params).map_err(|e| match e {
        faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => index,
    })?;
    for j in 1..n {
        for i in 0..j {
            m[(i, j)] = 0.0;
        }
    }
    Ok(())
}

/// target -= P Q' (only the lower block triangle when `symmetric`, i.e. P and Q are the same).
fn sub_product(target: &mut Block, p: &Block, q: &Block, symmetric: bool) -> Result<()> {
    match (p, q) {
        (Block::Sparse(p), Block::Sparse(q))
            if p.qr == 1 && p.qc == 1 && q.qr == 1 && matches!(target, Block::Dense(_)) =>
        {
            // Scalar terms into a dense block (crossed factors): column slices, no indexing.
            let Block::Dense(t) = target else {
                unreachable!()
            };
            for c in 0..p.n_col_levels {
                let (plo, phi) = (p.col_ptr[c], p.col_ptr[c + 1]);
                let (qlo, qhi) = (q.col_ptr[c], q.col_ptr[c + 1]);
                let prow = &p.row_idx[plo..phi];
                let pval = &p.data[plo..phi];
                for kq in qlo..qhi {
                    let r2 = q.row_idx[kq] as usize;
                    let v2 = q.data[kq];
                    let col = t.col_as_slice_mut(r2);
                    // Rows are sorted, so for P == Q the lower triangle is the tail.
                    let start = if symmetric { kq - qlo } else { 0 };
                    for (r1, v1) in prow[start..].iter().zip(&pval[start..]) {
                        col[*r1 as usize] -= v1 * v2;
                    }
                }
            }
            Ok(())
        }
        (Block::Sparse(p), Block::Sparse(q)) => {
            let (qi, qk, qj) = (p.qr, p.qc, q.qr);
            let mut buf = vec![0.0; qi * qj];
            for c in 0..p.n_col_levels {
                for kp in p.col_ptr[c]..p.col_ptr[c + 1] {
                    let r1 = p.row_idx[kp] as usize;
                    let pb = &p.data[kp * qi * qk..(kp + 1) * qi * qk];
                    for kq in q.col_ptr[c]..q.col_ptr[c + 1] {
                        let r2 = q.row_idx[kq] as usize;
                        if symmetric && r2 > r1 {
                            continue;
                        }
                        let qb = &q.data[kq * qj * qk..(kq + 1) * qj * qk];
                        for b in 0..qj {
                            for a in 0..qi {
                                let mut s = 0.0;
                                for e in 0..qk {
                                    s += pb[a + e * qi] * qb[b + e * qj];
                                }
                                buf[a + b * qi] = s;
                            }
                        }
                        match target {
                            Block::Dense(t) => {
                                for b in 0..qj {
                                    for a in 0..qi {
                                        t[(r1 * qi + a, r2 * qj + b)] -= buf[a + b * qi];
                                    }
                                }
                            }
                            Block::Sparse(t) => {
                                let pos = t.find(r1, r2).ok_or_else(|| {
                                    internal("fill-in outside the symbolic pattern")
                                })?;
                                let tb = &mut t.data[pos * qi * qj..(pos + 1) * qi * qj];
                                tb.iter_mut().zip(&buf).for_each(|(v, x)| *v -= x);
                            }
                            Block::Diag(t) => {
                                if r1 != r2 {
                                    return Err(internal("fill-in reached a block-diagonal block"));
                                }
                                t.block_mut(r1)
                                    .iter_mut()
                                    .zip(&buf)
                                    .for_each(|(v, x)| *v -= x);
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        (Block::Dense(pm), Block::Sparse(q)) => {
            let Block::Dense(t) = target else {
                return Err(internal("dense times sparse into a non-dense block"));
            };
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
                            let dst = t.col_as_slice_mut(r2 * qj + b);
                            for (v, x) in dst.iter_mut().zip(src) {
                                *v -= coef * x;
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        (Block::Sparse(p), Block::Dense(qm)) => {
            let Block::Dense(t) = target else {
                return Err(internal("sparse times dense into a non-dense block"));
            };
            let (qi, qk) = (p.qr, p.qc);
            let ncols = t.ncols();
            for c in 0..p.n_col_levels {
                for kp in p.col_ptr[c]..p.col_ptr[c + 1] {
                    let r1 = p.row_idx[kp] as usize;
                    let pb = &p.data[kp * qi * qk..(kp + 1) * qi * qk];
                    for e in 0..qk {
                        for a in 0..qi {
                            let coef = pb[a + e * qi];
                            if coef == 0.0 {
                                continue;
                            }
                            for col in 0..ncols {
                                t[(r1 * qi + a, col)] -= coef * qm[(col, c * qk + e)];
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        (Block::Dense(pm), Block::Dense(qm)) => {
            let Block::Dense(t) = target else {
                return Err(internal("dense product into a non-dense block"));
            };
            if t.nrows().max(t.ncols()) <= SMALL {
                small::sub_product(t, pm, qm, symmetric);
                return Ok(());
            }
            let par = par_for(t.nrows().max(t.ncols()).max(pm.ncols()));
            if symmetric {
                faer::linalg::matmul::triangular::matmul(
                    t.as_mut(),
                    faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
                    Accum::Add,
                    pm.as_ref(),
                    faer::linalg::matmul::triangular::BlockStructure::Rectangular,
                    qm.as_ref().transpose(),
                    faer::linalg::matmul::triangular::BlockStructure::Rectangular,
                    -1.0,
                    par,
                );
            } else {
                matmul(
                    t.as_mut(),
                    Accum::Add,
                    pm.as_ref(),
                    qm.as_ref().transpose(),
                    -1.0,
                    par,
                );
            }
            Ok(())
        }
        _ => Err(internal(
            "a block-diagonal block cannot be left of the diagonal",
        )),
    }
}

/// target <- target L^{-T} for the diagonal block L.
fn right_solve(target: &mut Block, diag: &Block) -> Result<()> {
    match (target, diag) {
        (Block::Sparse(t), Block::Diag(d)) => {
            let (qi, qj) = (t.qr, t.qc);
            for c in 0..t.n_col_levels {
                let lb = d.block(c);
                for k in t.col_ptr[c]..t.col_ptr[c + 1] {
                    crate::blocks::right_solve_lt(
                        &mut t.data[k * qi * qj..(k + 1) * qi * qj],
                        qi,
                        lb,
                        qj,
                    );
                }
            }
            Ok(())
        }
        (Block::Dense(t), Block::Diag(d)) => {
            let q = d.q;
            let nrows = t.nrows();
            for c in 0..d.n {
                let lb = d.block(c);
                // Columns c q .. c q + q of t, each a contiguous slice.
                for j in 0..q {
                    for k in 0..j {
                        let coef = lb[j + k * q];
                        if coef != 0.0 {
                            let (src, dst) = two_cols(t, c * q + k, c * q + j);
                            for r in 0..nrows {
                                dst[r] -= coef * src[r];
                            }
                        }
                    }
                    let inv = 1.0 / lb[j + j * q];
                    t.col_as_slice_mut(c * q + j)
                        .iter_mut()
                        .for_each(|v| *v *= inv);
                }
            }
            Ok(())
        }
        (Block::Dense(t), Block::Dense(lm)) if lm.nrows() <= SMALL => {
            small::right_solve(t, lm);
            Ok(())
        }
        (Block::Dense(t), Block::Dense(lm)) => {
            // T <- T L^{-T}  <=>  T' <- L^{-1} T'; solving on a contiguous copy of T' is far
            // faster than on the strided transposed view.
            let par = par_for(lm.nrows().max(t.nrows()));
            let mut tt = t.transpose().to_owned();
            solve_lower_triangular_in_place(lm.as_ref(), tt.as_mut(), par);
            t.copy_from(tt.transpose());
            Ok(())
        }
        _ => Err(internal("a sparse block right of a dense diagonal block")),
    }
}

/// Column `src` (read) and column `dst` (written) of a dense matrix, src < dst.
fn two_cols(m: &mut Mat<f64>, src: usize, dst: usize) -> (&[f64], &mut [f64]) {
    debug_assert!(src < dst);
    let nrows = m.nrows();
    let stride = m.col_stride() as usize;
    let ptr = m.as_ptr_mut();
    // SAFETY: the two columns are distinct, each nrows long, inside the allocation.
    unsafe {
        (
            std::slice::from_raw_parts(ptr.add(src * stride), nrows),
            std::slice::from_raw_parts_mut(ptr.add(dst * stride), nrows),
        )
    }
}

/// x <- L^{-1} x (or L^{-T} x) for a diagonal block of L.
fn solve_diag_block(l: &Block, x: &mut [f64], transpose: bool) {
    match l {
        Block::Diag(d) => {
            let q = d.q;
            for lev in 0..d.n {
                let xs = &mut x[lev * q..(lev + 1) * q];
                if transpose {
                    crate::blocks::solve_lt_small(d.block(lev), q, xs);
                } else {
                    crate::blocks::solve_l_small(d.block(lev), q, xs);
                }
            }
        }
        Block::Dense(m) => {
            let n = m.nrows();
            let mut col = faer::MatMut::from_column_major_slice_mut(x, n, 1);
            if transpose {
                faer::linalg::triangular_solve::solve_upper_triangular_in_place(
                    m.as_ref().transpose(),
                    col.as_mut(),
                    Par::Seq,
                );
            } else {
                solve_lower_triangular_in_place(m.as_ref(), col.as_mut(), Par::Seq);
            }
        }
        Block::Sparse(_) => unreachable!("diagonal blocks are never sparse"),
    }
}

/// y -= B x.
fn mul_sub(b: &Block, x: &[f64], y: &mut [f64]) {
    match b {
        Block::Sparse(s) => {
            let (qr, qc) = (s.qr, s.qc);
            for (r, c, blk) in s.blocks() {
                for e in 0..qc {
                    for a in 0..qr {
                        y[r * qr + a] -= blk[a + e * qr] * x[c * qc + e];
                    }
                }
            }
        }
        Block::Dense(m) => {
            for (j, xj) in x.iter().enumerate() {
                if *xj != 0.0 {
                    for (v, mv) in y.iter_mut().zip(m.col_as_slice(j)) {
                        *v -= mv * xj;
                    }
                }
            }
        }
        Block::Diag(_) => unreachable!("off-diagonal blocks are never block diagonal"),
    }
}

/// y -= B' x.
fn mul_t_sub(b: &Block, x: &[f64], y: &mut [f64]) {
    match b {
        Block::Sparse(s) => {
            let (qr, qc) = (s.qr, s.qc);
            for (r, c, blk) in s.blocks() {
                for e in 0..qc {
                    let acc: f64 = (0..qr).map(|a| blk[a + e * qr] * x[r * qr + a]).sum();
                    y[c * qc + e] -= acc;
                }
            }
        }
        Block::Dense(m) => {
            for (j, yj) in y.iter_mut().enumerate() {
                let col = m.col_as_slice(j);
                *yj -= col.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
            }
        }
        Block::Diag(_) => unreachable!("off-diagonal blocks are never block diagonal"),
    }
}

fn internal(msg: &str) -> LmmError {
    LmmError::Shape(format!("internal error in the blocked Cholesky: {msg}"))
}

/// Plain loops for tiny dense blocks (a few random effects crossed with the first term, the
/// fixed-effects block): at these sizes a library call and its scratch allocation cost more
/// than the arithmetic.
mod small {
    use faer::Mat;

    /// In-place lower Cholesky (lower triangle used; strict upper triangle zeroed).
    pub(super) fn cholesky(m: &mut Mat<f64>) -> std::result::Result<(), usize> {
        let n = m.nrows();
        for j in 0..n {
            let mut d = m[(j, j)];
            for k in 0..j {
                d -= m[(j, k)] * m[(j, k)];
            }
            if !(d > 0.0 && d.is_finite()) {
                return Err(j);
            }
            let d = d.sqrt();
            m[(j, j)] = d;
            for i in j + 1..n {
                let mut v = m[(i, j)];
                for k in 0..j {
                    v -= m[(i, k)] * m[(j, k)];
                }
                m[(i, j)] = v / d;
            }
            for i in 0..j {
                m[(i, j)] = 0.0;
            }
        }
        Ok(())
    }

    /// t -= p q' (the lower triangle only when `symmetric`).
    pub(super) fn sub_product(t: &mut Mat<f64>, p: &Mat<f64>, q: &Mat<f64>, symmetric: bool) {
        for k in 0..p.ncols() {
            let pk = p.col_as_slice(k);
            let qk = q.col_as_slice(k);
            for (j, &qjk) in qk.iter().enumerate() {
                if qjk == 0.0 {
                    continue;
                }
                let from = if symmetric { j } else { 0 };
                let tj = &mut t.col_as_slice_mut(j)[from..];
                for (v, x) in tj.iter_mut().zip(&pk[from..]) {
                    *v -= x * qjk;
                }
            }
        }
    }

    /// t <- t l^{-T} for lower-triangular l: column j of t becomes
    /// (t_j - sum_{k < j} l_jk t_k) / l_jj.
    pub(super) fn right_solve(t: &mut Mat<f64>, l: &Mat<f64>) {
        for j in 0..l.nrows() {
            for k in 0..j {
                let c = l[(j, k)];
                if c != 0.0 {
                    let (src, dst) = super::two_cols(t, k, j);
                    for (v, x) in dst.iter_mut().zip(src) {
                        *v -= c * x;
                    }
                }
            }
            let r = 1.0 / l[(j, j)];
            t.col_as_slice_mut(j).iter_mut().for_each(|v| *v *= r);
        }
    }
}
