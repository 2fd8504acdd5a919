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
//! patterns (faer's symbolic supernodal Cholesky), the updates each supernode receives from its
//! descendants with their rows in the target, where each element of A lands in L, and a
//! schedule for two or more threads. The numeric step (once per theta) is a left-looking
//! supernodal factorisation: for each supernode, scatter the scaled cross-products into its
//! dense panel, subtract the products of the descendant panels that reach it (small ones
//! column by column, large ones as matrix products in column blocks), factor the diagonal block
//! and solve the rows below. Independent subtrees of the elimination tree run on different
//! threads. The supernodes above them are assembled in two passes: first, all at once and split
//! between the threads by column chunks, everything the subtrees made ready (A's entries and the
//! subtrees' updates, most of the work: in InstEval, all 1.4 million column-by-column updates
//! of the root); then the updates from the supernodes above the subtrees, each followed by its
//! factor: independent subtrees of narrow ones side by side, one thread each
//! (`group_narrow_tops`), then the others one at a time, the widest (and narrower ones with
//! many rows below, `team_factors`) factored by all threads (`dense_llt`). The threads are a
//! `team.rs` team, awake for the whole numeric step, so the many short steps cost no wake-ups.
//! Nothing is allocated per evaluation.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltError, LltParams,
};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
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
use crate::dense_llt::{self, SharedPanel};
use crate::error::{LmmError, Result};
use crate::team::Ctx;

/// Diagonal blocks up to this many columns are factored by a plain column loop; larger ones by
/// faer's blocked dense Cholesky.
pub const SMALL_PANEL: usize = 24;

/// Diagonal blocks of at least this many columns are factored by the whole team
/// (`dense_llt`); smaller ones by one thread while the others wait, unless the rows below are
/// many (`team_factors`).
pub const TEAM_FACTOR_MIN: usize = 192;

/// Panels of at least `TEAM_SOLVE_COLUMNS` columns and `TEAM_SOLVE_ROWS` rows below them are
/// factored by the team too: one thread factors the diagonal block, all solve the rows below.
/// (In InstEval, 7 of the 15 small top supernodes: 1 to 2% of an evaluation, measured paired.)
const TEAM_SOLVE_COLUMNS: usize = 16;
const TEAM_SOLVE_ROWS: usize = 256;

/// Whether the team factors a top supernode of k columns and height m (see `dense_llt`).
fn team_factors(k: usize, m: usize) -> bool {
    k >= TEAM_FACTOR_MIN || (k >= TEAM_SOLVE_COLUMNS && m - k >= TEAM_SOLVE_ROWS)
}

/// Descendant updates with at most this many multiply-adds (and all rank-one updates) are
/// applied column by column in place; larger ones as matrix products.
pub const DIRECT_UPDATE: usize = 4096;

/// Columns of the target per matrix product of a large update (bounds the work wasted above
/// the diagonal and the size of the temporary product).
const PRODUCT_COLUMNS: usize = 64;

/// Large updates whose target rows form at most this many runs of consecutive rows are
/// subtracted in place, a matrix product per pair of runs (`subtract_by_runs`).
const DIRECT_RUNS: usize = 8;

/// Supernodes with at least this many random-effects columns get their columns reordered (see
/// `order_wide_supernodes`).
const WIDE_COLUMNS: usize = 64;

/// Supernodes above the independent subtrees are split between threads by columns into chunks
/// of at least this estimated work (see `COST_FMA`, about 25 microseconds).
const CHUNK_WORK: f64 = 25_000.0;

/// Estimated cost of the parts of the numeric step, in units of one scattered update (about a
/// nanosecond): a multiply-add inside a dense kernel, the fixed cost of a column-by-column
/// update, and of zeroing or assembling one value.
const COST_FMA: f64 = 1.0 / 20.0;
const COST_PULL: f64 = 4.0;
const COST_ZERO: f64 = 1.0 / 8.0;

/// Factors estimated to cost less than this (in the units above, about a millisecond) run on
/// one thread: below it, waking and joining threads cost more than they save.
const PARALLEL_MIN_WORK: f64 = 1.0e6;

/// The two passes that assemble a top supernode: what is ready once the groups are factored
/// (A's entries and the updates from the groups' supernodes; all of a group supernode's
/// assembly), and the updates from the top supernodes before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Ready,
    Late,
}

/// One update that supernode `d` sends to a later supernode: rows `start..` of d's below-diagonal
/// pattern, of which the first `len` fall in the target's columns; their rows in the target's
/// panel are `update_rows[rows..]`.
#[derive(Clone, Copy, Debug)]
struct Update {
    d: u32,
    start: u32,
    len: u32,
    rows: u32,
}

/// One target column's share of a small update: `count` rows of the descendant's panel from
/// value offset `x` (at the row that meets the target column; `kd` columns `md` apart) are
/// multiplied by that row and subtracted at the target rows `update_rows[rows..rows + count]`.
#[derive(Clone, Copy, Debug)]
struct Pull {
    x: u32,
    rows: u32,
    count: u32,
    kd: u32,
    md: u32,
}

/// A large update, applied as matrix products: `updates[update]`, whose target rows split into
/// runs of consecutive rows ending at `run_ends[runs.0..runs.1]` (positions in its rows).
#[derive(Clone, Copy, Debug)]
struct Product {
    update: u32,
    runs: (u32, u32),
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
    /// Groups of independent subtrees factored in parallel.
    pub n_groups: usize,
    /// Supernodes above those subtrees.
    pub n_top: usize,
    /// Subtrees of narrow top supernodes finished side by side, one thread each.
    pub n_top_groups: usize,
}

/// Everything the numeric step needs to know and never changes.
#[derive(Clone, Debug)]
struct Symbolic {
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
    /// Supernode s is a dense column-major panel of (columns + pattern rows) x columns starting
    /// at `values[val_ptr[s]]` (panels are laid out group by group, see `Schedule`).
    val_ptr: Vec<usize>,
    updates: Vec<Update>,
    update_rows: Vec<u32>,
    /// The column-by-column updates that global column c receives:
    /// `pulls[pull_ptr[c]..pull_ptr[c + 1]]`.
    pull_ptr: Vec<usize>,
    pulls: Vec<Pull>,
    /// The pulls of column c from supernodes of the groups come first; those from top
    /// supernodes start at `pull_late[c]` (see `Part`).
    pull_late: Vec<usize>,
    /// Estimated cost of assembling each column (see `COST_FMA`), to split top supernodes
    /// evenly between threads.
    col_work: Vec<f64>,
    /// The matrix-product updates that supernode s receives: `products[prod_ptr[s]..]`.
    prod_ptr: Vec<usize>,
    products: Vec<Product>,
    /// As `pull_late` for the products of supernode s.
    prod_late: Vec<usize>,
    /// The column-by-column updates of each item of the first pass (`Schedule::ready_items`),
    /// with their column in the item, ordered by descendant:
    /// `item_pulls[item_pull_ptr[i]..item_pull_ptr[i + 1]]`.
    item_pull_ptr: Vec<usize>,
    item_pulls: Vec<(u32, Pull)>,
    run_ends: Vec<u32>,
    /// (position in the flattened scaled A, offset in its supernode's panel) for global column
    /// c: `assembly[asm_col[c]..asm_col[c + 1]]` (so a supernode's, or a range of its columns',
    /// are contiguous).
    asm_col: Vec<usize>,
    assembly: Vec<(u32, u32)>,
    layout: FlatLayout,
    schedule: Schedule,
}

