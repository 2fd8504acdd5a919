//! The one-pass evaluation of a one-term model (`LmmProblem::objective_value`, `OneTerm`)
//! against the blocked factor (`LmmProblem::objective`) and the dense reference, for scalar,
//! correlated (q = 2, 3) and diagonal terms, with weights and an offset, at interior and
//! singular thetas.

mod common;

use common::{dense_reference, random_codes, rel, Data, Rng};

fn check(name: &str, data: &Data, thetas: &[Vec<f64>]) {
    let mut problem = data.problem();
    for theta in thetas {
        let dense = dense_reference(data, theta);
        for reml in [false, true] {
            let fast = problem.objective_value(theta, reml).unwrap();
            let blocked = problem.objective(theta, reml).unwrap();
            let want = if reml {
                dense.objective_reml
            } else {
                dense.objective_ml
            };
            assert!(
                rel(fast, blocked) <= 1e-12,
                "{name}, theta {theta:?}, reml {reml}: one pass {fast} vs blocked {blocked}"
            );
            assert!(
                rel(fast, want) <= 1e-10,
                "{name}, theta {theta:?}, reml {reml}: one pass {fast} vs dense {want}"
            );
            // Once L is factored at theta, the value comes from L.
            assert_eq!(problem.objective_value(theta, reml).unwrap(), blocked);
        }
    }
}

fn data(seed: u64, n: usize, p: usize, levels: usize, q: usize, diagonal: bool) -> Data {
    let mut rng = Rng::new(seed);
    let mut d = Data::new(&mut rng, n, p);
    let codes = random_codes(&mut rng, n, levels);
    d.add_term(&mut rng, codes, levels, q, diagonal);
    d
}

#[test]
fn scalar_term() {
    let mut d = data(1, 300, 2, 30, 1, false);
    let mut rng = Rng::new(11);
    d.simulate(&mut rng, &[0.7], &[1.0, -2.0], 1.5);
    check(
        "scalar",
        &d,
        &[vec![1.0], vec![0.35], vec![0.0], vec![12.0]],
    );
}

#[test]
fn correlated_terms() {
    for (q, theta) in [
        (2, vec![0.9, -0.3, 0.4]),
        (3, vec![1.1, 0.2, -0.1, 0.5, 0.3, 0.7]),
    ] {
        let mut d = data(2 + q as u64, 400, 3, 25, q, false);
        let mut rng = Rng::new(5);
        d.simulate(&mut rng, &theta, &[0.5, 1.0, -1.0], 0.8);
        let mut singular = theta.clone();
        singular[0] = 0.0;
        check(&format!("q = {q}"), &d, &[theta.clone(), singular]);
    }
}

#[test]
fn diagonal_term_weights_offset() {
    let mut d = data(9, 350, 2, 20, 2, true);
    let mut rng = Rng::new(3);
    d.with_weights(&mut rng, 0.5, 2.0)
        .with_offset(&mut rng, 1.0);
    d.simulate(&mut rng, &[0.8, 0.3], &[2.0, 0.5], 1.2);
    check("diagonal", &d, &[vec![0.8, 0.3], vec![1.0, 0.0]]);
}

#[test]
fn a_term_with_no_columns_is_an_error_not_a_panic() {
    // `(0 | g)`: q = 0 (issue 15).
    let mut rng = Rng::new(5);
    let mut d = Data::new(&mut rng, 50, 1);
    let codes = random_codes(&mut rng, 50, 5);
    d.add_term(&mut rng, codes, 5, 0, false);
    let a = d.accumulator().finish();
    let err = multilevel::lmm::LmmProblem::new(a, &multilevel::exec::Exec::serial()).unwrap_err();
    assert!(err.to_string().contains("no columns"), "{err}");
}
