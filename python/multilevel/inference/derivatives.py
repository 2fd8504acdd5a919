"""Numerical derivatives by central differences with Richardson extrapolation.

The inference of lmerTest (Satterthwaite) differentiates the deviance and the covariance of
the fixed effects numerically, with numDeriv's Richardson method: central differences at r
step sizes h, h/2, h/4, ..., combined so that the error terms in h^2, h^4, ... cancel. The
first step is relative to the coordinate, ``d * |x|``, and absolute (``eps``) for coordinates
within ``zero_tol`` of zero, so that a variance parameter on or near its boundary gets a
usable step. The same rules here give the same derivatives to far more digits than the
degrees of freedom need.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ZERO_TOL = float(np.sqrt(np.finfo(float).eps / 7e-7))


def _steps(x: np.ndarray, d: float, eps: float) -> np.ndarray:
    return np.abs(d * x) + eps * (np.abs(x) < ZERO_TOL)


def _extrapolate(approx: list[np.ndarray]) -> np.ndarray:
    """Richardson's table for central differences (error in even powers of h, halving h)."""
    a = list(approx)
    for m in range(1, len(a)):
        f = 4.0**m
        a = [(a[k + 1] * f - a[k]) / (f - 1.0) for k in range(len(a) - 1)]
    return a[0]


def jacobian(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    d: float = 1e-4,
    eps: float = 1e-4,
    r: int = 4,
) -> np.ndarray:
    """Jacobian of a vector function: shape (len(f(x)), len(x))."""
    x = np.asarray(x, dtype=float)
    h0 = _steps(x, d, eps)
    cols = []
    for i in range(x.size):
        approx = []
        h = h0[i]
        for _ in range(r):
            e = np.zeros_like(x)
            e[i] = h
            fp = np.asarray(f(x + e), dtype=float).ravel()
            fm = np.asarray(f(x - e), dtype=float).ravel()
            approx.append((fp - fm) / (2.0 * h))
            h /= 2.0
        cols.append(_extrapolate(approx))
    return np.column_stack(cols)


def hessian(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    d: float = 0.1,
    eps: float = 1e-4,
    r: int = 4,
) -> np.ndarray:
    """Hessian of a scalar function (numDeriv's ``hessian`` rules: d = 0.1 relative steps)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    h0 = _steps(x, d, eps)
    f0 = float(f(x))
    H = np.zeros((n, n))
    for i in range(n):
        approx = []
        h = h0.copy()
        for _ in range(r):
            e = np.zeros(n)
            e[i] = h[i]
            approx.append(np.array((f(x + e) - 2.0 * f0 + f(x - e)) / h[i] ** 2))
            h = h / 2.0
        H[i, i] = float(_extrapolate(approx))
    for i in range(n):
        for j in range(i):
            approx = []
            h = h0.copy()
            for _ in range(r):
                e = np.zeros(n)
                e[i], e[j] = h[i], h[j]
                num = f(x + e) - 2.0 * f0 + f(x - e) - H[i, i] * h[i] ** 2 - H[j, j] * h[j] ** 2
                approx.append(np.array(num / (2.0 * h[i] * h[j])))
                h = h / 2.0
            H[i, j] = H[j, i] = float(_extrapolate(approx))
    return H
