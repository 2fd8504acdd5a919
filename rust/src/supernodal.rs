//! A supernodal sparse Cholesky factor of the whole penalised system
//!
//! ```text
//!   P [ Lambda' Z'WZ Lambda + I   Lambda' Z'WD ] P' = L L',    D = [X y],
//!     [ D'WZ Lambda               D'WD         ]
//! ```
//!
//! for crossed structures whose fill-in would make the blocked factor dense and large (lme4
//! factors the random-effects part with CHOLMOD in the same way; MixedModels.jl stays dense).
//! The ordering P keeps the first (largest) term first, level by level, so that its block stays
//! block diagonal; orders the other terms' columns by approximate minimum degree (AMD) on the
//! pattern of their Schur complement after the first term is eliminated; and puts D last, in
//! its own order, so that pwrss and log det(R_X)^2 are read off the last diagonal elements as in
//! the blocked factor.
//!
//! The symbolic step (once per model) computes that ordering, the supernodes and their row
//! patterns (faer's symbolic supernodal Cholesky), the list of updates each supernode receives
//! from its descendants, and where each element of A lands in L. The numeric step (once per
//! theta) is a left-looking supernodal factorisation: for each supernode, scatter the scaled
//! cross-products into its dense panel, subtract the products of the descendant panels that
//! reach it, factor the diagonal block and solve the rows below. Nothing is allocated per
//! evaluation.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltError, LltParams,
};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::sparse::linalg::amd;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, SymbolicCholeskyRaw, SymmetricOrdering,
};
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::SymbolicSparseColMatRef;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

use crate::blocks::scale_block;
use crate::crossprod::CrossProducts;
use crate::error::{LmmError, Result};

/// Diagonal blocks up to this many columns are factored by a plain column loop; larger ones by
/// faer's blocked dense Cholesky.
pub const SMALL_PANEL: usize = 24;

/// Dense kernels on at least this many columns run on the rayon pool.
const PAR_THRESHOLD: usize = 192;

/// Descendant updates with at most this many multiply-adds are done in place, without a
/// temporary product.
pub const DIRECT_UPDATE: usize = 4096;

/// One update that supernode `d` sends to a later supernode: rows `start..` of d's below-diagonal
/// pattern, of which the first `len` fall in the target's columns.
#[derive(Clone, Copy, Debug)]
struct Update {
    d: u32,
    start: u32,
    len: u32,
}

/// Offsets of each block of A in the flattened copy that the numeric step scales.
#[derive(Clone, Debug)]
struct FlatLayout {
    diag: Vec<usize>,
    /// pairs[i][j] for j < i.
    pairs: Vec<Vec<usize>>,
    dz: Vec<usize>,
    dd: usize,
    len: usize,
}

impl FlatLayout {
    fn new(a: &CrossProducts) -> Self {
        let mut len = 0;
        let mut take = |n: usize| {
            let o = len;
            len += n;
            o
        };
        let diag = a.diag.iter().map(|d| take(d.len())).collect();
        let pairs = a
            .pairs
            .iter()
            .map(|row| row.iter().map(|s| take(s.data.len())).collect())
            .collect();
        let dz = a.dz.iter().map(|d| take(d.len())).collect();
        let dd = take(a.dd.len());
        FlatLayout {
            diag,
            pairs,
            dz,
            dd,
            len,
        }
    }
}

/// Sizes of a symbolic structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupernodalStats {
    pub n_supernodes: usize,
    /// Stored values of L (the supernodal panels, explicit zeros included).
    pub n_values: usize,
    /// Columns of the widest supernode.
    pub largest_supernode: usize,
    /// Descendant updates per factorisation.
    pub n_updates: usize,
    /// Multiply-adds of the largest descendant update.
    pub largest_update: usize,
}

