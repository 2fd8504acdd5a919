"""The triangular factor R of a tall matrix ``A = QR``, computed block by block (TSQR).

LAPACK's QR of a 10,000,000 x 3 matrix streams the whole matrix through memory once per
Householder reflection; factoring blocks of rows that fit in cache and then the stacked small
R factors gives the same R (up to the signs of its rows) in one pass. Only R is kept: its
column norms are those of A, so R alone decides the rank (R's ``qr(X, tol)`` rule) and, for
``A = [X y]``, gives the least-squares coefficients and the residual sum of squares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["kept_columns", "tall_r"]

#: Rows per block: 8,192 rows of a few columns stay in the L2 cache.
BLOCK_ROWS = 8_192


def _r_of(A: np.ndarray) -> np.ndarray:
    """R of A (overwritten): LAPACK's dgeqrf alone, without forming Q or copying A."""
    import scipy.linalg

    qr, _tau, _work, info = scipy.linalg.lapack.dgeqrf(A, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dgeqrf failed (info={info})")
    return np.triu(qr[: min(A.shape), :])


def tall_r(columns: Sequence[np.ndarray] | np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """R of the n x p matrix whose columns are ``columns`` (a 2-D array or a list of 1-D and
    2-D arrays placed side by side); ``min(n, p)`` rows, upper triangular."""
    parts = [columns] if isinstance(columns, np.ndarray) else list(columns)
    parts = [np.asarray(c, dtype=float).reshape(len(c), -1) for c in parts]
    n = len(parts[0])
    p = sum(c.shape[1] for c in parts)
    buf = np.empty((min(n, block_rows), p), order="F")
    stack: list[np.ndarray] = []
    stacked_rows = 0
    for start in range(0, n, block_rows):
        m = min(block_rows, n - start)
        block = buf[:m]
        j = 0
        for c in parts:
            block[:, j : j + c.shape[1]] = c[start : start + m]
            j += c.shape[1]
        r = _r_of(np.asfortranarray(block))
        stack.append(r)
        stacked_rows += len(r)
        if stacked_rows >= block_rows:  # fold the partial factors into one
            stack = [_r_of(np.asfortranarray(np.vstack(stack)))]
            stacked_rows = len(stack[0])
    if len(stack) > 1:
        return _r_of(np.asfortranarray(np.vstack(stack)))
    return stack[0]


def kept_columns(R: np.ndarray, tol: float) -> np.ndarray:
    """Indices of the columns that R's ``qr(X, tol)`` keeps, earlier columns first: a column
    goes when the part of it not explained by the kept columns before it is shorter than
    ``tol`` times its norm (and always when its norm is 0)."""
    p = R.shape[1]
    norms = np.sqrt(np.einsum("ij,ij->j", R, R))
    keep: list[int] = []
    Q = np.zeros((R.shape[0], 0))
    for j in range(p):
        if norms[j] == 0.0:
            continue
        r = R[:, j].copy()
        for _ in range(2):  # re-orthogonalise once for stability
            r -= Q @ (Q.T @ r)
        nr = np.linalg.norm(r)
        if nr < tol * norms[j]:
            continue
        keep.append(j)
        Q = np.column_stack([Q, r / nr])
    return np.asarray(keep, dtype=np.intp)
