//! Tests of BOBYQA against NLopt's results on test functions, with and without bounds.

use super::*;

const INF: f64 = f64::INFINITY;

fn rosenbrock(x: &[f64]) -> f64 {
    100.0 * (x[1] - x[0] * x[0]).powi(2) + (1.0 - x[0]).powi(2)
}

/// f(x) = sum_i (i + 1) (x_i - c_i)^2 + 0.5 (x_0 - c_0)(x_1 - c_1), c = (3, 0.25, -2).
fn quad3(x: &[f64]) -> f64 {
    let c = [3.0, 0.25, -2.0];
    let d: Vec<f64> = x.iter().zip(c).map(|(a, b)| a - b).collect();
    d.iter()
        .enumerate()
        .map(|(i, v)| (i as f64 + 1.0) * v * v)
        .sum::<f64>()
        + 0.5 * d[0] * d[1]
}

/// Minimises with NLopt's initial steps and the given tolerances; counts evaluations made
/// outside the bounds.
fn solve(
    f: impl Fn(&[f64]) -> f64,
    x0: &[f64],
    lo: &[f64],
    hi: &[f64],
    tol: &Tolerances,
) -> (Vec<f64>, BobyqaResult, usize) {
    let n = x0.len();
    let mut steps = vec![0.0; n];
    default_initial_steps(x0, lo, hi, &mut steps);
    let mut x = x0.to_vec();
    let mut outside = 0;
    let r = Bobyqa::new(n).minimize_scaled(
        |t| {
            if t.iter()
                .zip(lo.iter().zip(hi))
                .any(|(v, (a, b))| v < a || v > b)
            {
                outside += 1;
            }
            f(t)
        },
        &mut x,
        lo,
        hi,
        &steps,
        tol,
    );
    (x, r, outside)
}

fn tight() -> Tolerances {
    Tolerances {
        xtol_rel: 1e-10,
        xtol_abs: 0.0,
        ftol_rel: 0.0,
        ftol_abs: 0.0,
        max_eval: 10_000,
    }
}

#[test]
fn initial_steps_are_nlopts() {
    let mut s = [0.0; 5];
    default_initial_steps(
        &[1.0, 0.0, -1.2, 0.0, 2.0],
        &[0.0, -INF, -INF, 0.0, 0.0],
        &[INF, INF, INF, INF, 4.0],
        &mut s,
    );
    assert_eq!(s, [0.75, 1.0, -1.2, 1.0, 1.0]);
}

