//! Shared helpers of the integration tests: a deterministic pseudo-random generator, synthetic
//! data sets with known structure (crossed, nested, vector-valued terms, weights, offsets), and
//! a plain dense reference computation of everything the blocked factor gives.
//!
//! The dense reference builds G = [Z Lambda, X, y - offset] explicitly and
//!
//! ```text
//!   M = G' W G + diag(I_q, 0_p, 0),   M = L L'   (plain loops, no library)
//! ```
//!
//! so ldL2, ldRX2 and pwrss are read off the diagonal of L, and beta, u, b, the unscaled
//! covariance of beta and the conditional covariances of b come from dense solves with the
//! leading (q + p) block of M (the penalised least-squares normal equations).

#![allow(dead_code)]

use multilevel::exec::Exec;
use multilevel::linalg::blocked::BlockedCholesky;
use multilevel::linalg::factor::Factor;
use multilevel::linalg::supernodal::SupernodalCholesky;
use multilevel::lmm::LmmProblem;
use multilevel::model::crossprod::{CrossProdAccumulator, RowChunk};
use multilevel::model::remat::{self, ReTermShape};

/// xorshift64* with a splitmix64 seeding step; deterministic across platforms.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform on (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// One random-effects term with its data.
#[derive(Clone, Debug)]
pub struct Term {
    pub shape: ReTermShape,
    pub codes: Vec<i32>,
    /// n x q, column-major.
    pub z: Vec<f64>,
}

/// A synthetic data set.
#[derive(Clone, Debug)]
pub struct Data {
    pub n: usize,
    pub p: usize,
    pub y: Vec<f64>,
    /// n x p, column-major.
    pub x: Vec<f64>,
    pub terms: Vec<Term>,
    pub weights: Option<Vec<f64>>,
    pub offset: Option<Vec<f64>>,
}

impl Data {
    /// n rows, X = [1, N(0,1) columns...] with p columns, y = 0 until simulated.
    pub fn new(rng: &mut Rng, n: usize, p: usize) -> Self {
        let mut x = vec![0.0; n * p];
        for j in 0..p {
            for r in 0..n {
                x[r + j * n] = if j == 0 { 1.0 } else { rng.normal() };
            }
        }
        Data {
            n,
            p,
            y: vec![0.0; n],
            x,
            terms: Vec::new(),
            weights: None,
            offset: None,
        }
    }

    /// Adds a term with the given codes; Z's first column is 1 and the others N(0,1).
    pub fn add_term(
        &mut self,
        rng: &mut Rng,
        codes: Vec<i32>,
        n_levels: usize,
        q: usize,
        diagonal: bool,
    ) -> &mut Self {
        assert_eq!(codes.len(), self.n);
        let n = self.n;
        let mut z = vec![0.0; n * q];
        for a in 0..q {
            for r in 0..n {
                z[r + a * n] = if a == 0 { 1.0 } else { rng.normal() };
            }
        }
        self.terms.push(Term {
            shape: ReTermShape {
                n_levels,
                q,
                diagonal,
            },
            codes,
            z,
        });
        self
    }

    pub fn with_weights(&mut self, rng: &mut Rng, lo: f64, hi: f64) -> &mut Self {
        self.weights = Some((0..self.n).map(|_| rng.uniform_in(lo, hi)).collect());
        self
    }

    pub fn with_offset(&mut self, rng: &mut Rng, scale: f64) -> &mut Self {
        self.offset = Some((0..self.n).map(|_| scale * rng.normal()).collect());
        self
    }

    pub fn shapes(&self) -> Vec<ReTermShape> {
        self.terms.iter().map(|t| t.shape).collect()
    }

    /// y = offset + X beta + sigma (Z Lambda(theta) u + e / sqrt(w)), u and e standard normal.
    pub fn simulate(
        &mut self,
        rng: &mut Rng,
        theta: &[f64],
        beta: &[f64],
        sigma: f64,
    ) -> &mut Self {
        let n = self.n;
        let lambdas = remat::lambdas(&self.shapes(), theta);
        let mut y: Vec<f64> = (0..n)
            .map(|r| (0..self.p).map(|j| self.x[r + j * n] * beta[j]).sum())
            .collect();
        for (t, lam) in self.terms.iter().zip(&lambdas) {
            let q = t.shape.q;
            let b: Vec<f64> = (0..t.shape.n_levels)
                .flat_map(|_| {
                    let u: Vec<f64> = (0..q).map(|_| rng.normal()).collect();
                    (0..q)
                        .map(move |a| (0..q).map(|e| lam[a + e * q] * u[e]).sum::<f64>())
                        .collect::<Vec<_>>()
                })
                .collect();
            for (r, yr) in y.iter_mut().enumerate() {
                let l = t.codes[r] as usize;
                for a in 0..q {
                    *yr += sigma * t.z[r + a * n] * b[l * q + a];
                }
            }
        }
        for r in 0..n {
            let w = self.weights.as_ref().map_or(1.0, |w| w[r]);
            y[r] += sigma * rng.normal() / w.sqrt();
            if let Some(o) = &self.offset {
                y[r] += o[r];
            }
        }
        self.y = y;
        self
    }

