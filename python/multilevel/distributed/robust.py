"""Cluster-robust covariances (``vcov=``) of a streamed lmer fit: one more pass, per-cluster
sums instead of rows.

:mod:`multilevel.inference.lmer_robust` needs each cluster ``j`` only through
``F_j = X_j' W_j X_j`` and ``g_j = X_j' W_j e_j`` for the types CR0, CR1, CR1p, CR1S, CR3 and
CR4 (``W_j = V_j^-1`` by Woodbury, ``e = y - offset - X beta``). When every random-effects
term is on the cluster's grouping factor, both come from the cluster's cross-products of
``[X Z e]`` (``Z`` all the terms' columns side by side), which a pass after the fit sums batch
by batch (``np.bincount`` by cluster code; the rows are never held). CR2 needs each cluster's
``n_j x n_j`` working covariance, so it is refused with the list of the types that stream.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from multilevel.exceptions import DataError

__all__ = ["STREAMED_TYPES", "check_streamable", "parse_streamed_vcov", "streamed_vcov"]

STREAMED_TYPES = ("CR0", "CR1", "CR1p", "CR1S", "CR3", "CR4")


def check_streamable(kind: str) -> None:
    """CR2 cannot stream: a NotImplementedError naming the types that do."""
    if kind not in STREAMED_TYPES:
        raise NotImplementedError(
            f"vcov={kind!r} needs each cluster's rows (its n_j x n_j working covariance) and "
            "cannot be computed from streamed data; the types that stream are "
            + ", ".join(STREAMED_TYPES)
            + " (clustered on the grouping factor of the random effects)"
        )


def parse_streamed_vcov(vcov: Any, weights: Any, distributed: bool) -> tuple[str, Any]:
    """lmer's ``vcov=`` for a streamed source, checked before any pass: (type, cluster)."""
    from multilevel.inference import lmer_robust

    kind, cluster = lmer_robust.parse_vcov(vcov)
    check_streamable(kind)
    if weights is not None:
        raise NotImplementedError(lmer_robust.WEIGHTS_MESSAGE)
    if distributed:
        raise NotImplementedError(
            "vcov= is not implemented for Dask or Spark data; from a Parquet file or folder "
            "or an Arrow source the types " + ", ".join(STREAMED_TYPES) + " stream"
        )
    if cluster is not None and not isinstance(cluster, str):
        raise DataError("vcov= with streamed data takes a grouping factor's name as cluster")
    return kind, cluster


def _cluster_term(fit: Any, cluster: Any) -> str:
    """The grouping factor every term is on (the cluster), or a DataError."""
    groups = {t.group for t in fit.design.terms}
    if len(groups) != 1:
        raise DataError(
            "vcov= with streamed data needs every random-effects term on one grouping factor "
            f"(the cluster); this fit has {', '.join(sorted(map(repr, groups)))}"
        )
    (group,) = groups
    if cluster is not None and cluster != group:
        raise DataError(
            f"vcov= with streamed data clusters on the grouping factor {group!r}, not {cluster!r}"
        )
    return group


def cluster_sums(p: Any, batches: Any, beta: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per-cluster cross-products of ``[X Z e]`` over the batches: (J, m, m), m = p + Q + 1."""
    from multilevel.design.stream import batch_arrays

    C = None
    for label, df in batches:
        arrays, _ = batch_arrays(p, df, label)
        if arrays is None:
            continue
        y, X, _names, terms, _w, o = arrays
        if p.keep is not None:
            X = X[:, p.keep]
        e = y - X @ beta if o is None else y - o - X @ beta
        ordered = [terms[k] for k in p.order]
        codes = ordered[0][0]
        M = np.column_stack([X] + [Z for _, Z, _ in ordered] + [e])
        m = M.shape[1]
        if C is None:
            C = np.zeros((n_clusters, m, m))
        for a in range(m):
            for b in range(a, m):
                s = np.bincount(codes, weights=M[:, a] * M[:, b], minlength=n_clusters)
                C[:, a, b] += s
                if a != b:
                    C[:, b, a] += s
    if C is None:
        raise DataError("no rows left after dropping rows with missing values")
    return C


def _sandwich(F: np.ndarray, g: np.ndarray, n: int, kind: str):
    """lmer_robust.cluster_robust's estimator and Satterthwaite df for the types whose
    cluster terms are ``F_j`` and ``g_j`` only (not CR2)."""
    from multilevel.inference.lmer_robust import _psd_root, cr_scale, satterthwaite_df
    from multilevel.inference.sandwich import sym_power

    J, p, _ = F.shape
    B = np.linalg.inv(F.sum(axis=0))
    B = (B + B.T) / 2.0
    scale = cr_scale(kind, J, p, n)
    eye = np.eye(p)
    if kind == "CR3":
        T = np.linalg.solve(eye - F @ B, np.broadcast_to(eye, F.shape))
    elif kind == "CR4":
        T = np.empty_like(F)
        for j in range(J):
            R = _psd_root(F[j])
            T[j] = R.T @ sym_power(R @ (F[j] - F[j] @ B @ F[j]) @ R.T, -0.5) @ R
    else:
        T = np.broadcast_to(math.sqrt(scale) * eye, F.shape)
    s = np.einsum("jab,jb->ja", T, g)
    meat = s.T @ s
    vcov = B @ meat @ B
    vcov = (vcov + vcov.T) / 2.0
    L_B = np.linalg.cholesky(B)
    BT = B @ T  # (J, p, p)
    Hs = BT @ F @ L_B
    D = np.einsum("jik,jki->ji", BT @ F, np.swapaxes(T, 1, 2) @ B)
    return vcov, satterthwaite_df(Hs, D)


def streamed_vcov(fit: Any, p: Any, batches: Any, kind: str, cluster: Any = None) -> Any:
    """The :class:`~multilevel.inference.lmer_robust.RobustVcov` of a streamed fit from one
    pass over ``batches`` ((label, pandas frame) pairs) with the fit's plan ``p``."""
    from scipy.linalg import block_diag

    from multilevel.inference.lmer_robust import RobustVcov

    check_streamable(kind)
    group = _cluster_term(fit, cluster)
    J = len(fit.design.terms[0].levels)
    if J < 2:
        raise DataError(f"cluster-robust covariance needs at least 2 clusters; {group!r} has 1")
    beta = np.asarray(fit.beta, dtype=float)
    n_x = len(beta)
    C = cluster_sums(p, batches, beta, J)
    lam = block_diag(*[np.asarray(x, dtype=float) for x in fit.lambda_])
    Q = lam.shape[0]
    XX, ZX = C[:, :n_x, :n_x], C[:, n_x : n_x + Q, :n_x]
    ZZ, Xe, Ze = C[:, n_x : n_x + Q, n_x : n_x + Q], C[:, :n_x, -1], C[:, n_x : n_x + Q, -1]
    LZX = lam.T @ ZX  # Lambda' Z_j' X_j
    K = np.eye(Q) + lam.T @ ZZ @ lam
    KiLZX = np.linalg.solve(K, LZX)
    F = XX - np.swapaxes(LZX, 1, 2) @ KiLZX
    g = Xe - np.einsum("jqa,jq->ja", LZX, np.linalg.solve(K, (Ze @ lam)[..., None])[..., 0])
    V, df = _sandwich(F, g, int(fit.nobs), kind)
    return RobustVcov(kind, group, J, list(fit.design.fixed_names), V, df)
