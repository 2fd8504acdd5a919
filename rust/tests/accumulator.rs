//! The cross-product accumulator: chunking, merge order and parallel pieces change A only by
//! rounding, so the objective agrees to 1e-12 relative; bad input gives the documented errors.
//! A stream of batches, added in lanes, merged as a tree and sent through bytes, gives the
//! objective of all the rows at once (1e-10 relative, the streaming acceptance) and lme4's
//! start of the rows.

mod common;

use common::{random_codes, rel, Data, Rng};
use multilevel::error::LmmError;
use multilevel::exec::Exec;
use multilevel::lmm::LmmProblem;
use multilevel::model::crossprod::{accumulate_parallel, CrossProdAccumulator, RowChunk};
use multilevel::model::lanes::LaneAccumulator;
use multilevel::model::remat::{ReMat, ReTermShape};
use multilevel::model::source::MemorySource;
use multilevel::model::start::lme4_start;
use multilevel::model::wire;

const TOL: f64 = 1e-12;

/// Two crossed terms (one q = 2 correlated), weights and an offset.
fn crossed_data() -> Data {
    let mut rng = Rng::new(101);
    let n = 500;
    let mut data = Data::new(&mut rng, n, 3);
    let c1 = random_codes(&mut rng, n, 40);
    let c2 = random_codes(&mut rng, n, 18);
    data.add_term(&mut rng, c1, 40, 2, false)
        .add_term(&mut rng, c2, 18, 1, false);
    data.with_weights(&mut rng, 0.3, 2.5)
        .with_offset(&mut rng, 1.0);
    data.simulate(&mut rng, &[0.9, 0.2, 0.5, 0.7], &[2.0, -1.0, 0.5], 1.1);
    data
}

const THETAS: [[f64; 4]; 4] = [
    [1.0, 0.0, 1.0, 1.0],
    [0.6, -0.3, 0.8, 1.4],
    [1.7, 0.9, 0.2, 0.05],
    [0.0, 0.4, 0.9, 0.0],
];

fn objectives(problem: &mut LmmProblem) -> Vec<f64> {
    THETAS
        .iter()
        .flat_map(|t| {
            [
                problem.objective(t, false).unwrap(),
                problem.objective(t, true).unwrap(),
            ]
        })
        .collect()
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max(rel(*x, *y)))
}

/// Uneven row boundaries: 0, 1, 38, 39, 170, 171, 333, 499, 500.
const CUTS: [usize; 9] = [0, 1, 38, 39, 170, 171, 333, 499, 500];

#[test]
fn chunks_merged_in_any_order_give_the_same_objective() {
    let data = crossed_data();
    let reference = objectives(&mut data.problem());
    let pieces: Vec<CrossProdAccumulator> = CUTS
        .windows(2)
        .map(|w| data.rows(w[0], w[1]).accumulator())
        .collect();
    let shapes = data.shapes();

    // Several chunks added to one accumulator in row order.
    let mut sequential = CrossProdAccumulator::new(&shapes, data.p);
    for w in CUTS.windows(2) {
        sequential.add(&data.rows(w[0], w[1]).chunk()).unwrap();
    }
    let e_seq = max_rel(
        &objectives(&mut LmmProblem::new(sequential.finish(), &Exec::new(0)).unwrap()),
        &reference,
    );

    // Separate accumulators merged in reverse order.
    let mut reversed = pieces.last().unwrap().clone();
    for p in pieces.iter().rev().skip(1) {
        reversed.merge(p).unwrap();
    }
    let e_rev = max_rel(
        &objectives(&mut LmmProblem::new(reversed.finish(), &Exec::new(0)).unwrap()),
        &reference,
    );

    // Shuffled order, merged into an empty accumulator, then a tree merge.
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    Rng::new(7).shuffle(&mut order);
    let mut shuffled = CrossProdAccumulator::new(&shapes, data.p);
    for &i in &order {
        shuffled.merge(&pieces[i]).unwrap();
    }
    let e_shuf = max_rel(
        &objectives(&mut LmmProblem::new(shuffled.finish(), &Exec::new(0)).unwrap()),
        &reference,
    );

    let mut left = pieces[5].clone();
    left.merge(&pieces[0]).unwrap();
    left.merge(&pieces[3]).unwrap();
    let mut right = pieces[7].clone();
    right.merge(&pieces[1]).unwrap();
    right.merge(&pieces[6]).unwrap();
    right.merge(&pieces[2]).unwrap();
    right.merge(&pieces[4]).unwrap();
    right.merge(&left).unwrap();
    let e_tree = max_rel(
        &objectives(&mut LmmProblem::new(right.finish(), &Exec::new(0)).unwrap()),
        &reference,
    );

    eprintln!(
        "chunked: sequential {e_seq:e}, reversed {e_rev:e}, shuffled {e_shuf:e}, tree {e_tree:e}"
    );
    for (what, e) in [
        ("sequential chunks", e_seq),
        ("reversed merge", e_rev),
        ("shuffled merge", e_shuf),
        ("tree merge", e_tree),
    ] {
        assert!(e <= TOL, "{what}: objective differs by {e:e} relative");
    }
}

