//! The Cholesky factorisation of a dense m x k panel, split between the threads of a team:
//!
//! ```text
//!   [ A11 ]      [ L11       ]
//!   [ A21 ]  ->  [ A21 L11^-T ],    A11 = L11 L11'  (k x k),
//! ```
//!
//! in place, column-major with leading dimension m; only the lower triangle of A11 is read. Its
//! strict upper triangle must be zero outside the diagonal `BLOCK` x `BLOCK` blocks, where the
//! updates write; those are zeroed at the end, so that the whole strict upper triangle is zero
//! again (zeroing all of it took about 5% of the factor of 579 columns; a caller that keeps the
//! upper triangle zero, as `supernodal.rs` does, need not pay for it). This is the
//! diagonal-block step of a supernodal factor (`supernodal.rs`) for its widest supernodes.
//!
//! Right-looking by blocks of `BLOCK` columns, as LAPACK's dpotrf, with a lookahead of one block
//! column: in each step, thread 0 updates the next block column with the one just finished and
//! factors it (its diagonal block, then the rows below), while the other threads update the
//! columns after it in blocks of `BLOCK` columns, handed out dynamically, largest first (thread
//! 0 joins them when done); a barrier separates the steps. So the factor of each diagonal block
//! and its solve no longer leave the other threads waiting (10 to 18% less time than the same
//! steps without the lookahead, for 579 columns on two threads, `benches/dense_cost.rs`). The
//! first block column is the exception: all threads solve its rows, the bulk of the work of a
//! narrow panel. Every element sees the same operations in the same order, however many
//! threads. (LAPACK parallelises the same algorithm through a threaded BLAS; faer's own parallel
//! Cholesky goes through rayon, whose workers fall asleep between the steps, see `team.rs`.)

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use faer::dyn_stack::MemStack;
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, LltError, LltParams};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, MatMut, MatRef, Par};

use crate::linalg::team::Ctx;

/// Columns per block step (and per trailing-update block). Blocks of 32 to 56 columns were 2 to
/// 5% faster in `benches/dense_cost.rs`, but they round differently: InstEval's fit then took 72
/// evaluations instead of lme4's 68 (its last steps are decided by differences of 1e-8 in an
/// objective of 2e5), which cost more than the blocks saved.
pub const BLOCK: usize = 64;

/// Rows per block of the triangular solve below the diagonal block.
const SOLVE_ROWS: usize = 128;

/// A panel shared by the threads of a job. Each step writes parts no other thread touches in
/// that step (see `factor`), so the pointer may be used from every thread.
#[derive(Clone, Copy)]
pub struct SharedPanel<'a> {
    ptr: *mut f64,
    m: usize,
    k: usize,
    /// The panel borrows its values mutably for as long as it lives.
    values: PhantomData<&'a mut [f64]>,
}

// SAFETY: a `SharedPanel` is a pointer to values that it borrows mutably for its lifetime; the
// threads of a job access it only through `view` and `view_mut`, on parts that no other thread
// writes in the same step (see `factor`), with barriers between the steps.
unsafe impl Send for SharedPanel<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedPanel<'_> {}

impl<'a> SharedPanel<'a> {
    /// The m x k panel in `values` (column-major, m >= k, `values.len() >= m * k`).
    pub fn new(values: &'a mut [f64], m: usize, k: usize) -> Self {
        assert!(
            m >= k && values.len() >= m * k,
            "panel larger than its values"
        );
        SharedPanel {
            ptr: values.as_mut_ptr(),
            m,
            k,
            values: PhantomData,
        }
    }