/// The factor, its symbolic structure and the workspaces of the numeric step.
#[derive(Clone, Debug)]
pub struct SupernodalCholesky {
    pd: usize,
    /// Columns of the random-effects part (the first `n_re` columns of L).
    n_re: usize,
    /// For each term, the column of L of each of its random effects (level-major).
    pos: Vec<Vec<u32>>,
    /// For each column of the random-effects part, its term and its index within the term.
    owner: Vec<(u32, u32)>,
    /// Supernode s holds columns `begin[s]..begin[s + 1]`.
    begin: Vec<usize>,
    /// The rows below the diagonal block of supernode s: `rows[row_ptr[s]..row_ptr[s + 1]]`.
    row_ptr: Vec<usize>,
    rows: Vec<u32>,
    /// Supernode s is a dense column-major panel of (columns + pattern rows) x columns at
    /// `values[val_ptr[s]..val_ptr[s + 1]]`.
    val_ptr: Vec<usize>,
    /// The updates supernode s receives: `updates[upd_ptr[s]..upd_ptr[s + 1]]`, in order.
    upd_ptr: Vec<usize>,
    updates: Vec<Update>,
    /// (position in the flattened scaled A, offset in the panel) for supernode s:
    /// `assembly[asm_ptr[s]..asm_ptr[s + 1]]`.
    asm_ptr: Vec<usize>,
    assembly: Vec<(u32, u32)>,
    layout: FlatLayout,
    values: Vec<f64>,
    scaled: Vec<f64>,
    /// Row of L -> row of the current target's panel.
    local: Vec<u32>,
    /// Rows of the current update in the target's panel.
    update_rows: Vec<u32>,
    /// A descendant's product before it is scattered.
    product: Vec<f64>,
    /// Scratch of faer's dense Cholesky.
    llt_stack: Vec<std::mem::MaybeUninit<u8>>,
    d_block: Mat<f64>,
}

