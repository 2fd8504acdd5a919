//! The blocked Cholesky factor against a plain dense computation on the same matrix.
//!
//! For each structure (scalar, correlated vector q = 2 and 3, diagonal q = 2, crossed, nested,
//! crossed + nested in both term orders, weights, offset) and three theta values each (lme4's
//! start, an interior point, and a point with a zero diagonal element, i.e. singular), the
//! objective (ML and REML), ldL2, ldRX2 and pwrss must agree with the dense factor of
//! M = [Z Lambda, X, y]' W [Z Lambda, X, y] + diag(I, 0, 0) to 1e-10 relative, and beta, b,
//! sigma, the unscaled covariance of beta and the conditional covariances of b with dense
//! solves of the penalised least-squares equations to 1e-9 relative.

mod common;

use common::{dense_reference, random_codes, rel, rel1, rel_vec, Data, DenseReference, Rng};
use multilevel::exec::Exec;
use multilevel::linalg::blocked::BlockedCholesky;
use multilevel::linalg::factor::Factor;
use multilevel::linalg::supernodal::{DIRECT_UPDATE, SMALL_PANEL, TEAM_FACTOR_MIN};
use multilevel::model::remat;

const TOL_OBJ: f64 = 1e-10;
const TOL_SOL: f64 = 1e-9;

/// Largest errors seen in one structure.
#[derive(Default, Debug)]
struct MaxErr {
    objective: f64,
    ld: f64,
    pwrss: f64,
    beta: f64,
    b: f64,
    sigma: f64,
    vcov: f64,
    condvar: f64,
}

/// The factors checked: both forms (the blocked one where the structure allows it), the
/// supernodal one also with a schedule for three threads whatever its size (so that the
/// parallel paths run on these small structures too).
#[derive(Clone, Copy, Debug)]
enum Variant {
    Blocked,
    Supernodal,
    SupernodalThreeThreads,
}

/// Checks every variant of the factor; returns the worst errors over all of them.
fn check(name: &str, data: &Data, thetas: &[Vec<f64>]) -> MaxErr {
    let dense: Vec<DenseReference> = thetas.iter().map(|t| dense_reference(data, t)).collect();
    let mut worst = MaxErr::default();
    for variant in [
        Variant::Blocked,
        Variant::Supernodal,
        Variant::SupernodalThreeThreads,
    ] {
        let e = check_variant(name, data, thetas, &dense, variant);
        worst = MaxErr {
            objective: worst.objective.max(e.objective),
            ld: worst.ld.max(e.ld),
            pwrss: worst.pwrss.max(e.pwrss),
            beta: worst.beta.max(e.beta),
            b: worst.b.max(e.b),
            sigma: worst.sigma.max(e.sigma),
            vcov: worst.vcov.max(e.vcov),
            condvar: worst.condvar.max(e.condvar),
        };
    }
    worst
}

