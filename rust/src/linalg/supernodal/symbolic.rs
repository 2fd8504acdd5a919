//! The symbolic step of the supernodal factor, done once per model
//!
//! ```text
//!   pattern(P A P')  ->  supernodes s (columns begin[s]..begin[s + 1], rows below them)
//!                    ->  updates: descendant d of s, rows of d's pattern inside s's columns
//! ```
//!
//! From the ordering P (`ordering.rs`) it builds the permuted pattern of A (upper triangle),
//! runs faer's symbolic supernodal Cholesky on it (elimination tree, column counts, supernodes
//! and their row patterns), and derives everything the numeric step (`numeric.rs`) reads and
//! never changes: the update that each supernode sends to each later one with the rows it
//! lands on in the target's panel, which of them are applied column by column (`Pull`) and
//! which as matrix products (`Product`), where each element of the scaled A lands in L
//! (`assembly`), the flattened layout of A that the numeric step scales (`FlatLayout`), and,
//! through `schedule.rs`, who does what on how many threads. CHOLMOD's `cholmod_super_symbolic`
//! plays this part in lme4 (its relaxed supernodes and relative maps); MixedModels.jl's blocked
//! factor needs no symbolic step beyond the block types.

use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, SymbolicCholeskyRaw, SymmetricOrdering,
};
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::SymbolicSparseColMatRef;
use faer::Side;

use super::ordering::{order_wide_supernodes, term_columns};
use super::schedule::{Schedule, COST_FMA, COST_PULL};
use super::DIRECT_UPDATE;
use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::model::crossprod::CrossProducts;
use crate::model::remat::ReTermShape;

/// One update that supernode `d` sends to a later supernode: rows `start..` of d's below-diagonal
/// pattern, of which the first `len` fall in the target's columns; their rows in the target's
/// panel are `update_rows[rows..]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Update {
    pub(super) d: u32,
    pub(super) start: u32,
    pub(super) len: u32,
    pub(super) rows: u32,
}

/// One target column's share of a small update: `count` rows of the descendant's panel from
/// value offset `x` (at the row that meets the target column; `kd` columns `md` apart) are
/// multiplied by that row and subtracted at the target rows `update_rows[rows..rows + count]`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pull {
    pub(super) x: u32,
    pub(super) rows: u32,
    pub(super) count: u32,
    pub(super) kd: u32,
    pub(super) md: u32,
}

/// A large update, applied as matrix products: `updates[update]`, whose target rows split into
/// runs of consecutive rows ending at `run_ends[runs.0..runs.1]` (positions in its rows).
#[derive(Clone, Copy, Debug)]
pub(super) struct Product {
    pub(super) update: u32,
    pub(super) runs: (u32, u32),
}

