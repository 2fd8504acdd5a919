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
//! The files follow Powell's subroutines (and NLopt's `bobyqa.c`, a C translation of them):
//! `prelim` (the initial points and model), `trsbox` (the trust-region step), `altmov` (the
//! geometry step), `update` (H and the model for a new point), `rescue` (H recomputed); this
//! file holds BOBYQB, the driver, as one function per labelled step of Powell's iteration
//! (`Next`), NLopt's rescaling and stopping rules ([`Bobyqa::minimize_scaled`],
//! [`Tolerances`]) and Powell's entry point ([`Bobyqa::minimize`]).
//!
//! All storage is allocated once in [`Bobyqa::new`]; `minimize` does not allocate.

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

mod altmov;
mod prelim;
mod rescue;
#[cfg(test)]
mod tests;
mod trsbox;
mod update;

pub use prelim::default_initial_steps;

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
    /// An interrupt was requested (`exec::request_interrupt`; NLopt's `FORCED_STOP`).
    Interrupted,
}

impl BobyqaStatus {
    /// True for the outcomes that are convergence.
    pub fn converged(self) -> bool {
        matches!(self, BobyqaStatus::XtolReached | BobyqaStatus::FtolReached)
    }

    /// The fit summary's word for the outcome: "converged", "max_fun" or "failure".
    pub fn outcome(self) -> &'static str {
        if self.converged() {
            "converged"
        } else if self == BobyqaStatus::MaxEvalReached {
            "max_fun"
        } else {
            "failure"
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            BobyqaStatus::XtolReached => "the trust-region radius reached rho_end (xtol)",
            BobyqaStatus::FtolReached => "the best value improved by less than ftol",
            BobyqaStatus::MaxEvalReached => "the evaluation budget was used up",
            BobyqaStatus::RoundoffLimited => "rounding errors left no usable step",
            BobyqaStatus::InvalidArgs => "invalid arguments",
            BobyqaStatus::Interrupted => "interrupted",
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
        for &si in &s {
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
        if !self.place_start(x, lower, upper, rhobeg) {
            return invalid;
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

/// The variables the steps of the main iteration share (the locals of Powell's BOBYQB).
struct State {
    /// Evaluations so far.
    nf: usize,
    /// The best interpolation point, and the one at which the model gradient was last set.
    kopt: usize,
    kbase: usize,
    /// |xopt|^2.
    xoptsq: f64,
    /// The lower bound on the trust-region radius, and the radius.
    rho: f64,
    delta: f64,
    /// nf at the last rescue, and at the last reduction of rho (or long step).
    nresc: usize,
    nfsav: usize,
    /// Trust-region steps since the last geometry step; -1 after a short step.
    ntrits: i64,
    /// |f - model| at the last three new points.
    diffa: f64,
    diffb: f64,
    diffc: f64,
    /// Consecutive times the least Frobenius-norm interpolant's gradient was much smaller.
    itest: usize,
    /// The point to move, and the radius of a geometry step.
    knew: usize,
    adelt: f64,
    /// The geometry step's H_kk and Cauchy value; the updating formula's beta and denominator.
    alpha: f64,
    cauchy: f64,
    beta: f64,
    denom: f64,
    /// |d| (capped by delta), |d|^2, f's reduction over the model's, and a distance^2 bound.
    dnorm: f64,
    dsq: f64,
    ratio: f64,
    distsq: f64,
    status: BobyqaStatus,
    /// The value at `self.x` when a final short step beat every interpolation point.
    short_step: Option<f64>,
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
        let rhobeg = options.rho_begin;
        let (nf, kopt) = self.initial_points(f, x0, xl, xu, rhobeg);
        self.xopt
            .copy_from_slice(&self.xpt[kopt * n..(kopt + 1) * n]);
        let xoptsq = dot(&self.xopt, &self.xopt);
        let mut st = State {
            nf,
            kopt,
            kbase: 0,
            xoptsq,
            rho: rhobeg,
            delta: rhobeg,
            nresc: nf,
            nfsav: nf,
            ntrits: 0,
            diffa: 0.0,
            diffb: 0.0,
            diffc: 0.0,
            itest: 0,
            knew: NONE,
            adelt: 0.0,
            alpha: 0.0,
            cauchy: 0.0,
            beta: 0.0,
            denom: 0.0,
            dnorm: 0.0,
            dsq: 0.0,
            ratio: 0.0,
            distsq: 0.0,
            status: BobyqaStatus::XtolReached,
            short_step: None,
        };
        let mut next = Next::UpdateGradient;
        loop {
            next = match next {
                Next::UpdateGradient => self.gradient_to_xopt(&st),
                Next::TrustRegion => self.trust_region(&mut st),
                Next::MaybeShift => self.maybe_shift(&mut st),
                Next::Rescue => self.rescue(&mut st),
                Next::Geometry => self.geometry(&mut st),
                Next::Denominator => self.denominator(&mut st),
                Next::Evaluate => self.evaluate(&mut st, f, xl, xu, options),
                Next::FarPoint => self.far_point(&mut st),
                Next::ReduceRho => Self::reduce_rho(&mut st, options.rho_end),
                Next::Finish => break,
            };
        }
        (st.status, st.nf, st.kopt, st.short_step)
    }

    /// Moves the model gradient to the best point (the initial model's gradient is at xbase).
    fn gradient_to_xopt(&mut self, st: &State) -> Next {
        if st.kopt != st.kbase {
            let v = std::mem::take(&mut self.xopt);
            self.add_hessian_times(&v, st.nf > self.npt);
            self.xopt = v;
        }
        Next::TrustRegion
    }

    /// A trust-region step; when it is short, decide between reducing rho and improving the
    /// geometry.
    fn trust_region(&mut self, st: &mut State) -> Next {
        let (dsq_tr, crvmin) = self.trust_region_step(st.delta);
        st.dsq = dsq_tr;
        st.dnorm = st.delta.min(st.dsq.sqrt());
        if st.dnorm < 0.5 * st.rho {
            st.ntrits = -1;
            st.distsq = (10.0 * st.rho) * (10.0 * st.rho);
            if st.nf <= st.nfsav + 2 {
                return Next::FarPoint;
            }
            // Reduce rho unless the model's errors at the last three points are large next to
            // the reductions expected within 0.5 rho of xopt.
            let errbig = st.diffa.max(st.diffb).max(st.diffc);
            let frhosq = 0.125 * st.rho * st.rho;
            if crvmin > 0.0 && errbig > frhosq * crvmin {
                return Next::FarPoint;
            }
            let bdtol = errbig / st.rho;
            return if self.bound_test_fails(bdtol, st.rho) {
                Next::FarPoint
            } else {
                Next::ReduceRho
            };
        }
        st.ntrits += 1;
        Next::MaybeShift
    }

    /// After a short step: true when, at a variable on a bound of xnew, the model's slope and
    /// curvature promise a reduction of more than `bdtol` times rho.
    fn bound_test_fails(&self, bdtol: f64, rho: f64) -> bool {
        let n = self.n;
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
                for k in 0..self.npt {
                    let v = self.xpt[k * n + j];
                    curv += self.pq[k] * (v * v);
                }
                bdtest += 0.5 * curv * rho;
                if bdtest < bdtol {
                    return true;
                }
            }
        }
        false
    }

    /// Moves xbase to xopt when the step is small next to |xopt|, to limit cancellation.
    fn maybe_shift(&mut self, st: &mut State) -> Next {
        if st.dsq <= 1e-3 * st.xoptsq {
            self.shift_base(st.xoptsq);
            st.xoptsq = 0.0;
        }
        if st.ntrits == 0 {
            Next::Geometry
        } else {
            Next::Denominator
        }
    }

    /// Powell's RESCUE: recompute H from the current points, about xopt.
    fn rescue(&mut self, st: &mut State) -> Next {
        st.nfsav = st.nf;
        st.kbase = st.kopt;
        if st.xoptsq > 0.0 {
            self.shift_base(st.xoptsq);
            st.xoptsq = 0.0;
        }
        if !self.recompute_h() {
            st.status = BobyqaStatus::RoundoffLimited;
            return Next::Finish;
        }
        st.nresc = st.nf;
        if st.ntrits > 0 {
            Next::TrustRegion
        } else {
            Next::Geometry
        }
    }

    /// A geometry step for point knew.
    fn geometry(&mut self, st: &mut State) -> Next {
        let (a, c) = self.geometry_step(st.kopt, st.knew, st.adelt);
        st.alpha = a;
        st.cauchy = c;
        for i in 0..self.n {
            self.d[i] = self.xnew[i] - self.xopt[i];
        }
        Next::Denominator
    }

    /// The Lagrange values and the denominator for the step d; after a trust-region step,
    /// the point to replace.
    fn denominator(&mut self, st: &mut State) -> Next {
        let n = self.n;
        let (b, dsq_d) = self.lagrange_and_beta(st.kopt, st.xoptsq);
        st.beta = b;
        st.dsq = dsq_d;
        if st.ntrits == 0 {
            let vk = self.vlag[st.knew];
            st.denom = vk * vk + st.alpha * st.beta;
            if st.denom < st.cauchy && st.cauchy > 0.0 {
                for i in 0..n {
                    self.xnew[i] = self.xalt[i];
                    self.d[i] = self.xnew[i] - self.xopt[i];
                }
                st.cauchy = 0.0;
                return Next::Denominator;
            }
            if st.denom <= 0.5 * vk * vk {
                return Self::rescue_or_stop(st);
            }
        } else {
            // The point to replace: a large denominator, weighted towards points far from
            // xopt.
            let (k, den, scaden, biglsq) =
                self.point_to_replace(st.beta, st.delta * st.delta, st.kopt, false);
            st.knew = k;
            if k != NONE {
                st.denom = den;
            }
            if scaden <= 0.5 * biglsq {
                return Self::rescue_or_stop(st);
            }
        }
        Next::Evaluate
    }

    /// A damaged denominator: rescue, unless nothing was evaluated since the last rescue.
    fn rescue_or_stop(st: &mut State) -> Next {
        if st.nf > st.nresc {
            Next::Rescue
        } else {
            st.status = BobyqaStatus::RoundoffLimited;
            Next::Finish
        }
    }

    /// Evaluates f at xbase + xnew, updates the radius after a trust-region step and the
    /// point to replace, then the model.
    fn evaluate<F: FnMut(&[f64]) -> f64>(
        &mut self,
        st: &mut State,
        f: &mut F,
        xl: &[f64],
        xu: &[f64],
        options: &BobyqaOptions,
    ) -> Next {
        let n = self.n;
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
        if st.nf >= options.max_eval {
            st.status = BobyqaStatus::MaxEvalReached;
            return Next::Finish;
        }
        if crate::exec::interrupted() {
            st.status = BobyqaStatus::Interrupted;
            return Next::Finish;
        }
        st.nf += 1;
        let fx = moderate(f(&self.x));
        if st.ntrits == -1 {
            // The final short step.
            st.status = BobyqaStatus::XtolReached;
            if fx < self.fval[st.kopt] {
                st.short_step = Some(fx);
            }
            return Next::Finish;
        }
        let fopt = self.fval[st.kopt];
        // The model's prediction of the change, and its error.
        let vquad = self.predicted_change();
        let diff = fx - fopt - vquad;
        st.diffc = st.diffb;
        st.diffb = st.diffa;
        st.diffa = diff.abs();
        if st.dnorm > st.rho {
            st.nfsav = st.nf;
        }
        if st.ntrits > 0 {
            if vquad >= 0.0 {
                // A trust-region step failed to reduce the model.
                st.status = BobyqaStatus::RoundoffLimited;
                return Next::Finish;
            }
            self.new_radius(st, fx, fopt, vquad);
        }
        self.update_model(st, fx, fopt, vquad, diff, options)
    }

    /// After a trust-region step: the new radius from the ratio of the actual reduction to
    /// the predicted one, and, when f fell, the point to replace chosen again about xnew.
    fn new_radius(&mut self, st: &mut State, fx: f64, fopt: f64, vquad: f64) {
        st.ratio = (fx - fopt) / vquad;
        if st.ratio <= 0.1 {
            st.delta = (0.5 * st.delta).min(st.dnorm);
        } else if st.ratio <= 0.7 {
            st.delta = (0.5 * st.delta).max(st.dnorm);
        } else {
            st.delta = (0.5 * st.delta).max(st.dnorm + st.dnorm);
        }
        if st.delta <= 1.5 * st.rho {
            st.delta = st.rho;
        }
        if fx < fopt {
            // Choose the point to replace again, with xnew as the centre.
            let ksav = st.knew;
            let densav = st.denom;
            let (k, den, scaden, biglsq) =
                self.point_to_replace(st.beta, st.delta * st.delta, NONE, true);
            st.knew = k;
            if k != NONE {
                st.denom = den;
            }
            if scaden <= 0.5 * biglsq {
                st.knew = ksav;
                st.denom = densav;
            }
        }
    }

    /// Replaces point knew by xnew: H, the model, the best point; then where to go next.
    fn update_model(
        &mut self,
        st: &mut State,
        fx: f64,
        fopt: f64,
        vquad: f64,
        diff: f64,
        options: &BobyqaOptions,
    ) -> Next {
        self.update(st.knew, st.beta, st.denom);
        if !self.absorb_new_point(st.knew, fx, diff) {
            st.status = BobyqaStatus::RoundoffLimited;
            return Next::Finish;
        }
        if fx < fopt {
            st.kopt = st.knew;
            self.xopt.copy_from_slice(&self.xnew);
            st.xoptsq = dot(&self.xopt, &self.xopt);
            let dcopy = std::mem::take(&mut self.d);
            self.add_hessian_times(&dcopy, true);
            self.d = dcopy;
            if ftol_stop(fopt, fx, options.ftol_rel, options.ftol_abs) {
                st.status = BobyqaStatus::FtolReached;
                return Next::Finish;
            }
        }
        if st.ntrits > 0 {
            self.maybe_replace_model(st.kopt, &mut st.itest);
        }
        if st.ntrits == 0 || fx <= fopt + 0.1 * vquad {
            return Next::TrustRegion;
        }
        st.distsq = (2.0 * st.delta * (2.0 * st.delta)).max(10.0 * st.rho * (10.0 * st.rho));
        Next::FarPoint
    }

    /// Looks for an interpolation point far from xopt, to move by a geometry step.
    fn far_point(&mut self, st: &mut State) -> Next {
        st.knew = NONE;
        for k in 0..self.npt {
            let sum = self.dist_sq_to(k, false);
            if sum > st.distsq {
                st.knew = k;
                st.distsq = sum;
            }
        }
        if st.knew != NONE {
            let dist = st.distsq.sqrt();
            if st.ntrits == -1 {
                st.delta = (0.1 * st.delta).min(0.5 * dist);
                if st.delta <= 1.5 * st.rho {
                    st.delta = st.rho;
                }
            }
            st.ntrits = 0;
            st.adelt = (0.1 * dist).min(st.delta).max(st.rho);
            st.dsq = st.adelt * st.adelt;
            return Next::MaybeShift;
        }
        if st.ntrits == -1 {
            Next::ReduceRho
        } else if st.ratio > 0.0 || st.delta.max(st.dnorm) > st.rho {
            Next::TrustRegion
        } else {
            Next::ReduceRho
        }
    }

    /// Reduces rho, or stops (after evaluating a pending short step).
    fn reduce_rho(st: &mut State, rhoend: f64) -> Next {
        if st.rho > rhoend {
            st.delta = 0.5 * st.rho;
            st.ratio = st.rho / rhoend;
            st.rho = if st.ratio <= 16.0 {
                rhoend
            } else if st.ratio <= 250.0 {
                st.ratio.sqrt() * rhoend
            } else {
                0.1 * st.rho
            };
            st.delta = st.delta.max(st.rho);
            st.ntrits = 0;
            st.nfsav = st.nf;
            return Next::TrustRegion;
        }
        if st.ntrits == -1 {
            // Evaluate the short step before stopping.
            return Next::Evaluate;
        }
        st.status = BobyqaStatus::XtolReached;
        Next::Finish
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
