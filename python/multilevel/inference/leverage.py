"""Observation-level leverage and Cook's distance of lmer and glmer fits (lme4's
``hatvalues(fit)`` and ``cooks.distance(fit)``, broom.mixed's ``.hat`` and ``.cooksd``).

With ``u_i = Lambda' z_i`` (row i of Z Lambda), ``x_i`` row i of X, W the weights of the
penalised least-squares decomposition (the prior weights for lmer; for glmer the working
weights ``w mu_eta(eta)^2 / V(mu)`` at the fit) and w the prior weights, lme4 defines

    hat_i = w_i (u_i, x_i)' M^-1 (u_i, x_i),
    M = [[U'WU + I, U'WX], [X'WU, X'WX]],

the diagonal of the hat matrix of the penalised least-squares problem, and

    cooksd_i = (r_i / (1 - hat_i))^2 hat_i / (sigma^2 p)

with r the Pearson residuals, p the number of fixed effects and sigma the residual standard
deviation (1 for the binomial and Poisson). For a GLMM lme4 keeps the prior weights in front
(``sqrtW`` of ``hatvalues.merMod``) while M carries the working weights, so with binomial
trials as prior weights the values exceed 1 (cbpp): lme4 warns that "the hat matrix may not
make sense for GLMMs"; the numbers here are lme4's all the same.

How. Block elimination of M: with ``A11 = U'WU + I`` (sparse, q x q), ``G = A11^-1 U'WX`` and
the Schur complement ``S = X'WX - X'WU G`` (p x p),

    (u, x)' M^-1 (u, x) = u' A11^-1 u + c' S^-1 c,    c = x - G' u.

The first term, ``u' A11^-1 u``, three ways (``hat_diagonal``'s ``method``):

* "schur": the term with most columns is eliminated first (its block of A11 is block
  diagonal) and the Schur complement of the other terms' columns is inverted densely once,
  as the blocked Cholesky of the fit does. Used when those other columns number at most
  ``MAX_BLOCK`` (one term, crossed designs such as InstEval's).
* "components": only the entries of ``A11^-1`` at pairs of columns that share a row, from
  dense inverses of the connected components of A11's pattern (the columns of one level, or
  of a whole nested family), each of at most ``MAX_BLOCK`` columns.
* "lu": the same entries from sparse LU solves of A11 against the columns of the identity
  that those pairs name: at most q solves, however many rows.

Examples
--------
>>> import multilevel as ml
>>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
>>> h = fit.hatvalues()
>>> round(float(h.sum()), 4), round(float(fit.cooks_distance().max()), 4)
(29.0221, 4.3322)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

__all__ = ["cooks_distance", "hat_diagonal", "random_design"]

MAX_BLOCK = 5000  # largest component of A11 inverted densely (5000^2 doubles: 200 MB)


def random_design(terms: list[Any], lambdas: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``Z Lambda`` by rows: ``(idx, vals)``, each n x m with m the sum of the terms' q, row
    i of ``Z Lambda`` having ``vals[i]`` in columns ``idx[i]``. Column ``level * q_k + j`` of
    term k (after the earlier terms' columns) holds ``(Z_k lam_k)[:, j]`` on that level's rows
    (lme4's column order)."""
    idx, vals, start = [], [], 0
    for t, lam in zip(terms, lambdas, strict=True):
        codes = np.asarray(t.codes, dtype=np.int64)
        Z = np.asarray(t.Z, dtype=float)
        q = Z.shape[1]
        vals.append(Z @ np.asarray(lam, dtype=float))
        idx.append(start + codes[:, None] * q + np.arange(q)[None, :])
        start += len(t.levels) * q
    return np.hstack(idx), np.hstack(vals)


def _sparse(idx: np.ndarray, vals: np.ndarray, q: int) -> sp.csr_matrix:
    n, m = idx.shape
    return sp.csr_matrix((vals.reshape(-1), idx.reshape(-1), np.arange(0, n * m + 1, m)), (n, q))


