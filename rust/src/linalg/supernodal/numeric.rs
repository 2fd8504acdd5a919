//! The numeric step of the supernodal factor, once per theta
//!
//! ```text
//!   P [ Lambda'Z'WZ Lambda + I   Lambda'Z'WD ] P' = L L',   log det(L_Z)^2 = 2 sum log L_jj
//!     [ D'WZ Lambda              D'WD        ]
//! ```
//!
//! A's blocks are scaled by Lambda(theta) into a flat copy (`scale_flat`); then, supernode by
//! supernode in the order of the elimination tree, each panel is assembled (`assemble.rs`) and
//! factored: a Cholesky of its diagonal block and a triangular solve of the rows below
//! (`factor_panel`). The independent subtrees of the schedule (`schedule.rs`) run on different
//! threads of a `team.rs` team, awake for the whole step, so the many short steps cost no
//! wake-ups; the supernodes above them are assembled by column chunks, their narrow subtrees
//! finished side by side, the widest factored by all threads (`dense_llt`). The same schedule
//! runs on one thread with the same values to the last bit. lme4 calls CHOLMOD's
//! `cholmod_super_numeric` (through `Matrix::update`) for the random-effects part and finishes
//! the fixed effects densely; MixedModels.jl's `updateL!` runs its blocked dense factor.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use faer::dyn_stack::MemStack;
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltError, LltParams, LltRegularization,
};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{MatMut, Par, Spec};

use super::assemble::{Part, PRODUCT_COLUMNS};
use super::kernels::SharedSlice;
use super::schedule::team_factors;
use super::symbolic::{FlatLayout, Symbolic};
use super::{SupernodalCholesky, SMALL_PANEL};
use crate::error::Result;
use crate::linalg::dense_llt::{self, SharedPanel};
use crate::linalg::scale::{inflate_scalar, scale_block, scale_dz_column, scale_inflate_block};
use crate::linalg::team::Ctx;
use crate::model::crossprod::CrossProducts;

/// Scratch of one thread.
#[derive(Clone, Debug)]
pub(super) struct Worker {
    product: Vec<f64>,
    llt_stack: Vec<MaybeUninit<u8>>,
}

impl Worker {
    /// Scratch large enough for every product and dense factor of `sym`.
    pub(super) fn new(sym: &Symbolic) -> Self {
        let mut max_product = 0;
        for p in &sym.products {
            let u = sym.updates[p.update as usize];
            let d = u.d as usize;
            let mp = sym.row_ptr[d + 1] - sym.row_ptr[d] - u.start as usize;
            max_product = max_product.max(mp * (u.len as usize).min(PRODUCT_COLUMNS));
        }
        let max_k = (0..sym.n_supernodes())
            .map(|s| sym.cols(s))
            .max()
            .unwrap_or(0);
        let llt_req = cholesky_in_place_scratch::<f64>(max_k, Par::Seq, Spec::default());
        Worker {
            product: vec![0.0; max_product],
            // Initialised (to zeros) although faer's `MemStack` accepts uninitialised bytes:
            // faer writes its temporaries before reading them, but an initialised buffer
            // makes that a fact of this code rather than a property of faer's.
            llt_stack: vec![MaybeUninit::new(0); llt_req.unaligned_bytes_required() + 64],
        }
    }
}