fn check_variant(
    name: &str,
    data: &Data,
    thetas: &[Vec<f64>],
    dense: &[DenseReference],
    variant: Variant,
) -> MaxErr {
    let shapes = data.shapes();
    let mut problem = match variant {
        Variant::Blocked => match data.problem_blocked() {
            Some(p) => p,
            None => return MaxErr::default(),
        },
        Variant::Supernodal => data.problem_supernodal(0),
        Variant::SupernodalThreeThreads => {
            let p = data.problem_supernodal(3);
            let stats = p.factor.supernodal().unwrap().stats();
            assert!(
                stats.n_supernodes < 6 || stats.n_groups >= 2,
                "{name}: the three-thread schedule has groups: {stats:?}"
            );
            p
        }
    };
    let name = &format!("{name} ({variant:?})");
    let mut worst = MaxErr::default();
    for (theta, dense) in thetas.iter().zip(dense) {
        assert_eq!(
            theta.len(),
            remat::n_theta(&shapes),
            "{name}: bad test theta"
        );
        for reml in [false, true] {
            let ctx = format!("{name}, theta = {theta:?}, reml = {reml}");
            let obj = problem
                .objective(theta, reml)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let want = if reml {
                dense.objective_reml
            } else {
                dense.objective_ml
            };
            let e_obj = rel(obj, want);
            let e_l2 = rel1(problem.factor.ld_l2(), dense.ld_l2);
            let e_rx2 = rel1(problem.factor.ld_rx2(), dense.ld_rx2);
            let e_pw = rel(problem.factor.pwrss(), dense.pwrss);
            assert!(
                e_obj <= TOL_OBJ,
                "{ctx}: objective {obj} vs dense {want} (rel {e_obj:e})"
            );
            assert!(
                e_l2 <= TOL_OBJ,
                "{ctx}: ld_l2 {} vs dense {} (rel {e_l2:e})",
                problem.factor.ld_l2(),
                dense.ld_l2
            );
            assert!(
                e_rx2 <= TOL_OBJ,
                "{ctx}: ld_rx2 {} vs dense {} (rel {e_rx2:e})",
                problem.factor.ld_rx2(),
                dense.ld_rx2
            );
            assert!(
                e_pw <= TOL_OBJ,
                "{ctx}: pwrss {} vs dense {} (rel {e_pw:e})",
                problem.factor.pwrss(),
                dense.pwrss
            );

            let sol = problem
                .solution(theta, reml)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(
                rel(sol.objective, want) <= TOL_OBJ,
                "{ctx}: solution().objective {} vs {want}",
                sol.objective
            );
            let e_beta = rel_vec(&sol.beta, &dense.beta);
            assert!(
                e_beta <= TOL_SOL,
                "{ctx}: beta {:?} vs dense {:?} (rel {e_beta:e})",
                sol.beta,
                dense.beta
            );
            let mut e_b = 0.0f64;
            for (k, (got, want)) in sol.b.iter().zip(&dense.b).enumerate() {
                let e = rel_vec(got, want);
                assert!(
                    e <= TOL_SOL,
                    "{ctx}: b of term {k} differs from dense (rel {e:e})"
                );
                e_b = e_b.max(e);
            }
            assert_eq!(sol.b.len(), shapes.len(), "{ctx}: one b per term");
            let want_sigma = if reml {
                dense.sigma_reml
            } else {
                dense.sigma_ml
            };
            let e_sigma = rel(sol.sigma, want_sigma);
            assert!(
                e_sigma <= TOL_SOL,
                "{ctx}: sigma {} vs dense {want_sigma} (rel {e_sigma:e})",
                sol.sigma
            );
            let e_vcov = rel_vec(&sol.vcov_unscaled, &dense.vcov_unscaled);
            assert!(
                e_vcov <= TOL_SOL,
                "{ctx}: vcov_unscaled {:?} vs dense {:?} (rel {e_vcov:e})",
                sol.vcov_unscaled,
                dense.vcov_unscaled
            );
            worst.objective = worst.objective.max(e_obj);
            worst.ld = worst.ld.max(e_l2).max(e_rx2);
            worst.pwrss = worst.pwrss.max(e_pw);
            worst.beta = worst.beta.max(e_beta);
            worst.b = worst.b.max(e_b);
            worst.sigma = worst.sigma.max(e_sigma);
            worst.vcov = worst.vcov.max(e_vcov);
        }
        let ctx = format!("{name}, theta = {theta:?}");
        let cv = problem
            .condvar(theta)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(cv.len(), shapes.len(), "{ctx}: one condvar per term");
        for (k, (got, want)) in cv.iter().zip(&dense.condvar).enumerate() {
            let e = rel_vec(got, want);
            assert!(
                e <= TOL_SOL,
                "{ctx}: condvar of term {k} differs from dense (rel {e:e})"
            );
            worst.condvar = worst.condvar.max(e);
        }
    }
    eprintln!("{name}: max errors {worst:?}");
    worst
}