/// Offsets of each block of A in the flattened copy that the numeric step scales.
#[derive(Clone, Debug, Default)]
pub(super) struct FlatLayout {
    pub(super) diag: Vec<usize>,
    /// pairs[i][j] for j < i.
    pub(super) pairs: Vec<Vec<usize>>,
    pub(super) dz: Vec<usize>,
    pub(super) dd: usize,
    pub(super) len: usize,
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

/// Everything the numeric step needs to know and never changes.
#[derive(Clone, Debug, Default)]
pub(super) struct Symbolic {
    pub(super) pd: usize,
    /// Columns of the random-effects part (the first `n_re` columns of L).
    pub(super) n_re: usize,
    /// For each term, the column of L of each of its random effects (level-major).
    pub(super) pos: Vec<Vec<u32>>,
    /// For each column of the random-effects part, its term and its index within the term.
    pub(super) owner: Vec<(u32, u32)>,
    /// Supernode s holds columns `begin[s]..begin[s + 1]`.
    pub(super) begin: Vec<usize>,
    /// The rows below the diagonal block of supernode s: `rows[row_ptr[s]..row_ptr[s + 1]]`.
    pub(super) row_ptr: Vec<usize>,
    pub(super) rows: Vec<u32>,
    /// Supernode s is a dense column-major panel of (columns + pattern rows) x columns starting
    /// at `values[val_ptr[s]]` (panels are laid out group by group, see `Schedule`).
    pub(super) val_ptr: Vec<usize>,
    pub(super) updates: Vec<Update>,
    pub(super) update_rows: Vec<u32>,
    /// The column-by-column updates that global column c receives:
    /// `pulls[pull_ptr[c]..pull_ptr[c + 1]]`.
    pub(super) pull_ptr: Vec<usize>,
    pub(super) pulls: Vec<Pull>,
    /// The pulls of column c from supernodes of the groups come first; those from top
    /// supernodes start at `pull_late[c]` (see `Part`).
    pub(super) pull_late: Vec<usize>,
    /// Estimated cost of assembling each column (see `COST_FMA`), to split top supernodes
    /// evenly between threads.
    pub(super) col_work: Vec<f64>,
    /// The matrix-product updates that supernode s receives: `products[prod_ptr[s]..]`.
    pub(super) prod_ptr: Vec<usize>,
    pub(super) products: Vec<Product>,
    /// As `pull_late` for the products of supernode s.
    pub(super) prod_late: Vec<usize>,
    /// The column-by-column updates of each item of the first pass (`Schedule::ready_items`),
    /// with their column in the item, ordered by descendant:
    /// `item_pulls[item_pull_ptr[i]..item_pull_ptr[i + 1]]`.
    pub(super) item_pull_ptr: Vec<usize>,
    pub(super) item_pulls: Vec<(u32, Pull)>,
    pub(super) run_ends: Vec<u32>,
    /// (position in the flattened scaled A, offset in its supernode's panel) for global column
    /// c: `assembly[asm_col[c]..asm_col[c + 1]]` (so a supernode's, or a range of its columns',
    /// are contiguous).
    pub(super) asm_col: Vec<usize>,
    pub(super) assembly: Vec<(u32, u32)>,
    pub(super) layout: FlatLayout,
    pub(super) schedule: Schedule,
}

/// One element of A (lower triangle of the symmetric matrix, each pair once) with its place in
/// the permuted matrix (`row <= col`) and in the flattened scaled copy.
#[derive(Clone, Copy, Debug)]
struct Entry {
    row: u32,
    col: u32,
    src: u32,
}

impl Symbolic {
    /// The symbolic step: ordering, supernodes, update lists, the assembly map and the schedule
    /// for `threads` threads (one thread if the factor's estimated work is below
    /// `parallel_min_work`). The rayon parts run on `exec`'s threads.
    pub(super) fn new(
        a: &CrossProducts,
        exec: &Exec,
        threads: usize,
        parallel_min_work: f64,
    ) -> Result<Self> {
        let pd = a.p + 1;
        let n_re: usize = a.shapes.iter().map(ReTermShape::size).sum();
        let n = n_re + pd;
        if n >= u32::MAX as usize / 2 {
            return Err(LmmError::Shape(format!(
                "{n} columns are too many for the sparse factor"
            )));
        }
        let mut pos = term_columns(a, n_re, exec)?;
        let layout = FlatLayout::new(a);
        let mut entries = a_entries(a, &layout, &pos, n_re, pd);
        crate::exec::check_interrupt()?;
        let (begin, row_ptr, mut rows) = supernodes(n, &entries)?;
        crate::exec::check_interrupt()?;
        // Within each wide supernode the column order is free (its diagonal block is dense):
        // order it so that the rows of its largest descendants form long runs.
        if let Some(map) = order_wide_supernodes(&begin, &row_ptr, &rows, n_re) {
            renumber(&map, &row_ptr, &mut rows, &mut pos, &mut entries);
        }
        let mut owner = vec![(0u32, 0u32); n_re];
        for (k, pk) in pos.iter().enumerate() {
            for (e, &c) in pk.iter().enumerate() {
                owner[c as usize] = (k as u32, e as u32);
            }
        }
        let mut sym = Symbolic {
            pd,
            n_re,
            pos,
            owner,
            begin,
            row_ptr,
            rows,
            layout,
            ..Default::default()
        };
        sym.check_panel_sizes()?;
        let mut owner_sn = vec![0u32; n];
        for s in 0..sym.n_supernodes() {
            owner_sn[sym.begin[s]..sym.begin[s + 1]].fill(s as u32);
        }
        sym.collect_updates(&owner_sn)?;
        crate::exec::check_interrupt()?;
        // The schedule, then the panels laid out group by group.
        for e in &entries {
            sym.col_work[e.row as usize] += 1.0;
        }
        sym.schedule = sym.tree_schedule(&owner_sn, threads, parallel_min_work);
        crate::exec::check_interrupt()?;
        sym.lay_out_panels()?;
        crate::exec::check_interrupt()?;
        // The column-by-column updates and the assembly map are independent: built side by
        // side (about 4 ms of InstEval's symbolic step).
        let ((pulls, pull_late, ready_order), (asm_col, assembly)) = {
            let sym = &sym;
            let entries = &entries[..];
            let owner_sn = &owner_sn[..];
            exec.install(|| {
                rayon::join(|| sym.pull_lists(), || sym.assembly_map(entries, owner_sn))
            })
        };
        (sym.pulls, sym.pull_late, sym.asm_col, sym.assembly) =
            (pulls, pull_late, asm_col, assembly);
        crate::exec::check_interrupt()?;
        sym.split_late_products();
        sym.plan_top_chunks(&ready_order);
        Ok(sym)
    }