#[test]
fn merged_cross_products_match_blockwise() {
    // The finished blocks themselves agree (up to rounding), and the counts exactly.
    let data = crossed_data();
    let whole = data.accumulator().finish();
    let mut merged = data.rows(250, 500).accumulator();
    merged.merge(&data.rows(0, 250).accumulator()).unwrap();
    let merged = merged.finish();
    assert_eq!(merged.nobs, whole.nobs);
    assert_eq!(merged.nobs, 500);
    assert!(rel(merged.sum_log_w, whole.sum_log_w) <= 1e-12);
    let close = |a: &[f64], b: &[f64]| {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * scale)
    };
    assert!(close(&merged.dd, &whole.dd), "D'WD differs");
    for k in 0..2 {
        assert!(
            close(&merged.diag[k], &whole.diag[k]),
            "Z'WZ of term {k} differs"
        );
        assert!(
            close(&merged.dz[k], &whole.dz[k]),
            "D'WZ of term {k} differs"
        );
    }
    let (a, b) = (&merged.pairs[1][0], &whole.pairs[1][0]);
    assert_eq!(
        a.col_ptr, b.col_ptr,
        "the pattern of Z_1'WZ_0 depends on the merge"
    );
    assert_eq!(
        a.row_idx, b.row_idx,
        "the pattern of Z_1'WZ_0 depends on the merge"
    );
    assert!(close(&a.data, &b.data), "Z_1'WZ_0 differs");
}

#[test]
fn parallel_pieces_give_the_same_objective() {
    let data = crossed_data();
    let reference = objectives(&mut data.problem());
    let shapes = data.shapes();
    let mut worst = 0.0f64;
    for piece_rows in [1, 7, 64, 123, 499, 500, 10_000] {
        let acc = accumulate_parallel(&shapes, data.p, &data.chunk(), piece_rows).unwrap();
        let e = max_rel(
            &objectives(&mut LmmProblem::new(acc.finish(), &Exec::new(0)).unwrap()),
            &reference,
        );
        assert!(
            e <= TOL,
            "accumulate_parallel with pieces of {piece_rows} rows: objective differs by {e:e}"
        );
        worst = worst.max(e);
    }
    eprintln!("parallel pieces: max rel error {worst:e}");
}

#[test]
fn merging_different_models_is_an_error() {
    let data = crossed_data();
    let mut acc = data.accumulator();
    let other_q = CrossProdAccumulator::new(
        &[
            ReTermShape {
                n_levels: 40,
                q: 1,
                diagonal: false,
            },
            ReTermShape {
                n_levels: 18,
                q: 1,
                diagonal: false,
            },
        ],
        data.p,
    );
    assert!(
        matches!(acc.merge(&other_q), Err(LmmError::Shape(_))),
        "different q"
    );
    let other_levels = CrossProdAccumulator::new(
        &[
            ReTermShape {
                n_levels: 41,
                q: 2,
                diagonal: false,
            },
            ReTermShape {
                n_levels: 18,
                q: 1,
                diagonal: false,
            },
        ],
        data.p,
    );
    assert!(
        matches!(acc.merge(&other_levels), Err(LmmError::Shape(_))),
        "different levels"
    );
    let other_p = CrossProdAccumulator::new(&data.shapes(), data.p + 1);
    assert!(
        matches!(acc.merge(&other_p), Err(LmmError::Shape(_))),
        "different p"
    );
    let other_terms = CrossProdAccumulator::new(&data.shapes()[..1], data.p);
    assert!(
        matches!(acc.merge(&other_terms), Err(LmmError::Shape(_))),
        "different number of terms"
    );
    let other_diag = CrossProdAccumulator::new(
        &[
            ReTermShape {
                n_levels: 40,
                q: 2,
                diagonal: true,
            },
            ReTermShape {
                n_levels: 18,
                q: 1,
                diagonal: false,
            },
        ],
        data.p,
    );
    assert!(
        matches!(acc.merge(&other_diag), Err(LmmError::Shape(_))),
        "diagonal vs correlated"
    );
    // The failed merges left it unchanged.
    let before = objectives(&mut data.problem());
    let after = objectives(&mut LmmProblem::new(acc.finish(), &Exec::new(0)).unwrap());
    assert_eq!(before, after);
}

