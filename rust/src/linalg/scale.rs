//! The scaled, inflated cross-product Lambda' A Lambda + diag(I, 0): its blocks one at a time.
//!
//! With Lambda = blockdiag(I_{levels_k} (x) lambda_k) and A = [Z X y]'W[Z X y] stored by blocks
//! (`crossprod.rs`), block (i, j) of the matrix that L(theta) factors is
//!
//! ```text
//!   lambda_i' A_ij lambda_j  (+ I when i = j)    for two terms (per pair of levels),
//!   (D'WZ_j) lambda_j                            for the D = [X y] row (per level of term j),
//!   D'WD                                         for the D block,
//! ```
//!
//! (Bates et al. 2015, eq. 18; lme4's `updateL`, which scales Z'Z by Lambda before CHOLMOD;
//! MixedModels.jl's `scaleinflate!` and `rmulΛ!`). Every factor form calls these functions:
//! the blocked form (`blocked.rs`), the one-term evaluation (`oneterm.rs`) and the supernodal
//! form.
//!
//! Rounding: lambda_a' B lambda_b is computed as lambda_a' (B lambda_b), each sum in increasing
//! index order from zero, skipping zero elements of lambda_b. For q = 1 the one-term and
//! supernodal forms round the diagonal as (lambda^2) a + 1 (`inflate_scalar`), the blocked
//! form as lambda (a lambda) + 1: both are kept, since changing either moves the last bits of
//! every fit that uses it (and can change the optimiser's path).

/// Blocks with at most this many elements are scaled with a scratch on the stack.
const STACK: usize = 16;

/// out (qa x qb) = lambda_a' blk lambda_b, for a qa x qb block and lower-triangular templates,
/// all column-major.
pub fn scale_block(
    blk: &[f64],
    lambda_a: &[f64],
    qa: usize,
    lambda_b: &[f64],
    qb: usize,
    out: &mut [f64],
) {
    if qa == 1 && qb == 1 {
        out[0] = lambda_a[0] * (blk[0] * lambda_b[0]);
    } else if qa * qb <= STACK {
        let mut tmp = [0.0f64; STACK];
        scale_block_with(blk, lambda_a, qa, lambda_b, qb, &mut tmp, out);
    } else {
        let mut tmp = vec![0.0; qa * qb];
        scale_block_with(blk, lambda_a, qa, lambda_b, qb, &mut tmp, out);
    }
}

/// As `scale_block`, with a caller's scratch `tmp` of at least qa x qb values (overwritten).
pub fn scale_block_with(
    blk: &[f64],
    lambda_a: &[f64],
    qa: usize,
    lambda_b: &[f64],
    qb: usize,
    tmp: &mut [f64],
    out: &mut [f64],
) {
    if qa == 1 && qb == 1 {
        out[0] = lambda_a[0] * (blk[0] * lambda_b[0]);
        return;
    }
    // tmp = blk lambda_b  (qa x qb).
    let tmp = &mut tmp[..qa * qb];
    tmp.fill(0.0);
    for j in 0..qb {
        for k in j..qb {
            let l = lambda_b[k + j * qb];
            if l != 0.0 {
                for i in 0..qa {
                    tmp[i + j * qa] += blk[i + k * qa] * l;
                }
            }
        }
    }
    // out = lambda_a' tmp
    for j in 0..qb {
        for i in 0..qa {
            let mut s = 0.0;
            for k in i..qa {
                s += lambda_a[k + i * qa] * tmp[k + j * qa];
            }
            out[i + j * qa] = s;
        }
    }
}

/// out (q x q) = lambda' blk lambda + I: a term's own block for one level.
pub fn scale_inflate_block(blk: &[f64], lambda: &[f64], q: usize, out: &mut [f64]) {
    scale_block(blk, lambda, q, lambda, q, out);
    for a in 0..q {
        out[a + a * q] += 1.0;
    }
}

