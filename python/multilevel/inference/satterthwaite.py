"""Satterthwaite's degrees of freedom for linear combinations of the fixed effects.

For one contrast l (a row vector), var(l beta) = l C l' with C = vcov(beta) a function of the
variance parameters varpar; by the delta method its variance is g' A g, with g_k = l J_k l'
(J_k = dC/dvarpar_k) and A the asymptotic covariance of varpar. Matching the moments of a
scaled chi-square gives nu = 2 (l C l')^2 / (g' A g) (Satterthwaite 1946; lmerTest's
``contest1D``). A q-row hypothesis L is rotated by the eigenvectors of L C L' into q
independent contrasts with nu_1..nu_q, and the F statistic's denominator degrees of freedom
are 2E / (E - q) with E = sum nu_m / (nu_m - 2) (Fai and Cornelius 1996; lmerTest's
``contestMD``).
"""

from __future__ import annotations

import numpy as np

from multilevel.inference.varpar import VarparModel


def contrast_df(model: VarparModel, L: np.ndarray) -> np.ndarray:
    """Satterthwaite df of each row of L, tested one at a time."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    C = model.vcov_beta(model.varpar)
    var = np.einsum("ij,jk,ik->i", L, C, L)
    g = np.column_stack([np.einsum("ij,jk,ik->i", L, J, L) for J in model.jacobian])
    denom = np.einsum("ik,kl,il->i", g, model.vcov_varpar, g)
    return 2.0 * var**2 / denom


def f_test_df(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F test from the df of its independent contrasts."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1 or np.all(np.abs(nu - nu[0]) < tol):
        return float(nu[0])
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def rotate(L: np.ndarray, C: np.ndarray, tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """The q independent contrasts P'L of L (rows) and their variances, q = rank(L C L')."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    d, P = np.linalg.eigh(L @ C @ L.T)
    order = np.argsort(d)[::-1]
    d, P = d[order], P[:, order]
    keep = d > max(tol * d[0], 0.0)
    return (P[:, keep].T @ L), d[keep]