fn simulated(
    seed: u64,
    n: usize,
    p: usize,
    build: impl FnOnce(&mut Rng, &mut Data),
    theta: &[f64],
) -> Data {
    let mut rng = Rng::new(seed);
    let mut data = Data::new(&mut rng, n, p);
    build(&mut rng, &mut data);
    let beta: Vec<f64> = (0..p).map(|j| 1.0 - 0.5 * j as f64).collect();
    data.simulate(&mut rng, theta, &beta, 1.3);
    data
}

#[test]
fn one_scalar_term() {
    let data = simulated(
        1,
        300,
        2,
        |rng, d| {
            let c = random_codes(rng, 300, 30);
            d.add_term(rng, c, 30, 1, false);
        },
        &[0.9],
    );
    check(
        "one scalar term",
        &data,
        &[vec![1.0], vec![0.37], vec![0.0]],
    );
}

#[test]
fn vector_term_q2_correlated() {
    let data = simulated(
        2,
        320,
        2,
        |rng, d| {
            let c = random_codes(rng, 320, 25);
            d.add_term(rng, c, 25, 2, false);
        },
        &[1.1, 0.4, 0.6],
    );
    check(
        "vector q=2",
        &data,
        &[
            vec![1.0, 0.0, 1.0],
            vec![1.2, -0.5, 0.7],
            vec![0.8, 0.3, 0.0],
        ],
    );
}

#[test]
fn vector_term_q3_correlated() {
    let data = simulated(
        3,
        400,
        3,
        |rng, d| {
            let c = random_codes(rng, 400, 20);
            d.add_term(rng, c, 20, 3, false);
        },
        &[1.0, 0.3, -0.2, 0.8, 0.1, 0.5],
    );
    check(
        "vector q=3",
        &data,
        &[
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
            vec![1.3, 0.4, -0.6, 0.9, 0.25, 0.45],
            vec![0.7, -0.2, 0.5, 0.0, 0.3, 1.1],
        ],
    );
}

#[test]
fn diagonal_term_q2() {
    let data = simulated(
        4,
        300,
        2,
        |rng, d| {
            let c = random_codes(rng, 300, 30);
            d.add_term(rng, c, 30, 2, true);
        },
        &[0.8, 0.5],
    );
    check(
        "diagonal q=2",
        &data,
        &[vec![1.0, 1.0], vec![0.9, 0.35], vec![0.0, 1.4]],
    );
}

#[test]
fn two_crossed_scalar_terms() {
    let data = simulated(
        5,
        400,
        2,
        |rng, d| {
            let c1 = random_codes(rng, 400, 40);
            let c2 = random_codes(rng, 400, 25);
            d.add_term(rng, c1, 40, 1, false)
                .add_term(rng, c2, 25, 1, false);
        },
        &[0.8, 0.5],
    );
    assert!(
        data.problem().factor.supernodal().is_some(),
        "crossed terms are factored in the supernodal form"
    );
    assert!(
        data.problem_blocked().is_none(),
        "crossed terms fill in L[1][1]: no blocked form"
    );
    check(
        "two crossed",
        &data,
        &[vec![1.0, 1.0], vec![0.6, 1.7], vec![1.1, 0.0]],
    );
}

/// Term 0: 60 classes; term 1: 12 schools, each holding five whole classes.
fn nested_codes(rng: &mut Rng, n: usize) -> (Vec<i32>, Vec<i32>) {
    let class = random_codes(rng, n, 60);
    let school = class.iter().map(|c| c / 5).collect();
    (class, school)
}

