//! BOBYQA: bound-constrained minimisation without derivatives by quadratic interpolation
//! (M. J. D. Powell, "The BOBYQA algorithm for bound constrained optimization without
//! derivatives", Cambridge report DAMTP 2009/NA06), with NLopt's stopping rules, which lme4's
//! default optimiser (`nloptwrap`, NLopt's `NLOPT_LN_BOBYQA`) applies.
//!
//! The method keeps `npt = 2n + 1` interpolation points and a quadratic model Q of f that
//! interpolates f at them. Each iteration either minimises Q in a trust region of radius delta
//! intersected with the bounds (a truncated conjugate-gradient search, `trust_region_step`), or,
//! when the geometry of the points needs care, moves one point to where its Lagrange function
//! is large (`geometry_step`). The model is updated by the least Frobenius-norm change of its
//! second derivatives; the inverse H of the interpolation system is kept in factored form
//! (the last n columns in `bmat`, the leading npt x npt block as `zmat zmat'`) and updated in
//! O(npt^2) per new point. The lower bound rho on delta falls from `rho_begin` to `rho_end`.
//!
//! Stopping, as in NLopt: rho reaching `rho_end` (NLopt's "xtol reached": NLopt sets
//! `rho_end = max(xtol_rel * rho_begin, xtol_abs)` in its scaled variables), a new best value
//! that improves on the previous best by less than `ftol_abs` or `ftol_rel` relative, the
//! evaluation budget, or rounding errors that leave no usable step.
//!
//! Where Powell's code calls RESCUE (the updating formula's denominator damaged by rounding),
//! this implementation moves the base point to the best point and recomputes the inverse of the
//! interpolation system exactly from the current points, with no new evaluations.
//!
//! All storage is allocated once in [`Bobyqa::new`]; `minimize` does not allocate.

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

/// NLopt's stopping rules (`nlopt_set_xtol_rel` and so on), for [`Bobyqa::minimize_scaled`].
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    pub xtol_rel: f64,
    pub xtol_abs: f64,
    pub ftol_rel: f64,
    pub ftol_abs: f64,
    pub max_eval: usize,
}

impl Tolerances {
    /// lme4's `nloptwrap` defaults: `xtol_abs = 1e-8`, `ftol_abs = 1e-8`, `maxeval = 1e5`,
    /// and nloptr's default `xtol_rel = 1e-4`.
    pub fn lme4() -> Self {
        Tolerances {
            xtol_rel: 1e-4,
            xtol_abs: 1e-8,
            ftol_rel: 0.0,
            ftol_abs: 1e-8,
            max_eval: 100_000,
        }
    }
}

/// NLopt's default initial step of a derivative-free method for each variable
/// (`nlopt_set_default_initial_step`): a quarter of a finite range, three quarters of the
/// distance to a nearby bound, otherwise |x|, otherwise 1. For lme4's start (theta = 1 on a
/// lower bound of 0, theta = 0 unbounded) the steps are 0.75 and 1.
pub fn default_initial_steps(x: &[f64], lower: &[f64], upper: &[f64], steps: &mut [f64]) {
    for i in 0..x.len() {
        let (lb, ub, xi) = (lower[i], upper[i], x[i]);
        let mut step = f64::INFINITY;
        if ub.is_finite() && lb.is_finite() && (ub - lb) * 0.25 < step && ub > lb {
            step = (ub - lb) * 0.25;
        }
        if ub.is_finite() && ub - xi < step && ub > xi {
            step = (ub - xi) * 0.75;
        }
        if lb.is_finite() && xi - lb < step && xi > lb {
            step = (xi - lb) * 0.75;
        }
        if step.is_infinite() {
            if ub.is_finite() && (ub - xi).abs() < step.abs() {
                step = (ub - xi) * 1.1;
            }
            if lb.is_finite() && (xi - lb).abs() < step.abs() {
                step = (xi - lb) * 1.1;
            }
        }
        if step.is_infinite() || step.abs() < f64::MIN_POSITIVE {
            step = xi;
        }
        if step.is_infinite() || step == 0.0 {
            step = 1.0;
        }
        steps[i] = step;
    }
}

/// Stopping rules and starting radius.
#[derive(Clone, Copy, Debug)]
pub struct BobyqaOptions {
    /// Initial trust-region radius (and the size of the initial interpolation steps).
    pub rho_begin: f64,
    /// Final trust-region radius.
    pub rho_end: f64,
    /// Stop when a new best value improves on the previous best by less than this.
    pub ftol_abs: f64,
    /// Stop when a new best value improves on the previous best by less than this, relative.
    pub ftol_rel: f64,
    /// Evaluation budget.
    pub max_eval: usize,
}

/// Why the minimisation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BobyqaStatus {
    /// rho reached `rho_end` (NLopt's `XTOL_REACHED`).
    XtolReached,
    /// The best value improved by less than the f tolerances (NLopt's `FTOL_REACHED`).
    FtolReached,
    /// The evaluation budget was used up.
    MaxEvalReached,
    /// Rounding errors left no usable step (NLopt's `ROUNDOFF_LIMITED`).
    RoundoffLimited,
    /// Bad arguments: bounds closer than 2 rho_begin, a start of the wrong length, radii.
    InvalidArgs,
}

impl BobyqaStatus {
    /// True for the outcomes that are convergence.
    pub fn converged(self) -> bool {
        matches!(self, BobyqaStatus::XtolReached | BobyqaStatus::FtolReached)
    }

    pub fn message(self) -> &'static str {
        match self {
            BobyqaStatus::XtolReached => "the trust-region radius reached rho_end (xtol)",
            BobyqaStatus::FtolReached => "the best value improved by less than ftol",
            BobyqaStatus::MaxEvalReached => "the evaluation budget was used up",
            BobyqaStatus::RoundoffLimited => "rounding errors left no usable step",
            BobyqaStatus::InvalidArgs => "invalid arguments",
        }
    }
}

impl std::fmt::Display for BobyqaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// What the minimisation gave: the best value (at the point left in `x`), the evaluations it
/// took, and why it stopped.
#[derive(Clone, Copy, Debug)]
pub struct BobyqaResult {
    pub f: f64,
    pub n_eval: usize,
    pub status: BobyqaStatus,
}

/// Non-finite values are replaced by this, so that the model stays finite.
const F_HUGE: f64 = 1e300;

/// Where the main iteration goes next (the numbered labels of Powell's Fortran).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Move the model gradient to the best point (after the initial points or a recompute).
    UpdateGradient,
    /// A trust-region step.
    TrustRegion,
    /// Shift the base point if the step is small next to |xopt|, then a step.
    MaybeShift,
    /// Repair the inverse of the interpolation system.
    Rescue,
    /// A geometry step for point `knew`.
    Geometry,
    /// The Lagrange values and the denominator for the step d.
    Denominator,
    /// Evaluate f at xbase + xnew.
    Evaluate,
    /// Look for an interpolation point far from the best one.
    FarPoint,
    /// Reduce rho, or stop.
    ReduceRho,
    /// Done.
    Finish,
}

/// The solver's storage for an n-dimensional problem. Matrices are row-major: point k of
/// `xpt` is `xpt[k * n..(k + 1) * n]`.
#[derive(Clone, Debug)]
pub struct Bobyqa {
    n: usize,
    npt: usize,
    xbase: Vec<f64>,
    /// npt x n: the interpolation points relative to xbase.
    xpt: Vec<f64>,
    fval: Vec<f64>,
    xopt: Vec<f64>,
    /// Gradient of the model at xbase + xopt.
    gopt: Vec<f64>,
    /// Explicit second derivatives, packed upper triangle by columns: (i, j), i <= j, at
    /// j (j + 1) / 2 + i.
    hq: Vec<f64>,
    /// Implicit second derivatives: the model Hessian is hq + sum_k pq_k xpt_k xpt_k'.
    pq: Vec<f64>,
    /// (npt + n) x n: the last n columns of H.
    bmat: Vec<f64>,
    /// npt x (npt - n - 1), column-major (column j is `zmat[j * npt..(j + 1) * npt]`): the
    /// leading npt x npt block of H is zmat zmat'.
    zmat: Vec<f64>,
    /// Bounds relative to xbase.
    sl: Vec<f64>,
    su: Vec<f64>,
    xnew: Vec<f64>,
    xalt: Vec<f64>,
    d: Vec<f64>,
    /// npt + n: values of the Lagrange functions (and of the last n rows of H w).
    vlag: Vec<f64>,
    /// Scratch of length 2 (npt + n).
    w: Vec<f64>,
    // trust_region_step's scratch
    gnew: Vec<f64>,
    xbdi: Vec<i8>,
    s: Vec<f64>,
    hs: Vec<f64>,
    hred: Vec<f64>,
    // geometry_step's scratch
    hcol: Vec<f64>,
    glag: Vec<f64>,
    wstep: Vec<f64>,
    xcauchy: Vec<f64>,
    /// The point handed to f.
    x: Vec<f64>,
    /// (npt + n + 1)^2 scratch for recomputing H.
    kkt: Vec<f64>,
    kkt_inv: Vec<f64>,
    /// `minimize_scaled`'s buffers: the scale factors, the scaled bounds and point, and the
    /// unscaled point handed to f.
    scale: Vec<f64>,
    scaled_lower: Vec<f64>,
    scaled_upper: Vec<f64>,
    scaled_x: Vec<f64>,
    unscaled_x: Vec<f64>,
}