    pub(super) fn n_supernodes(&self) -> usize {
        self.begin.len() - 1
    }

    pub(super) fn cols(&self, s: usize) -> usize {
        self.begin[s + 1] - self.begin[s]
    }

    /// Rows of the panel of supernode s (its columns, then the pattern below).
    pub(super) fn height(&self, s: usize) -> usize {
        self.cols(s) + self.row_ptr[s + 1] - self.row_ptr[s]
    }

    pub(super) fn pattern(&self, s: usize) -> &[u32] {
        &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]]
    }

    /// Whether each supernode is above the groups of the schedule.
    fn is_top(&self) -> Vec<bool> {
        let mut is_top = vec![false; self.n_supernodes()];
        for &t in &self.schedule.top {
            is_top[t as usize] = true;
        }
        is_top
    }

    /// Fails when a panel would not fit the 32-bit offsets of the numeric step.
    fn check_panel_sizes(&self) -> Result<()> {
        for s in 0..self.n_supernodes() {
            let (h, k) = (self.height(s), self.cols(s));
            if h * k >= u32::MAX as usize {
                return Err(LmmError::Shape(format!(
                    "a supernode of {h} x {k} values is too large for the sparse factor"
                )));
            }
        }
        Ok(())
    }

    /// The updates that each supernode sends to later ones, grouped by target, with their
    /// rows in the target's panel; the estimated assembly work of each column; the large
    /// updates (`products`, with the runs of their target rows) and the number of small ones
    /// each column receives (`pull_ptr`).
    fn collect_updates(&mut self, owner_sn: &[u32]) -> Result<()> {
        let ns = self.n_supernodes();
        let n = self.begin[ns];
        let by_target = updates_by_target(&self.row_ptr, &self.rows, owner_sn);
        let mut local = vec![0u32; n];
        let mut update_rows: Vec<u32> = Vec::new();
        let mut updates: Vec<Update> = Vec::with_capacity(by_target.len());
        let mut col_work = vec![0.0f64; n];
        let mut prod_ptr = vec![0usize; ns + 1];
        let mut products: Vec<Product> = Vec::new();
        let mut run_ends: Vec<u32> = Vec::new();
        let mut pull_count = vec![0usize; n + 1];
        let mut current = usize::MAX;
        for &(s, u) in &by_target {
            let s = s as usize;
            if s != current {
                current = s;
                let (f, l) = (self.begin[s], self.begin[s + 1]);
                for (i, r) in (f..l).enumerate() {
                    local[r] = i as u32;
                }
                for (i, &r) in self.pattern(s).iter().enumerate() {
                    local[r as usize] = (self.cols(s) + i) as u32;
                }
            }
            let d = u.d as usize;
            let drows = &self.rows[self.row_ptr[d] + u.start as usize..self.row_ptr[d + 1]];
            let rows_at = update_rows.len();
            if rows_at + drows.len() >= u32::MAX as usize {
                return Err(LmmError::Shape(
                    "too many descendant updates for the sparse factor".into(),
                ));
            }
            update_rows.extend(drows.iter().map(|&r| local[r as usize]));
            let index = updates.len() as u32;
            let kd = self.cols(d);
            let mp = drows.len();
            let size = kd * mp * u.len as usize;
            let product = kd > 1 && size > DIRECT_UPDATE;
            for (jj, &r) in drows[..u.len as usize].iter().enumerate() {
                let below = (mp - jj) as f64;
                col_work[r as usize] += if product {
                    below * (1.0 + kd as f64 * COST_FMA)
                } else {
                    below * kd as f64 + COST_PULL
                };
            }
            if product {
                let lr = &update_rows[rows_at..];
                let lo = run_ends.len() as u32;
                for i in 1..lr.len() {
                    if lr[i] != lr[i - 1] + 1 {
                        run_ends.push(i as u32);
                    }
                }
                run_ends.push(lr.len() as u32);
                products.push(Product {
                    update: index,
                    runs: (lo, run_ends.len() as u32),
                });
                prod_ptr[s + 1] += 1;
            } else {
                for &r in &drows[..u.len as usize] {
                    pull_count[r as usize + 1] += 1;
                }
            }
            updates.push(Update {
                rows: rows_at as u32,
                ..u
            });
        }
        for s in 0..ns {
            prod_ptr[s + 1] += prod_ptr[s];
        }
        for c in 0..n {
            pull_count[c + 1] += pull_count[c];
        }
        self.updates = updates;
        self.update_rows = update_rows;
        self.col_work = col_work;
        self.prod_ptr = prod_ptr;
        self.products = products;
        self.run_ends = run_ends;
        self.pull_ptr = pull_count;
        Ok(())
    }

    /// Whether update `u` is applied column by column (see `DIRECT_UPDATE`).
    fn is_pulled(&self, u: &Update) -> bool {
        let d = u.d as usize;
        let (kd, md) = (self.cols(d), self.height(d));
        let mp = md - kd - u.start as usize;
        !(kd > 1 && kd * mp * u.len as usize > DIRECT_UPDATE)
    }

    /// The column-by-column updates of each column: those from the groups first, then those
    /// from top supernodes (from `pull_late[c]`). Also returns (column, index in the pulls) of
    /// the pulls from the groups, in the order of the updates.
    #[allow(clippy::type_complexity)]
    fn pull_lists(&self) -> (Vec<Pull>, Vec<usize>, Vec<(u32, u32)>) {
        let n = self.begin[self.n_supernodes()];
        let mut pulls = vec![Pull::default(); self.pull_ptr[n]];
        let is_top = self.is_top();
        let mut fill = self.pull_ptr.clone();
        let mut pull_late = Vec::new();
        let mut ready_order: Vec<(u32, u32)> = Vec::new();
        for late in [false, true] {
            if late {
                pull_late.clone_from(&fill);
            }
            for u in &self.updates {
                let d = u.d as usize;
                if is_top[d] != late || !self.is_pulled(u) {
                    continue;
                }
                let (kd, md) = (self.cols(d), self.height(d));
                let mp = md - kd - u.start as usize;
                let drows = &self.pattern(d)[u.start as usize..];
                for (idx, &r) in drows[..u.len as usize].iter().enumerate() {
                    pulls[fill[r as usize]] = Pull {
                        x: (self.val_ptr[d] + kd + u.start as usize + idx) as u32,
                        rows: u.rows + idx as u32,
                        count: (mp - idx) as u32,
                        kd: kd as u32,
                        md: md as u32,
                    };
                    if !late {
                        ready_order.push((r, fill[r as usize] as u32));
                    }
                    fill[r as usize] += 1;
                }
            }
        }
        pull_late.truncate(n);
        (pulls, pull_late, ready_order)
    }

    /// Orders the products of each supernode: those from the groups first, then those from
    /// top supernodes (from `prod_late[s]`).
    fn split_late_products(&mut self) {
        let ns = self.n_supernodes();
        let is_top = self.is_top();
        let mut prod_late = vec![0usize; ns];
        for (s, late) in prod_late.iter_mut().enumerate() {
            let mine = &mut self.products[self.prod_ptr[s]..self.prod_ptr[s + 1]];
            let updates = &self.updates;
            let from_top = |p: &Product| is_top[updates[p.update as usize].d as usize];
            mine.sort_by_key(from_top);
            *late = self.prod_ptr[s] + mine.partition_point(|p| !from_top(p));
        }
        self.prod_late = prod_late;
    }

    /// Where each element of A goes: the supernode of its (lower) column and the offset.
    /// Grouped by (lower) column, so that each supernode's entries are contiguous and a range
    /// of its columns is a range of its entries. Returns the column pointers and the map.
    fn assembly_map(&self, entries: &[Entry], owner_sn: &[u32]) -> (Vec<usize>, Vec<(u32, u32)>) {
        let n = self.begin[self.n_supernodes()];
        let mut col_start = vec![0usize; n + 1];
        for e in entries {
            col_start[e.row as usize + 1] += 1;
        }
        for c in 0..n {
            col_start[c + 1] += col_start[c];
        }
        let mut fill = col_start.clone();
        let mut assembly = vec![(0u32, 0u32); entries.len()];
        for e in entries {
            let (r, c) = (e.col as usize, e.row as usize); // lower triangle: r >= c
            let s = owner_sn[c] as usize;
            let local_row = if r < self.begin[s + 1] {
                r - self.begin[s]
            } else {
                self.cols(s)
                    + self
                        .pattern(s)
                        .binary_search(&(r as u32))
                        .expect("A's pattern is inside L's")
            };
            let off = (c - self.begin[s]) * self.height(s) + local_row;
            assembly[fill[c]] = (e.src, off as u32);
            fill[c] += 1;
        }
        (col_start, assembly)
    }

    pub(super) fn pivot_error(&self, col: usize) -> LmmError {
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
}

