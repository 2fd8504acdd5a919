//! Cost of the dense Cholesky of an n x n panel: faer sequential, faer on rayon, and
//! `dense_llt::factor` on the team (`cargo bench --profile fast --bench dense_cost -- 579`), all
//! with the threads of the execution handle (`THREADS`, default every core).

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::{Mat, Par};
use multilevel::exec::Exec;
use multilevel::linalg::dense_llt::{self, SharedPanel};

fn spd(n: usize) -> Mat<f64> {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    };
    let b = Mat::<f64>::from_fn(n, n, |_, _| next());
    let mut a = &b * b.transpose();
    for i in 0..n {
        a[(i, i)] += n as f64;
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or(579, |s| s.parse().unwrap());
    let reps = 200;
    let threads = std::env::var("THREADS").map_or(0, |v| v.parse().expect("THREADS: a number"));
    let exec = Exec::new(threads);
    let serial = Exec::serial();
    let a = spd(n);
    let mut work = a.clone();
    let mut buf = MemBuffer::new(cholesky_in_place_scratch::<f64>(
        n,
        Par::rayon(exec.threads()),
        faer::Spec::default(),
    ));
    // The variants take turns, rep by rep, so that the drift of a shared machine hits all alike.
    let teams = [("team", exec.team()), ("team of 1", serial.team())];
    let mut times = vec![Vec::new(); 2 + teams.len()];
    let mut vals = vec![0.0; n * n];
    for _ in 0..reps {
        for (v, par) in [Par::Seq, Par::rayon(exec.threads())]
            .into_iter()
            .enumerate()
        {
            work.copy_from(&a);
            let t0 = Instant::now();
            exec.install(|| {
                cholesky_in_place(
                    work.as_mut(),
                    faer::linalg::cholesky::llt::factor::LltRegularization::default(),
                    par,
                    MemStack::new(&mut buf),
                    faer::Spec::default(),
                )
                .unwrap();
            });
            times[v].push(t0.elapsed().as_secs_f64() * 1e3);
        }
        for (v, (_, team)) in teams.iter().enumerate() {
            for j in 0..n {
                for i in 0..n {
                    vals[j * n + i] = a[(i, j)];
                }
            }
            let failed = AtomicUsize::new(usize::MAX);
            let panel = SharedPanel::new(&mut vals, n, n);
            let t0 = Instant::now();
            let stack = std::sync::Mutex::new(&mut buf);
            team.run(|ctx| {
                let mut guard = (ctx.tid() == 0).then(|| stack.lock().unwrap());
                let st = guard.as_mut().map(|g| MemStack::new(g));
                dense_llt::factor(ctx, panel, &failed, st).unwrap();
            });
            times[2 + v].push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut times = times.into_iter();
    for name in ["faer seq", "faer rayon"] {
        println!("{name:12} {:.3} ms", median(times.next().unwrap()));
    }
    for (name, team) in teams {
        println!(
            "{name:12} {:.3} ms ({} threads)",
            median(times.next().unwrap()),
            team.n_threads()
        );
    }
    let mut err = 0.0f64;
    work.copy_from(&a);
    cholesky_in_place(
        work.as_mut(),
        faer::linalg::cholesky::llt::factor::LltRegularization::default(),
        Par::Seq,
        MemStack::new(&mut buf),
        faer::Spec::default(),
    )
    .unwrap();
    for j in 0..n {
        for i in j..n {
            err = err.max((vals[j * n + i] - work[(i, j)]).abs());
        }
    }
    println!("max difference from faer: {err:.2e}");
}