impl Bobyqa {
    /// Storage for n variables and 2n + 1 interpolation points.
    pub fn new(n: usize) -> Self {
        let npt = 2 * n + 1;
        let nptm = npt - n - 1;
        let ndim = npt + n;
        let nk = npt + n + 1;
        Bobyqa {
            n,
            npt,
            xbase: vec![0.0; n],
            xpt: vec![0.0; npt * n],
            fval: vec![0.0; npt],
            xopt: vec![0.0; n],
            gopt: vec![0.0; n],
            hq: vec![0.0; n * (n + 1) / 2],
            pq: vec![0.0; npt],
            bmat: vec![0.0; ndim * n],
            zmat: vec![0.0; npt * nptm],
            sl: vec![0.0; n],
            su: vec![0.0; n],
            xnew: vec![0.0; n],
            xalt: vec![0.0; n],
            d: vec![0.0; n],
            vlag: vec![0.0; ndim],
            w: vec![0.0; 2 * ndim],
            gnew: vec![0.0; n],
            xbdi: vec![0; n],
            s: vec![0.0; n],
            hs: vec![0.0; n],
            hred: vec![0.0; n],
            hcol: vec![0.0; npt],
            glag: vec![0.0; n],
            wstep: vec![0.0; n],
            xcauchy: vec![0.0; n],
            x: vec![0.0; n],
            kkt: vec![0.0; nk * nk],
            kkt_inv: vec![0.0; nk * nk],
            scale: vec![0.0; n],
            scaled_lower: vec![0.0; n],
            scaled_upper: vec![0.0; n],
            scaled_x: vec![0.0; n],
            unscaled_x: vec![0.0; n],
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    fn nptm(&self) -> usize {
        self.npt - self.n - 1
    }

    /// Minimises f as NLopt's BOBYQA does: the variables are rescaled so that the initial
    /// steps `steps` become equal (`nlopt_compute_rescaling`: x_i / s_i with s_i =
    /// steps_i / steps_0, a negative factor reversing the variable), rho_begin is |steps_0|
    /// and rho_end is `max(xtol_rel * rho_begin, xtol_abs / |s_i|)`.
    pub fn minimize_scaled<F: FnMut(&[f64]) -> f64>(
        &mut self,
        mut f: F,
        x: &mut [f64],
        lower: &[f64],
        upper: &[f64],
        steps: &[f64],
        tol: &Tolerances,
    ) -> BobyqaResult {
        let n = self.n;
        if x.len() != n || lower.len() != n || upper.len() != n || steps.len() != n {
            return BobyqaResult {
                f: f64::NAN,
                n_eval: 0,
                status: BobyqaStatus::InvalidArgs,
            };
        }
        let mut s = std::mem::take(&mut self.scale);
        let mut lo = std::mem::take(&mut self.scaled_lower);
        let mut hi = std::mem::take(&mut self.scaled_upper);
        let mut u = std::mem::take(&mut self.scaled_x);
        let mut xt = std::mem::take(&mut self.unscaled_x);
        let equal = steps.iter().all(|&d| d == steps[0]);
        for i in 0..n {
            s[i] = if n == 1 || equal {
                1.0
            } else {
                steps[i] / steps[0]
            };
            u[i] = x[i] / s[i];
            let (a, b) = (lower[i] / s[i], upper[i] / s[i]);
            lo[i] = a.min(b);
            hi[i] = a.max(b);
        }
        let rho_begin = (steps[0] / s[0]).abs();
        let mut rho_end = tol.xtol_rel * rho_begin;
        for &si in s.iter() {
            rho_end = rho_end.max(tol.xtol_abs / si.abs());
        }
        let options = BobyqaOptions {
            rho_begin,
            rho_end: rho_end.min(rho_begin),
            ftol_abs: tol.ftol_abs,
            ftol_rel: tol.ftol_rel,
            max_eval: tol.max_eval,
        };
        let result = self.minimize(
            |v| {
                for i in 0..v.len() {
                    xt[i] = v[i] * s[i];
                }
                f(&xt)
            },
            &mut u,
            &lo,
            &hi,
            &options,
        );
        for i in 0..n {
            x[i] = u[i] * s[i];
        }
        self.scale = s;
        self.scaled_lower = lo;
        self.scaled_upper = hi;
        self.scaled_x = u;
        self.unscaled_x = xt;
        result
    }

    /// Minimises f over lower <= x <= upper from x (overwritten with the best point found).
    /// f is only ever called at points inside the bounds.
    pub fn minimize<F: FnMut(&[f64]) -> f64>(
        &mut self,
        mut f: F,
        x: &mut [f64],
        lower: &[f64],
        upper: &[f64],
        options: &BobyqaOptions,
    ) -> BobyqaResult {
        let n = self.n;
        let invalid = BobyqaResult {
            f: f64::NAN,
            n_eval: 0,
            status: BobyqaStatus::InvalidArgs,
        };
        let rhobeg = options.rho_begin;
        let rhoend = options.rho_end;
        if x.len() != n
            || lower.len() != n
            || upper.len() != n
            || !(rhobeg > 0.0 && rhobeg.is_finite())
            || !(rhoend > 0.0 && rhoend <= rhobeg)
            || options.max_eval < self.npt + 1
        {
            return invalid;
        }
        // Bounds at least 2 rho_begin apart; a start within rho_begin of a bound is moved onto
        // the bound or to rho_begin from it, so that the initial points are feasible.
        for j in 0..n {
            let room = upper[j] - lower[j];
            if room.is_nan() || room < 2.0 * rhobeg || x[j].is_nan() {
                return invalid;
            }
            let mut sl = lower[j] - x[j];
            let mut su = upper[j] - x[j];
            if sl >= -rhobeg {
                if sl >= 0.0 {
                    x[j] = lower[j];
                    sl = 0.0;
                    su = upper[j] - lower[j];
                } else {
                    x[j] = lower[j] + rhobeg;
                    sl = -rhobeg;
                    su = (upper[j] - x[j]).max(rhobeg);
                }
            } else if su <= rhobeg {
                if su <= 0.0 {
                    x[j] = upper[j];
                    sl = lower[j] - upper[j];
                    su = 0.0;
                } else {
                    x[j] = upper[j] - rhobeg;
                    sl = (lower[j] - x[j]).min(-rhobeg);
                    su = rhobeg;
                }
            }
            self.sl[j] = sl;
            self.su[j] = su;
        }
        let (status, n_eval, kopt, short_step) = self.run(&mut f, x, lower, upper, options);
        if let Some(fs) = short_step {
            // The last, short step was better than every interpolation point: return it.
            x.copy_from_slice(&self.x);
            return BobyqaResult {
                f: fs,
                n_eval,
                status,
            };
        }
        // The best point, exactly on its bound where it is there.
        for i in 0..n {
            let xo = self.xopt[i];
            let mut v = (self.xbase[i] + xo).max(lower[i]).min(upper[i]);
            if xo == self.sl[i] {
                v = lower[i];
            }
            if xo == self.su[i] {
                v = upper[i];
            }
            x[i] = v;
        }
        BobyqaResult {
            f: self.fval[kopt],
            n_eval,
            status,
        }
    }
}

/// Index of "none" for point and variable indices.
const NONE: usize = usize::MAX;

fn moderate(f: f64) -> f64 {
    if f.is_nan() || f > F_HUGE {
        F_HUGE
    } else {
        f
    }
}

impl Bobyqa {
    /// The iteration. Returns the status, the number of evaluations, the index of the best
    /// interpolation point, and the value at `self.x` when a final short step beat them all.
    fn run<F: FnMut(&[f64]) -> f64>(
        &mut self,
        f: &mut F,
        x0: &[f64],
        xl: &[f64],
        xu: &[f64],
        options: &BobyqaOptions,
    ) -> (BobyqaStatus, usize, usize, Option<f64>) {
        let n = self.n;
        let npt = self.npt;
        let rhobeg = options.rho_begin;
        let rhoend = options.rho_end;
        let max_eval = options.max_eval;

        let (mut nf, mut kopt) = self.initial_points(f, x0, xl, xu, rhobeg);
        self.xopt
            .copy_from_slice(&self.xpt[kopt * n..(kopt + 1) * n]);
        let mut xoptsq = dot(&self.xopt, &self.xopt);
        let mut kbase = 0usize;

        let mut rho = rhobeg;
        let mut delta = rho;
        let mut nresc = nf;
        let mut ntrits: i64 = 0;
        let (mut diffa, mut diffb, mut diffc) = (0.0f64, 0.0f64, 0.0f64);
        let mut itest = 0usize;
        let mut nfsav = nf;

        let mut knew = NONE;
        let mut adelt = 0.0f64;
        let mut alpha = 0.0f64;
        let mut cauchy = 0.0f64;
        let mut beta = 0.0f64;
        let mut denom = 0.0f64;
        let mut dnorm = 0.0f64;
        let mut dsq = 0.0f64;
        let mut crvmin;
        let mut ratio = 0.0f64;
        let mut distsq = 0.0f64;
        let mut status = BobyqaStatus::XtolReached;
        let mut short_step = None;

        let mut next = Next::UpdateGradient;
        loop {
            match next {
                Next::UpdateGradient => {
                    if kopt != kbase {
                        // The initial model's gradient is at xbase; move it to xopt.
                        let v = std::mem::take(&mut self.xopt);
                        self.add_hessian_times(&v, nf > npt);
                        self.xopt = v;
                    }
                    next = Next::TrustRegion;
                }
                Next::TrustRegion => {
                    let (dsq_tr, crv) = self.trust_region_step(delta);
                    dsq = dsq_tr;
                    crvmin = crv;
                    dnorm = delta.min(dsq.sqrt());
                    if dnorm < 0.5 * rho {
                        ntrits = -1;
                        distsq = (10.0 * rho) * (10.0 * rho);
                        if nf <= nfsav + 2 {
                            next = Next::FarPoint;
                            continue;
                        }
                        // Reduce rho unless the model's errors at the last three points are
                        // large next to the reductions expected within 0.5 rho of xopt.
                        let errbig = diffa.max(diffb).max(diffc);
                        let frhosq = 0.125 * rho * rho;
                        if crvmin > 0.0 && errbig > frhosq * crvmin {
                            next = Next::FarPoint;
                            continue;
                        }
                        let bdtol = errbig / rho;
                        let mut far = false;
                        for j in 0..n {
                            let mut bdtest = bdtol;
                            if self.xnew[j] == self.sl[j] {
                                bdtest = self.gnew[j];
                            }
                            if self.xnew[j] == self.su[j] {
                                bdtest = -self.gnew[j];
                            }
                            if bdtest < bdtol {
                                let mut curv = self.hq[j * (j + 1) / 2 + j];
                                for k in 0..npt {
                                    let v = self.xpt[k * n + j];
                                    curv += self.pq[k] * (v * v);
                                }
                                bdtest += 0.5 * curv * rho;
                                if bdtest < bdtol {
                                    far = true;
                                    break;
                                }
                            }
                        }
                        next = if far { Next::FarPoint } else { Next::ReduceRho };
                        continue;
                    }
                    ntrits += 1;
                    next = Next::MaybeShift;
                }
                Next::MaybeShift => {
                    // Move xbase to xopt when the step is small next to |xopt|, to limit
                    // cancellation.
                    if dsq <= 1e-3 * xoptsq {
                        self.shift_base(xoptsq);
                        xoptsq = 0.0;
                    }
                    next = if ntrits == 0 {
                        Next::Geometry
                    } else {
                        Next::Denominator
                    };
                }
                Next::Rescue => {
                    nfsav = nf;
                    kbase = kopt;
                    if xoptsq > 0.0 {
                        self.shift_base(xoptsq);
                        xoptsq = 0.0;
                    }
                    if !self.recompute_h() {
                        status = BobyqaStatus::RoundoffLimited;
                        next = Next::Finish;
                        continue;
                    }
                    nresc = nf;
                    next = if ntrits > 0 {
                        Next::TrustRegion
                    } else {
                        Next::Geometry
                    };
                }
                Next::Geometry => {
                    let (a, c) = self.geometry_step(kopt, knew, adelt);
                    alpha = a;
                    cauchy = c;
                    for i in 0..n {
                        self.d[i] = self.xnew[i] - self.xopt[i];
                    }
                    next = Next::Denominator;
                }
                Next::Denominator => {
                    let (b, dsq_d) = self.lagrange_and_beta(kopt, xoptsq);
                    beta = b;
                    dsq = dsq_d;
                    if ntrits == 0 {
                        let vk = self.vlag[knew];
                        denom = vk * vk + alpha * beta;
                        if denom < cauchy && cauchy > 0.0 {
                            for i in 0..n {
                                self.xnew[i] = self.xalt[i];
                                self.d[i] = self.xnew[i] - self.xopt[i];
                            }
                            cauchy = 0.0;
                            continue;
                        }
                        if denom <= 0.5 * vk * vk {
                            if nf > nresc {
                                next = Next::Rescue;
                            } else {
                                status = BobyqaStatus::RoundoffLimited;
                                next = Next::Finish;
                            }
                            continue;
                        }
                    } else {
                        // The point to replace: a large denominator, weighted towards points
                        // far from xopt.
                        let (k, den, scaden, biglsq) =
                            self.point_to_replace(beta, delta * delta, kopt, false);
                        knew = k;
                        if k != NONE {
                            denom = den;
                        }
                        if scaden <= 0.5 * biglsq {
                            if nf > nresc {
                                next = Next::Rescue;
                            } else {
                                status = BobyqaStatus::RoundoffLimited;
                                next = Next::Finish;
                            }
                            continue;
                        }
                    }
                    next = Next::Evaluate;
                }
                Next::Evaluate => {
                    for i in 0..n {
                        let mut v = (self.xbase[i] + self.xnew[i]).max(xl[i]).min(xu[i]);
                        if self.xnew[i] == self.sl[i] {
                            v = xl[i];
                        }
                        if self.xnew[i] == self.su[i] {
                            v = xu[i];
                        }
                        self.x[i] = v;
                    }
                    if nf >= max_eval {
                        status = BobyqaStatus::MaxEvalReached;
                        next = Next::Finish;
                        continue;
                    }
                    nf += 1;
                    let fx = moderate(f(&self.x));
                    if ntrits == -1 {
                        // The final short step.
                        status = BobyqaStatus::XtolReached;
                        if fx < self.fval[kopt] {
                            short_step = Some(fx);
                        }
                        next = Next::Finish;
                        continue;
                    }
                    let fopt = self.fval[kopt];
                    // The model's prediction of the change, and its error.
                    let mut vquad = dot(&self.d, &self.gopt);
                    let mut ih = 0;
                    for j in 0..n {
                        for i in 0..=j {
                            let mut temp = self.d[i] * self.d[j];
                            if i == j {
                                temp *= 0.5;
                            }
                            vquad += self.hq[ih] * temp;
                            ih += 1;
                        }
                    }
                    for k in 0..npt {
                        let t = self.w[npt + k];
                        vquad += 0.5 * self.pq[k] * (t * t);
                    }
                    let diff = fx - fopt - vquad;
                    diffc = diffb;
                    diffb = diffa;
                    diffa = diff.abs();
                    if dnorm > rho {
                        nfsav = nf;
                    }
                    if ntrits > 0 {
                        if vquad >= 0.0 {
                            // A trust-region step failed to reduce the model.
                            status = BobyqaStatus::RoundoffLimited;
                            next = Next::Finish;
                            continue;
                        }
                        ratio = (fx - fopt) / vquad;
                        if ratio <= 0.1 {
                            delta = (0.5 * delta).min(dnorm);
                        } else if ratio <= 0.7 {
                            delta = (0.5 * delta).max(dnorm);
                        } else {
                            delta = (0.5 * delta).max(dnorm + dnorm);
                        }
                        if delta <= 1.5 * rho {
                            delta = rho;
                        }
                        if fx < fopt {
                            // Choose the point to replace again, with xnew as the centre.
                            let ksav = knew;
                            let densav = denom;
                            let (k, den, scaden, biglsq) =
                                self.point_to_replace(beta, delta * delta, NONE, true);
                            knew = k;
                            if k != NONE {
                                denom = den;
                            }
                            if scaden <= 0.5 * biglsq {
                                knew = ksav;
                                denom = densav;
                            }
                        }
                    }
                    self.update(knew, beta, denom);
                    // The model's second derivatives: point knew's implicit part becomes
                    // explicit, then the least Frobenius-norm change for the new value.
                    let pqold = self.pq[knew];
                    self.pq[knew] = 0.0;
                    let mut ih = 0;
                    for i in 0..n {
                        let temp = pqold * self.xpt[knew * n + i];
                        for j in 0..=i {
                            self.hq[ih] += temp * self.xpt[knew * n + j];
                            ih += 1;
                        }
                    }
                    for zc in self.zmat.chunks_exact(npt) {
                        let temp = diff * zc[knew];
                        for (p, z) in self.pq.iter_mut().zip(zc) {
                            *p += temp * z;
                        }
                    }
                    self.fval[knew] = fx;
                    self.xpt[knew * n..(knew + 1) * n].copy_from_slice(&self.xnew);
                    self.w[..n].copy_from_slice(&self.bmat[knew * n..(knew + 1) * n]);
                    let mut broken = false;
                    for (k, row) in self.xpt.chunks_exact(n).enumerate() {
                        let mut suma = 0.0;
                        for zc in self.zmat.chunks_exact(npt) {
                            suma += zc[knew] * zc[k];
                        }
                        if suma.is_infinite() {
                            broken = true;
                            break;
                        }
                        let sumb = dot(row, &self.xopt);
                        let temp = suma * sumb;
                        for (wi, r) in self.w[..n].iter_mut().zip(row) {
                            *wi += temp * r;
                        }
                    }
                    if broken {
                        status = BobyqaStatus::RoundoffLimited;
                        next = Next::Finish;
                        continue;
                    }
                    for i in 0..n {
                        self.gopt[i] += diff * self.w[i];
                    }
                    if fx < fopt {
                        kopt = knew;
                        self.xopt.copy_from_slice(&self.xnew);
                        xoptsq = dot(&self.xopt, &self.xopt);
                        let dcopy = std::mem::take(&mut self.d);
                        self.add_hessian_times(&dcopy, true);
                        self.d = dcopy;
                        if ftol_stop(fopt, fx, options.ftol_rel, options.ftol_abs) {
                            status = BobyqaStatus::FtolReached;
                            next = Next::Finish;
                            continue;
                        }
                    }
                    if ntrits > 0 {
                        self.maybe_replace_model(kopt, &mut itest);
                    }
                    if ntrits == 0 || fx <= fopt + 0.1 * vquad {
                        next = Next::TrustRegion;
                        continue;
                    }
                    distsq = (2.0 * delta * (2.0 * delta)).max(10.0 * rho * (10.0 * rho));
                    next = Next::FarPoint;
                }
                Next::FarPoint => {
                    // Is an interpolation point far from xopt?
                    knew = NONE;
                    for k in 0..npt {
                        let sum = self.dist_sq_to(k, false);
                        if sum > distsq {
                            knew = k;
                            distsq = sum;
                        }
                    }
                    if knew != NONE {
                        let dist = distsq.sqrt();
                        if ntrits == -1 {
                            delta = (0.1 * delta).min(0.5 * dist);
                            if delta <= 1.5 * rho {
                                delta = rho;
                            }
                        }
                        ntrits = 0;
                        adelt = (0.1 * dist).min(delta).max(rho);
                        dsq = adelt * adelt;
                        next = Next::MaybeShift;
                        continue;
                    }
                    next = if ntrits == -1 {
                        Next::ReduceRho
                    } else if ratio > 0.0 || delta.max(dnorm) > rho {
                        Next::TrustRegion
                    } else {
                        Next::ReduceRho
                    };
                }
                Next::ReduceRho => {
                    if rho > rhoend {
                        delta = 0.5 * rho;
                        ratio = rho / rhoend;
                        rho = if ratio <= 16.0 {
                            rhoend
                        } else if ratio <= 250.0 {
                            ratio.sqrt() * rhoend
                        } else {
                            0.1 * rho
                        };
                        delta = delta.max(rho);
                        ntrits = 0;
                        nfsav = nf;
                        next = Next::TrustRegion;
                        continue;
                    }
                    if ntrits == -1 {
                        // Evaluate the short step before stopping.
                        next = Next::Evaluate;
                        continue;
                    }
                    status = BobyqaStatus::XtolReached;
                    next = Next::Finish;
                }
                Next::Finish => break,
            }
        }
        (status, nf, kopt, short_step)
    }

    /// The initial 2n + 1 points: xbase and xbase +- rho_begin along each coordinate (or
    /// +rho_begin and +2 rho_begin from a lower bound, and the mirror image at an upper bound),
    /// with the model they determine (its Hessian diagonal) and the initial H.
    /// Returns the evaluations made and the index of the best point.
    fn initial_points<F: FnMut(&[f64]) -> f64>(
        &mut self,
        f: &mut F,
        x0: &[f64],
        xl: &[f64],
        xu: &[f64],
        rhobeg: f64,
    ) -> (usize, usize) {
        let n = self.n;
        let npt = self.npt;
        self.xbase.copy_from_slice(x0);
        self.xpt.iter_mut().for_each(|v| *v = 0.0);
        self.bmat.iter_mut().for_each(|v| *v = 0.0);
        self.hq.iter_mut().for_each(|v| *v = 0.0);
        self.pq.iter_mut().for_each(|v| *v = 0.0);
        self.zmat.iter_mut().for_each(|v| *v = 0.0);
        self.gopt.iter_mut().for_each(|v| *v = 0.0);
        let rhosq = rhobeg * rhobeg;
        let mut kopt = 0;
        let mut fbeg = 0.0;
        let mut stepa = 0.0;
        let mut stepb = 0.0;
        for k in 0..npt {
            if (1..=n).contains(&k) {
                let j = k - 1;
                stepa = if self.su[j] == 0.0 { -rhobeg } else { rhobeg };
                self.xpt[k * n + j] = stepa;
            } else if k > n {
                let j = k - n - 1;
                stepa = self.xpt[(j + 1) * n + j];
                stepb = -rhobeg;
                if self.sl[j] == 0.0 {
                    stepb = (2.0 * rhobeg).min(self.su[j]);
                }
                if self.su[j] == 0.0 {
                    stepb = (-2.0 * rhobeg).max(self.sl[j]);
                }
                self.xpt[k * n + j] = stepb;
            }
            for i in 0..n {
                let p = self.xpt[k * n + i];
                let mut v = (self.xbase[i] + p).max(xl[i]).min(xu[i]);
                if p == self.sl[i] {
                    v = xl[i];
                }
                if p == self.su[i] {
                    v = xu[i];
                }
                self.x[i] = v;
            }
            let fk = moderate(f(&self.x));
            self.fval[k] = fk;
            if k == 0 {
                fbeg = fk;
                kopt = 0;
            } else if fk < self.fval[kopt] {
                kopt = k;
            }
            if (1..=n).contains(&k) {
                // First divided difference along coordinate k - 1.
                self.gopt[k - 1] = (fk - fbeg) / stepa;
            } else if k > n {
                let j = k - n - 1;
                // Second divided difference, and the derivative at xbase from all three.
                let temp = (fk - fbeg) / stepb;
                let diff = stepb - stepa;
                self.hq[j * (j + 1) / 2 + j] = 2.0 * (temp - self.gopt[j]) / diff;
                self.gopt[j] = (self.gopt[j] * stepb - temp * stepa) / diff;
                // With steps on both sides, keep the lower value at the first of the pair.
                if stepa * stepb < 0.0 && fk < self.fval[j + 1] {
                    self.fval[k] = self.fval[j + 1];
                    self.fval[j + 1] = fk;
                    if kopt == k {
                        kopt = j + 1;
                    }
                    self.xpt[(j + 1) * n + j] = stepb;
                    self.xpt[k * n + j] = stepa;
                }
                // H for three points on a line: the derivatives at xbase of their Lagrange
                // functions (bmat) and their second divided difference (zmat).
                let b0 = -(stepa + stepb) / (stepa * stepb);
                let bk = -0.5 / self.xpt[(j + 1) * n + j];
                self.bmat[j] = b0;
                self.bmat[k * n + j] = bk;
                self.bmat[(j + 1) * n + j] = -b0 - bk;
                let z0 = std::f64::consts::SQRT_2 / (stepa * stepb);
                let zk = std::f64::consts::FRAC_1_SQRT_2 / rhosq;
                self.zmat[j * npt] = z0;
                self.zmat[k + j * npt] = zk;
                self.zmat[(j + 1) + j * npt] = -z0 - zk;
            }
        }
        (npt, kopt)
    }

    /// gopt += (model Hessian) v; the implicit part only when `implicit`.
    fn add_hessian_times(&mut self, v: &[f64], implicit: bool) {
        let n = self.n;
        let g = &mut self.gopt[..n];
        let v = &v[..n];
        let mut ih = 0;
        for j in 0..n {
            let col = &self.hq[ih..ih + j + 1];
            let mut gj = g[j];
            for i in 0..j {
                gj += col[i] * v[i];
                g[i] += col[i] * v[j];
            }
            g[j] = gj + col[j] * v[j];
            ih += j + 1;
        }
        if implicit {
            for (row, &pk) in self.xpt.chunks_exact(n).zip(&self.pq) {
                let temp = pk * dot(row, v);
                for (gi, r) in g.iter_mut().zip(row) {
                    *gi += temp * r;
                }
            }
        }
    }

    /// Powell's choice of the interpolation point to drop for the new one: the largest
    /// denominator `beta * H_kk + vlag_k^2` of the updating formula, weighted by
    /// `max(1, (|xpt_k - centre|^2 / delsq)^2)` so that far points go first; the centre is
    /// xopt or, with `to_xnew`, xnew, and point `skip` is not considered. Returns (the point or
    /// NONE, its denominator, the largest weighted denominator, the largest weighted vlag_k^2).
    fn point_to_replace(
        &self,
        beta: f64,
        delsq: f64,
        skip: usize,
        to_xnew: bool,
    ) -> (usize, f64, f64, f64) {
        let (mut knew, mut denom, mut scaden, mut biglsq) = (NONE, 0.0, 0.0, 0.0f64);
        for k in 0..self.npt {
            if k == skip {
                continue;
            }
            let hdiag = self.zmat_row_sq(k);
            let vk = self.vlag[k];
            let den = beta * hdiag + vk * vk;
            let dist = self.dist_sq_to(k, to_xnew);
            let temp = (dist / delsq * (dist / delsq)).max(1.0);
            if temp * den > scaden {
                scaden = temp * den;
                knew = k;
                denom = den;
            }
            biglsq = biglsq.max(temp * (vk * vk));
        }
        (knew, denom, scaden, biglsq)
    }

    /// sum_j zmat[k, j]^2: the diagonal element of the leading block of H for point k.
    fn zmat_row_sq(&self, k: usize) -> f64 {
        let mut s = 0.0;
        for z in self.zmat[k..].iter().step_by(self.npt) {
            s += z * z;
        }
        s
    }

    /// |xpt_k - xopt|^2, or |xpt_k - xnew|^2.
    fn dist_sq_to(&self, k: usize, to_xnew: bool) -> f64 {
        let n = self.n;
        let c = if to_xnew { &self.xnew } else { &self.xopt };
        let mut s = 0.0;
        for (x, y) in self.xpt[k * n..(k + 1) * n].iter().zip(c) {
            let t = x - y;
            s += t * t;
        }
        s
    }

    /// After a trust-region step: when the least Frobenius-norm interpolant's projected
    /// gradient has been much smaller than the model's three times running, take it as the
    /// model.
    fn maybe_replace_model(&mut self, kopt: usize, itest: &mut usize) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let fopt = self.fval[kopt];
        for k in 0..npt {
            self.vlag[k] = self.fval[k] - fopt;
            self.w[k] = 0.0;
        }
        for j in 0..nptm {
            let mut sum = 0.0;
            for k in 0..npt {
                sum += self.zmat[k + j * npt] * self.vlag[k];
            }
            for k in 0..npt {
                self.w[k] += sum * self.zmat[k + j * npt];
            }
        }
        for k in 0..npt {
            let sum = dot(&self.xpt[k * n..(k + 1) * n], &self.xopt);
            self.w[k + npt] = self.w[k];
            self.w[k] *= sum;
        }
        let mut gqsq = 0.0;
        let mut gisq = 0.0;
        for i in 0..n {
            let mut sum = 0.0;
            for k in 0..npt {
                sum = sum + self.bmat[k * n + i] * self.vlag[k] + self.xpt[k * n + i] * self.w[k];
            }
            let g = self.gopt[i];
            if self.xopt[i] == self.sl[i] {
                gqsq += g.min(0.0).powi(2);
                gisq += sum.min(0.0).powi(2);
            } else if self.xopt[i] == self.su[i] {
                gqsq += g.max(0.0).powi(2);
                gisq += sum.max(0.0).powi(2);
            } else {
                gqsq += g * g;
                gisq += sum * sum;
            }
            self.vlag[npt + i] = sum;
        }
        *itest += 1;
        if gqsq < 10.0 * gisq {
            *itest = 0;
        }
        if *itest >= 3 {
            for i in 0..n {
                self.gopt[i] = self.vlag[npt + i];
            }
            for k in 0..npt {
                self.pq[k] = self.w[npt + k];
            }
            self.hq.iter_mut().for_each(|v| *v = 0.0);
            *itest = 0;
        }
    }

    /// An approximate minimiser d of the model within |d| <= delta and the bounds (Powell
    /// 2009, section 3): truncated conjugate gradients, with variables fixed on the bounds they
    /// reach, then, on the trust region's boundary, rotations of d in the plane of d and the
    /// reduced gradient. Sets xnew = xopt + d and gnew (the model gradient at xnew); returns
    /// |d|^2 and crvmin (the least curvature seen along a search direction, 0 when the step
    /// reached the boundary, -1 when unknown).
    fn trust_region_step(&mut self, delta: f64) -> (f64, f64) {
        let n = self.n;
        let mut v = TrVecs {
            xopt: &self.xopt[..n],
            gopt: &self.gopt[..n],
            sl: &self.sl[..n],
            su: &self.su[..n],
            d: &mut self.d[..n],
            gnew: &mut self.gnew[..n],
            xbdi: &mut self.xbdi[..n],
            s: &mut self.s[..n],
            hs: &mut self.hs[..n],
            hred: &mut self.hred[..n],
            xnew: &mut self.xnew[..n],
            hess: Hess {
                n,
                xpt: &self.xpt,
                hq: &self.hq,
                pq: &self.pq,
            },
        };
        trust_region_step(&mut v, n, delta)
    }
}

/// The solver's vectors that `trust_region_step` reads and writes, each of length n.
struct TrVecs<'a> {
    xopt: &'a [f64],
    gopt: &'a [f64],
    sl: &'a [f64],
    su: &'a [f64],
    d: &'a mut [f64],
    gnew: &'a mut [f64],
    xbdi: &'a mut [i8],
    s: &'a mut [f64],
    hs: &'a mut [f64],
    hred: &'a mut [f64],
    xnew: &'a mut [f64],
    hess: Hess<'a>,
}

