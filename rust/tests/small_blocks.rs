//! The blocked factor's dense D = [X y] block, factored by the plain loops of `small.rs` up to
//! 16 rows and by faer above, against the dense reference: objective, beta and b, on nested
//! structures (the ones the blocked form serves) with few and with many fixed effects.

mod common;

use common::{dense_reference, random_codes, rel, rel_vec, Data, Rng};

fn check(name: &str, data: &Data, thetas: &[Vec<f64>]) {
    let mut problem = data.problem();
    assert!(
        problem.factor.blocked().is_some(),
        "{name}: the blocked form"
    );
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

/// Classes in schools (a vector term on the schools), with p fixed effects.
fn nested(seed: u64, p: usize) -> Data {
    let mut rng = Rng::new(seed);
    let n = 600;
    let mut d = Data::new(&mut rng, n, p);
    let class = random_codes(&mut rng, n, 60);
    let school: Vec<i32> = class.iter().map(|c| c / 5).collect();
    d.add_term(&mut rng, class, 60, 1, false)
        .add_term(&mut rng, school, 12, 2, false);
    d.with_weights(&mut rng, 0.5, 1.5);
    let beta: Vec<f64> = (0..p).map(|j| 1.0 - 0.1 * j as f64).collect();
    d.simulate(&mut rng, &[0.8, 1.2, 0.3, 0.5], &beta, 0.7);
    d
}

#[test]
fn a_small_fixed_effects_block() {
    check(
        "p = 3",
        &nested(21, 3),
        &[
            vec![0.8, 1.2, 0.3, 0.5],
            vec![1.0, 1.0, 0.0, 1.0],
            vec![0.5, 2.0, -0.4, 0.0],
        ],
    );
}

#[test]
fn a_large_fixed_effects_block() {
    check(
        "p = 20",
        &nested(22, 20),
        &[
            vec![0.8, 1.2, 0.3, 0.5],
            vec![1.0, 1.0, 0.0, 1.0],
            vec![0.0, 0.7, -0.4, 0.9],
        ],
    );
}