    pub fn chunk(&self) -> RowChunk<'_> {
        RowChunk {
            y: &self.y,
            x: &self.x,
            codes: self.terms.iter().map(|t| t.codes.as_slice()).collect(),
            z: self.terms.iter().map(|t| t.z.as_slice()).collect(),
            weights: self.weights.as_deref(),
            offset: self.offset.as_deref(),
        }
    }

    /// An owned copy of rows start..end.
    pub fn rows(&self, start: usize, end: usize) -> Data {
        let n = self.n;
        let cols = |m: &[f64], ncol: usize| -> Vec<f64> {
            (0..ncol)
                .flat_map(|j| m[j * n + start..j * n + end].to_vec())
                .collect()
        };
        Data {
            n: end - start,
            p: self.p,
            y: self.y[start..end].to_vec(),
            x: cols(&self.x, self.p),
            terms: self
                .terms
                .iter()
                .map(|t| Term {
                    shape: t.shape,
                    codes: t.codes[start..end].to_vec(),
                    z: cols(&t.z, t.shape.q),
                })
                .collect(),
            weights: self.weights.as_ref().map(|w| w[start..end].to_vec()),
            offset: self.offset.as_ref().map(|o| o[start..end].to_vec()),
        }
    }

    pub fn accumulator(&self) -> CrossProdAccumulator {
        let mut acc = CrossProdAccumulator::new(&self.shapes(), self.p);
        acc.add(&self.chunk()).expect("valid synthetic data");
        acc
    }

    /// The problem on every core, its factor in the form its structure calls for.
    pub fn problem(&self) -> LmmProblem {
        self.problem_on(&Exec::new(0))
    }

    /// The problem on the threads of `exec`.
    pub fn problem_on(&self, exec: &Exec) -> LmmProblem {
        LmmProblem::new(self.accumulator().finish(), exec).expect("a valid problem")
    }

    /// The problem with its factor in the blocked form, when the structure allows it.
    pub fn problem_blocked(&self) -> Option<LmmProblem> {
        let mut problem = self.problem();
        problem.factor = BlockedCholesky::new(&problem.a, &Exec::new(0))?.into();
        Some(problem)
    }

    /// The problem with its factor in the supernodal form, with a schedule for `threads`
    /// threads whatever its size (0: the schedule the factor would choose).
    pub fn problem_supernodal(&self, threads: usize) -> LmmProblem {
        let mut problem = self.problem();
        let s = if threads == 0 {
            SupernodalCholesky::analyse(&problem.a, &Exec::new(0))
        } else {
            SupernodalCholesky::with_threads(&problem.a, threads)
        };
        problem.factor = s.expect("a valid symbolic factor").into();
        problem
    }
}

/// Codes 0..n_levels drawn uniformly, each level appearing at least once (n >= n_levels).
pub fn random_codes(rng: &mut Rng, n: usize, n_levels: usize) -> Vec<i32> {
    let mut c: Vec<i32> = (0..n)
        .map(|r| {
            if r < n_levels {
                r as i32
            } else {
                rng.below(n_levels) as i32
            }
        })
        .collect();
    rng.shuffle(&mut c);
    c
}

// ----------------------------------------------------------------------------------------
// Dense linear algebra with plain loops (column-major n x n).

/// In-place lower Cholesky; the strict upper triangle is zeroed. Panics if not positive definite.
pub fn dense_cholesky(a: &mut [f64], n: usize) {
    for j in 0..n {
        let mut d = a[j + j * n];
        for k in 0..j {
            d -= a[j + k * n] * a[j + k * n];
        }
        assert!(d > 0.0, "dense reference: pivot {j} is {d}");
        let d = d.sqrt();
        a[j + j * n] = d;
        for i in j + 1..n {
            let mut s = a[i + j * n];
            for k in 0..j {
                s -= a[i + k * n] * a[j + k * n];
            }
            a[i + j * n] = s / d;
        }
        for i in 0..j {
            a[i + j * n] = 0.0;
        }
    }
}