    /// Rows r0..r1, columns c0..c1.
    ///
    /// # Safety
    /// No other thread may write these elements while the view lives.
    unsafe fn view(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> MatRef<'_, f64> {
        assert!(r0 <= r1 && r1 <= self.m && c0 <= c1 && c1 <= self.k);
        // SAFETY: rows r0..r1 and columns c0..c1 of the m x k column-major panel lie inside the
        // values given to `new` (m * k of them); the caller guarantees that no thread writes
        // them while the view lives.
        unsafe {
            MatRef::from_raw_parts(
                self.ptr.add(c0 * self.m + r0),
                r1 - r0,
                c1 - c0,
                1,
                self.m as isize,
            )
        }
    }

    /// Rows r0..r1, columns c0..c1, to write.
    ///
    /// # Safety
    /// No other thread may read or write these elements while the view lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn view_mut(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> MatMut<'_, f64> {
        assert!(r0 <= r1 && r1 <= self.m && c0 <= c1 && c1 <= self.k);
        // SAFETY: as in `view`; the caller guarantees that no other thread reads or writes these
        // elements while the view lives.
        unsafe {
            MatMut::from_raw_parts_mut(
                self.ptr.add(c0 * self.m + r0),
                r1 - r0,
                c1 - c0,
                1,
                self.m as isize,
            )
        }
    }
}

/// Factors `panel` with every thread of the job (all must call it with the same arguments but
/// `stack`). `stack` is the scratch of faer's Cholesky for a `BLOCK` x `BLOCK` block, used by
/// thread 0 only. `failed`, shared by the threads, holds `usize::MAX` on entry; on a
/// non-positive pivot it receives the pivot's column, which every thread returns.
pub fn factor(
    ctx: &Ctx,
    panel: SharedPanel<'_>,
    failed: &AtomicUsize,
    stack: Option<&mut MemStack>,
) -> std::result::Result<(), usize> {
    let (m, k) = (panel.m, panel.k);
    let mut stack = stack;
    // The first block column: its diagonal block on thread 0, the rows below on all threads (in
    // a narrow panel, that solve is most of the work).
    let j1 = BLOCK.min(k);
    if ctx.tid() == 0 {
        let stack = stack.as_deref_mut().expect("thread 0 passes the scratch");
        factor_diagonal(panel, 0, j1, failed, stack);
    }
    ctx.barrier();
    if let Some(f) = failure(ctx, failed, j1) {
        return Err(f);
    }
    // SAFETY: the diagonal block is read-only from here on.
    let l11 = unsafe { panel.view(0, j1, 0, j1) };
    ctx.for_each_dynamic((m - j1).div_ceil(SOLVE_ROWS), |b| {
        let r0 = j1 + b * SOLVE_ROWS;
        let r1 = (r0 + SOLVE_ROWS).min(m);
        // SAFETY: row block b of these columns belongs to this call only.
        let rows = unsafe { panel.view_mut(r0, r1, 0, j1) };
        solve_lower_triangular_in_place(l11, rows.transpose_mut(), Par::Seq);
    });

    // Block column j0..j1 is finished: it updates the columns after it.
    let mut j0 = 0;
    while j1_of(j0, k) < k {
        let j1 = j1_of(j0, k);
        let j2 = j1_of(j1, k);
        let update = |c0: usize, c1: usize| {
            // SAFETY: columns c0..c1 (rows c0..) belong to this call; columns j0..j1 are only
            // read in this step.
            let (target, left, top) = unsafe {
                (
                    panel.view_mut(c0, m, c0, c1),
                    panel.view(c0, m, j0, j1),
                    panel.view(c0, c1, j0, j1),
                )
            };
            matmul(target, Accum::Add, left, top.transpose(), -1.0, Par::Seq);
        };
        if ctx.tid() == 0 {
            // Look ahead: thread 0 updates the next block column and factors it (diagonal block
            // and the rows below), while the others update the columns after it.
            update(j1, j2);
            let stack = stack.as_deref_mut().expect("thread 0 passes the scratch");
            if crate::exec::interrupted() {
                // An interrupt stops the factor as a failure at column 0 would, at the barrier
                // that ends this step (the caller reports the interrupt, not a pivot).
                failed.fetch_min(0, Ordering::Relaxed);
            } else if factor_diagonal(panel, j1, j2, failed, stack) {
                // SAFETY: thread 0 owns columns j1..j2 in this step.
                let (l11, rows) =
                    unsafe { (panel.view(j1, j2, j1, j2), panel.view_mut(j2, m, j1, j2)) };
                solve_lower_triangular_in_place(l11, rows.transpose_mut(), Par::Seq);
            }
        }
        ctx.for_each_dynamic((k - j2).div_ceil(BLOCK), |b| {
            let c0 = j2 + b * BLOCK;
            update(c0, (c0 + BLOCK).min(k));
        });
        if let Some(f) = failure(ctx, failed, j2) {
            return Err(f);
        }
        j0 = j1;
    }
    // The trailing updates wrote above the diagonal too, in the diagonal blocks only (each
    // update of columns c0..c1 starts at row c0); L is lower triangular.
    ctx.for_each_dynamic(k.div_ceil(BLOCK), |b| {
        let c0 = b * BLOCK;
        for c in c0 + 1..(c0 + BLOCK).min(k) {
            // SAFETY: column c belongs to this call.
            let mut col = unsafe { panel.view_mut(c0, c, c, c + 1) };
            col.fill(0.0);
        }
    });
    Ok(())
}