impl SupernodalCholesky {
    /// The symbolic step: ordering, supernodes, update lists and the assembly map.
    pub fn new(a: &CrossProducts) -> Result<Self> {
        let shapes = a.shapes.clone();
        let nt = shapes.len();
        let pd = a.p + 1;
        let sizes: Vec<usize> = shapes.iter().map(|s| s.size()).collect();
        let n0 = sizes[0];
        let n_re: usize = sizes.iter().sum();
        let n = n_re + pd;
        if n >= u32::MAX as usize / 2 {
            return Err(LmmError::Shape(format!(
                "{n} columns are too many for the sparse factor"
            )));
        }

        // Columns of the other terms, numbered t = off_t[k] + level q_k + a, ordered by AMD on the
        // pattern that eliminating term 0 leaves.
        let mut off_t = vec![0usize; nt];
        for k in 2..nt {
            off_t[k] = off_t[k - 1] + sizes[k - 1];
        }
        let n_t = n_re - n0;
        let perm_inv = amd_order_after_first(a, &off_t, n_t)?;
        let mut pos: Vec<Vec<u32>> = Vec::with_capacity(nt);
        pos.push((0..n0 as u32).collect());
        for k in 1..nt {
            pos.push(
                (0..sizes[k])
                    .map(|e| (n0 + perm_inv[off_t[k] + e]) as u32)
                    .collect(),
            );
        }
        let mut owner = vec![(0u32, 0u32); n_re];
        for (k, pk) in pos.iter().enumerate() {
            for (e, &c) in pk.iter().enumerate() {
                owner[c as usize] = (k as u32, e as u32);
            }
        }

        // The permuted pattern of A (upper triangle by columns), then faer's symbolic step.
        let entries = a_entries(a, &pos, n_re, pd);
        let (col_ptr, row_idx) = upper_pattern(n, entries.iter().map(|e| (e.row, e.col)));
        let pattern = SymbolicSparseColMatRef::new_checked(n, n, &col_ptr, None, &row_idx);
        let params = CholeskySymbolicParams {
            supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
            ..Default::default()
        };
        let symbolic =
            factorize_symbolic_cholesky(pattern, Side::Upper, SymmetricOrdering::Identity, params)
                .map_err(|e| {
                    LmmError::Shape(format!("sparse symbolic factorisation failed: {e:?}"))
                })?;
        let SymbolicCholeskyRaw::Supernodal(sn) = symbolic.raw() else {
            return Err(internal("faer chose a simplicial factor"));
        };
        let ns = sn.n_supernodes();
        let mut begin: Vec<usize> = sn.supernode_begin().iter().map(|&b| b as usize).collect();
        begin.push(n);
        let mut row_ptr = Vec::with_capacity(ns + 1);
        let mut rows = Vec::new();
        let mut val_ptr = Vec::with_capacity(ns + 1);
        row_ptr.push(0);
        val_ptr.push(0);
        for s in 0..ns {
            let pat = sn.supernode(s).pattern();
            rows.extend_from_slice(pat);
            row_ptr.push(rows.len());
            let k = begin[s + 1] - begin[s];
            val_ptr.push(val_ptr[s] + (k + pat.len()) * k);
        }
        let mut owner_sn = vec![0u32; n];
        for s in 0..ns {
            owner_sn[begin[s]..begin[s + 1]].fill(s as u32);
        }

        // Updates, grouped by target.
        let mut by_target: Vec<(u32, Update)> = Vec::new();
        let mut max_product = 0usize;
        for d in 0..ns {
            let pat = &rows[row_ptr[d]..row_ptr[d + 1]];
            let mut i = 0;
            while i < pat.len() {
                let s = owner_sn[pat[i] as usize];
                let mut e = i + 1;
                while e < pat.len() && owner_sn[pat[e] as usize] == s {
                    e += 1;
                }
                by_target.push((
                    s,
                    Update {
                        d: d as u32,
                        start: i as u32,
                        len: (e - i) as u32,
                    },
                ));
                max_product = max_product.max((pat.len() - i) * (e - i));
                i = e;
            }
        }
        by_target.sort_by_key(|&(s, u)| (s, u.d));
        let mut upd_ptr = vec![0usize; ns + 1];
        for &(s, _) in &by_target {
            upd_ptr[s as usize + 1] += 1;
        }
        for s in 0..ns {
            upd_ptr[s + 1] += upd_ptr[s];
        }
        let updates = by_target.into_iter().map(|(_, u)| u).collect();

        // Where each element of A goes: the supernode of its (lower) column and the offset.
        let layout = FlatLayout::new(a);
        let mut placed: Vec<(u32, u32, u32)> = entries
            .iter()
            .map(|e| {
                let (r, c) = (e.col as usize, e.row as usize); // lower triangle: r >= c
                let s = owner_sn[c] as usize;
                let k = begin[s + 1] - begin[s];
                let pat = &rows[row_ptr[s]..row_ptr[s + 1]];
                let local_row = if r < begin[s + 1] {
                    r - begin[s]
                } else {
                    k + pat
                        .binary_search(&(r as u32))
                        .expect("A's pattern is inside L's")
                };
                let m = k + pat.len();
                (s as u32, e.src, ((c - begin[s]) * m + local_row) as u32)
            })
            .collect();
        placed.sort_unstable_by_key(|&(s, _, off)| (s, off));
        let mut asm_ptr = vec![0usize; ns + 1];
        for &(s, _, _) in &placed {
            asm_ptr[s as usize + 1] += 1;
        }
        for s in 0..ns {
            asm_ptr[s + 1] += asm_ptr[s];
        }
        let assembly = placed.into_iter().map(|(_, src, off)| (src, off)).collect();

        let max_k = (0..ns).map(|s| begin[s + 1] - begin[s]).max().unwrap_or(0);
        let max_pat = (0..ns)
            .map(|s| row_ptr[s + 1] - row_ptr[s])
            .max()
            .unwrap_or(0);
        let llt_req: StackReq =
            cholesky_in_place_scratch::<f64>(max_k, Par::rayon(0), Default::default());
        Ok(SupernodalCholesky {
            pd,
            n_re,
            pos,
            owner,
            values: vec![0.0; val_ptr[ns]],
            begin,
            row_ptr,
            rows,
            val_ptr,
            upd_ptr,
            updates,
            asm_ptr,
            assembly,
            scaled: vec![0.0; layout.len],
            layout,
            local: vec![0; n],
            update_rows: vec![0; max_pat],
            product: vec![0.0; max_product],
            llt_stack: vec![
                std::mem::MaybeUninit::uninit();
                llt_req.unaligned_bytes_required() + 64
            ],
            d_block: Mat::zeros(pd, pd),
        })
    }

    pub fn n_supernodes(&self) -> usize {
        self.begin.len() - 1
    }

    /// Sizes of the symbolic structure (for benchmarks and tests).
    pub fn stats(&self) -> SupernodalStats {
        let ns = self.n_supernodes();
        let cols = |s: usize| self.begin[s + 1] - self.begin[s];
        let largest_update = (0..ns)
            .flat_map(|s| {
                self.updates[self.upd_ptr[s]..self.upd_ptr[s + 1]]
                    .iter()
                    .map(move |u| (s, *u))
            })
            .map(|(_, u)| {
                let d = u.d as usize;
                let below = self.row_ptr[d + 1] - self.row_ptr[d] - u.start as usize;
                cols(d) * below * u.len as usize
            })
            .max()
            .unwrap_or(0);
        SupernodalStats {
            n_supernodes: ns,
            n_values: self.values.len(),
            largest_supernode: (0..ns).map(cols).max().unwrap_or(0),
            n_updates: self.updates.len(),
            largest_update,
        }
    }