/// x <- (L L')^{-1} x with L the lower factor of an m x m leading block of an ld x ld matrix.
pub fn chol_solve(l: &[f64], ld: usize, m: usize, x: &mut [f64]) {
    for i in 0..m {
        let mut s = x[i];
        for k in 0..i {
            s -= l[i + k * ld] * x[k];
        }
        x[i] = s / l[i + i * ld];
    }
    for i in (0..m).rev() {
        let mut s = x[i];
        for k in i + 1..m {
            s -= l[k + i * ld] * x[k];
        }
        x[i] = s / l[i + i * ld];
    }
}

/// Everything the dense reference gives at one theta.
pub struct DenseReference {
    pub ld_l2: f64,
    pub ld_rx2: f64,
    pub pwrss: f64,
    pub objective_ml: f64,
    pub objective_reml: f64,
    pub beta: Vec<f64>,
    pub u: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
    pub sigma_ml: f64,
    pub sigma_reml: f64,
    pub vcov_unscaled: Vec<f64>,
    /// Per term, levels x (q x q) column-major blocks of Lambda M_ZZ^{-1} Lambda'.
    pub condvar: Vec<Vec<f64>>,
}

/// The explicit dense Z (n x sum q_k levels_k, column-major), columns term-major, level-major.
pub fn dense_z(data: &Data) -> (Vec<f64>, usize) {
    let n = data.n;
    let qtot: usize = data.terms.iter().map(|t| t.shape.size()).sum();
    let mut z = vec![0.0; n * qtot];
    let mut off = 0;
    for t in &data.terms {
        let q = t.shape.q;
        for r in 0..n {
            let l = t.codes[r] as usize;
            for a in 0..q {
                z[r + (off + l * q + a) * n] = t.z[r + a * n];
            }
        }
        off += t.shape.size();
    }
    (z, qtot)
}

/// The explicit dense Lambda (qtot x qtot, column-major): block diagonal, lambda_k per level.
pub fn dense_lambda(data: &Data, theta: &[f64]) -> Vec<f64> {
    let shapes = data.shapes();
    let lambdas = remat::lambdas(&shapes, theta);
    let qtot: usize = shapes
        .iter()
        .map(multilevel::model::remat::ReTermShape::size)
        .sum();
    let mut lam = vec![0.0; qtot * qtot];
    let mut off = 0;
    for (s, l) in shapes.iter().zip(&lambdas) {
        let q = s.q;
        for lev in 0..s.n_levels {
            let base = off + lev * q;
            for b in 0..q {
                for a in 0..q {
                    lam[(base + a) + (base + b) * qtot] = l[a + b * q];
                }
            }
        }
        off += s.size();
    }
    lam
}