/// The supernodes of the factor of the permuted A (whose elements are `entries`): faer's
/// symbolic supernodal Cholesky on its upper pattern. Returns the first column of each
/// supernode (and n), and the rows below each supernode's diagonal block
/// (`rows[row_ptr[s]..row_ptr[s + 1]]`).
fn supernodes(n: usize, entries: &[Entry]) -> Result<(Vec<usize>, Vec<usize>, Vec<u32>)> {
    let (col_ptr, row_idx) = upper_pattern(n, entries.iter().map(|e| (e.row, e.col)));
    let pattern = SymbolicSparseColMatRef::new_checked(n, n, &col_ptr, None, &row_idx);
    let params = CholeskySymbolicParams {
        supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
        ..Default::default()
    };
    let symbolic =
        factorize_symbolic_cholesky(pattern, Side::Upper, SymmetricOrdering::Identity, params)
            .map_err(|e| LmmError::Shape(format!("sparse symbolic factorisation failed: {e:?}")))?;
    let SymbolicCholeskyRaw::Supernodal(sn) = symbolic.raw() else {
        return Err(internal("faer chose a simplicial factor"));
    };
    let ns = sn.n_supernodes();
    let mut begin: Vec<usize> = sn.supernode_begin().iter().map(|&b| b as usize).collect();
    begin.push(n);
    let mut row_ptr = Vec::with_capacity(ns + 1);
    let mut rows = Vec::new();
    row_ptr.push(0);
    for s in 0..ns {
        rows.extend_from_slice(sn.supernode(s).pattern());
        row_ptr.push(rows.len());
    }
    Ok((begin, row_ptr, rows))
}