def _inverse_entries(A11: sp.csc_matrix, rows: np.ndarray, cols: np.ndarray, max_block: int):
    """Entries ``(A11^-1)[rows, cols]`` (A11 symmetric positive definite): inside dense
    inverses of the connected components of A11's pattern when each has at most
    ``max_block`` columns (entries across two components are 0), else from sparse LU solves
    of A11 against the columns of the identity that ``cols`` name, a chunk at a time."""
    q = A11.shape[0]
    n_comp, label = connected_components(A11, directed=False)
    sizes = np.bincount(label, minlength=n_comp)
    out = np.zeros(len(rows))
    if sizes.max() <= max_block:
        order = np.argsort(label, kind="stable")
        first = np.concatenate([[0], np.cumsum(sizes)])
        pos = np.empty(q, dtype=np.int64)  # position of each column inside its component
        pos[order] = np.arange(q) - first[label[order]]
        same = label[rows] == label[cols]
        csr = A11.tocsr()
        slot = np.full(n_comp, -1)
        for m in np.unique(sizes):  # components of one size, inverted as stacks
            of_size = np.flatnonzero(sizes == m)
            per = max(1, int(4e6 // (m * m)))  # a stack of at most 4e6 numbers (32 MB)
            for s0 in range(0, len(of_size), per):
                comps = of_size[s0 : s0 + per]
                members = order[first[comps][:, None] + np.arange(m)[None, :]]  # (k, m)
                if len(comps) == 1:
                    sub = csr[members[0]][:, members[0]].toarray()[None]
                else:
                    r = np.repeat(members, m, axis=1).reshape(-1)
                    c = np.tile(members, (1, m)).reshape(-1)
                    sub = np.asarray(csr[r, c], dtype=float).reshape(len(comps), m, m)
                inv = np.linalg.inv(sub)
                slot[comps] = np.arange(len(comps))
                take = same & np.isin(label[rows], comps)
                k = slot[label[rows[take]]]
                out[take] = inv[k, pos[rows[take]], pos[cols[take]]]
        return out
    lu = splu(A11, permc_spec="COLAMD")
    need = np.unique(cols)
    chunk = max(1, int(2e7 // max(q, 1)))
    for a in range(0, len(need), chunk):
        block = need[a : a + chunk]
        E = np.zeros((q, len(block)))
        E[block, np.arange(len(block))] = 1.0
        Xb = lu.solve(E)
        take = np.isin(cols, block)
        out[take] = Xb[rows[take], np.searchsorted(block, cols[take])]
    return out


def _quad_a11(idx: np.ndarray, vals: np.ndarray, A11: sp.csc_matrix, max_block: int) -> np.ndarray:
    """``u_i' A11^-1 u_i`` for every row u_i of ``Z Lambda`` (``idx``, ``vals``): the entries
    of A11^-1 at the pairs of columns that share a row, and nothing else of it."""
    n, m = idx.shape
    a, b = np.triu_indices(m)
    rows, cols = idx[:, a].reshape(-1), idx[:, b].reshape(-1)
    entries = _inverse_entries(A11, rows, cols, max_block).reshape(n, len(a))
    weight = np.where(a == b, 1.0, 2.0)  # off-diagonal pairs count twice
    return np.einsum("ij,ij,j->i", vals[:, a] * vals[:, b], entries, weight)


class _Schur:
    """A11 split as ``[[D, C], [C', E]]`` with D the block of the term with most columns
    (block diagonal: one q_k x q_k block per level) and the dense Schur complement
    ``S = E - C' D^-1 C`` of the other terms' columns, inverted once: solves with A11 and the
    quadratic forms ``u' A11^-1 u = u1' D^-1 u1 + v' S^-1 v``, ``v = C' D^-1 u1 - u2``."""

    def __init__(self, A11: sp.csr_matrix, first: np.ndarray, qk: int) -> None:
        q = A11.shape[0]
        self.first, self.rest = first, np.setdiff1d(np.arange(q), first)
        levels = len(first) // qk
        blk = first.reshape(levels, qk)
        r = np.repeat(blk, qk, axis=1).reshape(-1)
        c = np.tile(blk, (1, qk)).reshape(-1)
        inv = np.linalg.inv(np.asarray(A11[r, c], dtype=float).reshape(levels, qk, qk))
        self.qk, self.blocks = qk, inv
        self.rest_pos = np.full(q, -1)
        self.rest_pos[self.rest] = np.arange(len(self.rest))
        local = np.arange(len(first)).reshape(levels, qk)
        self.Dinv = sp.csr_matrix(
            (
                inv.reshape(-1),
                (np.repeat(local, qk, axis=1).reshape(-1), np.tile(local, (1, qk)).reshape(-1)),
            ),
            shape=(len(first), len(first)),
        )
        self.C = A11[first][:, self.rest].tocsr()
        E = A11[self.rest][:, self.rest].toarray()
        S = E - (self.C.T @ (self.Dinv @ self.C)).toarray()
        self.Sinv = np.linalg.inv(S) if len(self.rest) else np.zeros((0, 0))

    def solve(self, B: np.ndarray) -> np.ndarray:
        """``A11^-1 B`` for a dense B (q x k)."""
        DB1 = self.Dinv @ B[self.first]
        y2 = self.Sinv @ (B[self.rest] - self.C.T @ DB1)
        out = np.empty_like(B)
        out[self.first] = DB1 - self.Dinv @ (self.C @ y2)
        out[self.rest] = y2
        return out

    def quad(self, idx: np.ndarray, vals: np.ndarray, cols: slice) -> np.ndarray:
        """``u_i' A11^-1 u_i`` for every row of ``Z Lambda`` (``idx``, ``vals``; ``cols`` the
        positions of the eliminated term's entries), a chunk of its levels at a time:
        ``P = D^-1 C S^-1`` on those levels' rows, then per row only gathers."""
        qk = self.qk
        alpha = vals[:, cols]
        lev = (idx[:, cols.start] - self.first[0]) // qk
        out = np.einsum("ia,iab,ib->i", alpha, self.blocks[lev], alpha)
        if not len(self.rest):
            return out
        others = np.r_[0 : cols.start, cols.stop : idx.shape[1]]
        c2, u2 = self.rest_pos[idx[:, others]], vals[:, others]
        a, b = np.triu_indices(len(others))
        pair = np.where(a == b, 1.0, 2.0)
        out += np.einsum("ij,ij,j->i", u2[:, a] * u2[:, b], self.Sinv[c2[:, a], c2[:, b]], pair)
        H = (self.Dinv @ self.C).tocsr()  # D^-1 C
        n_levels = len(self.blocks)
        order = np.argsort(lev, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(lev, minlength=n_levels))])
        per = max(1, int(2e7 // (qk * len(self.rest))))
        for l0 in range(0, n_levels, per):
            l1 = min(n_levels, l0 + per)
            Hc = H[l0 * qk : l1 * qk]
            P = np.asarray(Hc @ self.Sinv)  # (levels x qk) x rest
            M = np.empty((l1 - l0, qk, qk))  # M[s, a, b] = P[(s, a)] . H[(s, b)]
            base = np.arange(l1 - l0) * qk
            for i in range(qk):
                for j in range(qk):
                    prod = Hc[base + j].multiply(P[base + i])
                    M[:, i, j] = np.asarray(prod.sum(axis=1)).reshape(-1)
            rows = order[bounds[l0] : bounds[l1]]
            s_ = lev[rows] - l0
            al = alpha[rows]
            part = np.einsum("ia,iab,ib->i", al, M[s_], al)
            for i in range(qk):  # - 2 u2' S^-1 C' D^-1 u1
                gathered = P[(s_ * qk + i)[:, None], c2[rows]]
                part -= 2.0 * al[:, i] * np.sum(u2[rows] * gathered, axis=1)
            out[rows] += part
        return out


def hat_diagonal(
    terms: list[Any],
    lambdas: list[np.ndarray],
    X: np.ndarray,
    W: np.ndarray,
    prior: np.ndarray,
    method: str = "auto",
) -> np.ndarray:
    """lme4's ``hatvalues``: ``prior_i (u_i, x_i)' M^-1 (u_i, x_i)`` with M built with the
    weights ``W`` (module documentation). ``terms`` are the design's random terms (codes, Z,
    levels), ``lambdas`` their relative covariance factors. ``method``: "schur" (the term
    with most columns eliminated, the others' Schur complement dense: used when those
    others have at most ``MAX_BLOCK`` columns), "components" (dense inverses of A11's
    connected components, when each has at most ``MAX_BLOCK`` columns), "lu" (sparse LU
    solves), or "auto" (the first of these that applies)."""
    X = np.asarray(X, dtype=float)
    W = np.asarray(W, dtype=float)
    idx, vals = random_design(terms, lambdas)
    widths = [len(t.levels) * np.asarray(t.Z).shape[1] for t in terms]
    q = sum(widths)
    U = _sparse(idx, vals, q)
    UW = U.multiply(W[:, None]).tocsr()
    A11 = (U.T @ UW + sp.identity(q, format="csr")).tocsr()
    A12 = np.asarray(UW.T @ X)  # q x p
    k = int(np.argmax(widths))
    if method == "auto":
        method = "schur" if q - widths[k] <= MAX_BLOCK else "components"
    if method == "schur":
        start = sum(widths[:k])
        qk = np.asarray(terms[k].Z).shape[1]
        schur = _Schur(A11, np.arange(start, start + widths[k]), qk)
        G = schur.solve(A12)
        at = sum(np.asarray(t.Z).shape[1] for t in terms[:k])  # term k's entries in idx
        first = schur.quad(idx, vals, slice(at, at + qk))
    else:
        G = splu(A11.tocsc(), permc_spec="COLAMD").solve(A12) if A12.shape[1] else A12
        first = _quad_a11(idx, vals, A11.tocsc(), MAX_BLOCK if method != "lu" else 0)
    S = (X * W[:, None]).T @ X - A12.T @ G
    C = X - U @ G
    if C.shape[1]:
        R = sla.cholesky(0.5 * (S + S.T), lower=False)
        second = np.sum(sla.solve_triangular(R, C.T, trans="T", lower=False) ** 2, axis=0)
    else:
        second = np.zeros(len(W))
    return np.asarray(prior, dtype=float) * (first + second)


def cooks_distance(hat: np.ndarray, pearson: np.ndarray, sigma: float, p: int) -> np.ndarray:
    """lme4's ``cooks.distance.merMod``: ``(r / (1 - hat))^2 hat / (sigma^2 p)``, NaN where
    ``hat`` is 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.asarray(pearson, float) / (1.0 - hat)) ** 2 * hat / (sigma**2 * p)
    out[np.isinf(out)] = np.nan
    return out