#[test]
fn rosenbrock_follows_nlopt() {
    // NLopt 2.7.1 (nloptr, xtol_rel = 1e-4, xtol_abs = 1e-8, ftol_abs = 1e-8) takes 178
    // evaluations from here; the same algorithm differs only by rounding.
    let (x, r, outside) = solve(
        rosenbrock,
        &[-1.2, 1.2],
        &[-INF, -INF],
        &[INF, INF],
        &Tolerances::lme4(),
    );
    assert_eq!(outside, 0);
    assert!(r.status.converged(), "{:?}", r.status);
    assert!((170..=190).contains(&r.n_eval), "{} evaluations", r.n_eval);
    assert!(r.f < 1e-8 && (x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3);
    assert_eq!(r.f, rosenbrock(&x), "f is the value at the returned point");
    // Tight tolerances reach the minimiser closely.
    let (x, r, _) = solve(
        rosenbrock,
        &[-1.2, 1.2],
        &[-INF, -INF],
        &[INF, INF],
        &tight(),
    );
    assert!(r.status.converged());
    assert!(
        (x[0] - 1.0).abs() < 1e-7 && (x[1] - 1.0).abs() < 1e-7,
        "{x:?}"
    );
}

#[test]
fn bounded_quadratic_matches_nlopt() {
    // Minimiser on the bound of x_2 (c_2 = -2 < 0) and free in x_0, x_1. NLopt 2.7.1:
    // 31 evaluations, x = (2.999_999_675_23, 0.250_000_188_922, 0).
    let (x, r, outside) = solve(
        quad3,
        &[1.0, 0.0, 1.0],
        &[0.0, -INF, 0.0],
        &[INF, INF, INF],
        &Tolerances::lme4(),
    );
    assert_eq!(outside, 0);
    assert_eq!(r.n_eval, 31);
    assert_eq!(x[2], 0.0, "exactly on the bound");
    assert!((x[0] - 2.999_999_675_23).abs() < 1e-9 && (x[1] - 0.250_000_188_922).abs() < 1e-9);
    assert!((r.f - 12.0).abs() < 1e-9);
}

#[test]
fn box_with_several_active_bounds() {
    // Unconstrained minimiser (3, 0.25, -2) outside the box in x_0 and x_2: the minimiser
    // is x_0 = 1, x_2 = 0 on their bounds and x_1 = 0.5.
    let lo = [-1.0, -1.0, 0.0];
    let hi = [1.0, 1.0, 1.0];
    let (x, r, outside) = solve(quad3, &[0.0, 0.0, 0.5], &lo, &hi, &tight());
    assert_eq!(outside, 0);
    assert!(r.status.converged(), "{:?}", r.status);
    assert_eq!(x[0], 1.0);
    assert_eq!(x[2], 0.0);
    assert!((x[1] - 0.5).abs() < 1e-8, "{x:?}");
    assert!((r.f - quad3(&[1.0, 0.5, 0.0])).abs() < 1e-12);
}

#[test]
fn one_variable() {
    // Interior minimum, and a minimum beyond the lower bound.
    let (x, r, _) = solve(|t| (t[0] - 2.0).powi(2), &[1.0], &[0.0], &[INF], &tight());
    assert!(r.status.converged());
    assert!((x[0] - 2.0).abs() < 1e-8);
    let (x, r, outside) = solve(|t| (t[0] + 1.0).powi(2), &[1.0], &[0.0], &[INF], &tight());
    assert_eq!(outside, 0);
    assert!(r.status.converged());
    assert_eq!(x[0], 0.0);
}

#[test]
fn larger_problem_with_bounds() {
    // A convex quadratic in 8 variables with couplings, half of the unconstrained
    // minimiser outside lower bounds at 0: check the projected gradient at the result.
    let n = 8;
    let c: Vec<f64> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                -0.5 - i as f64 * 0.1
            } else {
                1.0 + i as f64 * 0.2
            }
        })
        .collect();
    let f = |x: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            let d = x[i] - c[i];
            s += (1.0 + i as f64) * d * d;
            if i + 1 < n {
                s += 0.3 * d * (x[i + 1] - c[i + 1]);
            }
        }
        s
    };
    let grad = |x: &[f64]| -> Vec<f64> {
        let mut g = vec![0.0; n];
        for i in 0..n {
            let d = x[i] - c[i];
            g[i] += 2.0 * (1.0 + i as f64) * d;
            if i + 1 < n {
                let e = x[i + 1] - c[i + 1];
                g[i] += 0.3 * e;
                g[i + 1] += 0.3 * d;
            }
        }
        g
    };
    let lo = vec![0.0; n];
    let hi = vec![INF; n];
    let (x, r, outside) = solve(f, &vec![1.0; n], &lo, &hi, &tight());
    assert_eq!(outside, 0);
    assert!(r.status.converged(), "{:?}", r.status);
    let g = grad(&x);
    for i in 0..n {
        if x[i] == 0.0 {
            assert!(g[i] >= -1e-6, "g[{i}] = {} at the bound", g[i]);
        } else {
            assert!(g[i].abs() < 1e-6, "g[{i}] = {} inside", g[i]);
        }
    }
    assert!((0..n).filter(|&i| x[i] == 0.0).count() >= 3, "{x:?}");
}