/// Which supernodes run where. The panels of group g occupy `values[region[g]..region[g + 1]]`
/// and those of the top supernodes `values[region[groups.len()]..]`.
#[derive(Clone, Debug, Default)]
struct Schedule {
    /// Supernodes of each group of independent subtrees, in increasing order.
    groups: Vec<Vec<u32>>,
    /// The supernodes above the groups, in increasing order.
    top: Vec<u32>,
    region: Vec<usize>,
    /// Threads the schedule was made for.
    threads: usize,
    /// Column chunks of top supernode `top[i]`: their bounds are `chunks[chunk_ptr[i]..
    /// chunk_ptr[i + 1]]` (from 0 to its width), from `Symbolic::column_chunks`.
    chunk_ptr: Vec<usize>,
    chunks: Vec<u32>,
    /// The (index in `top`, chunk) pairs of the first pass over the top supernodes, heaviest
    /// supernode first.
    ready_items: Vec<(u32, u32)>,
    /// Whether top supernode `top[i]` receives updates from top supernodes (a second pass).
    late: Vec<bool>,
    /// Independent subtrees of narrow top supernodes (indices into `top`, increasing, heaviest
    /// subtree first): after the first pass, each is finished (second pass and factor) by one
    /// thread, while the others finish the other subtrees (see `group_narrow_tops`).
    top_groups: Vec<Vec<u32>>,
    /// The other top supernodes (indices into `top`, increasing), finished one at a time by
    /// the whole team after the groups.
    sequential: Vec<u32>,
}

/// Scratch of one thread.
#[derive(Clone, Debug)]
struct Worker {
    product: Vec<f64>,
    llt_stack: Vec<MaybeUninit<u8>>,
}

/// A second set of numeric values of a supernodal factor, to keep one factor aside while others
/// are computed (`SupernodalCholesky::swap_values`).
#[derive(Clone, Debug)]
pub struct KeptValues {
    values: Vec<f64>,
    d_block: Mat<f64>,
}

impl Default for KeptValues {
    fn default() -> Self {
        KeptValues {
            values: Vec::new(),
            d_block: Mat::zeros(0, 0),
        }
    }
}

/// The factor, its symbolic structure and the workspaces of the numeric step.
#[derive(Clone, Debug)]
pub struct SupernodalCholesky {
    /// Shared by the copies of a factor (`LmmProblem::objective_values` makes one per fit).
    sym: Arc<Symbolic>,
    values: Vec<f64>,
    scaled: Vec<f64>,
    workers: Vec<Worker>,
    d_block: Mat<f64>,
    /// Factor on the calling thread alone (see `set_serial`).
    serial: bool,
}

impl SupernodalCholesky {
    /// The symbolic step: ordering, supernodes, update lists, the assembly map and the schedule
    /// (for the threads of the current rayon pool, or one thread for a small factor).
    pub fn new(a: &CrossProducts) -> Result<Self> {
        Self::build(a, rayon::current_num_threads().max(1), PARALLEL_MIN_WORK)
    }

    /// The symbolic step with a schedule for `threads` threads whatever the size of the factor
    /// (for tests and benchmarks of the parallel paths).
    pub fn with_threads(a: &CrossProducts, threads: usize) -> Result<Self> {
        Self::build(a, threads.max(1), 0.0)
    }

