//! A supernodal sparse Cholesky factor of the whole penalised system
//!
//! ```text
//!   P [ Lambda' Z'WZ Lambda + I   Lambda' Z'WD ] P' = L L',    D = [X y],
//!     [ D'WZ Lambda               D'WD         ]
//! ```
//!
//! for crossed structures whose fill-in would make the blocked factor dense and large (lme4
//! factors the random-effects part with CHOLMOD's supernodal factor in the same way;
//! MixedModels.jl stays dense in its blocked factor). The ordering P keeps the first (largest)
//! term first, level by level, so that its block stays block diagonal; orders the other terms'
//! columns by approximate minimum degree (AMD) on the pattern of their Schur complement after
//! the first term is eliminated; and puts D last, in its own order, so that pwrss and
//! log det(R_X)^2 are read off the last diagonal elements as in the blocked factor.
//!
//! The symbolic step (once per model) computes that ordering (`ordering.rs`), the supernodes
//! and their row patterns (faer's symbolic supernodal Cholesky), the updates each supernode
//! receives from its descendants with their rows in the target, where each element of A lands
//! in L (`symbolic.rs`), and a schedule for two or more threads (`schedule.rs`). The numeric
//! step (once per theta, `numeric.rs`) is a left-looking supernodal factorisation: for each
//! supernode, scatter the scaled cross-products into its dense panel, subtract the products of
//! the descendant panels that reach it (small ones column by column, large ones as matrix
//! products in column blocks: `assemble.rs`, `kernels.rs`), factor the diagonal block and solve
//! the rows below. Independent subtrees of the elimination tree run on different threads. The
//! supernodes above them are assembled in two passes: first, all at once and split between the
//! threads by column chunks, everything the subtrees made ready (A's entries and the subtrees'
//! updates, most of the work: in InstEval, all 1.4 million column-by-column updates of the
//! root); then the updates from the supernodes above the subtrees, each followed by its factor:
//! independent subtrees of narrow ones side by side, one thread each (`group_narrow_tops`),
//! then the others one at a time, the widest (and narrower ones with many rows below,
//! `team_factors`) factored by all threads (`dense_llt`). The threads are the team of the
//! execution handle (`Exec::team`), awake for the whole numeric step, so the many short steps
//! cost no wake-ups. Nothing is allocated per evaluation. Solves with L_Z: `solve.rs`.

mod assemble;
mod kernels;
mod numeric;
mod ordering;
mod schedule;
mod solve;
mod symbolic;

use std::sync::Arc;

use faer::Mat;

use crate::error::Result;
use crate::exec::Exec;
use crate::model::crossprod::CrossProducts;
use numeric::Worker;
use schedule::PARALLEL_MIN_WORK;
use symbolic::Symbolic;

/// Diagonal blocks up to this many columns are factored by a plain column loop; larger ones by
/// faer's blocked dense Cholesky.
pub const SMALL_PANEL: usize = 24;

/// Diagonal blocks of at least this many columns are factored by the whole team
/// (`dense_llt`); smaller ones by one thread while the others wait, unless the rows below are
/// many (`team_factors`).
pub const TEAM_FACTOR_MIN: usize = 192;

/// Descendant updates with at most this many multiply-adds (and all rank-one updates) are
/// applied column by column in place; larger ones as matrix products.
pub const DIRECT_UPDATE: usize = 4096;

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
    /// The threads of the numeric step (its team) and of the symbolic step (its rayon pool).
    exec: Exec,
}

impl SupernodalCholesky {
    /// The symbolic step: ordering, supernodes, update lists, the assembly map and the schedule
    /// (for the machine's cores, or one thread for a small factor), run on `exec`'s team.
    pub fn new(a: &CrossProducts, exec: &Exec) -> Result<Self> {
        // Laid out for the machine's cores whatever exec's threads: the same values for every
        // number of threads (`Exec::schedule_width`).
        Self::build(a, exec.clone(), Exec::schedule_width(), PARALLEL_MIN_WORK)
    }

    /// The symbolic step with a schedule for `threads` threads whatever the size of the factor
    /// (for tests and benchmarks of the parallel paths), on an execution handle of as many.
    pub fn with_threads(a: &CrossProducts, threads: usize) -> Result<Self> {
        let threads = threads.max(1);
        Self::build(a, Exec::new(threads), threads, 0.0)
    }

    fn build(
        a: &CrossProducts,
        exec: Exec,
        threads: usize,
        parallel_min_work: f64,
    ) -> Result<Self> {
        let sym = Symbolic::new(a, &exec, threads, parallel_min_work)?;
        let worker = Worker::new(&sym);
        let n_values = sym.val_ptr[sym.n_supernodes()];
        let (scaled_len, pd) = (sym.layout.len, sym.pd);
        Ok(SupernodalCholesky {
            sym: Arc::new(sym),
            values: vec![0.0; n_values],
            scaled: vec![0.0; scaled_len],
            // One per thread of the team (`update` adds more if the team is larger).
            workers: vec![worker; threads],
            d_block: Mat::zeros(pd, pd),
            serial: false,
            exec,
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
}
