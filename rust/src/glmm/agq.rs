//! The Gauss-Hermite rule for integrals against the standard normal density (lme4's `GHrule`,
//! weights summing to 1): the nodes are the zeros of the k-th Hermite polynomial He_k, found
//! by bracketing on a grid and bisection, using the orthonormal recurrence
//! p_{n+1} = (x p_n - sqrt(n) p_{n-1}) / sqrt(n + 1); the weights are the Christoffel numbers
//! 1 / sum_{j < k} p_j(x)^2.

/// p_0 .. p_{k} at x (orthonormal Hermite_e polynomials).
fn orthonormal(k: usize, x: f64) -> Vec<f64> {
    let mut p = vec![0.0; k + 1];
    p[0] = 1.0;
    if k >= 1 {
        p[1] = x;
    }
    for m in 1..k {
        let mf = m as f64;
        p[m + 1] = (x * p[m] - mf.sqrt() * p[m - 1]) / (mf + 1.0).sqrt();
    }
    p
}

/// Nodes (ascending) and weights (summing to 1) of the k-point rule.
pub fn gauss_hermite(k: usize) -> (Vec<f64>, Vec<f64>) {
    let k = k.max(1);
    let f = |x: f64| orthonormal(k, x)[k];
    // All zeros lie within |x| < sqrt(4k + 2); they are at least ~ pi / sqrt(2k + 1) apart.
    let bound = (4.0 * k as f64 + 2.0).sqrt();
    let steps = 40 * k;
    let h = 2.0 * bound / steps as f64;
    let mut nodes = Vec::with_capacity(k);
    let mut x0 = -bound;
    let mut f0 = f(x0);
    for i in 1..=steps {
        let x1 = -bound + i as f64 * h;
        let f1 = f(x1);
        if f1 == 0.0 {
            nodes.push(x1);
        } else if f0 * f1 < 0.0 {
            let (mut a, mut b, mut fa) = (x0, x1, f0);
            for _ in 0..200 {
                let m = 0.5 * (a + b);
                if m <= a || m >= b {
                    break;
                }
                let fm = f(m);
                if fm == 0.0 {
                    a = m;
                    b = m;
                    break;
                }
                if fa * fm < 0.0 {
                    b = m;
                } else {
                    a = m;
                    fa = fm;
                }
            }
            nodes.push(0.5 * (a + b));
        }
        x0 = x1;
        f0 = f1;
    }
    if k % 2 == 1 {
        // The middle node is 0 exactly (as lme4's rule has it).
        nodes[k / 2] = 0.0;
    }
    let weights = nodes
        .iter()
        .map(|&x| 1.0 / orthonormal(k, x)[..k].iter().map(|v| v * v).sum::<f64>())
        .collect();
    (nodes, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_integrates_normal_moments() {
        for k in [1, 2, 3, 9, 25, 40] {
            let (z, w) = gauss_hermite(k);
            assert_eq!(z.len(), k);
            let m0: f64 = w.iter().sum();
            let m2: f64 = z.iter().zip(&w).map(|(z, w)| w * z * z).sum();
            let m4: f64 = z.iter().zip(&w).map(|(z, w)| w * z.powi(4)).sum();
            assert!((m0 - 1.0).abs() < 1e-13, "{k}");
            if k >= 2 {
                assert!((m2 - 1.0).abs() < 1e-12, "{k}");
            }
            if k >= 3 {
                assert!((m4 - 3.0).abs() < 1e-11, "{k}");
            }
        }
    }
}