    /// The numeric step: L(theta) from A and the per-term lambda templates.
    pub fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        scale_flat(a, lambdas, &self.layout, &mut self.scaled);
        for s in 0..self.n_supernodes() {
            self.factor_supernode(s)?;
        }
        let first = self.n_re;
        for j in 0..self.pd {
            for i in 0..self.pd {
                self.d_block[(i, j)] = if i >= j {
                    self.entry(first + i, first + j)
                } else {
                    0.0
                };
            }
        }
        Ok(())
    }

    fn factor_supernode(&mut self, s: usize) -> Result<()> {
        let (f, l) = (self.begin[s], self.begin[s + 1]);
        let k = l - f;
        let pat = &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]];
        let m = k + pat.len();
        let (head, tail) = self.values.split_at_mut(self.val_ptr[s]);
        let panel = &mut tail[..m * k];

        // Assemble the scaled A.
        panel.fill(0.0);
        for &(src, off) in &self.assembly[self.asm_ptr[s]..self.asm_ptr[s + 1]] {
            panel[off as usize] += self.scaled[src as usize];
        }

        // Subtract the descendants' products.
        for (i, r) in (f..l).enumerate() {
            self.local[r] = i as u32;
        }
        for (i, &r) in pat.iter().enumerate() {
            self.local[r as usize] = (k + i) as u32;
        }
        for u in &self.updates[self.upd_ptr[s]..self.upd_ptr[s + 1]] {
            let d = u.d as usize;
            let kd = self.begin[d + 1] - self.begin[d];
            let dpat = &self.rows[self.row_ptr[d]..self.row_ptr[d + 1]];
            let md = kd + dpat.len();
            let (start, len) = (u.start as usize, u.len as usize);
            let drows = &dpat[start..];
            let mp = drows.len();
            let lrows = &mut self.update_rows[..mp];
            for (lr, &r) in lrows.iter_mut().zip(drows) {
                *lr = self.local[r as usize];
            }
            let ld = &head[self.val_ptr[d]..self.val_ptr[d + 1]];
            let first_row = kd + start;
            if kd == 1 {
                let x = &ld[first_row..first_row + mp];
                for j in 0..len {
                    let xj = x[j];
                    let col = &mut panel[(drows[j] as usize - f) * m..][..m];
                    for (&lr, &xi) in lrows[j..].iter().zip(&x[j..]) {
                        col[lr as usize] -= xi * xj;
                    }
                }
            } else if kd * mp * len <= DIRECT_UPDATE {
                for j in 0..len {
                    let col = &mut panel[(drows[j] as usize - f) * m..][..m];
                    for i in j..mp {
                        let mut acc = 0.0;
                        for t in 0..kd {
                            acc += ld[first_row + i + t * md] * ld[first_row + j + t * md];
                        }
                        col[lrows[i] as usize] -= acc;
                    }
                }
            } else {
                let x = MatRef::from_column_major_slice_with_stride(&ld[first_row..], mp, kd, md);
                let mut prod =
                    MatMut::from_column_major_slice_mut(&mut self.product[..mp * len], mp, len);
                let par = if mp >= PAR_THRESHOLD && len >= 32 {
                    Par::rayon(0)
                } else {
                    Par::Seq
                };
                matmul(
                    prod.as_mut(),
                    Accum::Replace,
                    x,
                    x.subrows(0, len).transpose(),
                    1.0,
                    par,
                );
                let prod = &self.product[..mp * len];
                for j in 0..len {
                    let col = &mut panel[(drows[j] as usize - f) * m..][..m];
                    let pcol = &prod[j * mp..(j + 1) * mp];
                    for (&lr, &v) in lrows[j..].iter().zip(&pcol[j..]) {
                        col[lr as usize] -= v;
                    }
                }
            }
        }

        // Factor the diagonal block and solve the rows below it.
        let result = if k <= SMALL_PANEL {
            factor_panel_small(panel, m, k)
        } else {
            let par = if k >= PAR_THRESHOLD {
                Par::rayon(0)
            } else {
                Par::Seq
            };
            let stack = MemStack::new(&mut self.llt_stack);
            let mut pm = MatMut::from_column_major_slice_with_stride_mut(panel, m, k, m);
            let (mut top, mut bottom) = pm.as_mut().split_at_row_mut(k);
            let params: faer::Spec<LltParams, f64> = Default::default();
            match cholesky_in_place(top.as_mut(), Default::default(), par, stack, params) {
                Ok(_) => {
                    // The strict upper triangle of the diagonal block still holds A.
                    for j in 1..k {
                        for i in 0..j {
                            top[(i, j)] = 0.0;
                        }
                    }
                    solve_lower_triangular_in_place(
                        top.as_ref(),
                        bottom.as_mut().transpose_mut(),
                        par,
                    );
                    Ok(())
                }
                Err(LltError::NonPositivePivot { index }) => Err(index),
            }
        };
        result.map_err(|j| self.pivot_error(f + j))
    }

    fn pivot_error(&self, col: usize) -> LmmError {
        if col < self.n_re {
            let (term, e) = self.owner[col];
            LmmError::NotPositiveDefinite {
                what: format!("block {term} of L"),
                pivot: e as usize,
            }
        } else {
            LmmError::NotPositiveDefinite {
                what: "the fixed-effects block of L".into(),
                pivot: col - self.n_re,
            }
        }
    }

    /// L[row, col] for row >= col inside the pattern (0 outside it).
    fn entry(&self, row: usize, col: usize) -> f64 {
        let s = self.supernode_of(col);
        let (f, l) = (self.begin[s], self.begin[s + 1]);
        let k = l - f;
        let pat = &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]];
        let m = k + pat.len();
        let local = if row < l {
            row - f
        } else {
            match pat.binary_search(&(row as u32)) {
                Ok(i) => k + i,
                Err(_) => return 0.0,
            }
        };
        self.values[self.val_ptr[s] + (col - f) * m + local]
    }

    fn supernode_of(&self, col: usize) -> usize {
        self.begin.partition_point(|&b| b <= col) - 1
    }

    /// log det(L_Z)^2 over the random-effects columns.
    pub fn ld_l2(&self) -> f64 {
        let mut s = 0.0;
        for sn in 0..self.n_supernodes() {
            let (f, l) = (self.begin[sn], self.begin[sn + 1].min(self.n_re));
            if f >= l {
                break;
            }
            let m = self.begin[sn + 1] - f + self.row_ptr[sn + 1] - self.row_ptr[sn];
            let panel = &self.values[self.val_ptr[sn]..];
            for j in 0..l - f {
                s += panel[j * m + j].ln();
            }
        }
        2.0 * s
    }

    /// The lower-triangular (p + 1) x (p + 1) D block of L.
    pub fn d_block(&self) -> &Mat<f64> {
        &self.d_block
    }

    /// For each term, c_u - L_XZ' beta: the right-hand side of L_Z' u = ... (lme4's cu minus the
    /// fixed effects' part), one vector per term in its own (level-major) order.
    pub fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        let p = self.pd - 1;
        let mut w = vec![0.0; self.n_re];
        for (c, wc) in w.iter_mut().enumerate() {
            let mut v = self.entry(self.n_re + p, c);
            for (j, bj) in beta.iter().enumerate() {
                v -= self.entry(self.n_re + j, c) * bj;
            }
            *wc = v;
        }
        self.scatter(&w)
    }

    fn gather(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let mut w = vec![0.0; self.n_re];
        for (xk, pk) in x.iter().zip(&self.pos) {
            for (v, &c) in xk.iter().zip(pk) {
                w[c as usize] = *v;
            }
        }
        w
    }

    fn scatter(&self, w: &[f64]) -> Vec<Vec<f64>> {
        self.pos
            .iter()
            .map(|pk| pk.iter().map(|&c| w[c as usize]).collect())
            .collect()
    }

    /// x <- L_Z^{-1} x for a blocked vector of random effects (one Vec per term).
    pub fn solve_lz(&self, x: &mut [Vec<f64>]) {
        let mut w = self.gather(x);
        for s in 0..self.n_supernodes() {
            let (f, l) = (self.begin[s], self.begin[s + 1]);
            if f >= self.n_re {
                break;
            }
            let k = l - f;
            let kz = l.min(self.n_re) - f;
            let pat = &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]];
            let m = k + pat.len();
            let panel = &self.values[self.val_ptr[s]..self.val_ptr[s + 1]];
            for j in 0..kz {
                let col = &panel[j * m..(j + 1) * m];
                let xj = w[f + j] / col[j];
                w[f + j] = xj;
                for i in j + 1..kz {
                    w[f + i] -= col[i] * xj;
                }
                for (&r, v) in pat.iter().zip(&col[k..]) {
                    if r as usize >= self.n_re {
                        break;
                    }
                    w[r as usize] -= v * xj;
                }
            }
        }
        for (xk, wk) in x.iter_mut().zip(self.scatter(&w)) {
            *xk = wk;
        }
    }

    /// x <- L_Z^{-T} x for a blocked vector of random effects.
    pub fn solve_lzt(&self, x: &mut [Vec<f64>]) {
        let mut w = self.gather(x);
        for s in (0..self.n_supernodes()).rev() {
            let (f, l) = (self.begin[s], self.begin[s + 1]);
            if f >= self.n_re {
                continue;
            }
            let k = l - f;
            let kz = l.min(self.n_re) - f;
            let pat = &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]];
            let m = k + pat.len();
            let panel = &self.values[self.val_ptr[s]..self.val_ptr[s + 1]];
            for j in (0..kz).rev() {
                let col = &panel[j * m..(j + 1) * m];
                let mut acc = w[f + j];
                for i in j + 1..kz {
                    acc -= col[i] * w[f + i];
                }
                for (&r, v) in pat.iter().zip(&col[k..]) {
                    if r as usize >= self.n_re {
                        break;
                    }
                    acc -= v * w[r as usize];
                }
                w[f + j] = acc / col[j];
            }
        }
        for (xk, wk) in x.iter_mut().zip(self.scatter(&w)) {
            *xk = wk;
        }
    }
}