/// Applies a new column order (`map`, old to new) to the supernodes' row patterns (kept
/// sorted), the terms' columns and A's elements.
fn renumber(
    map: &[u32],
    row_ptr: &[usize],
    rows: &mut [u32],
    pos: &mut [Vec<u32>],
    entries: &mut [Entry],
) {
    for r in rows.iter_mut() {
        *r = map[*r as usize];
    }
    for s in 0..row_ptr.len() - 1 {
        rows[row_ptr[s]..row_ptr[s + 1]].sort_unstable();
    }
    for pk in pos.iter_mut() {
        for c in pk.iter_mut() {
            *c = map[*c as usize];
        }
    }
    for e in entries.iter_mut() {
        let (r, c) = (map[e.row as usize], map[e.col as usize]);
        (e.row, e.col) = (r.min(c), r.max(c));
    }
}

/// Every update, as (target supernode, update without its rows), sorted by target then
/// descendant: each supernode d sends one to the supernode of each run of its pattern's rows
/// that fall in the same supernode.
fn updates_by_target(row_ptr: &[usize], rows: &[u32], owner_sn: &[u32]) -> Vec<(u32, Update)> {
    let ns = row_ptr.len() - 1;
    let mut by_target: Vec<(u32, Update)> = Vec::new();
    for d in 0..ns {
        let pat = &rows[row_ptr[d]..row_ptr[d + 1]];
        let mut i = 0;
        while i < pat.len() {
            let s = owner_sn[pat[i] as usize];
            let mut e = i + 1;
            while e < pat.len() && owner_sn[pat[e] as usize] == s {
                e += 1;
            }
            let update = Update {
                d: d as u32,
                start: i as u32,
                len: (e - i) as u32,
                rows: 0,
            };
            by_target.push((s, update));
            i = e;
        }
    }
    by_target.sort_by_key(|&(s, u)| (s, u.d));
    by_target
}

/// Every element of A that the factor needs, in permuted coordinates.
fn a_entries(
    a: &CrossProducts,
    layout: &FlatLayout,
    pos: &[Vec<u32>],
    n_re: usize,
    pd: usize,
) -> Vec<Entry> {
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

fn internal(msg: &str) -> LmmError {
    LmmError::Shape(format!("internal error in the sparse Cholesky: {msg}"))
}
