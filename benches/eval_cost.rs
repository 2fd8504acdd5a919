//! Cost of one objective evaluation (the blocked Cholesky at a fixed theta) on a design dumped
//! by `benches/dump_design.py`, without Python in the loop (so that `perf record` sees Rust only).
//!
//! ```text
//! python benches/dump_design.py insteval /tmp/insteval
//! cargo bench --profile fast --bench eval_cost -- /tmp/insteval 200
//! FACTOR=supernodal THREADS=1 cargo bench --profile fast --bench eval_cost -- /tmp/pastes 50
//! ```
//! `FACTOR` (blocked or supernodal) forces a form where the structure allows it; `THREADS` sets
//! the execution handle (default: every core).
//! Prints the median and the minimum over the evaluations, alternating two nearby thetas so that
//! no evaluation is a cache hit.

use std::fs;
use std::time::Instant;

use multilevel::exec::Exec;
use multilevel::linalg::blocked::BlockedCholesky;
use multilevel::linalg::factor::{Factor, LFactor};
use multilevel::linalg::supernodal::SupernodalCholesky;
use multilevel::lmm::LmmProblem;
use multilevel::model::crossprod::{
    accumulate_parallel, balanced_piece_rows, RowChunk, PIECE_ROWS,
};
use multilevel::model::remat::ReTermShape;

fn read_f64(path: &str) -> Vec<f64> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn read_i32(path: &str) -> Vec<i32> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// User + system CPU time of this process (all threads), from /proc (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = args.first().map_or("/tmp/insteval", |s| s.as_str());
    let reps: usize = args.get(1).map_or(100, |s| s.parse().unwrap());
    let meta = fs::read_to_string(format!("{dir}/meta.txt")).expect("meta.txt");
    let mut lines = meta.lines();
    let head: Vec<usize> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (n, p, nt) = (head[0], head[1], head[2]);
    let y = read_f64(&format!("{dir}/y.bin"));
    let x = read_f64(&format!("{dir}/x.bin"));
    let mut shapes = Vec::new();
    let mut codes = Vec::new();
    let mut z = Vec::new();
    for k in 0..nt {
        let v: Vec<usize> = lines
            .next()
            .unwrap()
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        shapes.push(ReTermShape {
            n_levels: v[0],
            q: v[1],
            diagonal: false,
        });
        codes.push(read_i32(&format!("{dir}/codes{k}.bin")));
        z.push(if v[1] == 1 {
            vec![1.0; n]
        } else {
            read_f64(&format!("{dir}/z{k}.bin"))
        });
    }
    let chunk = RowChunk {
        y: &y,
        x: &x,
        codes: codes.iter().map(std::vec::Vec::as_slice).collect(),
        z: z.iter().map(std::vec::Vec::as_slice).collect(),
        weights: None,
        offset: None,
    };
    if std::env::var("ACC").is_ok() {
        for _ in 0..3 {
            let t = Instant::now();
            let mut acc = multilevel::model::crossprod::CrossProdAccumulator::new(&shapes, p);
            acc.add(&chunk).unwrap();
            let t1 = t.elapsed().as_secs_f64() * 1e3;
            let a = acc.finish();
            eprintln!(
                "one chunk: add {t1:.2} ms, finish {:.2} ms ({} pairs)",
                t.elapsed().as_secs_f64() * 1e3 - t1,
                a.pairs[1][0].nnz_blocks()
            );
        }
    }
    let t = Instant::now();
    let acc = accumulate_parallel(&shapes, p, &chunk, balanced_piece_rows(n, PIECE_ROWS)).unwrap();
    let a = acc.finish();
    let t_acc = t.elapsed().as_secs_f64() * 1e3;
    let threads = std::env::var("THREADS").map_or(0, |v| v.parse().expect("THREADS: a number"));
    let exec = Exec::new(threads);
    let mut prob = LmmProblem::new(a, &exec).unwrap();
    match std::env::var("FACTOR").as_deref() {
        Ok("blocked") => {
            let b = BlockedCholesky::new(&prob.a, &exec).expect("a structure with no fill-in");
            prob.factor = b.into();
        }
        Ok("supernodal") => {
            prob.factor = SupernodalCholesky::analyse(&prob.a, &exec).unwrap().into();
        }
        _ => {}
    }
    let form = match &prob.factor {
        LFactor::Blocked(_) => "blocked",
        LFactor::Supernodal(_) => "supernodal",
    };
    eprintln!(
        "setup {:.1} ms (cross-products {t_acc:.1} ms), factor {form}, {} threads",
        t.elapsed().as_secs_f64() * 1e3,
        exec.threads()
    );
    if let Some(s) = prob.factor.supernodal() {
        eprintln!("{:?}", s.stats());
    }
    let theta0 = prob.theta0();
    let thetas = [
        theta0.iter().map(|t| t * 0.4).collect::<Vec<_>>(),
        theta0.iter().map(|t| t * 0.42).collect::<Vec<_>>(),
    ];
    let first = prob.objective(&thetas[0], true).unwrap();
    // The serial update (two evaluations at once in the convergence check) on one thread.
    let other = prob.objective(&thetas[1], true).unwrap();
    prob.factor.set_serial(true);
    let t = Instant::now();
    let same = prob.objective(&thetas[0], true).unwrap() == first
        && prob.objective(&thetas[1], true).unwrap() == other;
    eprintln!(
        "serial: {:.2} ms per evaluation, same values as on the team: {same}",
        t.elapsed().as_secs_f64() * 1e3 / 2.0
    );
    prob.factor.set_serial(false);
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut times = Vec::with_capacity(reps);
    for r in 0..reps {
        let t = Instant::now();
        prob.objective(&thetas[r % 2], true).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_seconds() - cpu0) * 1e3 / reps as f64;
    let wall = wall0.elapsed().as_secs_f64() * 1e3 / reps as f64;
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "objective {first:.10}  per evaluation: median {:.2} ms, min {:.2} ms, mean {wall:.2} ms; \
         CPU {cpu:.2} ms (all threads) ({reps} reps)",
        times[reps / 2],
        times[0]
    );
}