/// Left-looking column Cholesky of a small m x k panel in place: the top k x k block becomes L,
/// the rows below become B L^{-T}. Returns the failing column on a non-positive pivot.
fn factor_panel_small(panel: &mut [f64], m: usize, k: usize) -> std::result::Result<(), usize> {
    for j in 0..k {
        let (done, rest) = panel.split_at_mut(j * m);
        let col = &mut rest[..m];
        for t in 0..j {
            let src = &done[t * m..(t + 1) * m];
            let coef = src[j];
            if coef != 0.0 {
                for (v, x) in col[j..].iter_mut().zip(&src[j..]) {
                    *v -= coef * x;
                }
            }
        }
        let d = col[j];
        if d <= 0.0 || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        col[j] = d;
        let inv = 1.0 / d;
        col[j + 1..].iter_mut().for_each(|v| *v *= inv);
        col[..j].iter_mut().for_each(|v| *v = 0.0);
    }
    Ok(())
}

/// One element of A (lower triangle of the symmetric matrix, each pair once) with its place in
/// the permuted matrix (`row <= col`) and in the flattened scaled copy.
#[derive(Clone, Copy, Debug)]
struct Entry {
    row: u32,
    col: u32,
    src: u32,
}

/// Every element of A that the factor needs, in permuted coordinates.
fn a_entries(a: &CrossProducts, pos: &[Vec<u32>], n_re: usize, pd: usize) -> Vec<Entry> {
    let layout = FlatLayout::new(a);
    let mut out = Vec::new();
    let mut push = |r: usize, c: usize, src: usize| {
        let (row, col) = if r <= c { (r, c) } else { (c, r) };
        out.push(Entry {
            row: row as u32,
            col: col as u32,
            src: src as u32,
        });
    };
    for (k, s) in a.shapes.iter().enumerate() {
        let q = s.q;
        for lev in 0..s.n_levels {
            for b in 0..q {
                for e in b..q {
                    let src = layout.diag[k] + lev * q * q + e + b * q;
                    push(
                        pos[k][lev * q + e] as usize,
                        pos[k][lev * q + b] as usize,
                        src,
                    );
                }
            }
        }
        for j in 0..k {
            let pair = &a.pairs[k][j];
            let (qi, qj) = (pair.qr, pair.qc);
            for (t, (r, c, _)) in pair.blocks().enumerate() {
                for b in 0..qj {
                    for e in 0..qi {
                        let src = layout.pairs[k][j] + t * qi * qj + e + b * qi;
                        push(
                            pos[k][r * qi + e] as usize,
                            pos[j][c * qj + b] as usize,
                            src,
                        );
                    }
                }
            }
        }
        for (c, &col) in pos[k].iter().enumerate() {
            for i in 0..pd {
                push(n_re + i, col as usize, layout.dz[k] + c * pd + i);
            }
        }
    }
    for j in 0..pd {
        for i in j..pd {
            push(n_re + i, n_re + j, layout.dd + i + j * pd);
        }
    }
    out
}