/// The model's second derivatives: hq (explicit, packed) and pq with the points (implicit).
struct Hess<'a> {
    n: usize,
    xpt: &'a [f64],
    hq: &'a [f64],
    pq: &'a [f64],
}

impl Hess<'_> {
    /// hs = (model Hessian) s.
    fn times(&self, s: &[f64], hs: &mut [f64]) {
        packed_times(self.hq, s, hs);
        for (row, &pk) in self.xpt.chunks_exact(self.n).zip(self.pq) {
            if pk != 0.0 {
                let temp = pk * dot(row, s);
                for (h, r) in hs.iter_mut().zip(row) {
                    *h += temp * r;
                }
            }
        }
    }
}

/// See `Bobyqa::trust_region_step`.
fn trust_region_step(v: &mut TrVecs, n: usize, delta: f64) -> (f64, f64) {
    {
        let mut iterc = 0usize;
        let mut nact = 0usize;
        for i in 0..n {
            v.xbdi[i] = 0;
            if v.xopt[i] <= v.sl[i] {
                if v.gopt[i] >= 0.0 {
                    v.xbdi[i] = -1;
                }
            } else if v.xopt[i] >= v.su[i] && v.gopt[i] <= 0.0 {
                v.xbdi[i] = 1;
            }
            if v.xbdi[i] != 0 {
                nact += 1;
            }
            v.d[i] = 0.0;
            v.gnew[i] = v.gopt[i];
        }
        let mut delsq = delta * delta;
        let mut qred = 0.0f64;
        let mut crvmin = -1.0f64;
        let mut beta = 0.0f64;
        let mut gredsq = 0.0f64;
        let mut ggsav = 0.0f64;
        let mut itermax = 0usize;
        // Conjugate gradients.
        let boundary = loop {
            let mut stepsq = 0.0;
            for i in 0..n {
                v.s[i] = if v.xbdi[i] != 0 {
                    0.0
                } else if beta == 0.0 {
                    -v.gnew[i]
                } else {
                    beta * v.s[i] - v.gnew[i]
                };
                stepsq += v.s[i] * v.s[i];
            }
            if stepsq == 0.0 {
                break false;
            }
            if beta == 0.0 {
                gredsq = stepsq;
                itermax = iterc + n - nact;
            }
            if gredsq * delsq <= 1e-4 * qred * qred {
                break false;
            }
            v.hess.times(v.s, v.hs);
            let mut resid = delsq;
            let mut ds = 0.0;
            let mut shs = 0.0;
            for i in 0..n {
                if v.xbdi[i] == 0 {
                    resid -= v.d[i] * v.d[i];
                    ds += v.s[i] * v.d[i];
                    shs += v.s[i] * v.hs[i];
                }
            }
            if resid <= 0.0 {
                break true;
            }
            // The step to the trust region's boundary, to the model's minimum along s, and to
            // the first bound.
            let temp = (stepsq * resid + ds * ds).sqrt();
            let blen = if ds < 0.0 {
                (temp - ds) / stepsq
            } else {
                resid / (temp + ds)
            };
            let mut stplen = blen;
            if shs > 0.0 {
                stplen = blen.min(gredsq / shs);
            }
            let mut iact = NONE;
            for i in 0..n {
                if v.s[i] != 0.0 {
                    let xsum = v.xopt[i] + v.d[i];
                    let t = if v.s[i] > 0.0 {
                        (v.su[i] - xsum) / v.s[i]
                    } else {
                        (v.sl[i] - xsum) / v.s[i]
                    };
                    if t < stplen {
                        stplen = t;
                        iact = i;
                    }
                }
            }
            let mut sdec = 0.0;
            if stplen > 0.0 {
                iterc += 1;
                let t = shs / stepsq;
                if iact == NONE && t > 0.0 {
                    crvmin = if crvmin == -1.0 { t } else { crvmin.min(t) };
                }
                ggsav = gredsq;
                gredsq = 0.0;
                for i in 0..n {
                    v.gnew[i] += stplen * v.hs[i];
                    if v.xbdi[i] == 0 {
                        gredsq += v.gnew[i] * v.gnew[i];
                    }
                    v.d[i] += stplen * v.s[i];
                }
                sdec = (stplen * (ggsav - 0.5 * stplen * shs)).max(0.0);
                qred += sdec;
            }
            if iact != NONE {
                // A bound was reached: fix the variable and restart from steepest descent.
                nact += 1;
                v.xbdi[iact] = if v.s[iact] < 0.0 { -1 } else { 1 };
                delsq -= v.d[iact] * v.d[iact];
                if delsq <= 0.0 {
                    break true;
                }
                beta = 0.0;
                continue;
            }
            if stplen < blen {
                if iterc == itermax || sdec <= 0.01 * qred {
                    break false;
                }
                beta = gredsq / ggsav;
                continue;
            }
            break true;
        };
        if boundary {
            crvmin = 0.0;
            rotate_on_boundary(v, n, &mut iterc, &mut nact, &mut qred);
        }
        // xnew = xopt + d within the bounds, exactly on the bounds of the fixed variables.
        let mut dsq = 0.0;
        for i in 0..n {
            let mut x = (v.xopt[i] + v.d[i]).min(v.su[i]).max(v.sl[i]);
            if v.xbdi[i] == -1 {
                x = v.sl[i];
            }
            if v.xbdi[i] == 1 {
                x = v.su[i];
            }
            v.xnew[i] = x;
            v.d[i] = x - v.xopt[i];
            dsq += v.d[i] * v.d[i];
        }
        (dsq, crvmin)
    }
}