#[test]
fn code_out_of_range_names_term_and_row() {
    let data = crossed_data();
    let shapes = data.shapes();
    for (term, row, code) in [(1usize, 123usize, 18i32), (0, 0, -1), (1, 499, 1_000)] {
        let mut bad = data.clone();
        bad.terms[term].codes[row] = code;
        let mut acc = CrossProdAccumulator::new(&shapes, data.p);
        let err = acc.add(&bad.chunk()).unwrap_err();
        let n_levels = shapes[term].n_levels;
        assert_eq!(
            err,
            LmmError::Code {
                term,
                row,
                code: i64::from(code),
                n_levels
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("term {term}")) && text.contains(&format!("row {row}")),
            "message: {text}"
        );
        // The parallel path reports the same row of the whole chunk.
        let Err(err) = accumulate_parallel(&shapes, data.p, &bad.chunk(), 50) else {
            panic!("parallel: bad code accepted")
        };
        assert_eq!(
            err,
            LmmError::Code {
                term,
                row,
                code: i64::from(code),
                n_levels
            },
            "parallel"
        );
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let data = crossed_data();
    let shapes = data.shapes();
    let n = data.n;
    let short = vec![0.0; n - 1];
    let x_short = vec![0.0; n * data.p - 1];
    let z_short = vec![0.0; n * 2 - 1];
    let codes_short: Vec<i32> = data.terms[1].codes[..n - 1].to_vec();
    let cases: Vec<(&str, RowChunk)> = vec![
        (
            "X",
            RowChunk {
                x: &x_short,
                ..data.chunk()
            },
        ),
        (
            "Z of term 0",
            RowChunk {
                z: vec![&z_short, &data.terms[1].z],
                ..data.chunk()
            },
        ),
        (
            "codes of term 1",
            RowChunk {
                codes: vec![&data.terms[0].codes, &codes_short],
                ..data.chunk()
            },
        ),
        (
            "number of terms",
            RowChunk {
                codes: vec![&data.terms[0].codes],
                z: vec![&data.terms[0].z],
                ..data.chunk()
            },
        ),
        (
            "weights",
            RowChunk {
                weights: Some(&short),
                ..data.chunk()
            },
        ),
        (
            "offset",
            RowChunk {
                offset: Some(&short),
                ..data.chunk()
            },
        ),
    ];
    for (what, chunk) in cases {
        let mut acc = CrossProdAccumulator::new(&shapes, data.p);
        assert!(
            matches!(acc.add(&chunk), Err(LmmError::Shape(_))),
            "{what}: expected a shape error"
        );
        assert!(
            matches!(
                accumulate_parallel(&shapes, data.p, &chunk, 64),
                Err(LmmError::Shape(_))
            ),
            "{what}: parallel"
        );
    }
}

/// Problem from an accumulator, with lme4's start from its moments.
fn problem_of(acc: CrossProdAccumulator) -> LmmProblem {
    let start = acc.lme4_start();
    let mut problem = LmmProblem::new(acc.finish(), &Exec::new(0)).unwrap();
    problem.set_start(start).unwrap();
    problem
}

#[test]
fn a_stream_of_batches_through_bytes_gives_the_one_shot_objective() {
    let data = crossed_data();
    let reference = objectives(&mut data.problem());
    let exec = Exec::new(2);
    let cuts: [&[usize]; 3] = [&[0, 500], &CUTS, &[0, 250, 251, 252, 499, 500]];
    for cuts in cuts {
        // One partial accumulator per batch, each added in lanes, serialised, read back and
        // merged as a balanced tree.
        let mut level: Vec<CrossProdAccumulator> = cuts
            .windows(2)
            .map(|w| {
                let mut lanes = LaneAccumulator::new(&data.shapes(), data.p);
                lanes.add(&data.rows(w[0], w[1]).chunk(), &exec).unwrap();
                let bytes = wire::to_bytes(&lanes.into_accumulator());
                let back = wire::from_bytes(&bytes).unwrap();
                assert_eq!(wire::to_bytes(&back), bytes, "bytes round trip");
                back
            })
            .collect();
        while level.len() > 1 {
            let mut next = Vec::new();
            let mut it = level.into_iter();
            while let Some(mut a) = it.next() {
                if let Some(b) = it.next() {
                    a.merge(&b).unwrap();
                }
                next.push(a);
            }
            level = next;
        }
        let acc = level.pop().unwrap();
        assert_eq!((acc.n_rows(), acc.nobs()), (500, 500));
        let e = max_rel(&objectives(&mut problem_of(acc)), &reference);
        assert!(e <= 1e-10, "cuts {cuts:?}: objective differs by {e:e}");
    }
}

#[test]
fn streamed_start_equals_the_start_of_the_rows() {
    // Two crossed scalar intercepts: lme4's moment start applies.
    let mut rng = Rng::new(5);
    let n = 700;
    let mut data = Data::new(&mut rng, n, 2);
    let c1 = random_codes(&mut rng, n, 30);
    let c2 = random_codes(&mut rng, n, 12);
    data.add_term(&mut rng, c1, 30, 1, false)
        .add_term(&mut rng, c2, 12, 1, false);
    data.simulate(&mut rng, &[0.8, 0.5], &[3.0, 1.0], 1.0);
    let terms = data
        .terms
        .iter()
        .enumerate()
        .map(|(k, t)| ReMat::new(k, t.shape, &t.codes, &t.z).unwrap())
        .collect();
    let source = MemorySource::new(&data.y, &data.x, data.p, terms, None, None).unwrap();
    let expected = lme4_start(&source).unwrap().expect("the rule applies");
    let mut acc = CrossProdAccumulator::new(&data.shapes(), data.p);
    for w in [0, 1, 99, 350, 351, 700].windows(2) {
        let mut part = CrossProdAccumulator::new(&data.shapes(), data.p);
        part.add(&data.rows(w[0], w[1]).chunk()).unwrap();
        acc.merge(&wire::from_bytes(&wire::to_bytes(&part)).unwrap())
            .unwrap();
    }
    let streamed = acc.lme4_start().expect("the rule applies");
    for (a, b) in streamed.iter().zip(&expected) {
        assert!(rel(*a, *b) <= 1e-13, "start {a} vs {b}");
    }
    // The fits from the stream and from the rows agree.
    let options = multilevel::optim::FitOptions {
        reml: false,
        theta0: None,
        max_fun: None,
        tolerances: multilevel::optim::bobyqa::Tolerances::lme4(),
        check: false,
    };
    let mut whole = data.problem();
    whole.set_start(Some(expected)).unwrap();
    let f1 = multilevel::optim::fit(&mut whole, &options).unwrap();
    let f2 = multilevel::optim::fit(&mut problem_of(acc), &options).unwrap();
    assert!(rel(f1.solution.objective, f2.solution.objective) <= 1e-10);
}

#[test]
fn corrupt_bytes_are_errors() {
    let data = crossed_data();
    let bytes = wire::to_bytes(&data.accumulator());
    let mut flipped = bytes.clone();
    flipped[200] ^= 4;
    let mut version = bytes.clone();
    version[8] = 9;
    for (what, b) in [
        ("magic", {
            let mut m = bytes.clone();
            m[0] = b'X';
            m
        }),
        ("truncated", bytes[..bytes.len() - 8].to_vec()),
        ("odd length", bytes[..bytes.len() - 3].to_vec()),
        ("flipped bit", flipped),
        ("version", version),
        ("empty", Vec::new()),
    ] {
        assert!(
            matches!(wire::from_bytes(&b), Err(LmmError::Shape(_))),
            "{what}: accepted"
        );
    }
}
