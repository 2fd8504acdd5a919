"""``glmer`` on streamed data: PIRLS whose every reweighting is one pass over the batches.

The in-memory GLMM (``_core.GlmmProblem``) keeps the rows; a stream cannot. Here the rows are
the spilled batches of :mod:`multilevel.design.stream_glmm`, and each PIRLS iteration is one
pass over them (:meth:`StreamedGlmm.sweep`): the linear predictor from (beta, b), mu, the
deviance, and the working weights and response added into the LMM's ``Accumulator``, whose
solution at theta is the penalised weighted least-squares step (beta and u jointly for the
nAGQ = 0 stage, u alone at fixed beta for the Laplace and AGQ stage) and whose
``ld_l2`` is log det L^2 at the weights of the mode. The algorithm is the core's
(``rust/src/glmm/pirls.rs``, ``fit.rs``): the same step halving, step tolerances, two
BOBYQA stages (``_core.bobyqa`` runs the core's optimiser on this objective), the same
finite-difference Hessian; so the estimates are those of the in-memory fit of the same rows
to the optimiser's tolerance.

Passes: the GLM start takes up to 25 (over X only), each objective evaluation a few (one per
PIRLS iteration, warm-started from the previous mode), AGQ two more per evaluation. nAGQ = 0
needs only stage 1 (tens of evaluations); nAGQ >= 1 adds stage 2 and its Hessian (2 n^2 + 1
evaluations for n = theta + beta parameters). ``fit.passes`` counts them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from multilevel import families as fm
from multilevel.design.stream_glmm import StreamedGlmmRows
from multilevel.exceptions import FitError

__all__ = ["StreamedGlmm"]

STEP_TOL_SEARCH = 1e-8  # canonical links while the optimiser searches (pirls.rs)
STEP_TOL_TIGHT = 1e-10
SMALL_STEP = 1e-6
MAX_ITER = 200
MAX_HALVINGS = 40
FD_STEP = 1e-4  # lme4's deriv12


def _canonical(fam: fm.Family) -> bool:
    return (fam.name, fam.link.name) in {("binomial", "logit"), ("poisson", "log")}


def _lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """A term's q x q lower-triangular Lambda from its share of theta (columns of the lower
    triangle)."""
    lam = np.zeros((q, q))
    k = 0
    for j in range(q):
        for i in range(j, q):
            lam[i, j] = theta[k]
            k += 1
    return lam


class StreamedGlmm:
    """The GLMM objective over spilled batches; the state (beta, u) warm-starts PIRLS."""

    def __init__(self, rows: StreamedGlmmRows, fam: fm.Family, threads: int = 0, bar: Any = None):
        self.rows, self.fam, self.threads = rows, fam, threads
        self.bar = bar  # a tqdm bar counting the passes, or None
        plan = rows.plan
        self.order = list(plan.order)
        self.n_levels = [len(plan.term_levels[k]) for k in self.order]
        self.q = [plan.z_q[k] for k in self.order]
        self.keep = None if len(rows.keep) == len(rows.x_names) else rows.keep
        self.p = len(rows.keep)
        self.n_theta = sum(q * (q + 1) // 2 for q in self.q)
        self.step_tol = STEP_TOL_SEARCH if _canonical(fam) else STEP_TOL_TIGHT
        self.passes = 0
        self.beta = np.zeros(self.p)
        self.u = [np.zeros((n, q)) for n, q in zip(self.n_levels, self.q, strict=True)]
        self._constants()

    # -- passes ---------------------------------------------------------------------------
    def count_pass(self) -> None:
        self.passes += 1
        if self.bar is not None:
            self.bar.update(1)

    def _batches(self):
        for a in self.rows:
            X = a["X"] if self.keep is None else np.asfortranarray(a["X"][:, self.keep])
            terms = [(a[f"codes{k}"], a[f"Z{k}"]) for k in self.order]
            yield a, X, terms

    def _constants(self) -> None:
        """What the aic needs besides the deviance: for the families without a dispersion,
        aic(mu) - dev(mu), which does not depend on mu (one pass at the start values); for
        Gamma and the inverse Gaussian, sum wt and sum wt log y."""
        self.count_pass()
        fam = self.fam
        self._aic_minus_dev = 0.0
        self._sum_w = self._sum_w_logy = 0.0
        for a, _, _ in self._batches():
            y, pw, mu = np.asarray(a["y"]), np.asarray(a["pw"]), np.asarray(a["mustart"])
            if fam.has_dispersion:
                self._sum_w += float(pw.sum())
                self._sum_w_logy += float(np.sum(pw * np.log(y)))
            else:
                dev = float(np.sum(fam.dev_resids(y, mu, pw)))
                self._aic_minus_dev += fam.aic(y, pw, mu, pw, dev) - dev

    def aic(self, dev: float, sums: np.ndarray) -> float:
        """R's family$aic from the deviance and a pass's sums (sum wt log mu, sum wt y/mu)."""
        fam = self.fam
        if not fam.has_dispersion:
            return dev + self._aic_minus_dev
        w, lw = self._sum_w, self._sum_w_logy
        if fam.name == "Gamma":
            disp = dev / w
            shape = 1.0 / disp
            loglik = (
                (shape - 1.0) * lw
                - sums[1] / disp
                - math.lgamma(shape) * w
                - shape * (sums[0] + math.log(disp) * w)
            )
            return -2.0 * loglik + 2.0
        return w * (1.0 + math.log(dev / w * 2.0 * math.pi)) + 3.0 * lw + 2.0

    def sweep(self, beta: np.ndarray, b: list[np.ndarray], mode: str | None):
        """One pass at (beta, b): the deviance, the sums the aic and sigma need
        (sum wt log mu, sum wt y / mu, sum of squared Pearson residuals), and with ``mode``
        ("joint" or "u") the accumulator of the working response at these weights."""
        from multilevel import _core

        self.count_pass()
        fam = self.fam
        acc = None
        if mode is not None:
            acc = _core.Accumulator(
                self.n_levels, self.q, self.p if mode == "joint" else 0, threads=self.threads
            )
        dev = 0.0
        sums = np.zeros(3)
        code = {None: 0, "joint": 1, "u": 2}[mode]
        beta_list = [float(v) for v in beta]
        for a, X, terms in self._batches():
            y = a["y"]
            zw, d, s = _core.glmm_working(
                y,
                a["pw"],
                a["o"],
                X,
                beta_list,
                [(c, Z, bk) for (c, Z), bk in zip(terms, b, strict=True)],
                fam.name,
                fam.link.name,
                getattr(fam, "theta", None),
                code,
                self.threads,
            )
            dev += d
            sums += s
            if acc is not None:
                z, w = zw
                Xm = X if mode == "joint" else np.empty((len(y), 0), order="F")
                acc.add(z, Xm, terms, weights=w)
        return dev, sums, acc

    # -- PIRLS ------------------------------------------------------------------------------
    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        out, k = [], 0
        for q in self.q:
            m = q * (q + 1) // 2
            out.append(_lambda(theta[k : k + m], q))
            k += m
        return out

    def pirls(self, theta: np.ndarray, beta: np.ndarray | None) -> dict[str, Any]:
        """The conditional modes at theta (u alone at ``beta``, or beta and u jointly from
        the current beta with ``None``); the state at the mode."""
        joint = beta is None
        mode = "joint" if joint else "u"
        theta = np.asarray(theta, float)
        beta = self.beta.copy() if joint else np.asarray(beta, float)
        lams = self.lambdas(theta)
        u = [uk.copy() for uk in self.u]
        b = [uk @ lam.T for uk, lam in zip(u, lams, strict=True)]
        dev, sums, acc = self.sweep(beta, b, mode)
        pdev = dev + sum(float(np.sum(uk * uk)) for uk in u)
        if not math.isfinite(pdev):  # a warm start that does not fit this theta
            u = [np.zeros_like(uk) for uk in u]
            b = [np.zeros_like(uk) for uk in u]
            dev, sums, acc = self.sweep(beta, b, mode)
            pdev = dev
        for _ in range(MAX_ITER):
            sol = acc.problem().solution(list(theta), False)
            beta_new = np.asarray(sol.beta) if joint else beta
            u_new = [np.asarray(x).reshape(uk.shape) for x, uk in zip(sol.u, u, strict=True)]
            b_new = [np.asarray(x).reshape(uk.shape) for x, uk in zip(sol.b, u, strict=True)]
            step_b = beta_new - beta
            step_u = [a - c for a, c in zip(u_new, u, strict=True)]
            step_bb = [a - c for a, c in zip(b_new, b, strict=True)]
            max_step = max(
                (float(np.max(np.abs(s))) for s in [step_b, *step_u] if s.size), default=0.0
            )
            whole = max_step < SMALL_STEP
            fac = 1.0
            for _ in range(MAX_HALVINGS):
                beta_t = beta + fac * step_b
                u_t = [a + fac * s for a, s in zip(u, step_u, strict=True)]
                b_t = [a + fac * s for a, s in zip(b, step_bb, strict=True)]
                dev_t, sums_t, acc_t = self.sweep(beta_t, b_t, mode)
                pd_t = dev_t + sum(float(np.sum(uk * uk)) for uk in u_t)
                if whole or (math.isfinite(pd_t) and pd_t <= pdev * (1.0 + 1e-15)):
                    break
                fac /= 2.0
            else:
                raise FitError("PIRLS: step halving failed to reduce the penalised deviance")
            beta, u, b, acc, dev, sums, pdev = beta_t, u_t, b_t, acc_t, dev_t, sums_t, pd_t
            if max_step * fac < self.step_tol:
                break
        else:
            raise FitError(f"PIRLS did not converge in {MAX_ITER} iterations")
        self.u = u
        if joint:
            self.beta = beta
        sol = acc.problem().solution(list(theta), False)  # the factor at the mode's weights
        sqr_u = sum(float(np.sum(uk * uk)) for uk in u)
        return {
            "theta": theta, "beta": beta, "u": u, "b": b, "dev": dev, "sums": sums,
            "acc": acc, "sol": sol, "sqr_u": sqr_u, "ld_l2": float(sol.ld_l2),
        }  # fmt: skip

    # -- objectives -------------------------------------------------------------------------
    def laplace(self, s: dict[str, Any]) -> float:
        return s["ld_l2"] + s["sqr_u"] + self.aic(s["dev"], s["sums"])

    def agq(self, s: dict[str, Any], nagq: int) -> float:
        """Adaptive Gauss-Hermite quadrature at the mode (one scalar term): two passes, the
        per-level curvature L_jj^2 and deviance at the mode, then at the nodes."""
        from multilevel.models.glmm_stream_agq import agq_objective

        return agq_objective(self, s, nagq)

    def objective(self, theta, beta, nagq: int) -> float:
        s = self.pirls(np.asarray(theta, float), beta)
        self.state = s
        return self.agq(s, nagq) if nagq > 1 else self.laplace(s)

    # -- the GLM start ----------------------------------------------------------------------
    def glm_start(self, maxit: int = 25) -> np.ndarray:
        """R's glm.fit (IRLS) of the fixed part over the batches, from mustart."""
        fam = self.fam
        coef = np.zeros(self.p)
        dev_old = None
        for it in range(maxit + 1):
            self.count_pass()
            xtwx = np.zeros((self.p, self.p))
            xtwz = np.zeros(self.p)
            dev = 0.0
            for a, X, _ in self._batches():
                y, pw, o = np.asarray(a["y"]), np.asarray(a["pw"]), np.asarray(a["o"])
                eta = fam.linkfun(np.asarray(a["mustart"])) if it == 0 else o + X @ coef
                mu = fam.linkinv(eta)
                dev += float(np.sum(fam.dev_resids(y, mu, pw)))
                if it == maxit:
                    continue
                me = fam.mu_eta(eta)
                good = (pw > 0) & (me != 0)
                w = np.where(good, pw * me * me / np.where(good, fam.variance(mu), 1.0), 0.0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    z = np.where(good, eta - o + (y - mu) / me, 0.0)
                xtwx += X.T @ (X * w[:, None])
                xtwz += X.T @ (w * z)
            if dev_old is not None and abs(dev - dev_old) / (abs(dev) + 0.1) < 1e-8:
                break
            if it == maxit:
                break
            dev_old = dev
            try:
                coef = np.linalg.solve(xtwx, xtwz)
            except np.linalg.LinAlgError as exc:
                raise FitError(f"the GLM start values could not be computed ({exc})") from None
        return coef