#[test]
fn budget_and_ftol_stops() {
    let tol = Tolerances {
        max_eval: 20,
        ..Tolerances::lme4()
    };
    let (x, r, _) = solve(rosenbrock, &[-1.2, 1.2], &[-INF, -INF], &[INF, INF], &tol);
    assert_eq!(r.status, BobyqaStatus::MaxEvalReached);
    assert_eq!(r.n_eval, 20);
    assert_eq!(r.f, rosenbrock(&x), "the best point so far is returned");
    // A loose ftol_abs stops at the first small improvement.
    let tol = Tolerances {
        ftol_abs: 1e-2,
        ..Tolerances::lme4()
    };
    let (_, r, _) = solve(rosenbrock, &[-1.2, 1.2], &[-INF, -INF], &[INF, INF], &tol);
    assert_eq!(r.status, BobyqaStatus::FtolReached);
    assert!(r.n_eval < 100);
}

#[test]
fn non_finite_values_are_avoided() {
    // NaN outside a disc: the solver must still find the minimiser inside.
    let f = |x: &[f64]| {
        if x[0] * x[0] + x[1] * x[1] > 4.0 {
            f64::NAN
        } else {
            (x[0] - 1.0).powi(2) + (x[1] - 0.5).powi(2)
        }
    };
    let (x, r, _) = solve(f, &[0.0, 0.0], &[-INF, -INF], &[INF, INF], &tight());
    assert!(r.f.is_finite());
    assert!(
        (x[0] - 1.0).abs() < 1e-6 && (x[1] - 0.5).abs() < 1e-6,
        "{x:?}"
    );
}

#[test]
fn invalid_arguments() {
    let mut s = Bobyqa::new(2);
    let opts = BobyqaOptions {
        rho_begin: 1.0,
        rho_end: 1e-6,
        ftol_abs: 0.0,
        ftol_rel: 0.0,
        max_eval: 100,
    };
    // Bounds closer than 2 rho_begin.
    let r = s.minimize(
        |x| x[0] + x[1],
        &mut [0.0, 0.0],
        &[0.0, 0.0],
        &[1.0, 1.0],
        &opts,
    );
    assert_eq!(r.status, BobyqaStatus::InvalidArgs);
    assert_eq!(r.n_eval, 0);
    let r = s.minimize(|x| x[0], &mut [0.0], &[0.0], &[1.0], &opts);
    assert_eq!(r.status, BobyqaStatus::InvalidArgs);
}

#[test]
fn recomputed_h_equals_the_initial_one() {
    // After the initial points H is known exactly; recomputing it from the points must
    // give the same bmat and the same zmat zmat'.
    let n = 3;
    let mut s = Bobyqa::new(n);
    let x0 = [0.3, -0.2, 0.5];
    s.sl.copy_from_slice(&[-INF, -INF, -0.5]);
    s.su.copy_from_slice(&[INF, INF, INF]);
    let lo = [-INF, -INF, 0.0];
    let hi = [INF; 3];
    let f = |x: &[f64]| quad3(x) + x[0] * x[1] * x[2];
    let mut g = f;
    s.initial_points(&mut g, &x0, &lo, &hi, 0.25);
    let bmat = s.bmat.clone();
    let omega = |s: &Bobyqa| -> Vec<f64> {
        let (npt, m) = (s.npt, s.nptm());
        let mut o = vec![0.0; npt * npt];
        for i in 0..npt {
            for j in 0..npt {
                o[i * npt + j] = (0..m)
                    .map(|c| s.zmat[i + c * npt] * s.zmat[j + c * npt])
                    .sum();
            }
        }
        o
    };
    let om = omega(&s);
    assert!(s.recompute_h());
    let scale = bmat.iter().chain(&om).fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in bmat.iter().zip(&s.bmat) {
        assert!((a - b).abs() <= 1e-10 * scale, "bmat {a} vs {b}");
    }
    for (a, b) in om.iter().zip(&omega(&s)) {
        assert!((a - b).abs() <= 1e-10 * scale, "omega {a} vs {b}");
    }
}
