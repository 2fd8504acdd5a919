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

The first term needs ``A11^-1`` only inside the connected components of A11's pattern (the
rows of one level of a single grouping factor, or of a whole nested family); when every
component has at most ``max_block`` columns each is inverted densely, so the cost grows with
the rows and groups, not with q squared. A crossed design (one large component) takes sparse
LU solves of A11, a chunk of rows at a time: about one solve per row.

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

MAX_BLOCK = 2000  # largest component of A11 inverted densely (2000^2 doubles: 32 MB)


def random_design(terms: list[Any], lambdas: list[np.ndarray]) -> sp.csr_matrix:
    """``Z Lambda`` (n x q, sparse) from the design's terms (codes, Z) and each term's
    relative covariance factor: column ``level * q_k + j`` of term k holds ``(Z_k lam_k)[:, j]``
    on that level's rows (lme4's column order)."""
    blocks = []
    for t, lam in zip(terms, lambdas, strict=True):
        codes = np.asarray(t.codes, dtype=np.int64)
        Z = np.asarray(t.Z, dtype=float)
        q = Z.shape[1]
        vals = Z @ np.asarray(lam, dtype=float)
        n = len(codes)
        rows = np.repeat(np.arange(n), q)
        cols = (codes[:, None] * q + np.arange(q)[None, :]).reshape(-1)
        blocks.append(sp.csr_matrix((vals.reshape(-1), (rows, cols)), shape=(n, len(t.levels) * q)))
    return sp.hstack(blocks, format="csr")


def _quad_a11(U: sp.csr_matrix, A11: sp.csc_matrix, max_block: int) -> np.ndarray:
    """``u_i' A11^-1 u_i`` for every row u_i of U."""
    q = A11.shape[0]
    n_comp, label = connected_components(A11, directed=False)
    sizes = np.bincount(label, minlength=n_comp)
    if sizes.max() <= max_block:
        order = np.argsort(label, kind="stable")
        start = np.concatenate([[0], np.cumsum(sizes)])
        rows, cols, vals = [], [], []
        dense = A11.tocsr()
        for m in np.unique(sizes):  # components of one size, inverted as one stack
            comps = np.flatnonzero(sizes == m)
            idx = order[start[comps][:, None] + np.arange(m)[None, :]]  # (k, m)
            r = np.repeat(idx, m, axis=1).reshape(-1)
            c = np.tile(idx, (1, m)).reshape(-1)
            sub = np.asarray(dense[r, c], dtype=float).reshape(len(comps), m, m)
            inv = np.linalg.inv(sub)
            rows.append(r)
            cols.append(c)
            vals.append(inv.reshape(-1))
        Binv = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(q, q)
        )
        return np.asarray((U @ Binv).multiply(U).sum(axis=1)).reshape(-1)
    lu = splu(A11, permc_spec="COLAMD")
    n = U.shape[0]
    out = np.empty(n)
    chunk = max(1, int(2e7 // max(q, 1)))
    Ut = U.T.tocsc()
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        R = Ut[:, a:b].toarray()
        out[a:b] = np.einsum("ij,ij->j", R, lu.solve(R))
    return out


def hat_diagonal(
    terms: list[Any],
    lambdas: list[np.ndarray],
    X: np.ndarray,
    W: np.ndarray,
    prior: np.ndarray,
    max_block: int = MAX_BLOCK,
) -> np.ndarray:
    """lme4's ``hatvalues``: ``prior_i (u_i, x_i)' M^-1 (u_i, x_i)`` with M built with the
    weights ``W`` (module documentation). ``terms`` are the design's random terms (codes, Z,
    levels), ``lambdas`` their relative covariance factors."""
    X = np.asarray(X, dtype=float)
    W = np.asarray(W, dtype=float)
    U = random_design(terms, lambdas)
    q = U.shape[1]
    UW = U.multiply(W[:, None]).tocsr()
    A11 = (U.T @ UW + sp.identity(q, format="csr")).tocsc()
    A12 = np.asarray(UW.T @ X)  # q x p
    lu = splu(A11, permc_spec="COLAMD")
    G = lu.solve(A12) if A12.shape[1] else np.zeros((q, 0))
    S = (X * W[:, None]).T @ X - A12.T @ G
    C = X - U @ G
    if C.shape[1]:
        R = sla.cholesky(0.5 * (S + S.T), lower=False)
        second = np.sum(sla.solve_triangular(R, C.T, trans="T", lower=False) ** 2, axis=0)
    else:
        second = np.zeros(len(W))
    return np.asarray(prior, dtype=float) * (_quad_a11(U, A11, max_block) + second)


def cooks_distance(hat: np.ndarray, pearson: np.ndarray, sigma: float, p: int) -> np.ndarray:
    """lme4's ``cooks.distance.merMod``: ``(r / (1 - hat))^2 hat / (sigma^2 p)``, NaN where
    ``hat`` is 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.asarray(pearson, float) / (1.0 - hat)) ** 2 * hat / (sigma**2 * p)
    out[np.isinf(out)] = np.nan
    return out
