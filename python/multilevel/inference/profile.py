"""Likelihood profiles and profile-based confidence intervals (lme4's ``profile``/``confint``).

For one parameter psi (a standard deviation, a correlation, sigma or a fixed effect) the
profile is zeta(psi) = sign(psi - psi_hat) sqrt(d(psi) - d_hat), with d(psi) the deviance
minimised over all other parameters while psi is held fixed, and d_hat the minimum (Bates et
al. 2015, section 5.1). As lme4, a REML fit is profiled through the ML deviance (its
intervals are those of the ML fit). A 95% interval is where |zeta| <= 1.96; here its ends are
found as roots of zeta(psi) -/+ 1.96 (lme4 interpolates a spline through a grid of zeta
values, which gives the same ends to about 1e-4).

Variance parameters are held on lme4's scale (standard deviations, correlations, sigma); the
others are optimised over on that scale, with beta at its conditional estimate. A fixed effect
beta_j is held at b by profiling beta_(-j) out analytically: at theta,
pwrss_j(b) = pwrss + (b - beta_hat_j)^2 / V_jj with V = (R_X' R_X)^-1, so
d_j(b, theta) = ldL2 + n (1 + log(2 pi pwrss_j(b) / n)), minimised over theta; zeta is measured
from d_j's own minimum at beta_hat_j (the fit's deviance up to the optimiser's tolerance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import FitError
from multilevel.inference import derivatives, varcomp
from multilevel.inference.varpar import VarparModel


def _chol_psd(S: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where singular)."""
    q = S.shape[0]
    L = np.zeros_like(S)
    for j in range(q):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-300:
            continue
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, q):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def _minimize(
    fun, x0: np.ndarray, bounds: list[tuple[float, float]], step: float = 1e-7
) -> tuple[float, np.ndarray]:
    """L-BFGS-B with central-difference gradients computed here, in one pass per point (scipy's
    own differencing costs far more than the deviance, which takes microseconds); ``step`` is
    the relative difference step."""
    from scipy import optimize

    lo = np.array([b[0] for b in bounds], dtype=float)
    hi = np.array([b[1] for b in bounds], dtype=float)

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        f0 = fun(x)
        g = np.empty_like(x)
        for i in range(x.size):
            h = step * max(1.0, abs(x[i]))
            up, dn = min(x[i] + h, hi[i]), max(x[i] - h, lo[i])
            xu, xd = x.copy(), x.copy()
            xu[i], xd[i] = up, dn
            g[i] = (fun(xu) - fun(xd)) / (up - dn)
        return f0, g

    r = optimize.minimize(
        fg,
        np.clip(x0, lo, hi),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-13, "gtol": 1e-7, "maxiter": 500},
    )
    return float(r.fun), r.x


@dataclass
class Trace:
    """A profile: values of the parameter and zeta there (sorted by value)."""

    name: str
    values: np.ndarray
    zeta: np.ndarray


def theta_of_sdcor(layouts: list, v: np.ndarray, sigma: float = 1.0) -> list[float]:
    """theta from lme4's sd/cor parameters of each term (the terms' ``term_layout``s):
    Lambda_k = chol(Sigma_k) / sigma, in closed form for one and two columns."""
    theta: list[float] = []
    pos = 0
    for layout in layouts:
        k = len(layout)
        x = v[pos : pos + k]
        pos += k
        if k == 1 or all(i == j for i, j in layout):  # standard deviations only
            theta.extend(float(a) / sigma for a in x)
        elif k == 3:  # (sd1, cor, sd2): the 2 x 2 factor in closed form
            s1, r, s2 = float(x[0]), float(x[1]), float(x[2])
            if s1 > 0:
                theta += [s1 / sigma, r * s2 / sigma, s2 * math.sqrt(max(1.0 - r * r, 0.0)) / sigma]
            else:
                theta += [0.0, 0.0, s2 / sigma]
        else:
            q = max(i for i, _ in layout) + 1
            sds = {i: x[n] for n, (i, j) in enumerate(layout) if i == j}
            S = np.zeros((q, q))
            for (i, j), a in zip(layout, x):
                S[i, j] = S[j, i] = sds[i] ** 2 if i == j else a * sds[i] * sds[j]
            L = _chol_psd(S) / sigma
            theta.extend(L[i, j] for i, j in layout)
    return theta


