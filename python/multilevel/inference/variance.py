"""Variance decomposition: intraclass correlation and R-squared of a linear mixed model.

Nakagawa and Schielzeth (2013), extended to random slopes by Johnson (2014), as R's
performance package computes them: the variance of the fixed part, var_f = var(X beta)
(sample variance); of the random part, var_r = sum over terms of the mean over observations
of z_i' Sigma_k z_i (z_i the row of the term's columns, Sigma_k its covariance); and the
residual variance sigma^2. Marginal R2 = var_f / (var_f + var_r + sigma^2), conditional
R2 = (var_f + var_r) / (var_f + var_r + sigma^2); adjusted ICC = var_r / (var_r + sigma^2),
unadjusted ICC = var_r / (var_f + var_r + sigma^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VarianceParts:
    fixed: float
    random: float
    residual: float


def parts(fit: Any) -> VarianceParts:
    X = np.asarray(fit.design.X, dtype=float)
    var_f = float(np.var(X @ np.asarray(fit.beta, dtype=float), ddof=1))
    var_r = 0.0
    s2 = float(fit.sigma) ** 2
    for t, lam in zip(fit.design.terms, fit.lambda_):
        Sigma = s2 * lam @ lam.T
        Z = np.asarray(t.Z, dtype=float)
        var_r += float(np.sum((Z @ Sigma) * Z)) / Z.shape[0]
    return VarianceParts(var_f, var_r, s2)


def r2(fit: Any) -> dict[str, float]:
    """Marginal and conditional R2 (Nakagawa and Schielzeth)."""
    v = parts(fit)
    total = v.fixed + v.random + v.residual
    return {"marginal": v.fixed / total, "conditional": (v.fixed + v.random) / total}


def icc(fit: Any) -> dict[str, float]:
    """Adjusted and unadjusted intraclass correlation."""
    v = parts(fit)
    return {
        "adjusted": v.random / (v.random + v.residual),
        "unadjusted": v.random / (v.fixed + v.random + v.residual),
    }