#[test]
fn nested_terms_stay_block_diagonal() {
    let data = simulated(
        6,
        360,
        2,
        |rng, d| {
            let (class, school) = nested_codes(rng, 360);
            d.add_term(rng, class, 60, 1, false)
                .add_term(rng, school, 12, 1, false);
        },
        &[0.6, 0.9],
    );
    let problem = data.problem();
    let blocked = problem
        .factor
        .blocked()
        .expect("nested terms keep the blocked form");
    assert_eq!(
        blocked.diagonal_blocks()[1].n,
        12,
        "L[1][1]: one block per school"
    );
    let l10 = blocked.below_diagonal(1, 0);
    assert_eq!(
        l10.nnz_blocks(),
        60,
        "L[1][0]: one block per class, no fill-in"
    );
    check(
        "nested",
        &data,
        &[vec![1.0, 1.0], vec![0.45, 1.6], vec![0.0, 0.8]],
    );
    check("nested, school singular", &data, &[vec![0.7, 0.0]]);
}

#[test]
fn nested_terms_coarse_first() {
    // The same nesting with the schools first: L[1][1] (classes) is filled in.
    let data = simulated(
        7,
        360,
        2,
        |rng, d| {
            let (class, school) = nested_codes(rng, 360);
            d.add_term(rng, school, 12, 1, false)
                .add_term(rng, class, 60, 1, false);
        },
        &[0.9, 0.6],
    );
    check(
        "nested, coarse first",
        &data,
        &[vec![1.0, 1.0], vec![1.6, 0.45], vec![0.8, 0.0]],
    );
}

#[test]
fn three_terms_crossed_and_nested() {
    // class in school, crossed with rater; the school term has a random slope (q = 2).
    let data = simulated(
        8,
        480,
        2,
        |rng, d| {
            let (class, school) = nested_codes(rng, 480);
            let rater = random_codes(rng, 480, 20);
            d.add_term(rng, class, 60, 1, false)
                .add_term(rng, school, 12, 2, false)
                .add_term(rng, rater, 20, 1, false);
        },
        &[0.5, 0.9, 0.2, 0.4, 0.7],
    );
    assert!(
        data.problem_blocked().is_none(),
        "rater is crossed with the others: L[2][2] fills in"
    );
    check(
        "three terms, nested first",
        &data,
        &[
            vec![1.0, 1.0, 0.0, 1.0, 1.0],
            vec![0.5, 1.2, -0.3, 0.6, 0.8],
            vec![0.0, 0.9, 0.4, 0.0, 1.3],
        ],
    );
}

#[test]
fn three_terms_crossed_first() {
    // The crossed factor first: every later block of L is dense.
    let data = simulated(
        9,
        480,
        2,
        |rng, d| {
            let (class, school) = nested_codes(rng, 480);
            let rater = random_codes(rng, 480, 20);
            d.add_term(rng, rater, 20, 1, false)
                .add_term(rng, class, 60, 1, false)
                .add_term(rng, school, 12, 1, false);
        },
        &[0.7, 0.5, 0.9],
    );
    check(
        "three terms, crossed first",
        &data,
        &[
            vec![1.0, 1.0, 1.0],
            vec![0.8, 0.4, 1.5],
            vec![0.9, 0.0, 0.6],
        ],
    );
}

#[test]
fn prior_weights() {
    let data = simulated(
        10,
        350,
        3,
        |rng, d| {
            let c1 = random_codes(rng, 350, 30);
            let c2 = random_codes(rng, 350, 15);
            d.add_term(rng, c1, 30, 2, false)
                .add_term(rng, c2, 15, 1, false)
                .with_weights(rng, 0.2, 3.0);
        },
        &[0.9, 0.3, 0.5, 0.7],
    );
    check(
        "weights",
        &data,
        &[
            vec![1.0, 0.0, 1.0, 1.0],
            vec![0.7, -0.4, 0.9, 1.3],
            vec![0.0, 0.5, 0.4, 0.8],
        ],
    );
}

#[test]
fn offset() {
    let data = simulated(
        11,
        300,
        2,
        |rng, d| {
            let c = random_codes(rng, 300, 30);
            d.add_term(rng, c, 30, 1, false).with_offset(rng, 2.0);
        },
        &[0.8],
    );
    check("offset", &data, &[vec![1.0], vec![0.55], vec![0.0]]);
}