class _Search:
    """The search for interval ends along a profile, shared by the LMM and GLMM profilers.

    A subclass provides ``names``, ``_psi(k)`` (the estimate), ``_bound(k)``, ``_guess(k, z)``,
    ``zeta(k, value, start)`` and ``_done()`` (called when a search is over).
    """

    names: list[str]

    def _psi(self, k: int) -> float:
        raise NotImplementedError

    def _bound(self, k: int) -> tuple[float, float]:
        raise NotImplementedError

    def _guess(self, k: int, z: float) -> float:
        raise NotImplementedError

    def zeta(self, k: int, value: float, start: Any = None) -> tuple[float, Any]:
        raise NotImplementedError

    def _done(self) -> None:
        return None

    def limit(self, k: int, z: float, tol: float = 1e-7) -> float:
        """The value where zeta = z (z < 0: below the estimate), or the parameter's bound.

        zeta is close to linear in the parameter, so a safeguarded secant search from the
        estimate finds the root in a few profile points; each inner optimisation starts where
        the previous one ended.
        """
        psi = self._psi(k)
        lo, hi = self._bound(k)
        a, za, start = psi, 0.0, None  # bracket end with zeta on the estimate's side
        x = self._guess(k, z)
        for _ in range(100):
            x = min(max(x, lo), hi)
            zx, start = self.zeta(k, x, start)
            if abs(zx - z) < tol or (zx - z) * (za - z) <= 0:
                break
            if x in (lo, hi):
                return float(x)
            # Secant through the estimate side; at least double the distance when it stalls.
            nxt = x + (z - zx) * (x - a) / (zx - za) if zx != za else x + (x - a)
            a, za = x, zx
            x = nxt if abs(nxt - psi) >= abs(x - psi) else psi + 2 * (x - psi)
        else:
            raise FitError(f"the profile of {self.names[k]} did not reach zeta = {z:.3g}")
        if abs(zx - z) < tol:
            return float(x)
        b, zb = x, zx
        # Secant-bisection (Illinois) inside the bracket [a, b].
        for _ in range(100):
            m = b - (zb - z) * (b - a) / (zb - za)
            zm, start = self.zeta(k, m, start)
            if abs(zm - z) < tol or abs(b - a) < tol * max(1.0, abs(m)):
                return float(m)
            if (zm - z) * (zb - z) < 0:
                a, za = b, zb
            else:
                za = z + (za - z) / 2.0
            b, zb = m, zm
        return float(b)

    def _indices(self, parm: list[str] | None) -> list[int]:
        names = self.names if parm is None else list(parm)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise KeyError(f"unknown parameters {unknown}; the fit has {self.names}")
        return [self.names.index(n) for n in names]

    def confint(self, level: float = 0.95, parm: list[str] | None = None) -> pd.DataFrame:
        from scipy import stats

        z = stats.norm.ppf(0.5 + level / 2.0)
        ks = self._indices(parm)
        rows = [(self.limit(k, -z), self.limit(k, z)) for k in ks]
        self._done()
        pct = [f"{100 * (0.5 - level / 2):.3g} %", f"{100 * (0.5 + level / 2):.3g} %"]
        index = pd.Index([self.names[k] for k in ks], name="parameter")
        return pd.DataFrame(rows, index=index, columns=pct)

    def traces(self, parm: list[str] | None = None, level: float = 0.99, points: int = 8) -> dict:
        """Profile traces: per parameter, values from the lower to the upper end at ``level``
        (``points`` on each side of the estimate, the estimate included) and zeta there."""
        from scipy import stats

        zmax = stats.norm.ppf(0.5 + level / 2.0)
        out = {}
        for k in self._indices(parm):
            lo, hi, psi = self.limit(k, -zmax), self.limit(k, zmax), self._psi(k)
            values = np.unique(
                np.concatenate([np.linspace(lo, psi, points), np.linspace(psi, hi, points)])
            )
            out[self.names[k]] = Trace(
                self.names[k], values, np.array([self.zeta(k, v)[0] for v in values])
            )
        self._done()
        return out


