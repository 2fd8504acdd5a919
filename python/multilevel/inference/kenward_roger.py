"""Kenward and Roger's (1997) small-sample adjustment for the fixed effects.

The marginal covariance is Sigma = sum_i gamma_i G_i over the variance parameters gamma (each
term's covariance entries and sigma^2), with G_i = Z B_i Z' (B_i the pattern of one covariance
entry, repeated over the term's levels) and G = I for sigma^2. With Phi = (X' Sigma^-1 X)^-1,
P_i = -X' Sigma^-1 G_i Sigma^-1 X, Q_ij = X' Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X and
W = 2 I^-1 (I_ij = tr(Sigma^-1 G_i Sigma^-1 G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j), the
REML information), the adjusted covariance is Phi_A = Phi + 2 Phi U Phi with
U = sum_ij W_ij (Q_ij - P_i Phi P_j); a hypothesis L beta = 0 of rank q gets an F statistic
scaled by lambda and m denominator degrees of freedom from the moments A1, A2 (Kenward and
Roger 1997, section 3; pbkrtest's ``vcovAdj`` and ``KRmodcomp``).

pbkrtest forms the n x n matrix Sigma^-1. Here nothing of size n is formed: every product
above lives in the span of U = [Z X], where Sigma^-1 U = U T with T = sigma^-2 (I - E),
E = [Lambda M^-1 Lambda' [Z'Z Z'X]; 0] and M = Lambda' Z'Z Lambda + I (the matrix the fit
factors), so U' Sigma^-k U = U'U T^k and the cost grows with the number of random effects,
not of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from multilevel.exceptions import FitError

if TYPE_CHECKING:
    from scipy import sparse

#: Largest number of random effects plus fixed effects for which the dense products are formed.
MAX_DENSE = 12_000


def _z_matrix(terms: list[Any]) -> tuple[sparse.csc_matrix, list[tuple[int, int, int]]]:
    """Z (n x sum of levels * q, level-major within each term) and each term's
    (offset, levels, q)."""
    from scipy import sparse

    blocks, layout, offset = [], [], 0
    for t in terms:
        codes = np.asarray(t.codes)
        Zt = np.asarray(t.Z, dtype=float)
        n, q = Zt.shape
        nlev = len(t.levels)
        rows = np.repeat(np.arange(n), q)
        cols = (codes[:, None] * q + np.arange(q)[None, :]).ravel()
        keep = np.repeat(codes >= 0, q)
        blocks.append(
            sparse.csc_matrix((Zt.ravel()[keep], (rows[keep], cols[keep])), shape=(n, nlev * q))
        )
        layout.append((offset, nlev, q))
        offset += nlev * q
    return sparse.hstack(blocks, format="csc"), layout


@dataclass
class _Entry:
    """One covariance entry (a, b) of a term: rows ia and ib of the random effects."""

    ia: np.ndarray
    ib: np.ndarray

    def apply(self, Y: np.ndarray) -> np.ndarray:
        """B Y for B the symmetric 0/1 pattern of this entry."""
        out = np.zeros_like(Y)
        out[self.ia] = Y[self.ib]
        if not np.array_equal(self.ia, self.ib):
            out[self.ib] = Y[self.ia]
        return out


class KenwardRoger:
    """The adjusted covariance of beta and the Kenward-Roger F test of a fitted REML model."""

    def __init__(self, fit: Any):
        from scipy import sparse

        if not fit.reml:
            raise FitError(
                "Kenward-Roger's method is defined for REML fits only: refit with "
                "reml=True (as pbkrtest and lmerTest require)"
            )
        X = np.asarray(fit.design.X, dtype=float)
        Z, layout = _z_matrix(list(fit.design.terms))
        qtot, p = Z.shape[1], X.shape[1]
        if qtot + p > MAX_DENSE:
            raise FitError(
                f"Kenward-Roger needs dense matrices of order {qtot + p} (random effects plus "
                f"fixed effects), above the limit {MAX_DENSE}: use ddf='satterthwaite'"
            )
        if getattr(fit.design, "weights", None) is not None:
            raise FitError(
                "Kenward-Roger with prior weights is not supported (pbkrtest does "
                "not support them either): use ddf='satterthwaite'"
            )
        self.p = p
        s2 = float(fit.sigma) ** 2
        lam = sparse.block_diag(
            [
                sparse.kron(sparse.identity(nlev), lt)
                for (_, nlev, _), lt in zip(layout, fit.lambda_)
            ],
            format="csr",
        ).toarray()
        ZZ = (Z.T @ Z).toarray()
        ZX = np.asarray(Z.T @ X)
        M = lam.T @ ZZ @ lam + np.eye(qtot)
        LamMinvLam = lam @ np.linalg.solve(M, lam.T)
        gram = np.block([[ZZ, ZX], [ZX.T, X.T @ X]])
        E = np.zeros((qtot + p, qtot + p))
        E[:qtot] = LamMinvLam @ gram[:qtot]
        T = (np.eye(qtot + p) - E) / s2
        G1 = gram @ T  # U' Sigma^-1 U
        G2 = G1 @ T  # U' Sigma^-2 U
        G3 = G2 @ T
        q_ = slice(0, qtot)
        x_ = slice(qtot, qtot + p)
        self.S, self.R = G1[q_, q_], G1[q_, x_]
        self.S2, self.R2 = G2[q_, q_], G2[q_, x_]
        self.XS1X, self.XS2X, self.XS3X = G1[x_, x_], G2[x_, x_], G3[x_, x_]
        K = LamMinvLam @ ZZ
        n = X.shape[0]
        self.trace_s2 = (n - 2.0 * np.trace(K) + float(np.sum(K * K.T))) / s2**2
        self.entries = []
        for offset, nlev, q in layout:
            base = offset + np.arange(nlev) * q
            for b in range(q):
                for a in range(b, q):
                    self.entries.append(_Entry(base + a, base + b))
        self.beta = np.asarray(fit.beta, dtype=float)

    @cached_property
    def phi(self) -> np.ndarray:
        """(X' Sigma^-1 X)^-1, the unadjusted covariance of beta."""
        return np.linalg.inv(self.XS1X)

    @cached_property
    def _pq(self) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray], np.ndarray]:
        BR = [e.apply(self.R) for e in self.entries]
        P = [-(self.R.T @ br) for br in BR] + [-self.XS2X]
        k = len(self.entries)
        Q: dict[tuple[int, int], np.ndarray] = {}
        Kt = np.zeros((k + 1, k + 1))
        BS = [e.apply(self.S) for e in self.entries]
        for i in range(k):
            for j in range(i, k):
                Q[i, j] = BR[i].T @ self.S @ BR[j]
                Kt[i, j] = Kt[j, i] = float(np.sum(BS[i] * BS[j].T))
            Q[i, k] = BR[i].T @ self.R2
            Kt[i, k] = Kt[k, i] = float(np.trace(self.entries[i].apply(self.S2)))
        Q[k, k] = self.XS3X
        Kt[k, k] = self.trace_s2
        return P, Q, Kt

    @cached_property
    def _w(self) -> np.ndarray:
        P, Q, Kt = self._pq
        phi = self.phi
        m = len(P)
        info = np.empty((m, m))
        for i in range(m):
            for j in range(i, m):
                info[i, j] = info[j, i] = (
                    Kt[i, j] - 2.0 * np.sum(phi * Q[i, j]) + np.sum((phi @ P[i]) * (P[j] @ phi))
                )
        w = np.linalg.eigvalsh(info)
        inv = np.linalg.inv(info) if np.min(np.abs(w)) > 1e-10 else np.linalg.pinv(info)
        return 2.0 * inv

    @cached_property
    def vcov_adjusted(self) -> np.ndarray:
        """Phi_A = Phi + 2 Phi U Phi (pbkrtest's ``vcovAdj``)."""
        P, Q, _ = self._pq
        W, phi = self._w, self.phi
        U = np.zeros_like(phi)
        m = len(P)
        for i in range(m):
            for j in range(i, m):
                term = W[i, j] * (Q[i, j] - P[i] @ phi @ P[j])
                U += term if i == j else term + term.T
        return phi + 2.0 * phi @ U @ phi

    def test(self, L: np.ndarray, rhs: np.ndarray | None = None) -> dict[str, float]:
        """F statistic (scaled), numerator and denominator df, scaling and p-value for
        L beta = r."""
        from scipy import stats

        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = np.linalg.matrix_rank(L)
        phi = self.phi
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        P, W = self._pq[0], self._w
        u = [theta @ phi @ Pi @ phi for Pi in P]
        tr = [np.trace(ui) for ui in u]
        m = len(P)
        A1 = A2 = 0.0
        for i in range(m):
            for j in range(i, m):
                e = 1.0 if i == j else 2.0
                A1 += e * W[i, j] * tr[i] * tr[j]
                A2 += e * W[i, j] * float(np.sum(u[i] * u[j].T))
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        v0 = 1.0 + c1 * B
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        v1, v2 = 1.0 - c2 * B, 1.0 - c3 * B
        rho = ((1.0 - A2 / q) / v1) ** 2 * v0 / v2 / q
        ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scale = 1.0 if abs(ddf - 2.0) < 1e-2 else ddf * (1.0 - A2 / q) / (ddf - 2.0)
        d = L @ self.beta - (0.0 if rhs is None else np.asarray(rhs, dtype=float))
        wald = float(d @ np.linalg.solve(L @ self.vcov_adjusted @ L.T, d))
        F = scale * wald / q
        return {
            "f": F,
            "numdf": float(q),
            "dendf": ddf,
            "scaling": scale,
            "p": float(stats.f.sf(F, q, ddf)),
        }