/// As `scale_inflate_block`, with a caller's scratch of at least q x q values.
pub fn scale_inflate_block_with(
    blk: &[f64],
    lambda: &[f64],
    q: usize,
    tmp: &mut [f64],
    out: &mut [f64],
) {
    scale_block_with(blk, lambda, q, lambda, q, tmp, out);
    for a in 0..q {
        out[a + a * q] += 1.0;
    }
}

/// lambda^2 a + 1: a scalar term's own block for one level, with lambda^2 formed once per theta.
#[inline]
pub fn inflate_scalar(lambda_sq: f64, a: f64) -> f64 {
    lambda_sq * a + 1.0
}

/// The lower triangle (m00, m10, m11) of lambda' A lambda + I for q = 2, from the lower
/// triangle of A (a00 = a[0], a10 = a[1], a11 = a[3]) and of lambda (l00, l10, l11): the same
/// sums as `scale_inflate_block`, written out for the one-term evaluation's closed form.
#[inline]
pub fn inflate_2x2(a: &[f64], l00: f64, l10: f64, l11: f64) -> (f64, f64, f64) {
    let (a00, a10, a11) = (a[0], a[1], a[3]);
    let t00 = a00 * l00 + a10 * l10;
    let t10 = a10 * l00 + a11 * l10;
    let m00 = l00 * t00 + l10 * t10 + 1.0;
    let m10 = l11 * t10;
    let m11 = l11 * (a11 * l11) + 1.0;
    (m00, m10, m11)
}

/// Column b of (D'WZ_l) lambda for one level's (p + 1) x q slab of D'WZ (column-major):
/// col = sum_{e >= b} lambda[e, b] slab[:, e], with `col.len()` = p + 1.
pub fn scale_dz_column(slab: &[f64], lambda: &[f64], q: usize, b: usize, col: &mut [f64]) {
    let pd = col.len();
    col.fill(0.0);
    for e in b..q {
        let coef = lambda[e + b * q];
        if coef != 0.0 {
            for (v, x) in col.iter_mut().zip(&slab[e * pd..(e + 1) * pd]) {
                *v += coef * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_block_matches_dense_product() {
        let blk = [1.0, 2.0, 3.0, 4.0];
        let la = [1.0, 0.5, 0.0, 2.0];
        let lb = [3.0, -1.0, 0.0, 1.0];
        let mut out = [0.0; 4];
        scale_block(&blk, &la, 2, &lb, 2, &mut out);
        // la' * blk * lb computed by hand
        let t = |i: usize, j: usize| -> f64 {
            let mut s = 0.0;
            for k in 0..2 {
                for m in 0..2 {
                    s += la[k + i * 2] * blk[k + m * 2] * lb[m + j * 2];
                }
            }
            s
        };
        for j in 0..2 {
            for i in 0..2 {
                assert!((out[i + j * 2] - t(i, j)).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn closed_form_2x2_equals_the_general_block() {
        let a = [2.5, 0.7, 0.7, 1.9];
        let lambda = [1.3, -0.4, 0.0, 0.8];
        let mut out = [0.0; 4];
        scale_inflate_block(&a, &lambda, 2, &mut out);
        let (m00, m10, m11) = inflate_2x2(&a, lambda[0], lambda[1], lambda[3]);
        assert_eq!(
            [out[0], out[1], out[3]].map(f64::to_bits),
            [m00, m10, m11].map(f64::to_bits)
        );
        // A large block goes through the heap scratch with the same sums.
        let q = 5;
        let big: Vec<f64> = (0..q * q).map(|i| 1.0 + (i % 7) as f64).collect();
        let lam: Vec<f64> = (0..q * q)
            .map(|i| if i % q >= i / q { 0.5 } else { 0.0 })
            .collect();
        let (mut x, mut y, mut tmp) = (vec![0.0; q * q], vec![0.0; q * q], vec![7.0; q * q]);
        scale_inflate_block(&big, &lam, q, &mut x);
        scale_inflate_block_with(&big, &lam, q, &mut tmp, &mut y);
        assert_eq!(x, y);
    }
}