/// The end of the block column that starts at j0.
fn j1_of(j0: usize, k: usize) -> usize {
    (j0 + BLOCK).min(k)
}

/// Factors the diagonal block j0..j1 in place; false (and its column in `failed`) at a
/// non-positive pivot.
fn factor_diagonal(
    panel: SharedPanel<'_>,
    j0: usize,
    j1: usize,
    failed: &AtomicUsize,
    stack: &mut MemStack,
) -> bool {
    // SAFETY: the caller's thread alone touches this block in this step.
    let diag = unsafe { panel.view_mut(j0, j1, j0, j1) };
    let params: faer::Spec<LltParams, f64> = faer::Spec::default();
    match cholesky_in_place(
        diag,
        faer::linalg::cholesky::llt::factor::LltRegularization::default(),
        Par::Seq,
        stack,
        params,
    ) {
        Err(LltError::NonPositivePivot { index }) => {
            failed.store(j0 + index, Ordering::Relaxed);
            false
        }
        Ok(_) => true,
    }
}

/// After the barrier that ends the step that factored the columns before `end`: the failed
/// pivot among them, if any, which every thread then returns (after one more barrier, so that
/// no thread is still reading `failed` when the caller resets it). A pivot at `end` or after
/// belongs to a later step: with the lookahead, thread 0 may fail in the next step's block
/// before a slow thread has read `failed` for this one, and every thread must stop at the
/// same barrier.
fn failure(ctx: &Ctx, failed: &AtomicUsize, end: usize) -> Option<usize> {
    let f = failed.load(Ordering::Relaxed);
    if f >= end {
        return None;
    }
    ctx.barrier();
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::team::Team;
    use faer::dyn_stack::MemBuffer;
    use faer::linalg::cholesky::llt::factor::cholesky_in_place_scratch;
    use faer::Mat;
    use std::sync::Mutex;

    /// A random m x k panel whose top k x k block is symmetric positive definite.
    fn panel(m: usize, k: usize, seed: u64) -> Mat<f64> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
        };
        let b = Mat::<f64>::from_fn(m, k, |_, _| next());
        let mut a = &b * b.transpose().subcols(0, k);
        for i in 0..k {
            a[(i, i)] += k as f64;
        }
        // Only the lower triangle is passed (and the upper one must be zero, see above);
        // anything in the upper triangle within the diagonal blocks is zeroed.
        for j in 0..k {
            for i in 0..j {
                a[(i, j)] = if j / BLOCK == i / BLOCK {
                    f64::NAN
                } else {
                    0.0
                };
            }
        }
        a
    }

    /// Factors `a` on a team of `threads` threads; returns the values or the failing column.
    fn factor_on(a: &Mat<f64>, threads: usize) -> (Vec<f64>, std::result::Result<(), usize>) {
        let (m, k) = (a.nrows(), a.ncols());
        let mut values: Vec<f64> = (0..k)
            .flat_map(|j| (0..m).map(move |i| (i, j)))
            .map(|(i, j)| a[(i, j)])
            .collect();
        let team = Team::new(threads);
        let failed = AtomicUsize::new(usize::MAX);
        let shared = SharedPanel::new(&mut values, m, k);
        let mut buf = MemBuffer::new(cholesky_in_place_scratch::<f64>(
            BLOCK,
            Par::Seq,
            faer::Spec::default(),
        ));
        let buf = Mutex::new(&mut buf);
        let results = Mutex::new(Vec::new());
        team.run(|ctx| {
            let mut guard = (ctx.tid() == 0).then(|| buf.lock().unwrap());
            let stack = guard.as_mut().map(|g| MemStack::new(g));
            let r = factor(ctx, shared, &failed, stack);
            results.lock().unwrap().push(r);
        });
        let results = results.into_inner().unwrap();
        assert_eq!(results.len(), threads);
        assert!(
            results.iter().all(|r| *r == results[0]),
            "threads disagree: {results:?}"
        );
        (values, results[0])
    }

    #[test]
    fn matches_a_sequential_factor_for_any_team() {
        for (m, k) in [(300, 300), (411, 257), (130, 64), (70, 1)] {
            let a = panel(m, k, 7 + m as u64);
            // Reference: faer's sequential Cholesky of the top, then the solve below.
            let mut want = a.clone();
            let mut buf = MemBuffer::new(cholesky_in_place_scratch::<f64>(
                k,
                Par::Seq,
                faer::Spec::default(),
            ));
            {
                let (mut top, mut bottom) = want.as_mut().split_at_row_mut(k);
                cholesky_in_place(
                    top.as_mut(),
                    faer::linalg::cholesky::llt::factor::LltRegularization::default(),
                    Par::Seq,
                    MemStack::new(&mut buf),
                    faer::Spec::default(),
                )
                .unwrap();
                solve_lower_triangular_in_place(
                    top.as_ref(),
                    bottom.as_mut().transpose_mut(),
                    Par::Seq,
                );
            }
            for threads in [1, 2, 3] {
                let (got, result) = factor_on(&a, threads);
                assert_eq!(result, Ok(()));
                let mut worst = 0.0f64;
                for j in 0..k {
                    for i in 0..j {
                        let v = got[j * m + i];
                        assert!(v == 0.0, "{threads} threads: L[{i}, {j}] = {v}, not 0");
                    }
                    for i in j..m {
                        let scale = want[(j, j)].abs().max(1.0);
                        let err = (got[j * m + i] - want[(i, j)]).abs() / scale;
                        assert!(err.is_finite(), "{threads} threads: L[{i}, {j}] not finite");
                        worst = worst.max(err);
                    }
                }
                assert!(
                    worst < 1e-12,
                    "{m} x {k} on {threads} threads: error {worst:e}"
                );
            }
        }
    }

    #[test]
    fn reports_the_first_non_positive_pivot_on_every_thread() {
        // Pivots in the first block column (no lookahead yet), in a block column factored ahead
        // by thread 0, and in the last one; with a team larger than the machine too, where a
        // descheduled thread reads the outcome of a step late.
        let (m, k) = (260, 200);
        for bad in [10, BLOCK + 3, 130, k - 1] {
            let mut a = panel(m, k, 3);
            // Make the leading minor of order bad + 1 negative: column bad's pivot fails.
            a[(bad, bad)] -= 1e6;
            for threads in [1, 2, 3] {
                for _ in 0..20 {
                    let (_, result) = factor_on(&a, threads);
                    assert_eq!(result, Err(bad), "{threads} threads");
                }
            }
        }
    }
}
