//! Timing of the small-problem path (not a test; run with --ignored --nocapture, one at a
//! time under `perf stat -e instructions:u` on a busy machine).
mod common;
use common::{Data, Rng};
use multilevel::optim::{fit, FitOptions};
use std::time::Instant;

fn sleepstudy_like() -> Data {
    let mut rng = Rng::new(7);
    let n = 180;
    let mut data = Data::new(&mut rng, n, 2);
    let codes: Vec<i32> = (0..n).map(|i| (i / 10) as i32).collect();
    data.add_term(&mut rng, codes, 18, 2, false);
    data.simulate(&mut rng, &[0.96, 0.015, 0.23], &[251.0, 10.0], 25.0);
    data
}

fn reps() -> usize {
    std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10000)
}

#[test]
#[ignore = "a timing, not a test"]
fn t_objective() {
    let mut problem = sleepstudy_like().problem();
    let theta = [0.96, 0.015, 0.23];
    let reps = reps() * 10;
    let t = Instant::now();
    let mut s = 0.0;
    for k in 0..reps {
        let th = [theta[0] + (k % 7) as f64 * 1e-9, theta[1], theta[2]];
        s += problem.objective(&th, true).unwrap();
    }
    eprintln!(
        "objective: {:.3} us ({s})",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
}

#[test]
#[ignore = "a timing, not a test"]
fn t_objective_value() {
    let mut problem = sleepstudy_like().problem();
    let theta = [0.96, 0.015, 0.23];
    let reps = reps() * 10;
    let t = Instant::now();
    let mut s = 0.0;
    for k in 0..reps {
        let th = [theta[0] + (k % 7) as f64 * 1e-9, theta[1], theta[2]];
        s += problem.objective_value(&th, true).unwrap();
    }
    eprintln!(
        "objective_value: {:.3} us ({s})",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
}

#[test]
#[ignore = "a timing, not a test"]
fn t_fit() {
    let mut problem = sleepstudy_like().problem();
    let reps = reps();
    let opts = FitOptions::default();
    let t = Instant::now();
    let mut ne = 0;
    for _ in 0..reps {
        ne = fit(&mut problem, &opts).unwrap().optimizer.n_eval;
    }
    eprintln!(
        "fit: {:.1} us ({ne} evaluations)",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
}

#[test]
#[ignore = "a timing, not a test"]
fn t_fit_nocheck() {
    let mut problem = sleepstudy_like().problem();
    let reps = reps();
    let opts = FitOptions {
        check: false,
        ..FitOptions::default()
    };
    let t = Instant::now();
    for _ in 0..reps {
        let _ = fit(&mut problem, &opts).unwrap();
    }
    eprintln!(
        "fit without check: {:.1} us",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
}

#[test]
#[ignore = "a timing, not a test"]
fn t_bobyqa() {
    use multilevel::optim::bobyqa::{default_initial_steps, Bobyqa, Tolerances};
    let lo = [0.0, f64::NEG_INFINITY, 0.0];
    let hi = [f64::INFINITY; 3];
    let f = |x: &[f64]| {
        let c = [0.96, 0.015, 0.23];
        (x[0] - c[0]).powi(2) * 3.0
            + (x[1] - c[1]).powi(2)
            + 2.0 * (x[2] - c[2]).powi(2)
            + 0.5 * (x[0] - c[0]) * (x[2] - c[2])
            + 0.1 * (x[1] - c[1]).powi(4)
    };
    let mut solver = Bobyqa::new(3);
    let mut steps = [0.0; 3];
    let reps = reps() * 5;
    let t = Instant::now();
    let mut ne = 0;
    for _ in 0..reps {
        let mut x = [1.0, 0.0, 1.0];
        default_initial_steps(&x, &lo, &hi, &mut steps);
        ne = solver
            .minimize_scaled(f, &mut x, &lo, &hi, &steps, &Tolerances::lme4())
            .n_eval;
    }
    eprintln!(
        "bobyqa alone: {:.2} us for {ne} evaluations",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
}

#[test]
#[ignore = "writes the trajectories to a file"]
fn dump_trajectories() {
    // Every evaluated point of a few runs, for bit-exact comparisons across refactorings.
    use multilevel::optim::bobyqa::{default_initial_steps, Bobyqa, Tolerances};
    use std::fmt::Write;
    type Problem = (Box<dyn Fn(&[f64]) -> f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    let inf = f64::INFINITY;
    let mut out = String::new();
    let problems: Vec<Problem> = vec![
        (
            Box::new(|x: &[f64]| 100.0 * (x[1] - x[0] * x[0]).powi(2) + (1.0 - x[0]).powi(2)),
            vec![-1.2, 1.2],
            vec![-inf, -inf],
            vec![inf, inf],
        ),
        (
            Box::new(|x: &[f64]| {
                let c = [3.0, 0.25, -2.0, 0.5, 1.0];
                let mut s = 0.0;
                for i in 0..5 {
                    s += (i as f64 + 1.0) * (x[i] - c[i]).powi(2);
                }
                s + 0.5 * (x[0] - c[0]) * (x[1] - c[1])
                    + 0.1 * (x[2] * x[3]).powi(2)
                    + (x[4] - x[0]).powi(4)
            }),
            vec![1.0, 0.0, 1.0, 0.0, 2.0],
            vec![0.0, -inf, 0.0, -1.0, 0.5],
            vec![inf, inf, inf, 1.0, inf],
        ),
    ];
    for (f, x0, lo, hi) in &problems {
        let n = x0.len();
        let mut steps = vec![0.0; n];
        default_initial_steps(x0, lo, hi, &mut steps);
        let mut x = x0.clone();
        let tol = Tolerances {
            xtol_rel: 1e-8,
            ..Tolerances::lme4()
        };
        let r = Bobyqa::new(n).minimize_scaled(
            |t| {
                let _ = writeln!(
                    out,
                    "{:?}",
                    t.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                f(t)
            },
            &mut x,
            lo,
            hi,
            &steps,
            &tol,
        );
        let _ = writeln!(
            out,
            "end {} {:?} {:?}",
            r.n_eval,
            r.status,
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    std::fs::write(
        std::env::var("DUMP").unwrap_or("/tmp/optim/traj.txt".into()),
        out,
    )
    .unwrap();
}