/// Column pointers and sorted, deduplicated row indices of an upper-triangular pattern given as
/// (row <= col) pairs, the diagonal always included.
fn upper_pattern(
    n: usize,
    pairs: impl Iterator<Item = (u32, u32)> + Clone,
) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![1usize; n];
    for (_, c) in pairs.clone() {
        counts[c as usize] += 1;
    }
    let mut ptr = vec![0usize; n + 1];
    for c in 0..n {
        ptr[c + 1] = ptr[c] + counts[c];
    }
    let mut fill = ptr.clone();
    let mut idx = vec![0u32; ptr[n]];
    for c in 0..n {
        idx[fill[c]] = c as u32;
        fill[c] += 1;
    }
    for (r, c) in pairs {
        idx[fill[c as usize]] = r;
        fill[c as usize] += 1;
    }
    let mut col_ptr = Vec::with_capacity(n + 1);
    let mut row_idx = Vec::with_capacity(ptr[n]);
    col_ptr.push(0u32);
    for c in 0..n {
        let col = &mut idx[ptr[c]..ptr[c + 1]];
        col.sort_unstable();
        let mut last = u32::MAX;
        for &r in col.iter() {
            if r != last {
                row_idx.push(r);
                last = r;
            }
        }
        col_ptr.push(row_idx.len() as u32);
    }
    (col_ptr, row_idx)
}