#[test]
fn weights_and_offset_crossed() {
    let data = simulated(
        12,
        400,
        2,
        |rng, d| {
            let c1 = random_codes(rng, 400, 35);
            let c2 = random_codes(rng, 400, 22);
            d.add_term(rng, c1, 35, 1, false)
                .add_term(rng, c2, 22, 2, true)
                .with_weights(rng, 0.5, 2.0)
                .with_offset(rng, 1.5);
        },
        &[0.8, 0.6, 0.3],
    );
    check(
        "weights + offset, crossed",
        &data,
        &[
            vec![1.0, 1.0, 1.0],
            vec![1.4, 0.3, 0.8],
            vec![0.6, 0.0, 0.0],
        ],
    );
}

#[test]
fn offset_is_subtracted() {
    // Sanity check that the reference is not blind to the offset: y + offset with the offset
    // given must equal y without it.
    let mut rng = Rng::new(13);
    let mut data = Data::new(&mut rng, 200, 2);
    let c = random_codes(&mut rng, 200, 20);
    data.add_term(&mut rng, c, 20, 1, false);
    data.simulate(&mut rng, &[0.8], &[1.0, 0.5], 1.0);
    let plain = data.problem().objective(&[0.6], true).unwrap();
    let mut shifted = data.clone();
    shifted.with_offset(&mut rng, 3.0);
    let off = shifted.offset.clone().unwrap();
    shifted.y.iter_mut().zip(&off).for_each(|(y, o)| *y += o);
    let with_offset = shifted.problem().objective(&[0.6], true).unwrap();
    assert!(
        rel(with_offset, plain) <= 1e-12,
        "offset: {with_offset} vs {plain}"
    );
}

#[test]
fn crossed_large_enough_for_dense_kernels() {
    // Three crossed terms, the second a correlated vector term whose levels meet only nearby
    // levels of the first (a banded pattern, so that the fill-reducing order leaves several
    // large supernodes): the supernodal form has supernodes wider than its small-panel loop and
    // descendant updates large enough for the matrix-product path.
    let n = 3000;
    let data = simulated(
        14,
        n,
        2,
        |rng, d| {
            let c1 = random_codes(rng, n, 300);
            let c2 = c1
                .iter()
                .enumerate()
                .map(|(r, &c)| {
                    if r < 120 {
                        r as i32
                    } else {
                        ((c as usize * 120 / 300 + rng.below(9) + 120 - 4) % 120) as i32
                    }
                })
                .collect();
            let c3 = random_codes(rng, n, 25);
            d.add_term(rng, c1, 300, 1, false)
                .add_term(rng, c2, 120, 2, false)
                .add_term(rng, c3, 25, 1, false);
        },
        &[0.7, 0.5, -0.2, 0.4, 0.9],
    );
    let problem = data.problem();
    let stats = problem
        .factor
        .supernodal()
        .expect("a filled block calls for the supernodal form")
        .stats();
    eprintln!("three crossed, large: {stats:?}");
    assert!(
        stats.largest_supernode > SMALL_PANEL,
        "a supernode wider than {SMALL_PANEL} columns: {stats:?}"
    );
    assert!(
        stats.largest_update > DIRECT_UPDATE,
        "an update larger than {DIRECT_UPDATE} multiply-adds: {stats:?}"
    );
    check(
        "three crossed, large",
        &data,
        &[
            vec![1.0, 1.0, 0.0, 1.0, 1.0],
            vec![0.7, 0.5, -0.2, 0.4, 0.9],
            vec![0.3, 0.0, 0.6, 0.2, 0.0],
        ],
    );
}

/// 500 students, each meeting 10 of 240 lecturers at random (5,000 rows), and a third term
/// of 20 levels: InstEval's shape, smaller.
fn students_by_lecturers(seed: u64) -> Data {
    let (students, lecturers, n) = (500, 240, 5_000);
    simulated(
        seed,
        n,
        2,
        |rng, d| {
            let s: Vec<i32> = (0..n).map(|r| (r % students) as i32).collect();
            let l = random_codes(rng, n, lecturers);
            let g = random_codes(rng, n, 20);
            d.add_term(rng, s, students, 1, false)
                .add_term(rng, l, lecturers, 1, false)
                .add_term(rng, g, 20, 1, false);
        },
        &[0.6, 0.9, 0.3],
    )
}

