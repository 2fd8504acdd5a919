//! The fill-reducing permutation P of the supernodal factor
//!
//! ```text
//!   P = [ term 0, level-major | AMD order of the other terms' columns | X, y ]
//! ```
//!
//! The first (largest) term keeps its own order, so its diagonal block stays block diagonal;
//! the other terms' columns are ordered by approximate minimum degree (faer's AMD) on the
//! pattern of their Schur complement once term 0 is eliminated (their own blocks, their cross
//! blocks, and the clique that each level of term 0 leaves among the columns it reaches); D =
//! [X y] comes last in its own order. Within each wide supernode the column order is free (its
//! diagonal block is dense), and is chosen afterwards so that the rows of its largest
//! descendants form long runs (`order_wide_supernodes`). lme4 lets CHOLMOD choose a fill-reducing
//! order of the whole random-effects part (AMD or METIS, `Cholesky(..., perm = TRUE)`);
//! MixedModels.jl keeps the terms in order and factors the fill-in densely.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::sparse::linalg::amd;
use faer::sparse::SymbolicSparseColMatRef;

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::model::crossprod::CrossProducts;
use crate::model::remat::ReTermShape;

/// Supernodes with at least this many random-effects columns get their columns reordered (see
/// `order_wide_supernodes`).
const WIDE_COLUMNS: usize = 64;

/// For each term, the column of L of each of its random effects (level-major): term 0 first in
/// its own order, the other terms' columns by AMD after term 0 (`amd_order_after_first`).
/// `n_re` is the number of random-effects columns.
pub(super) fn term_columns(a: &CrossProducts, n_re: usize, exec: &Exec) -> Result<Vec<Vec<u32>>> {
    let shapes = &a.shapes;
    let nt = shapes.len();
    let sizes: Vec<usize> = shapes.iter().map(ReTermShape::size).collect();
    let n0 = sizes[0];
    // Columns of the other terms, numbered t = off_t[k] + level q_k + a, ordered by AMD on the
    // pattern that eliminating term 0 leaves.
    let mut off_t = vec![0usize; nt];
    for k in 2..nt {
        off_t[k] = off_t[k - 1] + sizes[k - 1];
    }
    let n_t = n_re - n0;
    let perm_inv = amd_order_after_first(a, &off_t, n_t, exec)?;
    let mut pos: Vec<Vec<u32>> = Vec::with_capacity(nt);
    pos.push((0..n0 as u32).collect());
    for k in 1..nt {
        pos.push(
            (0..sizes[k])
                .map(|e| (n0 + perm_inv[off_t[k] + e]) as u32)
                .collect(),
        );
    }
    Ok(pos)
}

/// The pattern of the other terms, in their own numbering (see `term_columns`): for each level
/// of term 0 the columns it reaches (sorted), for each column the levels of term 0 that reach
/// it, and each column's direct neighbours (its own block and the cross blocks).
struct SchurPattern {
    reach: Vec<Vec<u32>>,
    by_col: Vec<Vec<u32>>,
    direct: Vec<Vec<u32>>,
}

