//! The innermost kernels of the supernodal numeric step: subtracting a descendant's update
//!
//! ```text
//!   L[rows, j] -= X X[j, :]'      (X: rows of a descendant's panel below its diagonal block)
//! ```
//!
//! from a target panel whose rows are given by a map (`update_rows`), column by column
//! (`scatter_sub`, with AVX-512 gathers and scatters where the CPU has them) or as matrix
//! products written straight into runs of consecutive target rows (`subtract_by_runs`); a
//! prefetch hint; and the slice that the threads of a team job share. CHOLMOD's supernodal
//! factor (`cholmod_super_numeric`, which lme4 calls) computes each update as a dense product
//! into a temporary and then scatters it through a relative map; MixedModels.jl factors dense
//! and block-diagonal blocks only and has no sparse counterpart.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};

/// Column-by-column updates ahead of the current one whose values and rows are prefetched: each
/// comes from another descendant's panel, where the hardware prefetcher cannot guess it.
pub(super) const PREFETCH_PULLS: usize = 4;

/// A hint to bring the cache line at `p` into the first-level cache (no effect elsewhere than
/// on x86-64; `p` need not be a valid address).
#[inline(always)]
#[allow(clippy::inline_always)] // called once per pull in the innermost loop of the assembly
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Columns `j0..j1` of the update X X' (X: the update's rows of the descendant's panel) subtracted
/// straight from the target's columns, one matrix product per pair of runs of consecutive target
/// rows (`ends`, see `Product`): with few runs, this saves writing the product and reading it
/// back. Column chunk `cols` starts at the target's column `c0` and has height m.
#[allow(clippy::too_many_arguments)]
pub(super) fn subtract_by_runs(
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
pub(super) unsafe fn scatter_sub(col: &mut [f64], rows: &[u32], x: &[f64], a: f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if rows.len() >= 8 && has_avx512() {
            // SAFETY: the CPU has AVX-512F and AVX-512VL (checked just above); the caller's
            // promises are those of `scatter_sub_avx512`.
            return unsafe { scatter_sub_avx512(col, rows, x, a) };
        }
    }
    for (&r, &xi) in rows.iter().zip(x) {
        // SAFETY: the caller promises r < col.len().
        unsafe { *col.get_unchecked_mut(r as usize) -= xi * a };
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    // The masked 256-bit load of the last rows is an AVX-512VL instruction.
    *HAS.get_or_init(|| {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")
    })
}

/// `scatter_sub` eight rows at a time with AVX-512 gathers and scatters (the rows of one update
/// are distinct, so the lanes of a scatter never collide).
///
/// # Safety
/// As for `scatter_sub`, and the CPU supports AVX-512F and AVX-512VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn scatter_sub_avx512(col: &mut [f64], rows: &[u32], x: &[f64], a: f64) {
    use std::arch::x86_64::{
        __m256i, __mmask8, _mm256_loadu_si256, _mm256_maskz_loadu_epi32, _mm512_fnmadd_pd,
        _mm512_i32gather_pd, _mm512_i32scatter_pd, _mm512_loadu_pd, _mm512_mask_i32gather_pd,
        _mm512_mask_i32scatter_pd, _mm512_maskz_loadu_pd, _mm512_set1_pd, _mm512_setzero_pd,
    };
    let n = rows.len();
    let base = col.as_mut_ptr();
    let av = _mm512_set1_pd(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n = rows.len() <= x.len(), so the unaligned loads read rows[i..i + 8]
        // and x[i..i + 8]; every gathered and scattered index is an entry of `rows`, below
        // col.len() by the caller's promise, and the eight are distinct, so no lanes collide.
        unsafe {
            #[allow(clippy::cast_ptr_alignment)] // an unaligned load: any address will do
            let idx = _mm256_loadu_si256(rows.as_ptr().add(i).cast::<__m256i>());
            let xv = _mm512_loadu_pd(x.as_ptr().add(i));
            let cv = _mm512_i32gather_pd::<8>(idx, base.cast_const());
            _mm512_i32scatter_pd::<8>(base, idx, _mm512_fnmadd_pd(xv, av, cv));
        }
        i += 8;
    }
    if i < n {
        let mask: __mmask8 = (1u8 << (n - i)) - 1;
        // SAFETY: the masked loads read only the n - i < 8 lanes left, rows[i..n] and x[i..n];
        // the masked gather and scatter touch only those rows, as above.
        unsafe {
            let idx = _mm256_maskz_loadu_epi32(mask, rows.as_ptr().add(i).cast::<i32>());
            let xv = _mm512_maskz_loadu_pd(mask, x.as_ptr().add(i));
            let cv =
                _mm512_mask_i32gather_pd::<8>(_mm512_setzero_pd(), mask, idx, base.cast_const());
            _mm512_mask_i32scatter_pd::<8>(base, mask, idx, _mm512_fnmadd_pd(xv, av, cv));
        }
    }
}

/// A slice that the threads of a team job share, each using parts no other thread uses at the
/// same time (the job says which).
pub(super) struct SharedSlice<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the pointer comes from a `&mut [T]` that outlives the job, and every accessor is
// unsafe: its callers keep the parts that different threads use apart, so sending or sharing the
// slice between threads is as sound as sending the `&mut [T]` pieces themselves (T: Send).
unsafe impl<T: Send> Send for SharedSlice<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Send> Sync for SharedSlice<T> {}

impl<T> SharedSlice<T> {
    pub(super) fn new(v: &mut [T]) -> Self {
        SharedSlice {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// Elements a..b, to read.
    ///
    /// # Safety
    /// No thread may write them while the slice lives.
    pub(super) unsafe fn slice(&self, a: usize, b: usize) -> &[T] {
        assert!(a <= b && b <= self.len);
        // SAFETY: a..b lies inside the slice (asserted), whose elements are initialised; the
        // caller promises no thread writes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.add(a), b - a) }
    }

    /// Elements a..b, to write.
    ///
    /// # Safety
    /// No other thread may use them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slice_mut(&self, a: usize, b: usize) -> &mut [T] {
        assert!(a <= b && b <= self.len);
        // SAFETY: a..b lies inside the slice (asserted); the caller promises this thread alone
        // uses those elements meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(a), b - a) }
    }

    /// Element i, to write.
    ///
    /// # Safety
    /// As for `slice_mut`.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn item_mut(&self, i: usize) -> &mut T {
        assert!(i < self.len);
        // SAFETY: i is inside the slice (asserted); the caller promises this thread alone uses
        // element i meanwhile.
        unsafe { &mut *self.ptr.add(i) }
    }
}