#[test]
fn crossed_with_a_dense_root_factored_by_the_team() {
    // Students x lecturers as in InstEval, smaller: every student meets 10 random lecturers, so
    // eliminating the students fills the lecturers' block and the last supernode is dense and
    // wide enough for the team's blocked factor (`dense_llt`), next to the columns chunks and
    // independent subtrees that the other tests reach.
    let data = students_by_lecturers(21);
    let stats = data.problem().factor.supernodal().unwrap().stats();
    eprintln!("students x lecturers: {stats:?}");
    assert!(
        stats.largest_supernode >= TEAM_FACTOR_MIN,
        "a supernode of {TEAM_FACTOR_MIN} or more columns: {stats:?}"
    );
    check(
        "students x lecturers",
        &data,
        &[
            vec![1.0, 1.0, 1.0],
            vec![0.6, 0.9, 0.3],
            vec![0.2, 1.5, 0.0],
        ],
    );
}

#[test]
fn serial_updates_and_evaluations_in_pairs_match_the_team_bit_for_bit() {
    // The convergence check evaluates its points two at a time, each on one thread
    // (`LmmProblem::objective_values`); its finite differences need the very values that the
    // team gives, not values within rounding.
    let data = students_by_lecturers(23);
    let mut problem = data.problem_supernodal(2);
    assert!(problem.factor.is_parallel());
    // Including the top supernodes that one thread finishes alone (`dense_llt` on one thread
    // where the team would use it).
    let stats = problem.factor.supernodal().unwrap().stats();
    assert!(stats.n_top_groups >= 1, "{stats:?}");
    let thetas: Vec<Vec<f64>> = (0..7)
        .map(|i| {
            vec![
                0.5 + 0.1 * f64::from(i),
                0.9 - 0.05 * f64::from(i),
                0.2 + 0.03 * f64::from(i),
            ]
        })
        .collect();
    for reml in [false, true] {
        let team: Vec<f64> = thetas
            .iter()
            .map(|t| problem.objective_value(t, reml).unwrap())
            .collect();
        problem.factor.set_serial(true);
        for (t, want) in thetas.iter().zip(&team) {
            let got = problem.objective_value(t, reml).unwrap();
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "serial at {t:?}: {got} vs {want}"
            );
        }
        problem.factor.set_serial(false);
        let pairs = problem.objective_values(&thetas, reml).unwrap();
        for ((t, got), want) in thetas.iter().zip(&pairs).zip(&team) {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "in pairs at {t:?}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn a_failed_factor_leaves_nothing_behind() {
    // The numeric step zeroes only the lower part of each panel: nothing may read the part
    // above the diagonal, where a factor that stops at a bad pivot can leave values behind
    // (here theta overflows the third term, whose columns are in the dense root: "block 2 of
    // L"). The next evaluation must not see them: the same objective, to the last bit.
    let data = students_by_lecturers(29);
    let fresh = |threads: usize| data.problem_supernodal(threads);
    let theta = vec![0.7, 1.1, 0.4];
    // The lecturers' columns are spread over the subtrees, the narrow top supernodes (finished
    // side by side, one thread each) and the root.
    for threads in [2, 3] {
        let p = fresh(threads);
        let stats = p.factor.supernodal().unwrap().stats();
        assert!(stats.n_top_groups >= 2, "{threads} threads: {stats:?}");
    }
    for bad_theta in [[0.7, 1.1, 1e160], [0.7, 1e160, 0.4]] {
        for threads in [1, 2, 3] {
            let want = fresh(threads).objective(&theta, true).unwrap();
            let mut problem = fresh(threads);
            let bad = problem.objective(&bad_theta, true);
            assert!(
                bad.as_ref().map_or(true, |v| !v.is_finite()),
                "{threads} threads: an overflowing theta {bad_theta:?} gave {bad:?}"
            );
            let got = problem.objective(&theta, true).unwrap();
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{threads} threads, after {bad_theta:?}: {got} vs {want}"
            );
        }
    }
}

