"""Variance components with their uncertainty, and the LR test against linear regression.

The variance parameters are reported on lme4's scale (a standard deviation per random-effect
column, a correlation per pair, sigma), computed from varpar = (theta, sigma) by
Sigma_k = sigma^2 Lambda_k Lambda_k'. Their covariance is the delta method applied to the
asymptotic covariance of varpar, 2 H^-1 with H the Hessian of the deviance in varpar
(``varpar.py``): the observed information, as Stata's ``mixed`` uses. Intervals are formed on
the log scale for standard deviations and variances and on the atanh scale for correlations,
then transformed back (Stata's ``mixed`` and ``estat sd``); covariances get symmetric Wald
intervals.

The likelihood-ratio test against the linear regression without random effects compares the
fit's objective with the linear model's (the same ML or REML criterion, so REML fits are
compared with the REML linear model). With one variance component the parameter is on the
boundary under the null and the p-value is half the chi-square(1) tail (chi-bar-square(01),
Self and Liang 1987); with several, the chi-square(k) p-value is conservative (Stata's note).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.inference import derivatives
from multilevel.inference.varpar import VarparModel


@dataclass(frozen=True)
class Param:
    """One variance parameter: its kind ('sd', 'cor', 'sigma'), term and columns."""

    kind: str
    term: int
    i: int
    j: int
    name: str


def params(fit: Any) -> list[Param]:
    """The variance parameters in theta's order (lme4's ``.sig01, ...``, then sigma)."""
    out = []
    for k, t in enumerate(fit.design.terms):
        for i, j in term_layout(t):
            if i == j:
                out.append(Param("sd", k, i, j, f"sd_{t.names[i]}|{t.group}"))
            else:
                out.append(Param("cor", k, i, j, f"cor_{t.names[i]}.{t.names[j]}|{t.group}"))
    out.append(Param("sigma", -1, 0, 0, "sigma"))
    return out


def term_layout(t: Any) -> list[tuple[int, int]]:
    """Positions (row, column) of a term's theta in its Lambda: column-major lower triangle."""
    q = len(t.names)
    if getattr(t, "diagonal", False):
        return [(i, i) for i in range(q)]
    return [(i, j) for j in range(q) for i in range(j, q)]


def _covariances(fit: Any, varpar: np.ndarray) -> list[np.ndarray]:
    """Sigma_k = sigma^2 Lambda_k(theta) Lambda_k(theta)' per term."""
    sigma = float(varpar[-1])
    out, pos = [], 0
    for t in fit.design.terms:
        q = len(t.names)
        L = np.zeros((q, q))
        for i, j in term_layout(t):
            L[i, j] = varpar[pos]
            pos += 1
        out.append(sigma**2 * L @ L.T)
    return out


def sdcor(fit: Any, varpar: np.ndarray, scale: str = "sd") -> np.ndarray:
    """The parameters of :func:`params` at varpar: sd (or variance), correlation (or covariance)."""
    covs = _covariances(fit, varpar)
    vals = []
    for p in params(fit):
        if p.kind == "sigma":
            s = float(varpar[-1])
            vals.append(s if scale == "sd" else s * s)
            continue
        S = covs[p.term]
        if p.kind == "sd":
            vals.append(math.sqrt(S[p.i, p.i]) if scale == "sd" else S[p.i, p.i])
        elif scale == "sd":
            den = math.sqrt(S[p.i, p.i] * S[p.j, p.j])
            vals.append(S[p.i, p.j] / den if den > 0 else float("nan"))
        else:
            vals.append(S[p.i, p.j])
    return np.array(vals)


