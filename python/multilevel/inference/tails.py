"""Tail probabilities and quantiles of the t, F and chi-square distributions.

Thin wrappers of scipy.stats that fix the conventions of the package's tables: two-sided t
p-values, ``df = inf`` as the normal (or chi-square) limit.
"""

from __future__ import annotations

import math

__all__ = ["chi2_sf", "f_sf", "t_ppf", "t_pvalue", "t_sf"]


def t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom (``inf``: normal)."""
    from scipy import stats as _stats

    return float(_stats.t.sf(t, df))


def t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic."""
    from scipy import stats as _stats

    return float(2.0 * _stats.t.sf(abs(t), df))


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t."""
    from scipy import stats as _stats

    if not 0.0 < q < 1.0:
        raise ValueError("q must lie strictly between 0 and 1")
    return float(_stats.t.ppf(q, df))


def f_sf(f: float, df1: float, df2: float) -> float:
    """Upper tail P(F > f) of the F distribution (``df2 = inf``: chi-square / df1)."""
    from scipy import stats as _stats

    if math.isinf(df2):
        return chi2_sf(f * df1, df1)
    return float(_stats.f.sf(f, df1, df2))


def chi2_sf(x: float, df: float) -> float:
    """Upper tail P(X > x) of the chi-square distribution."""
    from scipy import stats as _stats

    return float(_stats.chi2.sf(x, df))