/// Two crossed factors of `n1` and `n2` levels whose levels meet only nearby levels of the
/// other (a banded pattern), in the given term order.
fn banded_crossed(seed: u64, n: usize, n1: usize, n2: usize, swap: bool) -> Data {
    assert!(n >= n1 && n1 >= n2);
    let mut rng = Rng::new(seed);
    let mut data = Data::new(&mut rng, n, 2);
    // The first n1 rows visit every level of both factors; the others are random, each meeting
    // a level of the second factor within 3 of the first factor's level, rescaled.
    let mut c1 = Vec::with_capacity(n);
    let mut c2 = Vec::with_capacity(n);
    for r in 0..n {
        let (a, off) = if r < n1 {
            (r, 3)
        } else {
            (rng.below(n1), rng.below(7))
        };
        c1.push(a as i32);
        c2.push((a * n2 / n1 + off).saturating_sub(3).min(n2 - 1) as i32);
    }
    if swap {
        data.add_term(&mut rng, c2, n2, 1, false)
            .add_term(&mut rng, c1, n1, 1, false);
    } else {
        data.add_term(&mut rng, c1, n1, 1, false)
            .add_term(&mut rng, c2, n2, 1, false);
    }
    data
}

#[test]
fn crossed_beyond_the_dense_limit() {
    // 30,000 x 21,000 crossed levels: a blocked form would need a dense 21,000-column block
    // (3.5 GB), the supernodal form is the one that fits. No dense reference is
    // possible at this size; instead the two term orders, which give different orderings and
    // factors of the same matrix, must agree, and so must the fitted objective with the data
    // simulated the same way.
    let (n, n1, n2) = (70_000, 30_000, 21_000);
    let theta = [0.8, 0.5];
    let mut first = banded_crossed(15, n, n1, n2, false);
    let mut rng = Rng::new(16);
    first.simulate(&mut rng, &theta, &[1.0, 0.5], 1.2);
    // The same rows with the terms swapped.
    let mut second = first.clone();
    second.terms.swap(0, 1);

    let mut p1 = first.problem();
    let mut p2 = second.problem();
    assert!(BlockedCholesky::new(&p1.a, &Exec::new(0)).is_none());
    eprintln!(
        "beyond the dense limit: {:?} / swapped {:?}",
        p1.factor.supernodal().unwrap().stats(),
        p2.factor.supernodal().unwrap().stats()
    );
    for t in [[1.0, 1.0], [0.8, 0.5], [0.3, 1.7], [1.1, 0.0]] {
        for reml in [false, true] {
            let o1 = p1.objective(&t, reml).unwrap();
            let o2 = p2.objective(&[t[1], t[0]], reml).unwrap();
            assert!(
                rel(o1, o2) <= TOL_OBJ,
                "theta {t:?}, reml {reml}: {o1} vs swapped {o2} (rel {:e})",
                rel(o1, o2)
            );
        }
        let s1 = p1.solution(&t, true).unwrap();
        let s2 = p2.solution(&[t[1], t[0]], true).unwrap();
        let e_beta = rel_vec(&s1.beta, &s2.beta);
        let e_b0 = rel_vec(&s1.b[0], &s2.b[1]);
        let e_b1 = rel_vec(&s1.b[1], &s2.b[0]);
        assert!(
            e_beta <= TOL_SOL && e_b0 <= TOL_SOL && e_b1 <= TOL_SOL,
            "theta {t:?}: beta {e_beta:e}, b {e_b0:e} / {e_b1:e} between the term orders"
        );
    }
}