def table(
    fit: Any, scale: str = "sd", level: float = 0.95, model: VarparModel | None = None
) -> pd.DataFrame:
    """Estimate, standard error and interval of each variance parameter (Stata's layout).

    ``scale="sd"``: standard deviations and correlations (Stata's ``estat sd``);
    ``scale="var"``: variances and covariances (Stata's default).
    """
    from scipy import stats

    if scale not in ("sd", "var"):
        raise ValueError(f"scale must be 'sd' or 'var'; got {scale!r}")
    model = model or VarparModel.of(fit)
    vp = model.varpar
    est = sdcor(fit, vp, scale)
    J = derivatives.jacobian(lambda v: sdcor(fit, v, scale), vp, d=1e-6, eps=1e-7, r=2)
    cov = J @ model.vcov_varpar @ J.T
    model.restore()
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    z = stats.norm.ppf(0.5 + level / 2.0)
    lo, hi = np.empty_like(est), np.empty_like(est)
    for k, p in enumerate(params(fit)):
        e, s = est[k], se[k]
        if p.kind in ("sd", "sigma"):  # log scale
            w = z * s / e if e > 0 else np.nan
            lo[k], hi[k] = e * math.exp(-w), e * math.exp(w)
        elif scale == "sd":  # correlation: atanh scale
            w = z * s / (1.0 - e * e) if abs(e) < 1 else np.nan
            lo[k], hi[k] = math.tanh(math.atanh(e) - w), math.tanh(math.atanh(e) + w)
        else:  # covariance: symmetric
            lo[k], hi[k] = e - z * s, e + z * s
    names = [_stata_name(p, scale) for p in params(fit)]
    return pd.DataFrame(
        {"estimate": est, "std_error": se, "ci_lower": lo, "ci_upper": hi},
        index=pd.Index(names, name="parameter"),
    )


def _stata_name(p: Param, scale: str) -> str:
    if p.kind == "sigma":
        return "sd(Residual)" if scale == "sd" else "var(Residual)"
    group = p.name.split("|", 1)[1]
    cols = p.name.split("|", 1)[0].split("_", 1)[1]
    if p.kind == "sd":
        return f"{group}: {'sd' if scale == 'sd' else 'var'}({cols})"
    a, b = cols.split(".", 1) if "." in cols else (cols, "")
    return f"{group}: {'corr' if scale == 'sd' else 'cov'}({a},{b})"


def recov(fit: Any, group: str | None = None) -> pd.DataFrame:
    """The random-effects covariance matrix of a term (Stata's ``estat recovariance``)."""
    terms = list(fit.design.terms)
    groups = [t.group for t in terms]
    if group is None:
        group = groups[0]
    if group not in groups:
        raise KeyError(
            f"no random-effects term with grouping {group!r}; the fit has "
            f"{', '.join(map(repr, dict.fromkeys(groups)))}"
        )
    k = groups.index(group)
    S = _covariances(fit, np.append(fit.theta, fit.sigma))[k]
    names = list(terms[k].names)
    return pd.DataFrame(S, index=names, columns=names)


@dataclass(frozen=True)
class LRTest:
    """The LR test of the fit against the linear model without random effects."""

    chisq: float
    df: int
    p_value: float
    chibar: bool  # True: chi-bar-square(01) p-value (one component); else conservative
    loglik_lm: float

    def line(self) -> str:
        """Stata's line under the random-effects table."""
        if self.chibar:
            return (
                f"LR test vs. linear model: chibar2(01) = {self.chisq:.2f}"
                f"{'Prob >= chibar2 = ':>28}{self.p_value:.4f}"
            )
        return (
            f"LR test vs. linear model: chi2({self.df}) = {self.chisq:.2f}"
            f"{'Prob > chi2 = ':>28}{self.p_value:.4f}\n"
            "Note: LR test is conservative and provided only for reference."
        )


def lr_test_vs_lm(fit: Any) -> LRTest:
    """Likelihood-ratio test against the linear regression with the same fixed effects."""
    from scipy import stats

    d = fit.design
    X = np.asarray(d.X, dtype=float)
    y = np.asarray(d.y, dtype=float)
    if getattr(d, "offset", None) is not None:
        y = y - np.asarray(d.offset, dtype=float)
    w = np.ones_like(y) if getattr(d, "weights", None) is None else np.asarray(d.weights, float)
    sw = np.sqrt(w)
    Q, R = np.linalg.qr(X * sw[:, None])
    rss = float(np.sum((y * sw - Q @ (Q.T @ (y * sw))) ** 2))
    n, p = X.shape
    ldw = float(np.sum(np.log(w)))
    if fit.reml:
        dev_lm = (n - p) * (1.0 + math.log(2.0 * math.pi * rss / (n - p)))
        dev_lm += 2.0 * float(np.sum(np.log(np.abs(np.diag(R)))))
    else:
        dev_lm = n * (1.0 + math.log(2.0 * math.pi * rss / n))
    dev_lm -= ldw
    chisq = max(dev_lm - float(fit.objective), 0.0)
    k = len(fit.theta)
    if k == 1:
        return LRTest(chisq, 1, 0.5 * float(stats.chi2.sf(chisq, 1)), True, -0.5 * dev_lm)
    return LRTest(chisq, k, float(stats.chi2.sf(chisq, k)), False, -0.5 * dev_lm)
