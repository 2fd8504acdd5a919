//! Small dense kernels on column-major q x q blocks: the Cholesky factor M = L L' of a small
//! symmetric positive definite block, the triangular solves with L and L', the right solve
//! B L^{-T}, and the update T -= P Q' of a small dense block.
//!
//! These are the unblocked algorithms (MixedModels.jl's `cholUnblocked!` and the LAPACK
//! routines dpotf2 / dtrsv that lme4 reaches through CHOLMOD): at the sizes met here (a term's
//! q x q block per level, the (p + 1) x (p + 1) fixed-effects block of a small model, the
//! optimiser's quadratic model) a library call and its scratch cost more than the arithmetic.
//! Every factor in the crate that factors a small block calls `chol_small`: the blocked form
//! (`blocked.rs`), the one-term evaluation (`oneterm.rs`) and the convergence check
//! (`optim.rs`).

use faer::Mat;

/// In-place Cholesky of a small q x q column-major block: the lower triangle is read and
/// overwritten by L, the strict upper triangle is zeroed. On a pivot that is not positive and
/// finite, returns its index (the block is then partly overwritten).
pub fn chol_small(a: &mut [f64], q: usize) -> Result<(), usize> {
    for j in 0..q {
        let mut d = a[j + j * q];
        for k in 0..j {
            d -= a[j + k * q] * a[j + k * q];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        a[j + j * q] = d;
        for i in j + 1..q {
            let mut s = a[i + j * q];
            for k in 0..j {
                s -= a[i + k * q] * a[j + k * q];
            }
            a[i + j * q] = s / d;
        }
        for i in 0..j {
            a[i + j * q] = 0.0;
        }
    }
    Ok(())
}

/// b <- b L^{-T} for an r x q column-major block b and lower-triangular q x q L.
pub fn right_solve_lt(b: &mut [f64], r: usize, l: &[f64], q: usize) {
    // Row by row: x L' = b_row  <=>  L x' = b_row', forward substitution.
    for i in 0..r {
        for j in 0..q {
            let mut s = b[i + j * r];
            for k in 0..j {
                s -= b[i + k * r] * l[j + k * q];
            }
            b[i + j * r] = s / l[j + j * q];
        }
    }
}

/// x <- L^{-1} x for lower-triangular q x q L.
pub fn solve_l_small(l: &[f64], q: usize, x: &mut [f64]) {
    for j in 0..q {
        let mut s = x[j];
        for k in 0..j {
            s -= l[j + k * q] * x[k];
        }
        x[j] = s / l[j + j * q];
    }
}

/// x <- L^{-T} x for lower-triangular q x q L.
pub fn solve_lt_small(l: &[f64], q: usize, x: &mut [f64]) {
    for j in (0..q).rev() {
        let mut s = x[j];
        for k in j + 1..q {
            s -= l[k + j * q] * x[k];
        }
        x[j] = s / l[j + j * q];
    }
}

/// t -= p q' for small dense blocks (only the lower triangle of t when `lower`, as when p and q
/// are the same block and t is symmetric).
pub fn sub_product(t: &mut Mat<f64>, p: &Mat<f64>, q: &Mat<f64>, lower: bool) {
    for k in 0..p.ncols() {
        let pk = p.col_as_slice(k);
        let qk = q.col_as_slice(k);
        for (j, &qjk) in qk.iter().enumerate() {
            if qjk == 0.0 {
                continue;
            }
            let from = if lower { j } else { 0 };
            let tj = &mut t.col_as_slice_mut(j)[from..];
            for (v, x) in tj.iter_mut().zip(&pk[from..]) {
                *v -= x * qjk;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cholesky_reconstructs() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        chol_small(&mut a, 2).unwrap();
        let l = a.clone();
        // L L' == original
        assert!((l[0] * l[0] - 4.0).abs() < 1e-14);
        assert!((l[1] * l[0] - 2.0).abs() < 1e-14);
        assert!((l[1] * l[1] + l[3] * l[3] - 3.0).abs() < 1e-14);
        assert_eq!(l[2], 0.0);
        assert!(chol_small(&mut [1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn solves_invert_the_factor() {
        let l = [2.0, 1.0, 0.0, 3.0];
        let mut x = [4.0, 5.0];
        solve_l_small(&l, 2, &mut x);
        assert_eq!(x, [2.0, 1.0]);
        solve_lt_small(&l, 2, &mut x);
        // L' y = (2, 1): y1 = 1/3, y0 = (2 - y1) / 2.
        assert!((x[1] - 1.0 / 3.0).abs() < 1e-15 && (x[0] - 5.0 / 6.0).abs() < 1e-15);
        // b L^-T for one row b = (4, 5): the same as L^-1 b'.
        let mut b = [4.0, 5.0];
        right_solve_lt(&mut b, 1, &l, 2);
        assert_eq!(b, [2.0, 1.0]);
    }
}