    fn build(a: &CrossProducts, threads: usize, parallel_min_work: f64) -> Result<Self> {
        let shapes = &a.shapes;
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

        // The permuted pattern of A (upper triangle by columns), then faer's symbolic step.
        let mut entries = a_entries(a, &pos, n_re, pd);
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
        row_ptr.push(0);
        for s in 0..ns {
            rows.extend_from_slice(sn.supernode(s).pattern());
            row_ptr.push(rows.len());
        }
        drop(symbolic);

        // Within each wide supernode the column order is free (its diagonal block is dense):
        // order it so that the rows of its largest descendants form long runs.
        let map = order_wide_supernodes(&begin, &row_ptr, &rows, n_re);
        if let Some(map) = map {
            for r in rows.iter_mut() {
                *r = map[*r as usize];
            }
            for s in 0..ns {
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
        let mut owner = vec![(0u32, 0u32); n_re];
        for (k, pk) in pos.iter().enumerate() {
            for (e, &c) in pk.iter().enumerate() {
                owner[c as usize] = (k as u32, e as u32);
            }
        }
        let cols = |s: usize| begin[s + 1] - begin[s];
        let height = |s: usize| cols(s) + row_ptr[s + 1] - row_ptr[s];
        for s in 0..ns {
            if height(s) * cols(s) >= u32::MAX as usize {
                return Err(LmmError::Shape(format!(
                    "a supernode of {} x {} values is too large for the sparse factor",
                    height(s),
                    cols(s)
                )));
            }
        }
        let mut owner_sn = vec![0u32; n];
        for s in 0..ns {
            owner_sn[begin[s]..begin[s + 1]].fill(s as u32);
        }

        // Updates, grouped by target, with their rows in the target's panel.
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
                let (f, l) = (begin[s], begin[s + 1]);
                for (i, r) in (f..l).enumerate() {
                    local[r] = i as u32;
                }
                for (i, &r) in rows[row_ptr[s]..row_ptr[s + 1]].iter().enumerate() {
                    local[r as usize] = (cols(s) + i) as u32;
                }
            }
            let d = u.d as usize;
            let drows = &rows[row_ptr[d] + u.start as usize..row_ptr[d + 1]];
            let rows_at = update_rows.len();
            if rows_at + drows.len() >= u32::MAX as usize {
                return Err(LmmError::Shape(
                    "too many descendant updates for the sparse factor".into(),
                ));
            }
            update_rows.extend(drows.iter().map(|&r| local[r as usize]));
            let index = updates.len() as u32;
            let kd = cols(d);
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
        let pull_ptr = pull_count;

        // The schedule, then the panels laid out group by group.
        for e in &entries {
            col_work[e.row as usize] += 1.0;
        }
        let work: Vec<f64> = (0..ns)
            .map(|s| {
                let (k, m) = (cols(s) as f64, height(s) as f64);
                let assembly: f64 = col_work[begin[s]..begin[s + 1]].iter().sum();
                assembly + m * k * COST_ZERO + (k * k * k / 3.0 + (m - k) * k * k) * COST_FMA
            })
            .collect();
        let parent: Vec<usize> = (0..ns)
            .map(|s| {
                rows[row_ptr[s]..row_ptr[s + 1]]
                    .first()
                    .map_or(usize::MAX, |&r| owner_sn[r as usize] as usize)
            })
            .collect();
        let mut schedule = make_schedule(&parent, &work, threads, parallel_min_work);
        group_narrow_tops(&mut schedule, &parent, &work, |s| cols(s) < TEAM_FACTOR_MIN);
        let mut val_ptr = vec![0usize; ns + 1];
        let mut offset = 0;
        schedule.region.clear();
        for group in &schedule.groups {
            schedule.region.push(offset);
            for &s in group {
                val_ptr[s as usize] = offset;
                offset += height(s as usize) * cols(s as usize);
            }
        }
        // The top supernodes: each group of narrow ones contiguous (a thread that factors one
        // reads the panels of that group only), then the others.
        schedule.region.push(offset);
        let top_order: Vec<u32> = (schedule.top_groups.iter().flatten())
            .chain(&schedule.sequential)
            .map(|&i| schedule.top[i as usize])
            .collect();
        for &s in &top_order {
            val_ptr[s as usize] = offset;
            offset += height(s as usize) * cols(s as usize);
        }
        val_ptr[ns] = offset;
        if offset >= u32::MAX as usize {
            return Err(LmmError::Shape(format!(
                "{offset} values are too many for the sparse factor"
            )));
        }
        // The column-by-column updates and the assembly map are independent: built side by
        // side (about 4 ms of InstEval's symbolic step).
        let pull_lists = || {
            let mut pulls = vec![
                Pull {
                    x: 0,
                    rows: 0,
                    count: 0,
                    kd: 0,
                    md: 0,
                };
                pull_ptr[n]
            ];
            // Each column's pulls from the groups first, then those from top supernodes; the
            // products of each supernode likewise.
            let mut is_top = vec![false; ns];
            for &t in &schedule.top {
                is_top[t as usize] = true;
            }
            let mut fill = pull_ptr.clone();
            let mut pull_late = Vec::new();
            // (column, index in `pulls`) of the pulls from the groups, in the order of the updates.
            let mut ready_order: Vec<(u32, u32)> = Vec::new();
            for late in [false, true] {
                if late {
                    pull_late.clone_from(&fill);
                }
                for u in &updates {
                    let d = u.d as usize;
                    let (kd, md) = (cols(d), height(d));
                    let mp = md - kd - u.start as usize;
                    if is_top[d] != late || (kd > 1 && kd * mp * u.len as usize > DIRECT_UPDATE) {
                        continue;
                    }
                    let drows = &rows[row_ptr[d] + u.start as usize..row_ptr[d + 1]];
                    for (idx, &r) in drows[..u.len as usize].iter().enumerate() {
                        pulls[fill[r as usize]] = Pull {
                            x: (val_ptr[d] + kd + u.start as usize + idx) as u32,
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
            let mut prod_late = vec![0usize; ns];
            for s in 0..ns {
                let mine = &mut products[prod_ptr[s]..prod_ptr[s + 1]];
                let from_top = |p: &Product| is_top[updates[p.update as usize].d as usize];
                mine.sort_by_key(from_top);
                prod_late[s] = prod_ptr[s] + mine.partition_point(|p| !from_top(p));
            }
            (pulls, pull_late, ready_order, prod_late)
        };
        let assembly_map = || {
            // Where each element of A goes: the supernode of its (lower) column and the offset.
            // Grouped by (lower) column, so that each supernode's entries are contiguous and a
            // range of its columns is a range of its entries.
            let mut col_start = vec![0usize; n + 1];
            for e in &entries {
                col_start[e.row as usize + 1] += 1;
            }
            for c in 0..n {
                col_start[c + 1] += col_start[c];
            }
            let mut fill = col_start.clone();
            let mut assembly = vec![(0u32, 0u32); entries.len()];
            for e in &entries {
                let (r, c) = (e.col as usize, e.row as usize); // lower triangle: r >= c
                let s = owner_sn[c] as usize;
                let local_row = if r < begin[s + 1] {
                    r - begin[s]
                } else {
                    let pat = &rows[row_ptr[s]..row_ptr[s + 1]];
                    cols(s)
                        + pat
                            .binary_search(&(r as u32))
                            .expect("A's pattern is inside L's")
                };
                let off = (c - begin[s]) * height(s) + local_row;
                assembly[fill[c]] = (e.src, off as u32);
                fill[c] += 1;
            }
            (col_start, assembly)
        };
        let ((pulls, pull_late, ready_order, prod_late), (col_start, assembly)) =
            rayon::join(pull_lists, assembly_map);
        let layout = FlatLayout::new(a);

        // Workspaces: one per thread.
        let mut max_product = 0;
        for p in &products {
            let u = updates[p.update as usize];
            let d = u.d as usize;
            let mp = row_ptr[d + 1] - row_ptr[d] - u.start as usize;
            max_product = max_product.max(mp * (u.len as usize).min(PRODUCT_COLUMNS));
        }
        let max_k = (0..ns).map(cols).max().unwrap_or(0);
        let llt_req: StackReq =
            cholesky_in_place_scratch::<f64>(max_k, Par::Seq, Default::default());
        let worker = Worker {
            product: vec![0.0; max_product],
            llt_stack: vec![MaybeUninit::uninit(); llt_req.unaligned_bytes_required() + 64],
        };
        // One per thread of the team (`update` adds more if the team is larger).
        let n_workers = threads.max(1);
        let scaled_len = layout.len;
        let mut sym = Symbolic {
            pd,
            n_re,
            pos,
            owner,
            begin,
            row_ptr,
            rows,
            val_ptr,
            updates,
            update_rows,
            pull_ptr,
            pulls,
            pull_late,
            col_work,
            prod_ptr,
            products,
            prod_late,
            item_pull_ptr: Vec::new(),
            item_pulls: Vec::new(),
            run_ends,
            asm_col: col_start,
            assembly,
            layout,
            schedule,
        };
        sym.plan_top_chunks(&ready_order);
        Ok(SupernodalCholesky {
            sym: Arc::new(sym),
            values: vec![0.0; offset],
            scaled: vec![0.0; scaled_len],
            workers: vec![worker; n_workers],
            d_block: Mat::zeros(pd, pd),
            serial: false,
        })
    }

    pub fn n_supernodes(&self) -> usize {
        self.sym.n_supernodes()
    }

    /// Whether the numeric step splits its work between the threads of the team.
    pub fn is_parallel(&self) -> bool {
        self.sym.schedule.threads > 1
    }

    /// With `serial`, the numeric step runs on the calling thread only, so that two factors can
    /// be updated at the same time on different threads. It follows the same schedule and
    /// gives the same values, to the last bit, as on the team.
    pub fn set_serial(&mut self, serial: bool) {
        self.serial = serial;
    }

    /// Sizes of the symbolic structure (for benchmarks and tests).
    pub fn stats(&self) -> SupernodalStats {
        let sym = &self.sym;
        let ns = sym.n_supernodes();
        let largest_update = sym
            .updates
            .iter()
            .map(|u| {
                let d = u.d as usize;
                let below = sym.row_ptr[d + 1] - sym.row_ptr[d] - u.start as usize;
                sym.cols(d) * below * u.len as usize
            })
            .max()
            .unwrap_or(0);
        SupernodalStats {
            n_supernodes: ns,
            n_values: self.values.len(),
            largest_supernode: (0..ns).map(|s| sym.cols(s)).max().unwrap_or(0),
            n_updates: sym.updates.len(),
            largest_update,
            n_groups: sym.schedule.groups.len(),
            n_top: sym.schedule.top.len(),
            n_top_groups: sym.schedule.top_groups.len(),
        }
    }

    /// The numeric step: L(theta) from A and the per-term lambda templates.
    pub fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        scale_flat(a, lambdas, &self.sym.layout, &mut self.scaled);
        // MERGE: the team of the handle given at construction (issue 10); until then, a team of
        // the schedule's thread count (made, from the handle's cache, only to run in parallel).
        let exec = (!self.serial && self.is_parallel())
            .then(|| crate::exec::Exec::new(self.sym.schedule.threads));
        let team = exec.as_ref().map(crate::exec::Exec::team);
        let team = team.filter(|t| t.n_threads() > 1);
        if let Some(team) = team {
            if self.workers.len() < team.n_threads() {
                let w = self.workers[0].clone();
                self.workers.resize(team.n_threads(), w);
            }
        }
        let sym = &self.sym;
        let scaled = &self.scaled[..];
        let values = SharedSlice::new(&mut self.values);
        let workers = SharedSlice::new(&mut self.workers);
        let failed = AtomicUsize::new(usize::MAX);
        // SAFETY (of every use of `values` and `workers` in the job): thread t uses only
        // workers[t]; a group's panels are written only by the thread that took the group, a
        // column chunk of a top supernode only by the thread that took the chunk; the groups'
        // panels (left of `top_start`) are read-only after the groups, and the panels left of
        // a top supernode are read-only while its second pass and factor run.
        let job = |ctx: &Ctx| {
            let tid = ctx.tid();
            let schedule = &sym.schedule;
            ctx.for_each_dynamic(schedule.groups.len(), |g| {
                if failed.load(Ordering::Relaxed) != usize::MAX {
                    return;
                }
                let (base, end) = (schedule.region[g], schedule.region[g + 1]);
                let region = unsafe { values.slice_mut(base, end) };
                let worker = unsafe { workers.item_mut(tid) };
                if let Err(c) = sym.factor_group(&schedule.groups[g], region, base, scaled, worker)
                {
                    failed.fetch_min(c, Ordering::Relaxed);
                }
            });
            // Columns c0..c1 of top supernode `top[i]`, one pass: the panels before `head_end`
            // are read, those columns written.
            let assemble_chunk = |i: usize, c: usize, head_end: usize, part: Part, item| {
                let s = schedule.top[i] as usize;
                let bounds = sym.top_chunks(i);
                let (c0, c1) = (bounds[c] as usize, bounds[c + 1] as usize);
                let (m, start) = (sym.height(s), sym.val_ptr[s]);
                let head = unsafe { values.slice(0, head_end) };
                let cols = unsafe { values.slice_mut(start + c0 * m, start + c1 * m) };
                let worker = unsafe { workers.item_mut(tid) };
                let product = &mut worker.product;
                sym.assemble(s, c0, c1, cols, scaled, head, 0, product, part, item);
            };
            // First pass over the top supernodes: what the groups made ready, all at once.
            let top_start = schedule.region[schedule.groups.len()];
            ctx.for_each_dynamic(schedule.ready_items.len(), |item| {
                if failed.load(Ordering::Relaxed) == usize::MAX {
                    let (i, c) = schedule.ready_items[item];
                    assemble_chunk(i as usize, c as usize, top_start, Part::Ready, Some(item));
                }
            });
            // The subtrees of narrow top supernodes side by side, each on one thread: for each
            // supernode, the updates from the top supernodes before it (all in its subtree, whose
            // panels are contiguous from `base`), then its factor, with the kernel that the
            // team would use, so that the values do not depend on who does it.
            ctx.for_each_dynamic(schedule.top_groups.len(), |g| {
                let group = &schedule.top_groups[g];
                let base = sym.val_ptr[schedule.top[group[0] as usize] as usize];
                let worker = unsafe { workers.item_mut(tid) };
                for &i in group {
                    if failed.load(Ordering::Relaxed) != usize::MAX {
                        return;
                    }
                    let i = i as usize;
                    let s = schedule.top[i] as usize;
                    let (k, m, start) = (sym.cols(s), sym.height(s), sym.val_ptr[s]);
                    let panel = unsafe { values.slice_mut(start, start + m * k) };
                    if schedule.late[i] {
                        let head = unsafe { values.slice(base, start) };
                        sym.assemble(
                            s,
                            0,
                            k,
                            panel,
                            scaled,
                            head,
                            base,
                            &mut worker.product,
                            Part::Late,
                            None,
                        );
                    }
                    let result = if team_factors(k, m) {
                        let alone = AtomicUsize::new(usize::MAX);
                        let stack = MemStack::new(&mut worker.llt_stack);
                        let panel = SharedPanel::new(panel, m, k);
                        dense_llt::factor(&Ctx::single(), panel, &alone, Some(stack))
                    } else {
                        factor_panel(panel, m, k, worker)
                    };
                    if let Err(j) = result {
                        failed.fetch_min(sym.begin[s] + j, Ordering::Relaxed);
                    }
                }
            });
            // Then the others one by one, on the whole team: the updates from the top
            // supernodes before, and the factor.
            for &i in &schedule.sequential {
                if failed.load(Ordering::Relaxed) != usize::MAX {
                    // Read after a barrier: every thread leaves here together.
                    return;
                }
                let i = i as usize;
                let s = schedule.top[i] as usize;
                let (k, m, start) = (sym.cols(s), sym.height(s), sym.val_ptr[s]);
                if schedule.late[i] {
                    let n_chunks = sym.top_chunks(i).len() - 1;
                    ctx.for_each_dynamic(n_chunks, |c| {
                        assemble_chunk(i, c, start, Part::Late, None);
                    });
                }
                // By the schedule, not by the threads at hand: a serial update must give the
                // same values (see `set_serial`).
                let result = if schedule.threads > 1 && team_factors(k, m) {
                    let panel =
                        SharedPanel::new(unsafe { values.slice_mut(start, start + m * k) }, m, k);
                    let stack = (tid == 0)
                        .then(|| MemStack::new(unsafe { &mut workers.item_mut(0).llt_stack }));
                    dense_llt::factor(ctx, panel, &failed, stack)
                } else {
                    if tid == 0 {
                        let panel = unsafe { values.slice_mut(start, start + m * k) };
                        let worker = unsafe { workers.item_mut(0) };
                        if let Err(j) = factor_panel(panel, m, k, worker) {
                            failed.fetch_min(j, Ordering::Relaxed);
                        }
                    }
                    ctx.barrier();
                    match failed.load(Ordering::Relaxed) {
                        usize::MAX => Ok(()),
                        j => Err(j),
                    }
                };
                if let Err(j) = result {
                    // The column within the supernode; make it global once.
                    if tid == 0 {
                        failed.store(sym.begin[s] + j, Ordering::Relaxed);
                    }
                    ctx.barrier();
                    return;
                }
            }
        };
        match team {
            Some(team) => team.run(job),
            None => job(&Ctx::single()),
        }
        match failed.load(Ordering::Relaxed) {
            usize::MAX => {}
            c => return Err(sym.pivot_error(c)),
        }
        let first = sym.n_re;
        for j in 0..sym.pd {
            for i in 0..sym.pd {
                let v = if i >= j {
                    self.entry(first + i, first + j)
                } else {
                    0.0
                };
                self.d_block[(i, j)] = v;
            }
        }
        Ok(())
    }

    /// L[row, col] for row >= col inside the pattern (0 outside it).
    fn entry(&self, row: usize, col: usize) -> f64 {
        let sym = &self.sym;
        let s = sym.begin.partition_point(|&b| b <= col) - 1;
        let (f, l) = (sym.begin[s], sym.begin[s + 1]);
        let pat = sym.pattern(s);
        let local = if row < l {
            row - f
        } else {
            match pat.binary_search(&(row as u32)) {
                Ok(i) => l - f + i,
                Err(_) => return 0.0,
            }
        };
        self.values[sym.val_ptr[s] + (col - f) * sym.height(s) + local]
    }

    /// The panel of supernode s.
    fn panel(&self, s: usize) -> &[f64] {
        let start = self.sym.val_ptr[s];
        &self.values[start..start + self.sym.height(s) * self.sym.cols(s)]
    }

    /// log det(L_Z)^2 over the random-effects columns.
    pub fn ld_l2(&self) -> f64 {
        let sym = &self.sym;
        // The log of products: one logarithm per many pivots instead of one each. The pivots
        // of I + Lambda'Z'Z Lambda are at least 1, so the product only grows; it is folded
        // into the sum before it could overflow.
        let (mut s, mut prod) = (0.0, 1.0f64);
        for sn in 0..sym.n_supernodes() {
            let (f, l) = (sym.begin[sn], sym.begin[sn + 1].min(sym.n_re));
            if f >= l {
                break;
            }
            let m = sym.height(sn);
            let start = sym.val_ptr[sn];
            for j in 0..l - f {
                prod *= self.values[start + j * m + j];
                if prod >= 1e250 {
                    s += prod.ln();
                    prod = 1.0;
                }
            }
        }
        2.0 * (s + prod.ln())
    }

    /// Exchanges the numeric values of the factor with `kept`, in constant time (the first
    /// time, `kept` receives zeros of the factor's size: a valid start for the numeric step,
    /// which relies on the parts of the panels above their diagonals being zero).
    pub fn swap_values(&mut self, kept: &mut KeptValues) {
        if kept.values.len() != self.values.len() {
            kept.values = vec![0.0; self.values.len()];
            kept.d_block = Mat::zeros(self.d_block.nrows(), self.d_block.ncols());
        }
        std::mem::swap(&mut self.values, &mut kept.values);
        std::mem::swap(&mut self.d_block, &mut kept.d_block);
    }

    /// Numeric values of the factor (the supernodal panels).
    pub fn n_values(&self) -> usize {
        self.values.len()
    }

    /// The lower-triangular (p + 1) x (p + 1) D block of L.
    pub fn d_block(&self) -> &Mat<f64> {
        &self.d_block
    }

    /// For each term, c_u - L_XZ' beta: the right-hand side of L_Z' u = ... (lme4's cu minus the
    /// fixed effects' part), one vector per term in its own (level-major) order.
    pub fn random_effects_rhs(&self, beta: &[f64]) -> Vec<Vec<f64>> {
        let n_re = self.sym.n_re;
        let p = self.sym.pd - 1;
        let mut w = vec![0.0; n_re];
        for (c, wc) in w.iter_mut().enumerate() {
            let mut v = self.entry(n_re + p, c);
            for (j, bj) in beta.iter().enumerate() {
                v -= self.entry(n_re + j, c) * bj;
            }
            *wc = v;
        }
        self.scatter(&w)
    }

    fn gather(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let mut w = vec![0.0; self.sym.n_re];
        for (xk, pk) in x.iter().zip(&self.sym.pos) {
            for (v, &c) in xk.iter().zip(pk) {
                w[c as usize] = *v;
            }
        }
        w
    }

    fn scatter(&self, w: &[f64]) -> Vec<Vec<f64>> {
        self.sym
            .pos
            .iter()
            .map(|pk| pk.iter().map(|&c| w[c as usize]).collect())
            .collect()
    }

    /// x <- L_Z^{-1} x for a blocked vector of random effects (one Vec per term).
    pub fn solve_lz(&self, x: &mut [Vec<f64>]) {
        let sym = &self.sym;
        let n_re = sym.n_re;
        let mut w = self.gather(x);
        for s in 0..sym.n_supernodes() {
            let (f, l) = (sym.begin[s], sym.begin[s + 1]);
            if f >= n_re {
                break;
            }
            let k = l - f;
            let kz = l.min(n_re) - f;
            let pat = sym.pattern(s);
            let m = sym.height(s);
            let panel = self.panel(s);
            for j in 0..kz {
                let col = &panel[j * m..(j + 1) * m];
                let xj = w[f + j] / col[j];
                w[f + j] = xj;
                for i in j + 1..kz {
                    w[f + i] -= col[i] * xj;
                }
                for (&r, v) in pat.iter().zip(&col[k..]) {
                    if r as usize >= n_re {
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
        let sym = &self.sym;
        let n_re = sym.n_re;
        let mut w = self.gather(x);
        for s in (0..sym.n_supernodes()).rev() {
            let (f, l) = (sym.begin[s], sym.begin[s + 1]);
            if f >= n_re {
                continue;
            }
            let k = l - f;
            let kz = l.min(n_re) - f;
            let pat = sym.pattern(s);
            let m = sym.height(s);
            let panel = self.panel(s);
            for j in (0..kz).rev() {
                let col = &panel[j * m..(j + 1) * m];
                let mut acc = w[f + j];
                for i in j + 1..kz {
                    acc -= col[i] * w[f + i];
                }
                for (&r, v) in pat.iter().zip(&col[k..]) {
                    if r as usize >= n_re {
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

impl Symbolic {
    fn n_supernodes(&self) -> usize {
        self.begin.len() - 1
    }

    fn cols(&self, s: usize) -> usize {
        self.begin[s + 1] - self.begin[s]
    }

    /// Rows of the panel of supernode s (its columns, then the pattern below).
    fn height(&self, s: usize) -> usize {
        self.cols(s) + self.row_ptr[s + 1] - self.row_ptr[s]
    }

    fn pattern(&self, s: usize) -> &[u32] {
        &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]]
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

    /// Factors one group of independent subtrees (its supernodes in increasing order), whose
    /// panels are `region`, from offset `base` of the values. Returns the column of a failing
    /// pivot.
    fn factor_group(
        &self,
        group: &[u32],
        region: &mut [f64],
        base: usize,
        scaled: &[f64],
        worker: &mut Worker,
    ) -> std::result::Result<(), usize> {
        for &s in group {
            let s = s as usize;
            let (head, tail) = region.split_at_mut(self.val_ptr[s] - base);
            let (k, m) = (self.cols(s), self.height(s));
            let panel = &mut tail[..m * k];
            // Every descendant of a group's supernode is in the group.
            self.assemble(
                s,
                0,
                k,
                panel,
                scaled,
                head,
                base,
                &mut worker.product,
                Part::Ready,
                None,
            );
            factor_panel(panel, m, k, worker).map_err(|j| self.begin[s] + j)?;
        }
        Ok(())
    }

    /// The column chunks of every top supernode, and the items of the first pass over them.
    /// `ready_order` lists the pulls from the groups as (column, index in `pulls`), in the
    /// order of the updates.
    fn plan_top_chunks(&mut self, ready_order: &[(u32, u32)]) {
        let threads = self.schedule.threads;
        let mut chunk_ptr = vec![0];
        let mut chunks = Vec::new();
        let mut bounds = [0usize; 17];
        for &s in &self.schedule.top {
            let n = self.column_chunks(s as usize, threads, &mut bounds);
            chunks.extend(bounds[..=n].iter().map(|&b| b as u32));
            chunk_ptr.push(chunks.len());
        }
        // Heaviest supernode (the last, the root of the tree) first, so that the short items
        // of the small ones fill in at the end.
        let ready_items: Vec<(u32, u32)> = (0..self.schedule.top.len())
            .rev()
            .flat_map(|i| {
                let n = chunk_ptr[i + 1] - chunk_ptr[i] - 1;
                (0..n).map(move |c| (i as u32, c as u32))
            })
            .collect();
        // Each item's pulls by update (then by column): the target columns of one descendant
        // one after the other, so that its values and rows are still in cache (the order of
        // the subtractions at each target entry stays the same, so do the values). Bucketed
        // from `ready_order`, which is in that order already.
        let n = self.begin[self.n_supernodes()];
        let mut item_of = vec![u32::MAX; n];
        let mut item_c0 = Vec::with_capacity(ready_items.len());
        let mut item_pull_ptr = vec![0usize; ready_items.len() + 1];
        for (it, &(i, c)) in ready_items.iter().enumerate() {
            let s = self.schedule.top[i as usize] as usize;
            let b = &chunks[chunk_ptr[i as usize]..chunk_ptr[i as usize + 1]];
            let (c0, c1) = (b[c as usize] as usize, b[c as usize + 1] as usize);
            let f = self.begin[s];
            item_of[f + c0..f + c1].fill(it as u32);
            item_c0.push(f + c0);
            item_pull_ptr[it + 1] = (f + c0..f + c1)
                .map(|col| self.pull_late[col] - self.pull_ptr[col])
                .sum();
        }
        for it in 0..ready_items.len() {
            item_pull_ptr[it + 1] += item_pull_ptr[it];
        }
        let mut fill = item_pull_ptr.clone();
        let none = Pull {
            x: 0,
            rows: 0,
            count: 0,
            kd: 0,
            md: 0,
        };
        let mut item_pulls = vec![(0, none); item_pull_ptr[ready_items.len()]];
        for &(col, q) in ready_order {
            let it = item_of[col as usize];
            if it != u32::MAX {
                let it = it as usize;
                item_pulls[fill[it]] =
                    ((col as usize - item_c0[it]) as u32, self.pulls[q as usize]);
                fill[it] += 1;
            }
        }
        self.item_pull_ptr = item_pull_ptr;
        self.item_pulls = item_pulls;
        self.schedule.chunk_ptr = chunk_ptr;
        self.schedule.chunks = chunks;
        self.schedule.ready_items = ready_items;
        self.schedule.late = (self.schedule.top.iter())
            .map(|&s| {
                let s = s as usize;
                self.prod_late[s] < self.prod_ptr[s + 1]
                    || (self.begin[s]..self.begin[s + 1])
                        .any(|c| self.pull_late[c] < self.pull_ptr[c + 1])
            })
            .collect();
    }

    /// Bounds of the column chunks of the i-th top supernode.
    fn top_chunks(&self, i: usize) -> &[u32] {
        &self.schedule.chunks[self.schedule.chunk_ptr[i]..self.schedule.chunk_ptr[i + 1]]
    }

    /// Splits the columns of a top supernode into chunks of about equal estimated work; returns
    /// the number of chunks, whose bounds are `bounds[..=n]`.
    fn column_chunks(&self, s: usize, threads: usize, bounds: &mut [usize; 17]) -> usize {
        let k = self.cols(s);
        let work = &self.col_work[self.begin[s]..self.begin[s + 1]];
        let total: f64 = work.iter().sum();
        let n = if threads > 1 {
            ((total / CHUNK_WORK) as usize).clamp(1, (4 * threads).min(k).min(16))
        } else {
            1
        };
        let mut acc = 0.0;
        let mut c = 1;
        bounds[0] = 0;
        for (j, w) in work.iter().enumerate() {
            acc += w;
            if c < n && acc * n as f64 >= total * c as f64 && j + 1 > bounds[c - 1] {
                bounds[c] = j + 1;
                c += 1;
            }
        }
        // Fewer chunks if the work is concentrated in the last columns.
        let n = if c < n { c } else { n };
        bounds[n] = k;
        n
    }

    /// Prefetches the values and rows of a coming pull.
    #[inline(always)]
    fn prefetch_pull(&self, head: &[f64], base: usize, q: Pull) {
        prefetch(
            head.as_ptr()
                .wrapping_add((q.x as usize).wrapping_sub(base)),
        );
        prefetch(self.update_rows[q.rows as usize..].as_ptr() as *const f64);
    }

    /// Subtracts one column-by-column update from target column `col`.
    #[inline(always)]
    fn apply_pull(&self, col: &mut [f64], head: &[f64], base: usize, p: Pull) {
        let count = p.count as usize;
        let lr = &self.update_rows[p.rows as usize..p.rows as usize + count];
        let x0 = p.x as usize - base;
        if p.kd == 1 {
            let x = &head[x0..x0 + count];
            // SAFETY: the symbolic step made every entry of update_rows a row of the
            // target's panel, whose columns are m long, and the rows of one update are
            // distinct.
            unsafe { scatter_sub(col, lr, x, x[0]) };
        } else {
            let (kd, md) = (p.kd as usize, p.md as usize);
            let x = &head[x0..x0 + (kd - 1) * md + count];
            for (i, &r) in lr.iter().enumerate() {
                let mut acc = 0.0;
                for t in 0..kd {
                    acc += x[i + t * md] * x[t * md];
                }
                col[r as usize] -= acc;
            }
        }
    }

    /// Columns `c0..c1` of supernode s (`cols`, column-major with the panel's height): with
    /// `Part::Ready`, the scaled A minus the updates of the descendants in the groups; with
    /// `Part::Late`, minus those of the top supernodes. The descendants' panels are in `head`
    /// from offset `base` of the values.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        &self,
        s: usize,
        c0: usize,
        c1: usize,
        cols: &mut [f64],
        scaled: &[f64],
        head: &[f64],
        base: usize,
        product: &mut [f64],
        part: Part,
        item: Option<usize>,
    ) {
        let f = self.begin[s];
        let m = self.height(s);
        if part == Part::Ready {
            // Rows j.. of each column j: nothing ever writes above the diagonal (the dense
            // factors that do zero it again), so that part is still zero.
            for j in c0..c1 {
                cols[(j - c0) * m + j..(j - c0 + 1) * m].fill(0.0);
            }
            let asm = &self.assembly[self.asm_col[f + c0]..self.asm_col[f + c1]];
            for &(src, off) in asm {
                cols[off as usize - c0 * m] += scaled[src as usize];
            }
        }

        // Small updates: in the first pass of a top supernode, in the order of their
        // descendants (`item_pulls`); otherwise column by column.
        match (part, item) {
            (Part::Ready, Some(it)) => {
                let list = &self.item_pulls[self.item_pull_ptr[it]..self.item_pull_ptr[it + 1]];
                for (ip, &(jc, p)) in list.iter().enumerate() {
                    if let Some(&(_, q)) = list.get(ip + PREFETCH_PULLS) {
                        self.prefetch_pull(head, base, q);
                    }
                    let col = &mut cols[jc as usize * m..(jc as usize + 1) * m];
                    self.apply_pull(col, head, base, p);
                }
            }
            _ => {
                for j in c0..c1 {
                    let col = &mut cols[(j - c0) * m..(j - c0 + 1) * m];
                    let c = f + j;
                    let (lo, hi) = match part {
                        Part::Ready => (self.pull_ptr[c], self.pull_late[c]),
                        Part::Late => (self.pull_late[c], self.pull_ptr[c + 1]),
                    };
                    let pulls = &self.pulls[lo..hi];
                    for (ip, &p) in pulls.iter().enumerate() {
                        if let Some(&q) = pulls.get(ip + PREFETCH_PULLS) {
                            self.prefetch_pull(head, base, q);
                        }
                        self.apply_pull(col, head, base, p);
                    }
                }
            }
        }

        // Large updates as matrix products, a block of target columns at a time.
        let (lo, hi) = match part {
            Part::Ready => (self.prod_ptr[s], self.prod_late[s]),
            Part::Late => (self.prod_late[s], self.prod_ptr[s + 1]),
        };
        for prod in &self.products[lo..hi] {
            let u = self.updates[prod.update as usize];
            let ends = &self.run_ends[prod.runs.0 as usize..prod.runs.1 as usize];
            let d = u.d as usize;
            let kd = self.cols(d);
            let md = self.height(d);
            let drows = &self.pattern(d)[u.start as usize..];
            let mp = drows.len();
            let lr = &self.update_rows[u.rows as usize..u.rows as usize + mp];
            let reach = &drows[..u.len as usize];
            let j0 = reach.partition_point(|&r| (r as usize) < f + c0);
            let j1 = reach.partition_point(|&r| (r as usize) < f + c1);
            let x = MatRef::from_column_major_slice_with_stride(
                &head[self.val_ptr[d] - base + kd + u.start as usize..],
                mp,
                kd,
                md,
            );
            if ends.len() <= DIRECT_RUNS {
                subtract_by_runs(x, lr, ends, j0, j1, c0, cols, m);
                continue;
            }
            let mut jb0 = j0;
            while jb0 < j1 {
                let jb1 = (jb0 + PRODUCT_COLUMNS).min(j1);
                let (h, w) = (mp - jb0, jb1 - jb0);
                let below = x.subrows(jb0, h);
                let mut prod = MatMut::from_column_major_slice_mut(&mut product[..h * w], h, w);
                matmul(
                    prod.as_mut(),
                    Accum::Replace,
                    below,
                    below.subrows(0, w).transpose(),
                    1.0,
                    Par::Seq,
                );
                // Subtract column jj of the product (rows jb0 + jj.. of the update) run by run:
                // runs of consecutive target rows as slices, the rest one by one.
                let mut run = ends.partition_point(|&e| (e as usize) <= jb0);
                for jj in 0..w {
                    let tc = reach[jb0 + jj] as usize - f - c0;
                    let col = &mut cols[tc * m..(tc + 1) * m];
                    let pcol = &product[jj * h..(jj + 1) * h];
                    let mut i = jb0 + jj;
                    while ends[run] as usize <= i {
                        run += 1;
                    }
                    for &end in &ends[run..] {
                        let end = end as usize;
                        let src = &pcol[i - jb0..end - jb0];
                        if end - i >= 4 {
                            let t = lr[i] as usize;
                            for (v, x) in col[t..t + (end - i)].iter_mut().zip(src) {
                                *v -= x;
                            }
                        } else {
                            for (&r, &x) in lr[i..end].iter().zip(src) {
                                // SAFETY: as for the small updates, every row is inside the panel.
                                unsafe { *col.get_unchecked_mut(r as usize) -= x };
                            }
                        }
                        i = end;
                    }
                }
                jb0 = jb1;
            }
        }
    }
}

/// Column-by-column updates ahead of the current one whose values and rows are prefetched: each
/// comes from another descendant's panel, where the hardware prefetcher cannot guess it.
const PREFETCH_PULLS: usize = 4;

/// A hint to bring the cache line at `p` into the first-level cache (no effect elsewhere than
/// on x86-64; `p` need not be a valid address).
#[inline(always)]
fn prefetch(p: *const f64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Columns `j0..j1` of the update X X' (X: the update's rows of the descendant's panel) subtracted
/// straight from the target's columns, one matrix product per pair of runs of consecutive target
/// rows (`ends`, see `Product`): with few runs, this saves writing the product and reading it
/// back. Column chunk `cols` starts at the target's column `c0` and has height m.
#[allow(clippy::too_many_arguments)]
fn subtract_by_runs(
    x: MatRef<'_, f64>,
    lr: &[u32],
    ends: &[u32],
    j0: usize,
    j1: usize,
    c0: usize,
    cols: &mut [f64],
    m: usize,
) {
    let mp = x.nrows();
    let mut start = 0;
    for (r, &end) in ends.iter().enumerate() {
        let end = end as usize;
        let (ca, cb) = (start.max(j0), end.min(j1));
        start = end;
        if ca >= cb {
            continue;
        }
        // Target columns tc..tc + w (their local rows are their columns).
        let (w, tc) = (cb - ca, lr[ca] as usize - c0);
        let right = x.subrows(ca, w).transpose();
        // Target rows of update rows i0..i1 (one run) in columns tc..tc + w.
        let block = |i0: usize, i1: usize| (tc * m + lr[i0] as usize, i1 - i0);
        // The diagonal block (its lower half), the rest of this run, then the later runs.
        let (at, h) = block(ca, cb);
        triangular::matmul(
            panel_block(cols, at, h, w, m),
            BlockStructure::TriangularLower,
            Accum::Add,
            x.subrows(ca, w),
            BlockStructure::Rectangular,
            right,
            BlockStructure::Rectangular,
            -1.0,
            Par::Seq,
        );
        let mut i0 = cb;
        for &e in &ends[r..] {
            let i1 = e as usize;
            if i1 > i0 {
                let (at, h) = block(i0, i1);
                let dst = panel_block(cols, at, h, w, m);
                matmul(dst, Accum::Add, x.subrows(i0, h), right, -1.0, Par::Seq);
            }
            i0 = i1;
        }
        debug_assert_eq!(i0, mp);
    }
}

/// The h x w block of a column-major panel of height m whose first entry is at `at`.
fn panel_block(cols: &mut [f64], at: usize, h: usize, w: usize, m: usize) -> MatMut<'_, f64> {
    let len = (w - 1) * m + h;
    MatMut::from_column_major_slice_with_stride_mut(&mut cols[at..at + len], h, w, m)
}

/// col[rows[i]] -= x[i] * a for every i.
///
/// # Safety
/// Every entry of `rows` is below `col.len()`, the entries are distinct, and
/// `x.len() >= rows.len()`.
#[inline]
unsafe fn scatter_sub(col: &mut [f64], rows: &[u32], x: &[f64], a: f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if rows.len() >= 8 && has_avx512() {
            return scatter_sub_avx512(col, rows, x, a);
        }
    }
    for (&r, &xi) in rows.iter().zip(x) {
        *col.get_unchecked_mut(r as usize) -= xi * a;
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::is_x86_feature_detected!("avx512f"))
}

/// `scatter_sub` eight rows at a time with AVX-512 gathers and scatters (the rows of one update
/// are distinct, so the lanes of a scatter never collide).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scatter_sub_avx512(col: &mut [f64], rows: &[u32], x: &[f64], a: f64) {
    use std::arch::x86_64::*;
    let n = rows.len();
    let base = col.as_mut_ptr();
    let av = _mm512_set1_pd(a);
    let mut i = 0;
    while i + 8 <= n {
        let idx = _mm256_loadu_si256(rows.as_ptr().add(i) as *const __m256i);
        let xv = _mm512_loadu_pd(x.as_ptr().add(i));
        let cv = _mm512_i32gather_pd::<8>(idx, base as *const f64);
        _mm512_i32scatter_pd::<8>(base, idx, _mm512_fnmadd_pd(xv, av, cv));
        i += 8;
    }
    if i < n {
        let mask: __mmask8 = (1u8 << (n - i)) - 1;
        let idx = _mm256_maskz_loadu_epi32(mask, rows.as_ptr().add(i) as *const i32);
        let xv = _mm512_maskz_loadu_pd(mask, x.as_ptr().add(i));
        let cv = _mm512_mask_i32gather_pd::<8>(_mm512_setzero_pd(), mask, idx, base as *const f64);
        _mm512_mask_i32scatter_pd::<8>(base, mask, idx, _mm512_fnmadd_pd(xv, av, cv));
    }
}

/// A slice that the threads of a team job share, each using parts no other thread uses at the
/// same time (the job says which).
struct SharedSlice<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the accessors are unsafe; their callers keep the parts of different threads apart.
unsafe impl<T: Send> Send for SharedSlice<T> {}
unsafe impl<T: Send> Sync for SharedSlice<T> {}

impl<T> SharedSlice<T> {
    fn new(v: &mut [T]) -> Self {
        SharedSlice {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// Elements a..b, to read.
    ///
    /// # Safety
    /// No thread may write them while the slice lives.
    unsafe fn slice(&self, a: usize, b: usize) -> &[T] {
        assert!(a <= b && b <= self.len);
        std::slice::from_raw_parts(self.ptr.add(a), b - a)
    }

    /// Elements a..b, to write.
    ///
    /// # Safety
    /// No other thread may use them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, a: usize, b: usize) -> &mut [T] {
        assert!(a <= b && b <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(a), b - a)
    }

    /// Element i, to write.
    ///
    /// # Safety
    /// As for `slice_mut`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn item_mut(&self, i: usize) -> &mut T {
        assert!(i < self.len);
        &mut *self.ptr.add(i)
    }
}

/// Factors the diagonal block of an assembled m x k panel and solves the rows below it.
/// Returns the failing column on a non-positive pivot.
fn factor_panel(
    panel: &mut [f64],
    m: usize,
    k: usize,
    worker: &mut Worker,
) -> std::result::Result<(), usize> {
    if k <= SMALL_PANEL {
        return factor_panel_small(panel, m, k);
    }
    let stack = MemStack::new(&mut worker.llt_stack);
    let mut pm = MatMut::from_column_major_slice_with_stride_mut(panel, m, k, m);
    let (mut top, mut bottom) = pm.as_mut().split_at_row_mut(k);
    let params: faer::Spec<LltParams, f64> = Default::default();
    match cholesky_in_place(top.as_mut(), Default::default(), Par::Seq, stack, params) {
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
                Par::Seq,
            );
            Ok(())
        }
        Err(LltError::NonPositivePivot { index }) => Err(index),
    }
}

/// For each supernode of at least `WIDE_COLUMNS` random-effects columns, a new order of those
/// columns: sorted by which of its (up to 16) largest descendants reach them, the largest first,
/// so that each descendant's rows in it form few runs (the scatter of its product becomes
/// mostly contiguous). Returns the map from old to new column, or None when nothing moves.
fn order_wide_supernodes(
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
    let mut owner_sn = vec![usize::MAX; n];
    for s in 0..ns {
        owner_sn[begin[s]..begin[s + 1]].fill(s);
    }
    // Descendants' rows inside each wide supernode's random-effects columns, with their weight
    // (columns x rows^2, the size of their product).
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

/// Splits the supernodal elimination tree between `threads` threads: whole subtrees go to
/// groups of about equal work, processed in parallel; the supernodes above them (the top) are
/// processed afterwards (see `group_narrow_tops`). `parent[s]` is `usize::MAX` for a root;
/// children come before their parents. Factors of less than `min_work` get a one-thread
/// schedule.
fn make_schedule(parent: &[usize], work: &[f64], threads: usize, min_work: f64) -> Schedule {
    let ns = parent.len();
    if threads <= 1 || ns < 2 * threads || work.iter().sum::<f64>() < min_work {
        return Schedule {
            top: (0..ns as u32).collect(),
            threads: 1,
            ..Default::default()
        };
    }
    let mut subtree = work.to_vec();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); ns];
    for s in 0..ns {
        if parent[s] != usize::MAX {
            subtree[parent[s]] += subtree[s];
            children[parent[s]].push(s);
        }
    }
    // Open the heaviest subtree until none holds more than a quarter of a thread's share.
    let mut open: Vec<usize> = (0..ns).filter(|&s| parent[s] == usize::MAX).collect();
    let mut top = Vec::new();
    loop {
        let total: f64 = open.iter().map(|&s| subtree[s]).sum();
        let Some((i, &heaviest)) = open
            .iter()
            .enumerate()
            .max_by(|a, b| subtree[*a.1].total_cmp(&subtree[*b.1]))
        else {
            break;
        };
        if subtree[heaviest] * (4 * threads) as f64 <= total || top.len() >= 256 {
            break;
        }
        open.swap_remove(i);
        top.push(heaviest as u32);
        open.extend(&children[heaviest]);
    }
    // Longest processing time first.
    open.sort_by(|&a, &b| subtree[b].total_cmp(&subtree[a]));
    let mut load = vec![0.0f64; threads];
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); threads];
    let mut stack = Vec::new();
    for &root in &open {
        let g = (0..threads)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
            .unwrap_or(0);
        load[g] += subtree[root];
        stack.push(root);
        while let Some(s) = stack.pop() {
            groups[g].push(s as u32);
            stack.extend(&children[s]);
        }
    }
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.retain(|g| !g.is_empty());
    top.sort_unstable();
    Schedule {
        groups,
        top,
        threads,
        ..Default::default()
    }
}

/// Splits the top supernodes of a parallel schedule into independent subtrees of narrow ones,
/// which the threads finish side by side, one subtree each at a time, and the rest (the wide
/// ones, whose factors need the team, and those above them), finished one at a time by the
/// team. In InstEval the 15 top supernodes below the root form three subtrees: finished one
/// by one, each of their factors kept one thread waiting for the other. A serial schedule
/// keeps every top supernode sequential.
fn group_narrow_tops(
    schedule: &mut Schedule,
    parent: &[usize],
    work: &[f64],
    narrow: impl Fn(usize) -> bool,
) {
    let top = &schedule.top;
    schedule.top_groups.clear();
    schedule.sequential = (0..top.len() as u32).collect();
    if schedule.threads <= 1 {
        return;
    }
    let mut index = vec![u32::MAX; parent.len()];
    for (i, &s) in top.iter().enumerate() {
        index[s as usize] = i as u32;
    }
    // A top supernode joins a group when it and all its top descendants are narrow (children
    // come before their parents, and the parent of a top supernode is a top one).
    let mut groupable: Vec<bool> = top.iter().map(|&s| narrow(s as usize)).collect();
    for (i, &s) in top.iter().enumerate() {
        let p = parent[s as usize];
        if !groupable[i] && p != usize::MAX {
            groupable[index[p] as usize] = false;
        }
    }
    // Each group is the subtree of a groupable supernode whose parent is not groupable. While
    // the heaviest group holds more than a thread's share of them all, its root is left to the
    // team and its children's subtrees become groups (in InstEval, the root of the heaviest of
    // the three subtrees has 62 columns and most of that subtree's work).
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); top.len()];
    let mut subtree: Vec<f64> = top.iter().map(|&s| work[s as usize]).collect();
    let mut roots = Vec::new();
    for (i, &s) in top.iter().enumerate() {
        let p = parent[s as usize];
        match (p != usize::MAX).then(|| index[p] as usize) {
            Some(pi) if groupable[i] && groupable[pi] => {
                children[pi].push(i);
                subtree[pi] += subtree[i];
            }
            _ if groupable[i] => roots.push(i),
            _ => {}
        }
    }
    loop {
        let total: f64 = roots.iter().map(|&r| subtree[r]).sum();
        let Some((at, &h)) =
            (roots.iter().enumerate()).max_by(|a, b| subtree[*a.1].total_cmp(&subtree[*b.1]))
        else {
            break;
        };
        if subtree[h] * schedule.threads as f64 <= total || children[h].is_empty() {
            break;
        }
        roots.swap_remove(at);
        groupable[h] = false;
        roots.extend(&children[h]);
    }
    roots.sort_by(|&a, &b| subtree[b].total_cmp(&subtree[a]));
    schedule.top_groups = roots
        .iter()
        .map(|&r| {
            let mut members = Vec::new();
            let mut stack = vec![r];
            while let Some(i) = stack.pop() {
                members.push(i as u32);
                stack.extend(&children[i]);
            }
            members.sort_unstable();
            members
        })
        .collect();
    schedule.sequential = (0..top.len() as u32)
        .filter(|&i| !groupable[i as usize])
        .collect();
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
    for cols in reach.iter_mut() {
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
    // Upper pattern (rows < column) of the Schur complement, by a marker sweep per column
    // (branch-free: every candidate is written, and kept only if its mark was not yet set; a
    // column has fewer than n_t distinct rows, so `buf` never overflows). Columns t0..t1 give
    // their row counts and rows; two halves of about equal work run side by side.
    let too_large =
        || LmmError::Shape("the fill-in pattern is too large for 32-bit indices".into());
    let sweep = |t0: usize, t1: usize| -> Result<(Vec<u32>, Vec<u32>)> {
        let mut mark = vec![u32::MAX; n_t];
        let mut buf = vec![0u32; n_t];
        let mut counts = Vec::with_capacity(t1 - t0);
        let mut rows: Vec<u32> = Vec::new();
        for t in t0..t1 {
            let tt = t as u32;
            let mut len = 0;
            let mut add = |u: u32| {
                let fresh = mark[u as usize] != tt;
                mark[u as usize] = tt;
                buf[len] = u;
                len += fresh as usize;
            };
            for &u in direct[t].iter().filter(|&&u| u < tt) {
                add(u);
            }
            for &c in &by_col[t] {
                for &u in reach[c as usize].iter().take_while(|&&u| u < tt) {
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
    };
    // Work of column t: its direct neighbours and the columns before it that its levels reach.
    let work: Vec<usize> = (0..n_t)
        .map(|t| {
            let before = |c: &u32| reach[*c as usize].partition_point(|&u| (u as usize) < t);
            direct[t].len() + by_col[t].iter().map(before).sum::<usize>()
        })
        .collect();
    let half = work.iter().sum::<usize>() / 2;
    let mut acc = 0;
    let mid = work
        .iter()
        .position(|&w| {
            acc += w;
            acc > half
        })
        .unwrap_or(n_t);
    let (first, second) = rayon::join(|| sweep(0, mid), || sweep(mid, n_t));
    let ((c0, r0), (c1, r1)) = (first?, second?);
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