#[test]
fn a_kept_factor_gives_the_solution_of_a_fresh_one() {
    // The optimiser keeps its best point's factor aside (`keep_factor`), evaluates elsewhere
    // (one at a time and in pairs), then takes it back for the solution: the same numbers, to
    // the last bit, as factoring there afresh.
    let data = students_by_lecturers(31);
    let fresh = || data.problem_supernodal(2);
    let best = vec![0.6, 0.9, 0.3];
    let others: Vec<Vec<f64>> = (1..6)
        .map(|i| vec![0.6 + 0.05 * f64::from(i), 0.9, 0.3 - 0.02 * f64::from(i)])
        .collect();
    for reml in [false, true] {
        let want = fresh().solution(&best, reml).unwrap();
        let mut problem = fresh();
        let f = problem.objective_value(&best, reml).unwrap();
        problem.keep_factor();
        let one_by_one: Vec<f64> = others
            .iter()
            .map(|t| problem.objective_value(t, reml).unwrap())
            .collect();
        let mut with_best = others.clone();
        with_best.push(best.clone());
        let in_pairs = problem.objective_values(&with_best, reml).unwrap();
        for (a, b) in one_by_one.iter().zip(&in_pairs) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
        }
        assert_eq!(in_pairs[others.len()].to_bits(), f.to_bits());
        // The pairs factored `best` again in passing; move elsewhere before taking it back.
        problem.objective_value(&others[0], reml).unwrap();
        let got = problem.solution(&best, reml).unwrap();
        assert_eq!(got.objective.to_bits(), want.objective.to_bits());
        assert_eq!(got.sigma.to_bits(), want.sigma.to_bits());
        for (a, b) in got.beta.iter().zip(&want.beta) {
            assert_eq!(a.to_bits(), b.to_bits(), "beta {a} vs {b}");
        }
        for (a, b) in got.u.iter().flatten().zip(want.u.iter().flatten()) {
            assert_eq!(a.to_bits(), b.to_bits(), "u {a} vs {b}");
        }
    }
}

#[test]
fn one_thread_and_two_threads_give_the_same_fit_bit_for_bit() {
    // The execution handle sets the threads; the numbers must not depend on it: a crossed model
    // (supernodal, with a schedule for two threads when the handle has two) and a nested one
    // (blocked), fitted with REML on one thread and on two.
    let nested = simulated(
        33,
        360,
        2,
        |rng, d| {
            let (class, school) = nested_codes(rng, 360);
            d.add_term(rng, class, 60, 1, false)
                .add_term(rng, school, 12, 2, false);
        },
        &[0.6, 0.9, 0.2, 0.4],
    );
    for (name, data) in [("crossed", students_by_lecturers(35)), ("nested", nested)] {
        // Per thread count: evaluations, theta, objective, beta, b, and objectives in pairs
        // (the convergence check's way) near the optimum, as bits.
        let bits: Vec<Vec<u64>> = [1, 2]
            .iter()
            .map(|&threads| {
                let mut problem = data.problem_on(&Exec::new(threads));
                assert_eq!(problem.exec().threads(), threads);
                let fit =
                    multilevel::optim::fit(&mut problem, &multilevel::optim::FitOptions::default())
                        .unwrap_or_else(|e| panic!("{name}, {threads} threads: {e}"));
                let s = &fit.solution;
                let near: Vec<Vec<f64>> = (0..5)
                    .map(|i| {
                        s.theta
                            .iter()
                            .map(|t| t * (1.0 + 0.01 * f64::from(i)))
                            .collect()
                    })
                    .collect();
                let values = problem.objective_values(&near, true).unwrap();
                let all = s.theta.iter().chain(std::iter::once(&s.objective));
                let all = all.chain(&s.beta);
                let all = all.chain(s.b.iter().flatten()).chain(&values);
                std::iter::once(fit.optimizer.n_eval as u64)
                    .chain(all.map(|v| v.to_bits()))
                    .collect()
            })
            .collect();
        assert_eq!(bits[0], bits[1], "{name}: one thread and two differ");
    }
}