impl SchurPattern {
    fn new(a: &CrossProducts, off_t: &[usize], n_t: usize) -> Self {
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
        for cols in &mut reach {
            cols.sort_unstable();
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
        SchurPattern {
            reach,
            by_col,
            direct,
        }
    }

    /// Upper pattern (rows < column) of the Schur complement for columns t0..t1, by a marker
    /// sweep per column (branch-free: every candidate is written, and kept only if its mark was
    /// not yet set; a column has fewer than n_t distinct rows, so `buf` never overflows).
    /// Returns their row counts and rows.
    fn sweep(&self, t0: usize, t1: usize) -> Result<(Vec<u32>, Vec<u32>)> {
        let n_t = self.direct.len();
        let mut mark = vec![u32::MAX; n_t];
        let mut buf = vec![0u32; n_t];
        let mut counts = Vec::with_capacity(t1 - t0);
        let mut rows: Vec<u32> = Vec::new();
        for t in t0..t1 {
            if t % 64 == 0 {
                crate::exec::check_interrupt()?;
            }
            let tt = t as u32;
            let mut len = 0;
            let mut add = |u: u32| {
                let fresh = mark[u as usize] != tt;
                mark[u as usize] = tt;
                buf[len] = u;
                len += usize::from(fresh);
            };
            for &u in self.direct[t].iter().filter(|&&u| u < tt) {
                add(u);
            }
            for &c in &self.by_col[t] {
                for &u in self.reach[c as usize].iter().take_while(|&&u| u < tt) {
                    add(u);
                }
            }
            let col = &mut buf[..len];
            col.sort_unstable();
            rows.extend_from_slice(col);
            if rows.len() >= u32::MAX as usize {
                return Err(too_large());
            }
            counts.push(len as u32);
        }
        Ok((counts, rows))
    }

    /// The column that splits the sweep into two halves of about equal work (the work of column
    /// t: its direct neighbours and the columns before it that its levels reach).
    fn middle(&self) -> usize {
        let n_t = self.direct.len();
        let work: Vec<usize> = (0..n_t)
            .map(|t| {
                let before =
                    |c: &u32| self.reach[*c as usize].partition_point(|&u| (u as usize) < t);
                self.direct[t].len() + self.by_col[t].iter().map(before).sum::<usize>()
            })
            .collect();
        let half = work.iter().sum::<usize>() / 2;
        let mut acc = 0;
        work.iter()
            .position(|&w| {
                acc += w;
                acc > half
            })
            .unwrap_or(n_t)
    }
}

fn too_large() -> LmmError {
    LmmError::Shape("the fill-in pattern is too large for 32-bit indices".into())
}

/// AMD on the pattern of the Schur complement of term 0 in the random-effects part (the other
/// terms' own blocks, their cross blocks, and the cliques that each level of term 0 leaves).
/// Returns the new position of each of those columns.
fn amd_order_after_first(
    a: &CrossProducts,
    off_t: &[usize],
    n_t: usize,
    exec: &Exec,
) -> Result<Vec<usize>> {
    if n_t == 0 {
        return Ok(Vec::new());
    }
    let schur = SchurPattern::new(a, off_t, n_t);
    // Two halves of about equal work run side by side.
    let mid = schur.middle();
    let (first, second) =
        exec.install(|| rayon::join(|| schur.sweep(0, mid), || schur.sweep(mid, n_t)));
    let ((c0, r0), (c1, r1)) = (first?, second?);
    crate::exec::check_interrupt()?;
    if r0.len() + r1.len() >= u32::MAX as usize {
        return Err(too_large());
    }
    let mut col_ptr = Vec::with_capacity(n_t + 1);
    col_ptr.push(0u32);
    for c in c0.into_iter().chain(c1) {
        col_ptr.push(col_ptr[col_ptr.len() - 1] + c);
    }
    let mut row_idx = r0;
    row_idx.extend_from_slice(&r1);
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

/// For each supernode of at least `WIDE_COLUMNS` random-effects columns, a new order of those
/// columns: sorted by which of its (up to 16) largest descendants reach them, the largest first,
/// so that each descendant's rows in it form few runs (the scatter of its product becomes
/// mostly contiguous). Returns the map from old to new column, or None when nothing moves.
pub(super) fn order_wide_supernodes(
    begin: &[usize],
    row_ptr: &[usize],
    rows: &[u32],
    n_re: usize,
) -> Option<Vec<u32>> {
    let ns = begin.len() - 1;
    let n = begin[ns];
    let wide: Vec<usize> = (0..ns)
        .filter(|&s| begin[s + 1].min(n_re).saturating_sub(begin[s]) >= WIDE_COLUMNS)
        .collect();
    if wide.is_empty() {
        return None;
    }
    let mut reach = descendant_reach(begin, row_ptr, rows, n_re);
    let mut map: Vec<u32> = (0..n as u32).collect();
    let mut moved = false;
    for &s in &wide {
        let f = begin[s];
        let k = begin[s + 1].min(n_re) - f;
        let list = &mut reach[s];
        list.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut signature = vec![0u16; k];
        for (bit, &(_, lo, hi)) in list.iter().take(16).enumerate() {
            for &r in &rows[lo..hi] {
                signature[r as usize - f] |= 1 << (15 - bit);
            }
        }
        let mut order: Vec<usize> = (0..k).collect();
        // Columns reached by the largest descendant first, then by the next, and so on.
        order.sort_by_key(|&c| (std::cmp::Reverse(signature[c]), c));
        for (new, &old) in order.iter().enumerate() {
            map[f + old] = (f + new) as u32;
            moved |= new != old;
        }
    }
    moved.then_some(map)
}

/// For each supernode, its descendants' rows inside its random-effects columns (a range of
/// `rows`), with their weight (columns x rows^2, the size of their product).
fn descendant_reach(
    begin: &[usize],
    row_ptr: &[usize],
    rows: &[u32],
    n_re: usize,
) -> Vec<Vec<(f64, usize, usize)>> {
    let ns = begin.len() - 1;
    let n = begin[ns];
    let mut owner_sn = vec![usize::MAX; n];
    for s in 0..ns {
        owner_sn[begin[s]..begin[s + 1]].fill(s);
    }
    let mut reach: Vec<Vec<(f64, usize, usize)>> = vec![Vec::new(); ns];
    for d in 0..ns {
        let k = (begin[d + 1] - begin[d]) as f64;
        let pat = &rows[row_ptr[d]..row_ptr[d + 1]];
        let mut i = 0;
        while i < pat.len() {
            let s = owner_sn[pat[i] as usize];
            let mut e = i + 1;
            while e < pat.len() && owner_sn[pat[e] as usize] == s {
                e += 1;
            }
            let end = begin[s + 1].min(n_re) as u32;
            let re_end = i + pat[i..e].partition_point(|&r| r < end);
            if re_end > i {
                let below = (pat.len() - i) as f64;
                reach[s].push((
                    k * below * (re_end - i) as f64,
                    row_ptr[d] + i,
                    row_ptr[d] + re_end,
                ));
            }
            i = e;
        }
    }
    reach
}