class Profiler(_Search):
    """Profiles of every parameter of a fitted linear mixed model."""

    def __init__(self, fit: Any):
        # lme4 profiles the ML deviance, also for a REML fit (its intervals are the ML fit's).
        fit = fit.refit_ml() if fit.reml else fit
        self.fit = fit
        self.model = VarparModel.of(fit)
        self.params = varcomp.params(fit)
        self.hat = varcomp.sdcor(fit, self.model.varpar, "sd")
        self.d_hat = self.model.deviance(self.model.varpar)
        self.theta_hat = np.asarray(fit.theta, dtype=float)
        self.beta_hat = np.asarray(fit.beta, dtype=float)
        self.names = [p.name for p in self.params] + list(fit.fixef.index)
        self._bases: dict[int, float] = {}
        self._layouts = [varcomp.term_layout(t) for t in fit.design.terms]
        self._se: np.ndarray | None = None  # delta-method SEs of the variance parameters

    # -- variance parameters -------------------------------------------------------------
    def _varpar(self, v: np.ndarray) -> np.ndarray:
        """(theta, sigma) from lme4's sd/cor vector v (Lambda_k = chol(Sigma_k) / sigma)."""
        sigma = float(v[-1])
        return np.array([*theta_of_sdcor(self._layouts, v[:-1], sigma), sigma])

    def _bounds(self) -> list[tuple[float, float]]:
        out = []
        for p in self.params:
            out.append((-1.0, 1.0) if p.kind == "cor" else (0.0, np.inf))
        return out

    def _var_deviance(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        free = [i for i in range(len(self.hat)) if i != k]
        bounds = [self._bounds()[i] for i in free]
        bounds[-1] = (1e-6 * self.hat[-1], np.inf)  # sigma > 0

        def dev(x: np.ndarray) -> float:
            v = np.empty(len(self.hat))
            v[free] = x
            v[k] = value
            try:
                return self.model.deviance(self._varpar(v))
            except FitError:  # a factor that fails far from the optimum: not a minimum
                return self.d_hat + 1e6

        fun, x = _minimize(dev, start[free], bounds)
        v = np.empty(len(self.hat))
        v[free] = x
        v[k] = value
        return fun, v

    # -- fixed effects -------------------------------------------------------------------
    def _fixed_deviance(self, j: int, b: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        n = self.model.nobs
        lower = np.asarray(self.fit.problem.lower, dtype=float)

        def dev(theta: np.ndarray) -> float:
            try:
                s = self.fit.problem.solution(theta.tolist(), False)
            except FitError:
                return self.d_hat + 1e6
            V = np.asarray(s.vcov_unscaled, dtype=float)
            beta = np.asarray(s.beta, dtype=float)
            pw = float(s.pwrss) + (b - beta[j]) ** 2 / V[j, j]
            return float(s.ld_l2) + n * (1.0 + math.log(2.0 * math.pi * pw / n))

        return _minimize(dev, start, [(lo, np.inf) for lo in lower])

    # -- zeta and intervals --------------------------------------------------------------
    def zeta(self, k: int, value: float, start: np.ndarray | None = None) -> tuple[float, Any]:
        """zeta of parameter k (variance parameters first, then fixed effects) at value."""
        nv = len(self.hat)
        if k < nv:
            d, at = self._var_deviance(k, value, self.hat if start is None else start)
            psi_hat = self.hat[k]
            base = self.d_hat
        else:
            j = k - nv
            d, at = self._fixed_deviance(j, value, self.theta_hat if start is None else start)
            psi_hat = self.beta_hat[j]
            base = self._fixed_base(j)
        return math.copysign(math.sqrt(max(d - base, 0.0)), value - psi_hat), at

    def _fixed_base(self, j: int) -> float:
        """The minimum of d_j, at beta_hat_j: the fit's deviance, reached by the same inner
        optimiser as the other profile points (so that zeta is 0 there exactly)."""
        if j not in self._bases:
            self._bases[j] = self._fixed_deviance(j, self.beta_hat[j], self.theta_hat)[0]
        return self._bases[j]

    def _bound(self, k: int) -> tuple[float, float]:
        if k >= len(self.hat):
            return -np.inf, np.inf
        return (-1.0, 1.0) if self.params[k].kind == "cor" else (0.0, np.inf)

    def _step(self, k: int) -> float:
        """A first step away from the estimate: the Wald standard error where there is one."""
        nv = len(self.hat)
        if k >= nv:
            return float(np.sqrt(self.fit.vcov_model.to_numpy()[k - nv, k - nv]))
        return max(abs(self.hat[k]) * 0.2, 1e-2)

    def _guess(self, k: int, z: float) -> float:
        """Where zeta = z by the quadratic approximation, on the scale where the profile is
        closest to linear: log for standard deviations, atanh for correlations, the parameter
        itself for fixed effects (the delta-method intervals of ``varcomp``)."""
        nv = len(self.hat)
        psi = self.hat[k] if k < nv else self.beta_hat[k - nv]
        if k >= nv:
            return psi + z * self._step(k)
        if self._se is None:
            J = derivatives.jacobian(
                lambda v: varcomp.sdcor(self.fit, v, "sd"), self.model.varpar, d=1e-6, eps=1e-7, r=2
            )
            cov = J @ self.model.vcov_varpar @ J.T
            self._se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            self.model.restore()
        se = self._se[k]
        kind = self.params[k].kind
        if not np.isfinite(se) or se <= 0:
            return psi + z * self._step(k)
        if kind == "cor":
            if abs(psi) >= 1:
                return psi + z * self._step(k)
            return math.tanh(math.atanh(psi) + z * se / (1.0 - psi * psi))
        return psi * math.exp(z * se / psi) if psi > 0 else psi + z * self._step(k)

    def _psi(self, k: int) -> float:
        nv = len(self.hat)
        return float(self.hat[k] if k < nv else self.beta_hat[k - nv])

    def _done(self) -> None:
        self.model.restore()


class GlmerProfiler(_Search):
    """Profiles of a glmer fit's parameters over its Laplace (or AGQ) deviance, as lme4's
    ``profile`` of a glmerMod: the standard deviations and correlations of the random effects
    (sigma = 1) and each fixed effect; every other parameter (the other sd/cor values and all
    fixed effects) is optimised over at each point. zeta is measured from the minimum of the
    deviance over all parameters (the fit's objective, or lower when the search finds lower).
    """

    def __init__(self, fit: Any):
        if fit.family.has_dispersion:
            raise ValueError(
                f"profiles of glmer fits with a dispersion parameter ({fit.family.name}) are "
                f"not available (lme4: can't profile GLMMs with non-fixed scale parameters)"
            )
        if fit.nagq == 0:
            raise ValueError("profiles need a fit with nagq >= 1 (the nagq = 0 stage fixes beta)")
        self.fit = fit
        self.problem = fit.problem
        self.params = varcomp.params(fit)[:-1]  # no sigma
        self._layouts = [varcomp.term_layout(t) for t in fit.design.terms]
        self.nv = len(self.params)
        sd = varcomp.sdcor(fit, np.append(np.asarray(fit.theta, float), 1.0), "sd")[:-1]
        self.x_hat = np.concatenate([sd, np.asarray(fit.fixef, float)])
        self.names = [p.name for p in self.params] + list(fit.fixef.index)
        self.bounds = [(-1.0, 1.0) if p.kind == "cor" else (0.0, np.inf) for p in self.params]
        self.bounds += [(-np.inf, np.inf)] * (len(self.x_hat) - self.nv)
        self.d_hat = min(float(fit.objective), _minimize(self.deviance, self.x_hat, self.bounds)[0])
        self._se: np.ndarray | None = None

    def deviance(self, x: np.ndarray) -> float:
        theta = theta_of_sdcor(self._layouts, x[: self.nv])
        try:
            return float(
                self.problem.objective(theta, [float(b) for b in x[self.nv :]], self.fit.nagq)
            )
        except FitError:  # PIRLS failing far from the optimum: not a minimum
            return self.d_hat + 1e6

    def _psi(self, k: int) -> float:
        return float(self.x_hat[k])

    def _bound(self, k: int) -> tuple[float, float]:
        return self.bounds[k]

    def zeta(self, k: int, value: float, start: Any = None) -> tuple[float, Any]:
        free = [i for i in range(len(self.x_hat)) if i != k]
        x = self.x_hat.copy() if start is None else np.asarray(start, float).copy()

        def dev(y: np.ndarray) -> float:
            x[free] = y
            x[k] = value
            return self.deviance(x)

        d, y = _minimize(dev, x[free], [self.bounds[i] for i in free], step=1e-6)
        at = x.copy()
        at[free], at[k] = y, value
        if d < self.d_hat:  # a lower deviance than the fit's: measure from it
            self.d_hat = d
        return math.copysign(math.sqrt(max(d - self.d_hat, 0.0)), value - self._psi(k)), at

    def _guess(self, k: int, z: float) -> float:
        """zeta = z by the quadratic approximation: the Wald interval (log scale for
        standard deviations, atanh for correlations) from the covariance 2 H^-1 of (theta,
        beta), with H the fit's Hessian of the deviance."""
        psi = self._psi(k)
        if self._se is None:
            nt = len(self.fit.theta)
            try:
                cov = 2.0 * np.linalg.inv(np.asarray(self.fit._res.hessian, float))
            except np.linalg.LinAlgError:
                cov = np.full((len(self.x_hat),) * 2, np.nan)
            th = np.asarray(self.fit.theta, float)
            J = np.zeros((self.nv, nt))
            for i in range(nt):
                e = np.zeros(nt)
                e[i] = 1e-6
                up = varcomp.sdcor(self.fit, np.append(th + e, 1.0), "sd")[:-1]
                dn = varcomp.sdcor(self.fit, np.append(th - e, 1.0), "sd")[:-1]
                J[:, i] = (up - dn) / 2e-6
            se_v = np.sqrt(np.abs(np.diag(J @ cov[:nt, :nt] @ J.T)))
            self._se = np.concatenate([se_v, np.asarray(self.fit.se, float)])
        se = float(self._se[k])
        if not np.isfinite(se) or se <= 0:
            se = max(abs(psi) * 0.2, 1e-2)
        if k >= self.nv:
            return psi + z * se
        if self.params[k].kind == "cor":
            if abs(psi) >= 1:
                return psi - math.copysign(0.1, psi)
            return math.tanh(math.atanh(psi) + z * se / (1.0 - psi * psi))
        return psi * math.exp(z * se / psi) if psi > 0 else psi + abs(z) * se
