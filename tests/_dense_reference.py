"""A small dense implementation of lme4's profiled objective: a test oracle and a stand-in.

This module writes out, with plain dense NumPy linear algebra, the penalised least-squares
(PLS) formulation of Bates, Maechler, Bolker and Walker (2015), "Fitting Linear Mixed-Effects
Models Using lme4", Journal of Statistical Software 67(1), section 3:

* random effects ``b = Lambda(theta) u`` with ``u ~ N(0, sigma^2 I)``; prior weights ``w``
  scale the rows (``Var(e_i) = sigma^2 / w_i``) and the offset is subtracted from ``y``;
* for a given ``theta`` the sparse Cholesky factor ``L`` of ``Lambda' Z' W Z Lambda + I``,
  the block ``R_ZX`` with ``L R_ZX = Lambda' Z' W X`` and the Cholesky factor ``R_X`` of
  ``X' W X - R_ZX' R_ZX`` give the conditional modes ``u`` and ``beta``;
* ``pwrss = ||W^(1/2) (y - offset - X beta - Z Lambda u)||^2 + ||u||^2``;
* the profiled deviance (ML) is ``log|L|^2 + n (1 + log(2 pi pwrss / n)) - sum(log w)``
  and the REML criterion is
  ``log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi pwrss / (n - p))) - sum(log w)``.

It lives in tests/, out of the wheel. It is meant for small problems only: ``Z`` is built as
a dense n x q matrix. It serves as the
oracle against which the Rust core (``multilevel._core.LmmProblem``) is tested, and as
``DenseLmmProblem``, a class with the same methods and result attributes as the Rust class, so
that the Python layers can be exercised without the compiled core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
from scipy import linalg, optimize

__all__ = ["DenseLmmProblem", "dense_objective"]


def _term_lambda(theta: np.ndarray, q: int, diagonal: bool) -> np.ndarray:
    """The q x q lower-triangular factor of one term from its slice of ``theta``."""
    if diagonal:
        return np.diag(theta)
    lam = np.zeros((q, q))
    k = 0
    for j in range(q):  # column-major lower triangle, as lme4
        for i in range(j, q):
            lam[i, j] = theta[k]
            k += 1
    return lam


def _n_theta(q: int, diagonal: bool) -> int:
    return q if diagonal else q * (q + 1) // 2


class DenseLmmProblem:
    """A dense stand-in for ``multilevel._core.LmmProblem`` (same constructor, methods and
    result attributes; results are ``SimpleNamespace`` objects).

    Parameters
    ----------
    y, X : arrays (n,) and (n, p)
    terms : list of ``(codes, n_levels, Z, diagonal)``; codes int (n,), Z (n, q)
    weights, offset : optional arrays (n,)
    threads : int, ignored (the Rust class's number of threads)
    """

    def __init__(self, y, X, terms, weights=None, offset=None, threads=0):
        self.y = np.asarray(y, dtype=float)
        self.X = np.asarray(X, dtype=float)
        n = self.y.shape[0]
        self.n, self.p = n, self.X.shape[1]
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.offset = None if offset is None else np.asarray(offset, dtype=float)
        w = np.ones(n) if self.weights is None else self.weights
        self.nobs = int(np.count_nonzero(w))
        sw = np.sqrt(w)
        self._sum_log_w = float(np.sum(np.log(w)))
        yo = self.y if self.offset is None else self.y - self.offset
        self._yw = sw * yo
        self._Xw = sw[:, None] * self.X
        # Dense Z: term after term, within a term level after level, q columns per level.
        self._terms = []
        blocks = []
        lower = []
        theta0 = []
        for codes, n_levels, Z, diagonal in terms:
            codes = np.asarray(codes, dtype=np.int64)
            Z = np.asarray(Z, dtype=float).reshape(n, -1)
            q = Z.shape[1]
            n_levels = int(n_levels)
            Zt = np.zeros((n, n_levels * q))
            for c in range(q):
                Zt[np.arange(n), codes * q + c] = Z[:, c]
            blocks.append(sw[:, None] * Zt)
            self._terms.append((q, n_levels, bool(diagonal)))
            if diagonal:
                lower += [0.0] * q
                theta0 += [1.0] * q
            else:
                for j in range(q):
                    for i in range(j, q):
                        lower.append(0.0 if i == j else -np.inf)
                        theta0.append(1.0 if i == j else 0.0)
        self._Zw = np.hstack(blocks) if blocks else np.zeros((n, 0))
        self.lower = np.array(lower)
        self.theta0 = np.array(theta0)
        self.n_theta = len(theta0)

    # ----------------------------------------------------------------------------------
    def lambdas(self, theta) -> list[np.ndarray]:
        """Per term, the q x q lower-triangular factor ``lambda_``."""
        theta = np.asarray(theta, dtype=float)
        out, k = [], 0
        for q, _, diagonal in self._terms:
            m = _n_theta(q, diagonal)
            out.append(_term_lambda(theta[k : k + m], q, diagonal))
            k += m
        if k != theta.shape[0]:
            raise ValueError(f"theta has length {theta.shape[0]}, expected {k}")
        return out

    def _Lambda(self, theta) -> np.ndarray:
        mats = [
            np.kron(np.eye(nl), lam) for lam, (_, nl, _) in zip(self.lambdas(theta), self._terms)
        ]
        return linalg.block_diag(*mats) if mats else np.zeros((0, 0))

    def _solve(self, theta, reml: bool) -> dict:
        Lam = self._Lambda(theta)
        ZL = self._Zw @ Lam
        X, y = self._Xw, self._yw
        n, p = self.n, self.p
        L = linalg.cholesky(ZL.T @ ZL + np.eye(ZL.shape[1]), lower=True)
        RZX = linalg.solve_triangular(L, ZL.T @ X, lower=True)
        RX = linalg.cholesky(X.T @ X - RZX.T @ RZX, lower=True)  # lower: RX RX' = ...
        cu = linalg.solve_triangular(L, ZL.T @ y, lower=True)
        cb = linalg.solve_triangular(RX, X.T @ y - RZX.T @ cu, lower=True)
        beta = linalg.solve_triangular(RX.T, cb, lower=False)
        u = linalg.solve_triangular(L.T, cu - RZX @ beta, lower=False)
        r = y - X @ beta - ZL @ u
        pwrss = float(r @ r + u @ u)
        ldL2 = 2.0 * float(np.sum(np.log(np.diag(L))))
        ldRX2 = 2.0 * float(np.sum(np.log(np.diag(RX))))
        if reml:
            nmp = n - p
            obj = ldL2 + ldRX2 + nmp * (1.0 + math.log(2.0 * math.pi * pwrss / nmp))
            sigma = math.sqrt(pwrss / nmp)
        else:
            obj = ldL2 + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))
            sigma = math.sqrt(pwrss / n)
        obj -= self._sum_log_w
        return {
            "L": L,
            "RX": RX,
            "Lam": Lam,
            "beta": beta,
            "u": u,
            "b": Lam @ u,
            "pwrss": pwrss,
            "ldL2": ldL2,
            "ldRX2": ldRX2,
            "objective": float(obj),
            "sigma": sigma,
        }

    def _split(self, v: np.ndarray) -> list[np.ndarray]:
        out, k = [], 0
        for q, nl, _ in self._terms:
            out.append(v[k : k + q * nl].reshape(nl, q).copy())
            k += q * nl
        return out

    # ----------------------------------------------------------------------------------
    def objective(self, theta, reml: bool) -> float:
        """-2 log-likelihood (ML) or the REML criterion at ``theta``."""
        return self._solve(theta, reml)["objective"]

    def solution(self, theta, reml: bool) -> SimpleNamespace:
        """Estimates at ``theta``; attributes as ``_core.LmmProblem.solution``'s."""
        theta = np.asarray(theta, dtype=float)
        s = self._solve(theta, reml)
        RXinv = linalg.solve_triangular(s["RX"], np.eye(self.p), lower=True)
        return SimpleNamespace(
            theta=theta.copy(),
            beta=s["beta"],
            u=self._split(s["u"]),
            b=self._split(s["b"]),
            sigma=s["sigma"],
            objective=s["objective"],
            pwrss=s["pwrss"],
            ld_l2=s["ldL2"],
            ld_rx2=s["ldRX2"],
            vcov_unscaled=RXinv.T @ RXinv,
            lambda_=self.lambdas(theta),
            nobs=self.nobs,
        )

    def condvar(self, theta) -> list[np.ndarray]:
        """Per term, (n_levels, q, q) blocks of ``Lambda (L L')^-1 Lambda'`` (times sigma^2)."""
        s = self._solve(theta, False)
        Linv = linalg.solve_triangular(s["L"], np.eye(s["L"].shape[0]), lower=True)
        V = s["Lam"] @ (Linv.T @ Linv) @ s["Lam"].T
        out, k = [], 0
        for q, nl, _ in self._terms:
            arr = np.empty((nl, q, q))
            for j in range(nl):
                i0 = k + j * q
                arr[j] = V[i0 : i0 + q, i0 : i0 + q]
            out.append(arr)
            k += q * nl
        return out

    def fit(
        self, reml: bool, theta0: Sequence[float] | None = None, max_fun=None
    ) -> SimpleNamespace:
        """Minimise the objective over theta within its bounds; attributes as the Rust class's."""
        x0 = self.theta0 if theta0 is None else np.asarray(theta0, dtype=float)

        def f(t):
            return self.objective(t, reml)

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in self.lower]
        f0 = f(x0)
        maxiter = 10_000 if max_fun is None else int(max_fun)
        n_eval = 0
        res = optimize.minimize(
            f,
            x0,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxfun": maxiter, "ftol": 1e-15, "gtol": 1e-10},
        )
        n_eval += res.nfev
        best_x, best_f = res.x, res.fun
        nm_bounds = [(lo if np.isfinite(lo) else None, None) for lo in self.lower]
        res2 = optimize.minimize(
            f,
            best_x,
            method="Nelder-Mead",
            bounds=nm_bounds,
            options={"maxfev": maxiter, "xatol": 1e-9, "fatol": 1e-12},
        )
        n_eval += res2.nfev
        if res2.fun < best_f:
            best_x, best_f = res2.x, res2.fun
        best_x = np.maximum(best_x, self.lower)
        out = self.solution(best_x, reml)
        out.optimizer = SimpleNamespace(
            theta0=np.asarray(x0, dtype=float),
            theta=best_x.copy(),
            f0=float(f0),
            f=float(out.objective),
            n_eval=int(n_eval),
            status="converged",
            message="dense reference: L-BFGS-B then Nelder-Mead",
        )
        out.check = self._check(best_x, reml)
        return out

    def _check(self, theta, reml: bool) -> SimpleNamespace:
        """Finite-difference gradient and Hessian at theta; singular if a diagonal is ~0."""
        k = theta.shape[0]
        h = 1e-4

        def f(t):
            return self.objective(t, reml)

        # one-sided steps keep theta inside its bounds
        g = np.zeros(k)
        H = np.zeros((k, k))
        f0 = f(theta)
        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            if theta[i] - h < self.lower[i]:
                g[i] = (f(theta + e) - f0) / h
            else:
                g[i] = (f(theta + e) - f(theta - e)) / (2 * h)
            for j in range(k):
                d = np.zeros(k)
                d[j] = h
                H[i, j] = (f(theta + e + d) - f(theta + e) - f(theta + d) + f0) / h**2
        H = (H + H.T) / 2
        singular = bool(np.any(theta[self.lower == 0] < 1e-4))
        try:
            scaled = linalg.solve(linalg.cholesky(H, lower=False), g)
        except (linalg.LinAlgError, ValueError):
            scaled = g.copy()
        interior = ~((self.lower == 0) & (theta < 1e-4))
        converged = bool(np.all(np.abs(scaled[interior]) < 2e-3)) if interior.any() else True
        return SimpleNamespace(
            gradient=g,
            hessian=H,
            scaled_gradient=scaled,
            converged=converged,
            singular=singular,
            message="dense reference: finite differences",
        )


def dense_objective(y, X, terms, theta, reml: bool, weights=None, offset=None) -> float:
    """The profiled objective (ML deviance or REML criterion) of lme4 at ``theta``, densely."""
    return DenseLmmProblem(y, X, terms, weights, offset).objective(np.asarray(theta, float), reml)