impl SupernodalCholesky {
    /// The numeric step: L(theta) from A and the per-term lambda templates.
    pub fn update(&mut self, a: &CrossProducts, lambdas: &[Vec<f64>]) -> Result<()> {
        scale_flat(a, lambdas, &self.sym.layout, &mut self.scaled);
        let team = self.exec.team();
        let parallel = !self.serial && self.is_parallel() && team.n_threads() > 1;
        if parallel && self.workers.len() < team.n_threads() {
            let w = self.workers[0].clone();
            self.workers.resize(team.n_threads(), w);
        }
        let job = Job {
            sym: &self.sym,
            scaled: &self.scaled,
            values: SharedSlice::new(&mut self.values),
            workers: SharedSlice::new(&mut self.workers),
            failed: AtomicUsize::new(usize::MAX),
        };
        if parallel {
            team.run(|ctx| job.run(ctx));
        } else {
            job.run(&Ctx::single());
        }
        // An interrupt shows as a failure at column 0 (`Job::poll`): report it as what it is.
        crate::exec::check_interrupt()?;
        match job.failed.load(Ordering::Relaxed) {
            usize::MAX => {}
            c => return Err(self.sym.pivot_error(c)),
        }
        let first = self.sym.n_re;
        for j in 0..self.sym.pd {
            for i in 0..self.sym.pd {
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
}

/// One numeric step, shared by the threads of the team: the panels (`values`) and the threads'
/// scratch (`workers`) are split between them by the schedule, and `failed` receives the
/// column of the first non-positive pivot (`usize::MAX` while none).
///
/// Who touches what (the proof behind every `unsafe` use of `values` and `workers` below):
/// thread t uses only workers[t] (`tid == 0` for thread 0's parts); a group's panels are
/// written only by the thread that took the group, a column chunk of a top supernode only by
/// the thread that took the chunk; the groups' panels (left of `top_start`) are read-only after
/// the groups, and the panels left of a top supernode are read-only while its second pass and
/// factor run; every phase ends with a barrier (`for_each_dynamic`, `dense_llt::factor`).
struct Job<'a> {
    sym: &'a Symbolic,
    scaled: &'a [f64],
    values: SharedSlice<f64>,
    workers: SharedSlice<Worker>,
    failed: AtomicUsize,
}

impl Job<'_> {
    fn ok(&self) -> bool {
        self.failed.load(Ordering::Relaxed) == usize::MAX
    }

    /// Inside one item of a phase (before the barrier that ends it, so that every thread
    /// reads the same `failed` after it): an interrupt request becomes a failure at column 0,
    /// which stops the factor as a pivot failure would; `update` reports the interrupt.
    fn poll(&self) {
        if crate::exec::interrupted() {
            self.failed.fetch_min(0, Ordering::Relaxed);
        }
    }

    fn run(&self, ctx: &Ctx) {
        self.groups(ctx);
        self.first_pass(ctx);
        self.narrow_subtrees(ctx);
        self.sequential(ctx);
    }

    /// The groups of independent subtrees, one thread each.
    fn groups(&self, ctx: &Ctx) {
        let (sym, schedule) = (self.sym, &self.sym.schedule);
        ctx.for_each_dynamic(schedule.groups.len(), |g| {
            self.poll();
            if !self.ok() {
                return;
            }
            let (base, end) = (schedule.region[g], schedule.region[g + 1]);
            // SAFETY: group g's panels are this group's region, used by this thread alone
            // (see `Job`).
            let region = unsafe { self.values.slice_mut(base, end) };
            // SAFETY: this thread's own scratch (see `Job`).
            let worker = unsafe { self.workers.item_mut(ctx.tid()) };
            if let Err(c) = sym.factor_group(&schedule.groups[g], region, base, self.scaled, worker)
            {
                self.failed.fetch_min(c, Ordering::Relaxed);
            }
        });
    }

    /// Columns c0..c1 (chunk c) of top supernode `top[i]`, one pass: the panels before
    /// `head_end` are read, those columns written.
    fn assemble_chunk(
        &self,
        ctx: &Ctx,
        i: usize,
        c: usize,
        head_end: usize,
        part: Part,
        item: Option<usize>,
    ) {
        let sym = self.sym;
        let s = sym.schedule.top[i] as usize;
        let bounds = sym.top_chunks(i);
        let (c0, c1) = (bounds[c] as usize, bounds[c + 1] as usize);
        let (m, start) = (sym.height(s), sym.val_ptr[s]);
        // SAFETY: the panels before `head_end` (the groups', or those before supernode s) are
        // read-only in this pass (see `Job`).
        let head = unsafe { self.values.slice(0, head_end) };
        // SAFETY: chunk c of supernode s belongs to the thread that took it (see `Job`).
        let cols = unsafe { self.values.slice_mut(start + c0 * m, start + c1 * m) };
        // SAFETY: this thread's own scratch (see `Job`).
        let worker = unsafe { self.workers.item_mut(ctx.tid()) };
        let product = &mut worker.product;
        sym.assemble(s, c0, c1, cols, self.scaled, head, 0, product, part, item);
    }

    /// First pass over the top supernodes: what the groups made ready, all at once.
    fn first_pass(&self, ctx: &Ctx) {
        let schedule = &self.sym.schedule;
        let top_start = schedule.region[schedule.groups.len()];
        ctx.for_each_dynamic(schedule.ready_items.len(), |item| {
            self.poll();
            if self.ok() {
                let (i, c) = schedule.ready_items[item];
                self.assemble_chunk(
                    ctx,
                    i as usize,
                    c as usize,
                    top_start,
                    Part::Ready,
                    Some(item),
                );
            }
        });
    }

    /// The subtrees of narrow top supernodes side by side, each on one thread: for each
    /// supernode, the updates from the top supernodes before it (all in its subtree, whose
    /// panels are contiguous from `base`), then its factor, with the kernel that the team would
    /// use, so that the values do not depend on who does it.
    fn narrow_subtrees(&self, ctx: &Ctx) {
        let (sym, schedule) = (self.sym, &self.sym.schedule);
        ctx.for_each_dynamic(schedule.top_groups.len(), |g| {
            let group = &schedule.top_groups[g];
            let base = sym.val_ptr[schedule.top[group[0] as usize] as usize];
            // SAFETY: this thread's own scratch (see `Job`).
            let worker = unsafe { self.workers.item_mut(ctx.tid()) };
            for &i in group {
                self.poll();
                if !self.ok() {
                    return;
                }
                let i = i as usize;
                let s = schedule.top[i] as usize;
                let (k, m, start) = (sym.cols(s), sym.height(s), sym.val_ptr[s]);
                // SAFETY: the subtree's panels belong to the thread that took it (see `Job`).
                let panel = unsafe { self.values.slice_mut(start, start + m * k) };
                if schedule.late[i] {
                    // SAFETY: the subtree's panels before s, this thread's, are not written
                    // while s is assembled (see `Job`).
                    let head = unsafe { self.values.slice(base, start) };
                    let product = &mut worker.product;
                    sym.assemble(
                        s,
                        0,
                        k,
                        panel,
                        self.scaled,
                        head,
                        base,
                        product,
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
                    self.failed.fetch_min(sym.begin[s] + j, Ordering::Relaxed);
                }
            }
        });
    }

    /// Then the other top supernodes one by one, on the whole team: the updates from the top
    /// supernodes before, and the factor.
    fn sequential(&self, ctx: &Ctx) {
        let (sym, schedule) = (self.sym, &self.sym.schedule);
        let tid = ctx.tid();
        for &i in &schedule.sequential {
            if !self.ok() {
                // Read after a barrier: every thread leaves here together.
                return;
            }
            let i = i as usize;
            let s = schedule.top[i] as usize;
            let (k, m, start) = (sym.cols(s), sym.height(s), sym.val_ptr[s]);
            if schedule.late[i] {
                let n_chunks = sym.top_chunks(i).len() - 1;
                ctx.for_each_dynamic(n_chunks, |c| {
                    self.poll();
                    self.assemble_chunk(ctx, i, c, start, Part::Late, None);
                });
            }
            // By the schedule, not by the threads at hand: a serial update must give the
            // same values (see `set_serial`).
            let result = if schedule.threads > 1 && team_factors(k, m) {
                // SAFETY: the panel of s is shared by the team, whose threads write disjoint
                // parts of it between barriers (`dense_llt::factor`).
                let panel = unsafe { self.values.slice_mut(start, start + m * k) };
                let panel = SharedPanel::new(panel, m, k);
                // SAFETY: thread 0's scratch, used by thread 0 alone (see `Job`).
                let stack = (tid == 0)
                    .then(|| MemStack::new(unsafe { &mut self.workers.item_mut(0).llt_stack }));
                dense_llt::factor(ctx, panel, &self.failed, stack)
            } else {
                if tid == 0 {
                    self.poll();
                }
                if tid == 0 && self.ok() {
                    // SAFETY: thread 0 alone factors this panel, while the others wait at the
                    // barrier below (see `Job`).
                    let panel = unsafe { self.values.slice_mut(start, start + m * k) };
                    // SAFETY: thread 0's scratch (see `Job`).
                    let worker = unsafe { self.workers.item_mut(0) };
                    if let Err(j) = factor_panel(panel, m, k, worker) {
                        self.failed.fetch_min(j, Ordering::Relaxed);
                    }
                }
                ctx.barrier();
                match self.failed.load(Ordering::Relaxed) {
                    usize::MAX => Ok(()),
                    j => Err(j),
                }
            };
            if let Err(j) = result {
                // The column within the supernode; make it global once.
                if tid == 0 {
                    self.failed.store(sym.begin[s] + j, Ordering::Relaxed);
                }
                ctx.barrier();
                return;
            }
        }
    }
}

impl Symbolic {
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
            let product = &mut worker.product;
            self.assemble(
                s,
                0,
                k,
                panel,
                scaled,
                head,
                base,
                product,
                Part::Ready,
                None,
            );
            factor_panel(panel, m, k, worker).map_err(|j| self.begin[s] + j)?;
        }
        Ok(())
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
    let params: Spec<LltParams, f64> = Spec::default();
    let regularization = LltRegularization::default();
    match cholesky_in_place(top.as_mut(), regularization, Par::Seq, stack, params) {
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

/// Left-looking column Cholesky of a small m x k panel in place: the top k x k block becomes L,
/// the rows below become B L^{-T}. Returns the failing column on a non-positive pivot.
///
/// Not `blocks::chol_small`: that one divides by each pivot and takes its dot products in a
/// different order; this one multiplies by the reciprocal and skips zero multipliers, and
/// sharing either would move the values' last bits.
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
                *o = inflate_scalar(l2, *v);
            }
        } else {
            for (o, blk) in dst
                .chunks_exact_mut(q * q)
                .zip(a.diag[k].chunks_exact(q * q))
            {
                scale_inflate_block(blk, lam, q, o);
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
        scale_dz(
            &a.dz[k],
            lam,
            q,
            pd,
            &mut out[layout.dz[k]..layout.dz[k] + a.dz[k].len()],
        );
    }
    out[layout.dd..layout.dd + a.dd.len()].copy_from_slice(&a.dd);
}

/// D'WZ_k Lambda_k: each level's pd x q slab of `dz` times lambda_k, into `dst`.
fn scale_dz(dz: &[f64], lam: &[f64], q: usize, pd: usize, dst: &mut [f64]) {
    if q == 1 {
        let f = lam[0];
        for (o, v) in dst.iter_mut().zip(dz) {
            *o = f * v;
        }
    } else {
        for (o, slab) in dst.chunks_exact_mut(pd * q).zip(dz.chunks_exact(pd * q)) {
            for b in 0..q {
                scale_dz_column(slab, lam, q, b, &mut o[b * pd..(b + 1) * pd]);
            }
        }
    }
}