/// The second stage of `trust_region_step`: with d on the trust region's boundary, rotate
/// it in the plane spanned by d and the reduced gradient, fixing variables at the bounds
/// they reach, while that reduces the model enough.
fn rotate_on_boundary(
    v: &mut TrVecs,
    n: usize,
    iterc: &mut usize,
    nact: &mut usize,
    qred: &mut f64,
) {
    {
        'outer: loop {
            if *nact + 1 >= n {
                return;
            }
            let mut dredsq = 0.0;
            let mut dredg = 0.0;
            let mut gredsq = 0.0;
            for i in 0..n {
                if v.xbdi[i] == 0 {
                    dredsq += v.d[i] * v.d[i];
                    dredg += v.d[i] * v.gnew[i];
                    gredsq += v.gnew[i] * v.gnew[i];
                    v.s[i] = v.d[i];
                } else {
                    v.s[i] = 0.0;
                }
            }
            v.hess.times(v.s, v.hs);
            v.hred.copy_from_slice(v.hs);
            loop {
                *iterc += 1;
                let temp = gredsq * dredsq - dredg * dredg;
                if temp <= 1e-4 * *qred * *qred {
                    return;
                }
                let temp = temp.sqrt();
                for i in 0..n {
                    v.s[i] = if v.xbdi[i] == 0 {
                        (dredg * v.d[i] - dredsq * v.gnew[i]) / temp
                    } else {
                        0.0
                    };
                }
                let sredg = -temp;
                // The largest angle before a free variable reaches a bound.
                let mut angbd = 1.0f64;
                let mut iact = NONE;
                let mut xsav = 0i8;
                for i in 0..n {
                    if v.xbdi[i] != 0 {
                        continue;
                    }
                    let tempa = v.xopt[i] + v.d[i] - v.sl[i];
                    let tempb = v.su[i] - v.xopt[i] - v.d[i];
                    if tempa <= 0.0 {
                        *nact += 1;
                        v.xbdi[i] = -1;
                        continue 'outer;
                    } else if tempb <= 0.0 {
                        *nact += 1;
                        v.xbdi[i] = 1;
                        continue 'outer;
                    }
                    let ssq = v.d[i] * v.d[i] + v.s[i] * v.s[i];
                    let t = ssq - (v.xopt[i] - v.sl[i]).powi(2);
                    if t > 0.0 {
                        let t = t.sqrt() - v.s[i];
                        if angbd * t > tempa {
                            angbd = tempa / t;
                            iact = i;
                            xsav = -1;
                        }
                    }
                    let t = ssq - (v.su[i] - v.xopt[i]).powi(2);
                    if t > 0.0 {
                        let t = t.sqrt() + v.s[i];
                        if angbd * t > tempb {
                            angbd = tempb / t;
                            iact = i;
                            xsav = 1;
                        }
                    }
                }
                v.hess.times(v.s, v.hs);
                let mut shs = 0.0;
                let mut dhs = 0.0;
                let mut dhd = 0.0;
                for i in 0..n {
                    if v.xbdi[i] == 0 {
                        shs += v.s[i] * v.hs[i];
                        dhs += v.d[i] * v.hs[i];
                        dhd += v.d[i] * v.hred[i];
                    }
                }
                // The best of equally spaced values of tan(angle / 2) in [0, angbd], refined
                // by a parabola through the best and its neighbours.
                let mut redmax = 0.0;
                let mut isav = 0usize;
                let mut redsav = 0.0;
                let mut rdprev = 0.0;
                let mut rdnext = 0.0;
                let iu = (angbd * 17.0 + 3.1) as usize;
                let mut angt = 0.0;
                for i in 1..=iu {
                    angt = angbd * i as f64 / iu as f64;
                    let sth = (angt + angt) / (1.0 + angt * angt);
                    let t = shs + angt * (angt * dhd - dhs - dhs);
                    let rednew = sth * (angt * dredg - sredg - 0.5 * sth * t);
                    if rednew > redmax {
                        redmax = rednew;
                        isav = i;
                        rdprev = redsav;
                    } else if i == isav + 1 {
                        rdnext = rednew;
                    }
                    redsav = rednew;
                }
                if isav == 0 {
                    return;
                }
                if isav < iu {
                    let t = (rdnext - rdprev) / (redmax + redmax - rdprev - rdnext);
                    angt = angbd * (isav as f64 + 0.5 * t) / iu as f64;
                }
                let cth = (1.0 - angt * angt) / (1.0 + angt * angt);
                let sth = (angt + angt) / (1.0 + angt * angt);
                let t = shs + angt * (angt * dhd - dhs - dhs);
                let sdec = sth * (angt * dredg - sredg - 0.5 * sth * t);
                if sdec <= 0.0 {
                    return;
                }
                dredg = 0.0;
                gredsq = 0.0;
                for i in 0..n {
                    v.gnew[i] += (cth - 1.0) * v.hred[i] + sth * v.hs[i];
                    if v.xbdi[i] == 0 {
                        v.d[i] = cth * v.d[i] + sth * v.s[i];
                        dredg += v.d[i] * v.gnew[i];
                        gredsq += v.gnew[i] * v.gnew[i];
                    }
                    v.hred[i] = cth * v.hred[i] + sth * v.hs[i];
                }
                *qred += sdec;
                if iact != NONE && isav == iu {
                    *nact += 1;
                    v.xbdi[iact] = xsav;
                    continue 'outer;
                }
                if sdec <= 0.01 * *qred {
                    return;
                }
            }
        }
    }
}