pub fn dense_reference(data: &Data, theta: &[f64]) -> DenseReference {
    let n = data.n;
    let p = data.p;
    let (z, qtot) = dense_z(data);
    let lam = dense_lambda(data, theta);
    let m = qtot + p + 1;
    // G = [Z Lambda, X, y - offset], n x m.
    let mut g = vec![0.0; n * m];
    for c in 0..qtot {
        for k in 0..qtot {
            let coef = lam[k + c * qtot];
            if coef != 0.0 {
                for r in 0..n {
                    g[r + c * n] += z[r + k * n] * coef;
                }
            }
        }
    }
    for j in 0..p {
        for r in 0..n {
            g[r + (qtot + j) * n] = data.x[r + j * n];
        }
    }
    for r in 0..n {
        g[r + (m - 1) * n] = data.y[r] - data.offset.as_ref().map_or(0.0, |o| o[r]);
    }
    let w: Vec<f64> = (0..n)
        .map(|r| data.weights.as_ref().map_or(1.0, |w| w[r]))
        .collect();
    let mut mm = vec![0.0; m * m];
    for j in 0..m {
        for i in j..m {
            let s: f64 = (0..n).map(|r| g[r + i * n] * w[r] * g[r + j * n]).sum();
            mm[i + j * m] = s;
            mm[j + i * m] = s;
        }
    }
    for i in 0..qtot {
        mm[i + i * m] += 1.0;
    }
    let mut l = mm.clone();
    dense_cholesky(&mut l, m);
    let ld_l2 = 2.0 * (0..qtot).map(|i| l[i + i * m].ln()).sum::<f64>();
    let ld_rx2 = 2.0 * (qtot..qtot + p).map(|i| l[i + i * m].ln()).sum::<f64>();
    let pwrss = l[(m - 1) + (m - 1) * m].powi(2);
    let nobs = w.iter().filter(|&&v| v != 0.0).count() as f64;
    let ldw: f64 = w.iter().filter(|&&v| v != 0.0).map(|v| v.ln()).sum();
    let two_pi = 2.0 * std::f64::consts::PI;
    let pf = p as f64;
    let objective_ml = ld_l2 - ldw + nobs * (1.0 + (two_pi * pwrss / nobs).ln());
    let objective_reml =
        ld_l2 - ldw + ld_rx2 + (nobs - pf) * (1.0 + (two_pi * pwrss / (nobs - pf)).ln());

    // Penalised least squares: M[..k, ..k] [u; beta] = M[..k, last], k = qtot + p, solved with
    // a separate factor of that block.
    let k = qtot + p;
    let mut mk = vec![0.0; k * k];
    for j in 0..k {
        for i in 0..k {
            mk[i + j * k] = mm[i + j * m];
        }
    }
    let mut lk = mk.clone();
    dense_cholesky(&mut lk, k);
    let mut sol: Vec<f64> = (0..k).map(|i| mm[i + (m - 1) * m]).collect();
    chol_solve(&lk, k, k, &mut sol);
    let beta = sol[qtot..].to_vec();
    let uall = sol[..qtot].to_vec();
    let ball: Vec<f64> = (0..qtot)
        .map(|i| (0..qtot).map(|c| lam[i + c * qtot] * uall[c]).sum())
        .collect();
    // vcov_unscaled: the X block of M[..k, ..k]^{-1}.
    let mut vcov = vec![0.0; p * p];
    for j in 0..p {
        let mut e = vec![0.0; k];
        e[qtot + j] = 1.0;
        chol_solve(&lk, k, k, &mut e);
        for i in 0..p {
            vcov[i + j * p] = e[qtot + i];
        }
    }
    // condvar: diagonal blocks of Lambda M_ZZ^{-1} Lambda'. M_ZZ's factor is lk's leading block.
    let mut mzz_inv = vec![0.0; qtot * qtot];
    for j in 0..qtot {
        let mut e = vec![0.0; qtot];
        e[j] = 1.0;
        chol_solve(&lk, k, qtot, &mut e);
        mzz_inv[j * qtot..(j + 1) * qtot].copy_from_slice(&e);
    }
    let mut cv = Vec::new();
    let mut u = Vec::new();
    let mut b = Vec::new();
    let mut off = 0;
    for t in &data.terms {
        let s = t.shape;
        let q = s.q;
        let mut blocks = vec![0.0; s.n_levels * q * q];
        for lev in 0..s.n_levels {
            let base = off + lev * q;
            // rows base..base+q of Lambda are nonzero only in columns base..base+q.
            for c in 0..q {
                for a in 0..q {
                    let mut v = 0.0;
                    for e in 0..q {
                        for f in 0..q {
                            v += lam[(base + a) + (base + e) * qtot]
                                * mzz_inv[(base + e) + (base + f) * qtot]
                                * lam[(base + c) + (base + f) * qtot];
                        }
                    }
                    blocks[lev * q * q + a + c * q] = v;
                }
            }
        }
        cv.push(blocks);
        u.push(uall[off..off + s.size()].to_vec());
        b.push(ball[off..off + s.size()].to_vec());
        off += s.size();
    }
    DenseReference {
        ld_l2,
        ld_rx2,
        pwrss,
        objective_ml,
        objective_reml,
        beta,
        u,
        b,
        sigma_ml: (pwrss / nobs).sqrt(),
        sigma_reml: (pwrss / (nobs - pf)).sqrt(),
        vcov_unscaled: vcov,
        condvar: cv,
    }
}

// ----------------------------------------------------------------------------------------
// Error measures.

/// |a - b| / |b| (0 when both are 0).
pub fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }
}

/// |a - b| / max(|b|, 1): for log-determinants, which are 0 at a singular theta.
pub fn rel1(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// Norm-wise relative error max|a - b| / max|b| (0 when both are exactly 0).
pub fn rel_vec(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    let scale = b.iter().fold(0.0f64, |m, y| m.max(y.abs()));
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(f64::MIN_POSITIVE)
    }
}
