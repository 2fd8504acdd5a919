"""Rank deficiency of ``X``: R's ``qr(X, tol = 1e-7)`` rule (LINPACK ``dqrdc2``, limited pivoting).

A column whose residual, after projection on the earlier kept columns, has a norm below
``1e-7`` times its own norm is dropped; earlier columns are always kept. It is computed on the
triangular factor of an unpivoted QR of ``X`` taken in row blocks (``multilevel._tallqr``:
same column geometry, one pass over the rows), unless ``X'X`` shows every column clearly
independent (``_clearly_full_rank``). Dropped columns are named in a ``RankDeficiencyWarning``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from multilevel._tallqr import kept_columns, tall_r
from multilevel.exceptions import RankDeficiencyWarning

__all__ = ["RANK_TOL", "drop_rank_deficient", "rank_keep"]


RANK_TOL = 1e-7


def _clearly_full_rank(X: np.ndarray) -> bool:
    """A screen on the Gram matrix, cheaper than the QR of ``rank_keep``.

    When the smallest eigenvalue of the column-normalised X'X is >= 1e-6, each column's
    residual after projection on all the others is >= 1e-3 times its norm, far above the
    tolerance, so R's rule keeps every column. The eigenvalue's rounding error (about n * eps
    relative) is far below that margin; anything closer goes to the exact rule."""
    if X.shape[1] <= 2:  # in Python floats; for two columns the eigenvalues are 1 +- |G01| / ..
        a, b = X[:, 0], X[:, -1]
        g = [float(np.add.reduce(a * a)), float(np.add.reduce(a * b)), float(np.add.reduce(b * b))]
        if not all(math.isfinite(v) for v in g) or min(g[0], g[-1]) <= 0.0:
            return False
        return X.shape[1] == 1 or 1.0 - abs(g[1]) / (math.sqrt(g[0]) * math.sqrt(g[2])) >= 1e-6
    G = X.T @ X
    d = np.diag(G)
    if not (np.isfinite(G).all() and (d > 0).all()):
        return False
    s = 1.0 / np.sqrt(d)
    return bool(np.linalg.eigvalsh(G * np.outer(s, s))[0] >= 1e-6)


def rank_keep(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Indices of the columns kept by R's ``qr(X, tol)`` rule (earlier columns win)."""
    n, p = X.shape
    if p == 0:
        return np.arange(0)
    if _clearly_full_rank(X):
        return np.arange(p, dtype=np.intp)
    return kept_columns(tall_r(X) if n >= p else np.asarray(X), tol)


def drop_rank_deficient(X: np.ndarray, names: list[str], stacklevel: int = 4):
    keep = rank_keep(X)
    dropped = [names[j] for j in range(len(names)) if j not in set(keep.tolist())]
    if dropped:
        k = len(dropped)
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {k} "
            f"column{'s' if k != 1 else ''} / coefficient{'s' if k != 1 else ''}: "
            + ", ".join(dropped),
            RankDeficiencyWarning,
            stacklevel=stacklevel,
        )
        X = np.asfortranarray(X[:, keep])
    return X, keep, dropped
