//! Assembly of a supernode's panel before its factor (left-looking):
//!
//! ```text
//!   panel(s) = (P (Lambda'A Lambda + I) P')[rows(s), cols(s)]  -  sum_d L[rows(s), d] L[cols(s), d]'
//! ```
//!
//! over the descendants d of s whose patterns reach its columns. The scaled elements of A are
//! added through the assembly map; small updates are subtracted column by column in place
//! (`Pull`, with a prefetch of the next ones), large ones as matrix products in blocks of target
//! columns (`Product`), written straight into runs of consecutive target rows where they are
//! few. A top supernode is assembled in two passes (`Part`): what the groups made ready, then
//! the updates of the top supernodes before it. CHOLMOD's `cholmod_super_numeric` (lme4) does
//! the same with a dense product per descendant and a relative map; MixedModels.jl's blocked
//! factor subtracts dense block products (`rankUpdate!`).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use super::kernels::{prefetch, scatter_sub, subtract_by_runs, PREFETCH_PULLS};
use super::symbolic::{Pull, Symbolic};

/// Columns of the target per matrix product of a large update (bounds the work wasted above
/// the diagonal and the size of the temporary product).
pub(super) const PRODUCT_COLUMNS: usize = 64;

/// Large updates whose target rows form at most this many runs of consecutive rows are
/// subtracted in place, a matrix product per pair of runs (`subtract_by_runs`).
const DIRECT_RUNS: usize = 8;

/// The two passes that assemble a top supernode: what is ready once the groups are factored
/// (A's entries and the updates from the groups' supernodes; all of a group supernode's
/// assembly), and the updates from the top supernodes before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Ready,
    Late,
}

impl Symbolic {
    /// Prefetches the values and rows of a coming pull.
    #[inline(always)]
    #[allow(clippy::inline_always)] // once per pull, in the innermost loop of the assembly
    fn prefetch_pull(&self, head: &[f64], base: usize, q: Pull) {
        prefetch(
            head.as_ptr()
                .wrapping_add((q.x as usize).wrapping_sub(base)),
        );
        prefetch(self.update_rows[q.rows as usize..].as_ptr());
    }

    /// Subtracts one column-by-column update from target column `col`.
    #[inline(always)]
    #[allow(clippy::inline_always)] // once per pull, in the innermost loop of the assembly
    fn apply_pull(&self, col: &mut [f64], head: &[f64], base: usize, p: Pull) {
        let count = p.count as usize;
        let lr = &self.update_rows[p.rows as usize..p.rows as usize + count];
        let x0 = p.x as usize - base;
        if p.kd == 1 {
            let x = &head[x0..x0 + count];
            // SAFETY: the symbolic step made every entry of update_rows a row of the
            // target's panel, whose columns are m long, and the rows of one update are
            // distinct; x has `count` values, one per row.
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
    pub(super) fn assemble(
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
        self.subtract_pulls(s, c0, c1, cols, head, base, part, item);
        self.subtract_products(s, c0, c1, cols, head, base, product, part);
    }

    /// The small updates of `assemble`: in the first pass of a top supernode, in the order of
    /// their descendants (`item_pulls`); otherwise column by column.
    #[allow(clippy::too_many_arguments)]
    fn subtract_pulls(
        &self,
        s: usize,
        c0: usize,
        c1: usize,
        cols: &mut [f64],
        head: &[f64],
        base: usize,
        part: Part,
        item: Option<usize>,
    ) {
        let f = self.begin[s];
        let m = self.height(s);
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
    }

    /// The large updates of `assemble`, as matrix products, a block of target columns at a
    /// time.
    #[allow(clippy::too_many_arguments)]
    fn subtract_products(
        &self,
        s: usize,
        c0: usize,
        c1: usize,
        cols: &mut [f64],
        head: &[f64],
        base: usize,
        product: &mut [f64],
        part: Part,
    ) {
        let f = self.begin[s];
        let m = self.height(s);
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
                                // SAFETY: as for the small updates, every row of `lr` is a row
                                // of the target's panel, below m = col.len().
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