impl Bobyqa {
    /// A new position for interpolation point knew within distance adelt of xopt, chosen to
    /// make its Lagrange function large (so that the system stays well conditioned): the best
    /// point on the lines from xopt through the other points (xnew), and a constrained Cauchy
    /// step of the Lagrange function (xalt). Returns alpha (the diagonal element of H for knew)
    /// and the square of the Lagrange function's value at xalt (`cauchy`).
    fn geometry_step(&mut self, kopt: usize, knew: usize, adelt: f64) -> (f64, f64) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let xopt = &self.xopt[..n];
        let sl = &self.sl[..n];
        let su = &self.su[..n];
        let xpt = &self.xpt[..npt * n];
        let bmat = &self.bmat[..(npt + n) * n];
        let zmat = &self.zmat[..npt * nptm];
        let hcol = &mut self.hcol[..npt];
        let glag = &mut self.glag[..n];
        let xnew = &mut self.xnew[..n];
        let xalt = &mut self.xalt[..n];
        let wstep = &mut self.wstep[..n];
        let xcauchy = &mut self.xcauchy[..n];
        for k in 0..npt {
            hcol[k] = 0.0;
        }
        for j in 0..nptm {
            let temp = zmat[knew + j * npt];
            for k in 0..npt {
                hcol[k] += temp * zmat[k + j * npt];
            }
        }
        let alpha = hcol[knew];
        let ha = 0.5 * alpha;
        // The gradient of the Lagrange function at xopt.
        for i in 0..n {
            glag[i] = bmat[knew * n + i];
        }
        for k in 0..npt {
            let row = &xpt[k * n..(k + 1) * n];
            let temp = dot(row, xopt) * hcol[k];
            for i in 0..n {
                glag[i] += temp * row[i];
            }
        }
        // Along the line through xopt and each other point.
        let mut presav = 0.0;
        let mut ksav = knew;
        let mut stpsav = 0.0;
        let mut ibdsav: i64 = 0;
        for k in 0..npt {
            if k == kopt {
                continue;
            }
            let mut dderiv = 0.0;
            let mut distsq = 0.0;
            for i in 0..n {
                let temp = xpt[k * n + i] - xopt[i];
                dderiv += glag[i] * temp;
                distsq += temp * temp;
            }
            let mut subd = adelt / distsq.sqrt();
            let mut slbd = -subd;
            let mut ilbd: i64 = 0;
            let mut iubd: i64 = 0;
            let sumin = subd.min(1.0);
            // The bounds on the step along the line.
            for i in 0..n {
                let temp = xpt[k * n + i] - xopt[i];
                let lo = sl[i] - xopt[i];
                let hi = su[i] - xopt[i];
                let tag = i as i64 + 1;
                if temp > 0.0 {
                    if slbd * temp < lo {
                        slbd = lo / temp;
                        ilbd = -tag;
                    }
                    if subd * temp > hi {
                        subd = sumin.max(hi / temp);
                        iubd = tag;
                    }
                } else if temp < 0.0 {
                    if slbd * temp > hi {
                        slbd = hi / temp;
                        ilbd = tag;
                    }
                    if subd * temp < lo {
                        subd = sumin.max(lo / temp);
                        iubd = -tag;
                    }
                }
            }
            // The largest modulus of the Lagrange function along the line.
            let mut step;
            let mut vlag;
            let mut isbd;
            if k == knew {
                let diff = dderiv - 1.0;
                step = slbd;
                vlag = slbd * (dderiv - slbd * diff);
                isbd = ilbd;
                let temp = subd * (dderiv - subd * diff);
                if temp.abs() > vlag.abs() {
                    step = subd;
                    vlag = temp;
                    isbd = iubd;
                }
                let tempd = 0.5 * dderiv;
                let tempa = tempd - diff * slbd;
                let tempb = tempd - diff * subd;
                if tempa * tempb < 0.0 {
                    let temp = tempd * tempd / diff;
                    if temp.abs() > vlag.abs() {
                        step = tempd / diff;
                        vlag = temp;
                        isbd = 0;
                    }
                }
            } else {
                step = slbd;
                vlag = slbd * (1.0 - slbd);
                isbd = ilbd;
                let temp = subd * (1.0 - subd);
                if temp.abs() > vlag.abs() {
                    step = subd;
                    vlag = temp;
                    isbd = iubd;
                }
                if subd > 0.5 && vlag.abs() < 0.25 {
                    step = 0.5;
                    vlag = 0.25;
                    isbd = 0;
                }
                vlag *= dderiv;
            }
            let temp = step * (1.0 - step) * distsq;
            let predsq = vlag * vlag * (vlag * vlag + ha * temp * temp);
            if predsq > presav {
                presav = predsq;
                ksav = k;
                stpsav = step;
                ibdsav = isbd;
            }
        }
        for i in 0..n {
            let temp = xopt[i] + stpsav * (xpt[ksav * n + i] - xopt[i]);
            xnew[i] = sl[i].max(su[i].min(temp));
        }
        if ibdsav < 0 {
            let i = (-ibdsav - 1) as usize;
            xnew[i] = sl[i];
        }
        if ibdsav > 0 {
            let i = (ibdsav - 1) as usize;
            xnew[i] = su[i];
        }
        // The Cauchy step, for the Lagrange function and for its negative.
        let bigstp = adelt + adelt;
        let mut csave = 0.0;
        for pass in 0..2 {
            let mut wfixsq = 0.0;
            let mut ggfree = 0.0;
            for i in 0..n {
                wstep[i] = 0.0;
                let tempa = (xopt[i] - sl[i]).min(glag[i]);
                let tempb = (xopt[i] - su[i]).max(glag[i]);
                if tempa > 0.0 || tempb < 0.0 {
                    wstep[i] = bigstp;
                    ggfree += glag[i] * glag[i];
                }
            }
            if ggfree == 0.0 {
                return (alpha, 0.0);
            }
            let mut step;
            loop {
                let temp = adelt * adelt - wfixsq;
                step = 0.0;
                if temp > 0.0 {
                    let wsqsav = wfixsq;
                    step = (temp / ggfree).sqrt();
                    ggfree = 0.0;
                    for i in 0..n {
                        if wstep[i] == bigstp {
                            let t = xopt[i] - step * glag[i];
                            if t <= sl[i] {
                                wstep[i] = sl[i] - xopt[i];
                                wfixsq += wstep[i] * wstep[i];
                            } else if t >= su[i] {
                                wstep[i] = su[i] - xopt[i];
                                wfixsq += wstep[i] * wstep[i];
                            } else {
                                ggfree += glag[i] * glag[i];
                            }
                        }
                    }
                    if wfixsq > wsqsav && ggfree > 0.0 {
                        continue;
                    }
                }
                break;
            }
            let mut gw = 0.0;
            for i in 0..n {
                let wi = wstep[i];
                if wi == bigstp {
                    wstep[i] = -step * glag[i];
                    xalt[i] = sl[i].max(su[i].min(xopt[i] + wstep[i]));
                } else if wi == 0.0 {
                    xalt[i] = xopt[i];
                } else if glag[i] > 0.0 {
                    xalt[i] = sl[i];
                } else {
                    xalt[i] = su[i];
                }
                gw += glag[i] * wstep[i];
            }
            let mut curv = 0.0;
            for k in 0..npt {
                let temp = dot(&xpt[k * n..(k + 1) * n], wstep);
                curv += hcol[k] * temp * temp;
            }
            if pass == 1 {
                curv = -curv;
            }
            let cauchy;
            if curv > -gw && curv < -(1.0 + std::f64::consts::SQRT_2) * gw {
                let scale = -gw / curv;
                for i in 0..n {
                    let temp = xopt[i] + scale * wstep[i];
                    xalt[i] = sl[i].max(su[i].min(temp));
                }
                cauchy = (0.5 * gw * scale) * (0.5 * gw * scale);
            } else {
                cauchy = (gw + 0.5 * curv) * (gw + 0.5 * curv);
            }
            if pass == 0 {
                for i in 0..n {
                    glag[i] = -glag[i];
                    xcauchy[i] = xalt[i];
                }
                csave = cauchy;
            } else {
                if csave > cauchy {
                    xalt.copy_from_slice(xcauchy);
                    return (alpha, csave);
                }
                return (alpha, cauchy);
            }
        }
        unreachable!("two passes return")
    }

    /// The values at xopt + d of the Lagrange functions (vlag; the last n entries are the
    /// matching part of H w) and the updating formula's beta, for the step d. Leaves
    /// xpt_k . d in w[npt + k]. Returns (beta, |d|^2).
    fn lagrange_and_beta(&mut self, kopt: usize, xoptsq: f64) -> (f64, f64) {
        let n = self.n;
        let npt = self.npt;
        let d = &self.d[..n];
        let xopt = &self.xopt[..n];
        let (w, wd) = self.w.split_at_mut(npt);
        let wd = &mut wd[..npt];
        let vlag = &mut self.vlag[..npt + n];
        for (k, (row, brow)) in self
            .xpt
            .chunks_exact(n)
            .zip(self.bmat.chunks_exact(n))
            .take(npt)
            .enumerate()
        {
            let mut suma = 0.0;
            let mut sumb = 0.0;
            let mut sum = 0.0;
            for j in 0..n {
                suma += row[j] * d[j];
                sumb += row[j] * xopt[j];
                sum += brow[j] * d[j];
            }
            w[k] = suma * (0.5 * suma + sumb);
            vlag[k] = sum;
            wd[k] = suma;
        }
        let mut beta = 0.0;
        for zc in self.zmat.chunks_exact(npt) {
            let sum = dot(zc, w);
            beta -= sum * sum;
            for (v, z) in vlag.iter_mut().zip(zc) {
                *v += sum * z;
            }
        }
        let mut dsq = 0.0;
        let mut bsum = 0.0;
        let mut dx = 0.0;
        for j in 0..n {
            dsq += d[j] * d[j];
            let mut sum = 0.0;
            for (wk, brow) in w.iter().zip(self.bmat.chunks_exact(n)) {
                sum += wk * brow[j];
            }
            bsum += sum * d[j];
            let jp = npt + j;
            for (b, di) in self.bmat[jp * n..(jp + 1) * n].iter().zip(d) {
                sum += b * di;
            }
            vlag[jp] = sum;
            bsum += sum * d[j];
            dx += d[j] * xopt[j];
        }
        let beta = dx * dx + dsq * (xoptsq + dx + dx + 0.5 * dsq) + beta - bsum;
        self.vlag[kopt] += 1.0;
        (beta, dsq)
    }

    /// Updates bmat and zmat (H) for moving point knew to xopt + d, given vlag and beta from
    /// `lagrange_and_beta` and the denominator of the updating formula.
    fn update(&mut self, knew: usize, beta: f64, denom: f64) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let ztest = 1e-20 * self.zmat.iter().fold(0.0f64, |m, z| m.max(z.abs()));
        // Rotations that leave only the first column of zmat nonzero in row knew.
        let (z0c, zrest) = self.zmat.split_at_mut(npt);
        for zj in zrest.chunks_exact_mut(npt).take(nptm - 1) {
            let b_k = zj[knew];
            if b_k.abs() > ztest {
                let a_k = z0c[knew];
                let temp = (a_k * a_k + b_k * b_k).sqrt();
                let tempa = a_k / temp;
                let tempb = b_k / temp;
                for (a, b) in z0c.iter_mut().zip(zj.iter_mut()) {
                    let (x, y) = (*a, *b);
                    *b = tempa * y - tempb * x;
                    *a = tempa * x + tempb * y;
                }
            }
            zj[knew] = 0.0;
        }
        let zk0 = z0c[knew];
        let vlag = &mut self.vlag[..npt + n];
        let w = &mut self.w[..npt + n];
        for (wi, z) in w.iter_mut().zip(z0c.iter()) {
            *wi = zk0 * z;
        }
        let alpha = w[knew];
        let tau = vlag[knew];
        vlag[knew] -= 1.0;
        let temp = denom.sqrt();
        let tempb = zk0 / temp;
        let tempa = tau / temp;
        for (z, v) in z0c.iter_mut().zip(vlag.iter()) {
            *z = tempa * *z - tempb * v;
        }
        let bmat = &mut self.bmat[..(npt + n) * n];
        for j in 0..n {
            let jp = npt + j;
            w[jp] = bmat[knew * n + j];
            let tempa = (alpha * vlag[jp] - tau * w[jp]) / denom;
            let tempb = (-beta * w[jp] - tau * vlag[jp]) / denom;
            for i in 0..npt {
                bmat[i * n + j] += tempa * vlag[i] + tempb * w[i];
            }
            for i in npt..=jp {
                let v = bmat[i * n + j] + (tempa * vlag[i] + tempb * w[i]);
                bmat[i * n + j] = v;
                bmat[jp * n + (i - npt)] = v;
            }
        }
    }

    /// Moves xbase to xbase + xopt, updating bmat, the explicit Hessian and the points so that
    /// H and the model are unchanged.
    fn shift_base(&mut self, xoptsq: f64) {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let fracsq = 0.25 * xoptsq;
        let mut sumpq = 0.0;
        for k in 0..npt {
            sumpq += self.pq[k];
            let mut sum = -0.5 * xoptsq;
            for i in 0..n {
                sum += self.xpt[k * n + i] * self.xopt[i];
            }
            self.w[npt + k] = sum;
            let temp = fracsq - 0.5 * sum;
            for i in 0..n {
                self.w[i] = self.bmat[k * n + i];
                self.vlag[i] = sum * self.xpt[k * n + i] + temp * self.xopt[i];
                let ip = npt + i;
                for j in 0..=i {
                    self.bmat[ip * n + j] += self.w[i] * self.vlag[j] + self.vlag[i] * self.w[j];
                }
            }
        }
        for jj in 0..nptm {
            let mut sumz = 0.0;
            let mut sumw = 0.0;
            for k in 0..npt {
                sumz += self.zmat[k + jj * npt];
                self.vlag[k] = self.w[npt + k] * self.zmat[k + jj * npt];
                sumw += self.vlag[k];
            }
            for j in 0..n {
                let mut sum = (fracsq * sumz - 0.5 * sumw) * self.xopt[j];
                for k in 0..npt {
                    sum += self.vlag[k] * self.xpt[k * n + j];
                }
                self.w[j] = sum;
                for k in 0..npt {
                    self.bmat[k * n + j] += sum * self.zmat[k + jj * npt];
                }
            }
            for i in 0..n {
                let ip = i + npt;
                let temp = self.w[i];
                for j in 0..=i {
                    self.bmat[ip * n + j] += temp * self.w[j];
                }
            }
        }
        let mut ih = 0;
        for j in 0..n {
            self.w[j] = -0.5 * sumpq * self.xopt[j];
            for k in 0..npt {
                self.w[j] += self.pq[k] * self.xpt[k * n + j];
                self.xpt[k * n + j] -= self.xopt[j];
            }
            for i in 0..=j {
                self.hq[ih] += self.w[i] * self.xopt[j] + self.xopt[i] * self.w[j];
                self.bmat[(npt + i) * n + j] = self.bmat[(npt + j) * n + i];
                ih += 1;
            }
        }
        for i in 0..n {
            self.xbase[i] += self.xopt[i];
            self.xnew[i] -= self.xopt[i];
            self.sl[i] -= self.xopt[i];
            self.su[i] -= self.xopt[i];
            self.xopt[i] = 0.0;
        }
    }

    /// Recomputes H from the current points: the inverse of the interpolation system
    /// `[A 1 Y'; 1' 0 0; Y 0 0]`, A_ij = (y_i . y_j)^2 / 2, by Gauss-Jordan elimination with
    /// partial pivoting; its leading npt x npt block (positive semi-definite of rank npt - n - 1)
    /// is factored as zmat zmat' by a pivoted Cholesky factorisation. False when the points do
    /// not determine a model.
    fn recompute_h(&mut self) -> bool {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let nk = npt + n + 1;
        let a = &mut self.kkt;
        let inv = &mut self.kkt_inv;
        a.iter_mut().for_each(|v| *v = 0.0);
        inv.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..npt {
            let yi = &self.xpt[i * n..(i + 1) * n];
            for j in 0..npt {
                let t = dot(yi, &self.xpt[j * n..(j + 1) * n]);
                a[i * nk + j] = 0.5 * t * t;
            }
            a[i * nk + npt] = 1.0;
            a[npt * nk + i] = 1.0;
            for l in 0..n {
                a[i * nk + npt + 1 + l] = yi[l];
                a[(npt + 1 + l) * nk + i] = yi[l];
            }
        }
        for i in 0..nk {
            inv[i * nk + i] = 1.0;
        }
        for c in 0..nk {
            let p = (c..nk)
                .max_by(|&r, &s| a[r * nk + c].abs().total_cmp(&a[s * nk + c].abs()))
                .unwrap_or(c);
            let piv = a[p * nk + c];
            if piv == 0.0 || !piv.is_finite() {
                return false;
            }
            if p != c {
                for j in 0..nk {
                    a.swap(p * nk + j, c * nk + j);
                    inv.swap(p * nk + j, c * nk + j);
                }
            }
            let r = 1.0 / piv;
            for j in 0..nk {
                a[c * nk + j] *= r;
                inv[c * nk + j] *= r;
            }
            for i in 0..nk {
                if i == c {
                    continue;
                }
                let m = a[i * nk + c];
                if m != 0.0 {
                    for j in 0..nk {
                        a[i * nk + j] -= m * a[c * nk + j];
                        inv[i * nk + j] -= m * inv[c * nk + j];
                    }
                }
            }
        }
        for k in 0..npt {
            for l in 0..n {
                self.bmat[k * n + l] = inv[k * nk + npt + 1 + l];
            }
        }
        for r in 0..n {
            for l in 0..n {
                self.bmat[(npt + r) * n + l] = inv[(npt + 1 + r) * nk + npt + 1 + l];
            }
        }
        // Omega (symmetrised) into the top-left of `a`, then zmat by pivoted Cholesky.
        for i in 0..npt {
            for j in 0..npt {
                a[i * nk + j] = 0.5 * (inv[i * nk + j] + inv[j * nk + i]);
            }
        }
        let scale = (0..npt).fold(0.0f64, |m, i| m.max(a[i * nk + i].abs()));
        for c in 0..nptm {
            let p = (0..npt)
                .max_by(|&r, &s| a[r * nk + r].total_cmp(&a[s * nk + s]))
                .unwrap_or(0);
            let dp = a[p * nk + p];
            if dp.is_nan() || dp <= 1e-14 * scale {
                return false;
            }
            let sd = dp.sqrt();
            for k in 0..npt {
                self.zmat[k + c * npt] = a[k * nk + p] / sd;
            }
            for i in 0..npt {
                let zi = self.zmat[i + c * npt];
                for j in 0..npt {
                    a[i * nk + j] -= zi * self.zmat[j + c * npt];
                }
            }
        }
        true
    }
}