/// AMD on the pattern of the Schur complement of term 0 in the random-effects part (the other
/// terms' own blocks, their cross blocks, and the cliques that each level of term 0 leaves).
/// Returns the new position of each of those columns.
fn amd_order_after_first(a: &CrossProducts, off_t: &[usize], n_t: usize) -> Result<Vec<usize>> {
    if n_t == 0 {
        return Ok(Vec::new());
    }
    let shapes = &a.shapes;
    let nt = shapes.len();
    let idx = |k: usize, lev: usize, e: usize| off_t[k] + lev * shapes[k].q + e;
    // Columns of the other terms that each level of term 0 reaches.
    let n0_levels = shapes[0].n_levels;
    let mut reach: Vec<Vec<u32>> = vec![Vec::new(); n0_levels];
    for (k, row) in a.pairs.iter().enumerate().skip(1) {
        let pair = &row[0];
        let qk = shapes[k].q;
        for (r, c, _) in pair.blocks() {
            for e in 0..qk {
                reach[c].push(idx(k, r, e) as u32);
            }
        }
    }
    // For each column t, the levels of term 0 that reach it.
    let mut by_col: Vec<Vec<u32>> = vec![Vec::new(); n_t];
    for (c, cols) in reach.iter().enumerate() {
        for &t in cols {
            by_col[t as usize].push(c as u32);
        }
    }
    // Direct neighbours among the other terms.
    let mut direct: Vec<Vec<u32>> = vec![Vec::new(); n_t];
    for k in 1..nt {
        let q = shapes[k].q;
        for lev in 0..shapes[k].n_levels {
            for e in 0..q {
                for b in 0..q {
                    direct[idx(k, lev, e)].push(idx(k, lev, b) as u32);
                }
            }
        }
        for j in 1..k {
            let pair = &a.pairs[k][j];
            for (r, c, _) in pair.blocks() {
                for e in 0..pair.qr {
                    for b in 0..pair.qc {
                        let (u, v) = (idx(k, r, e), idx(j, c, b));
                        direct[u].push(v as u32);
                        direct[v].push(u as u32);
                    }
                }
            }
        }
    }
    // Upper pattern (rows < column) of the Schur complement, by a marker sweep per column.
    let mut mark = vec![u32::MAX; n_t];
    let mut col_ptr = vec![0u32];
    let mut row_idx: Vec<u32> = Vec::new();
    for t in 0..n_t {
        let start = row_idx.len();
        mark[t] = t as u32;
        let mut add = |u: u32, row_idx: &mut Vec<u32>| {
            if (u as usize) < t && mark[u as usize] != t as u32 {
                mark[u as usize] = t as u32;
                row_idx.push(u);
            }
        };
        for &u in &direct[t] {
            add(u, &mut row_idx);
        }
        for &c in &by_col[t] {
            for &u in &reach[c as usize] {
                add(u, &mut row_idx);
            }
        }
        row_idx[start..].sort_unstable();
        if row_idx.len() >= u32::MAX as usize {
            return Err(LmmError::Shape(
                "the fill-in pattern is too large for 32-bit indices".into(),
            ));
        }
        col_ptr.push(row_idx.len() as u32);
    }
    let pattern = SymbolicSparseColMatRef::new_checked(n_t, n_t, &col_ptr, None, &row_idx);
    let mut perm = vec![0u32; n_t];
    let mut perm_inv = vec![0u32; n_t];
    let mut mem = MemBuffer::new(amd::order_scratch::<u32>(n_t, row_idx.len()));
    amd::order(
        &mut perm,
        &mut perm_inv,
        pattern,
        amd::Control::default(),
        MemStack::new(&mut mem),
    )
    .map_err(|e| LmmError::Shape(format!("AMD ordering failed: {e:?}")))?;
    Ok(perm_inv.into_iter().map(|p| p as usize).collect())
}

