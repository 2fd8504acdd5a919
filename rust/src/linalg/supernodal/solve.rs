//! Triangular solves with the random-effects part L_Z of the supernodal factor
//!
//! ```text
//!   x <- L_Z^{-1} x,   x <- L_Z^{-T} x,   c_u - L_XZ' beta  (the right-hand side of L_Z' u = ...)
//! ```
//!
//! for vectors of random effects given per term in each term's own (level-major) order: they
//! are gathered into L's column order (`pos`), solved supernode by supernode (a dense triangle
//! then the rows below), and scattered back. lme4 solves with CHOLMOD's factor in the same way
//! (`solve(L, ..., system = "L")` after the permutation, `updateMu`'s `cu`); MixedModels.jl
//! with its blocked factor (`ldiv!` on the blocks of L).

use super::SupernodalCholesky;

impl SupernodalCholesky {
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

    /// A blocked vector of random effects (one Vec per term) in L's column order.
    fn gather(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let mut w = vec![0.0; self.sym.n_re];
        for (xk, pk) in x.iter().zip(&self.sym.pos) {
            for (v, &c) in xk.iter().zip(pk) {
                w[c as usize] = *v;
            }
        }
        w
    }

    /// The inverse of `gather`.
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
