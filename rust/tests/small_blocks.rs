//! Tiny dense blocks of the blocked factor (a factor with few levels crossed with the first
//! term, the fixed-effects block), which `cholesky` handles with plain loops below its size
//! threshold, against the dense reference: objective, determinants, beta and b.

mod common;

use common::{dense_reference, random_codes, rel, rel_vec, Data, Rng};
use multilevel::blocks::Block;
use multilevel::cholesky::FactorMethod;

/// The blocked form explicitly: `Auto` factors crossed structures in the supernodal form,
/// and the small-block loops live in the blocked one.
fn check(name: &str, data: &Data, thetas: &[Vec<f64>]) {
    let mut problem = data.problem_with(FactorMethod::Blocked);
    for theta in thetas {
        let dense = dense_reference(data, theta);
        for reml in [false, true] {
            let obj = problem.objective(theta, reml).unwrap();
            let want = if reml {
                dense.objective_reml
            } else {
                dense.objective_ml
            };
            assert!(
                rel(obj, want) <= 1e-10,
                "{name}, theta {theta:?}: {obj} vs dense {want}"
            );
            let sol = problem.solution(theta, reml).unwrap();
            assert!(rel_vec(&sol.beta, &dense.beta) <= 1e-9, "{name}: beta");
            for (b, db) in sol.b.iter().zip(&dense.b) {
                assert!(rel_vec(b, db) <= 1e-8, "{name}: b");
            }
        }
    }
}

#[test]
fn crossed_with_a_small_factor() {
    // 24 x 6 as penicillin, with a slope on the small factor too (q = 2: a 12 x 12 block).
    let mut rng = Rng::new(21);
    let n = 288;
    let mut d = Data::new(&mut rng, n, 2);
    let plate = random_codes(&mut rng, n, 24);
    let sample = random_codes(&mut rng, n, 6);
    d.add_term(&mut rng, plate, 24, 1, false)
        .add_term(&mut rng, sample, 6, 2, false);
    d.simulate(&mut rng, &[0.8, 1.2, 0.3, 0.5], &[3.0, -1.0], 0.7);
    let problem = d.problem_with(FactorMethod::Blocked);
    let l = problem.chol.blocks().expect("the blocked form");
    assert!(
        matches!(l[1][1], Block::Dense(ref m) if m.nrows() == 12),
        "the small factor's block fills in and is dense"
    );
    check(
        "24 x 6",
        &d,
        &[
            vec![0.8, 1.2, 0.3, 0.5],
            vec![1.0, 0.0, 0.0, 1.0],
            vec![0.5, 2.0, -0.4, 0.0],
        ],
    );
}

#[test]
fn three_crossed_small_factors() {
    let mut rng = Rng::new(22);
    let n = 200;
    let mut d = Data::new(&mut rng, n, 3);
    for levels in [20, 7, 4] {
        let c = random_codes(&mut rng, n, levels);
        d.add_term(&mut rng, c, levels, 1, false);
    }
    d.with_weights(&mut rng, 0.5, 1.5);
    d.simulate(&mut rng, &[0.7, 1.1, 0.4], &[1.0, 0.5, -0.5], 1.0);
    check(
        "20 x 7 x 4",
        &d,
        &[
            vec![0.7, 1.1, 0.4],
            vec![1.0, 1.0, 1.0],
            vec![0.3, 0.0, 2.0],
        ],
    );
}