/// NLopt's test on the change of the best value.
fn ftol_stop(fold: f64, fnew: f64, ftol_rel: f64, ftol_abs: f64) -> bool {
    if fold.is_infinite() {
        return false;
    }
    let change = (fnew - fold).abs();
    change < ftol_abs
        || change < ftol_rel * (fnew.abs() + fold.abs()) * 0.5
        || (ftol_rel > 0.0 && fnew == fold)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// hs = H s for a symmetric H packed by columns (upper triangle: (i, j), i <= j, at
/// j (j + 1) / 2 + i), in the order of Powell's loops.
fn packed_times(hq: &[f64], s: &[f64], hs: &mut [f64]) {
    let n = s.len();
    hs.iter_mut().for_each(|v| *v = 0.0);
    let mut ih = 0;
    for j in 0..n {
        let col = &hq[ih..ih + j + 1];
        let sj = s[j];
        let mut acc = 0.0;
        for i in 0..j {
            acc += col[i] * s[i];
            hs[i] += col[i] * sj;
        }
        hs[j] = acc + col[j] * sj;
        ih += j + 1;
    }
}

#[cfg(test)]
mod tests {
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
        // 31 evaluations, x = (2.99999967523, 0.250000188922, 0).
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
        assert!((x[0] - 2.99999967523).abs() < 1e-9 && (x[1] - 0.250000188922).abs() < 1e-9);
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
}