/// Writes Lambda' A Lambda (+ I on the random-effects diagonal) into the flattened layout.
fn scale_flat(a: &CrossProducts, lambdas: &[Vec<f64>], layout: &FlatLayout, out: &mut [f64]) {
    let pd = a.p + 1;
    for (k, s) in a.shapes.iter().enumerate() {
        let q = s.q;
        let lam = &lambdas[k];
        let dst = &mut out[layout.diag[k]..layout.diag[k] + a.diag[k].len()];
        if q == 1 {
            let l2 = lam[0] * lam[0];
            for (o, v) in dst.iter_mut().zip(&a.diag[k]) {
                *o = l2 * v + 1.0;
            }
        } else {
            for (o, blk) in dst
                .chunks_exact_mut(q * q)
                .zip(a.diag[k].chunks_exact(q * q))
            {
                scale_block(blk, lam, q, lam, q, o);
                for e in 0..q {
                    o[e + e * q] += 1.0;
                }
            }
        }
        for j in 0..k {
            let pair = &a.pairs[k][j];
            let (qi, qj) = (pair.qr, pair.qc);
            let dst = &mut out[layout.pairs[k][j]..layout.pairs[k][j] + pair.data.len()];
            if qi == 1 && qj == 1 {
                let f = lam[0] * lambdas[j][0];
                for (o, v) in dst.iter_mut().zip(&pair.data) {
                    *o = f * v;
                }
            } else {
                for (o, blk) in dst
                    .chunks_exact_mut(qi * qj)
                    .zip(pair.data.chunks_exact(qi * qj))
                {
                    scale_block(blk, lam, qi, &lambdas[j], qj, o);
                }
            }
        }
        // D'WZ_k Lambda_k: each level's pd x q slab times lambda_k.
        let dz = &a.dz[k];
        let dst = &mut out[layout.dz[k]..layout.dz[k] + dz.len()];
        if q == 1 {
            let f = lam[0];
            for (o, v) in dst.iter_mut().zip(dz) {
                *o = f * v;
            }
        } else {
            for (o, slab) in dst.chunks_exact_mut(pd * q).zip(dz.chunks_exact(pd * q)) {
                for b in 0..q {
                    let col = &mut o[b * pd..(b + 1) * pd];
                    col.fill(0.0);
                    for e in b..q {
                        let coef = lam[e + b * q];
                        if coef != 0.0 {
                            for (v, x) in col.iter_mut().zip(&slab[e * pd..(e + 1) * pd]) {
                                *v += coef * x;
                            }
                        }
                    }
                }
            }
        }
    }
    out[layout.dd..layout.dd + a.dd.len()].copy_from_slice(&a.dd);
}

fn internal(msg: &str) -> LmmError {
    LmmError::Shape(format!("internal error in the sparse Cholesky: {msg}"))
}
