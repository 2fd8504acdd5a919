"""Wald tests of the fixed effects: coefficient tables and general linear hypotheses.

For a hypothesis L beta = r with C = vcov(beta): each row is tested by
t = (l beta - r) / sqrt(l C l'), and the rows jointly by
F = (L beta - r)' (L C L')^-1 (L beta - r) / q (chi-square = q F when no denominator degrees
of freedom are used). The reference distribution depends on ``ddf``:

- ``None``: normal and chi-square (Stata's ``mixed``, lme4's Wald intervals);
- ``"residual"``: t and F with nobs - p degrees of freedom;
- ``"satterthwaite"``: lmerTest's Satterthwaite approximation (``satterthwaite.py``);
- ``"kenward-roger"``: pbkrtest's adjusted covariance, df and scaled F (``kenward_roger.py``);
- ``"nlme"``: nlme's between/within rule (``nlme_df.py``); a joint test uses the smallest
  DF among the coefficients it involves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import HypothesisError
from multilevel.inference import hypotheses, nlme_df, satterthwaite
from multilevel.inference.kenward_roger import KenwardRoger
from multilevel.inference.varpar import VarparModel

DDF = (None, "residual", "satterthwaite", "kenward-roger", "nlme")


def _check_ddf(ddf: str | None) -> str | None:
    key = None if ddf is None else str(ddf).lower().replace("_", "-")
    if key not in DDF:
        raise ValueError(f"ddf must be one of {DDF!r}; got {ddf!r}")
    return key


def _kenward_roger(fit: Any) -> KenwardRoger:
    kr = getattr(fit, "_kenward_roger", None)
    if kr is None:
        kr = fit._kenward_roger = KenwardRoger(fit)
    return kr


def vcov_for(fit: Any, ddf: str | None) -> np.ndarray:
    """The covariance of beta a table uses: Kenward-Roger's adjusted one, else the model's."""
    if ddf == "kenward-roger":
        return _kenward_roger(fit).vcov_adjusted
    return np.asarray(fit.vcov_model, dtype=float)


def _varpar_model(fit: Any) -> VarparModel:
    model = getattr(fit, "_varpar_model", None)
    if model is None:
        model = VarparModel.of(fit)
        model.jacobian  # noqa: B018  (computed once, then the factor is put back)
        model.vcov_varpar  # noqa: B018
        model.restore()
        fit._varpar_model = model
    return model


def row_df(fit: Any, L: np.ndarray, ddf: str | None) -> np.ndarray:
    """Degrees of freedom of each row of L tested alone (inf for z tests)."""
    if ddf is None:
        return np.full(L.shape[0], np.inf)
    if ddf == "residual":
        return np.full(L.shape[0], float(fit.nobs - len(fit.beta)))
    if ddf == "satterthwaite":
        return satterthwaite.contrast_df(_varpar_model(fit), L)
    if ddf == "kenward-roger":
        kr = _kenward_roger(fit)
        return np.array([kr.test(row)["dendf"] for row in L])
    coef_df = nlme_df.fixed_df(np.asarray(fit.design.X), list(fit.design.terms))
    return np.array([coef_df[row != 0].min() for row in L])


def coef_table(fit: Any, ddf: str | None = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """Estimates, standard errors, df, t (z), p-values and intervals of the fixed effects."""
    ddf = _check_ddf(ddf)
    names = list(fit.fixef.index)
    C = vcov_for(fit, ddf)
    est = np.asarray(fit.beta, dtype=float)
    se = np.sqrt(np.diag(C))
    df = row_df(fit, np.eye(len(names)), ddf)
    return _table(names, est, se, df, level)


def _table(names, est, se, df, level) -> pd.DataFrame:
    from scipy import stats

    stat = est / se
    if np.all(np.isinf(df)):
        p = 2.0 * stats.norm.sf(np.abs(stat))
        q = stats.norm.ppf(0.5 + level / 2.0) * np.ones_like(est)
    else:
        p = 2.0 * stats.t.sf(np.abs(stat), df)
        q = stats.t.ppf(0.5 + level / 2.0, df)
    return pd.DataFrame(
        {
            "estimate": est,
            "std_error": se,
            "df": df,
            "statistic": stat,
            "p_value": p,
            "ci_lower": est - q * se,
            "ci_upper": est + q * se,
        },
        index=pd.Index(names, name="term"),
    )


@dataclass
class WaldTest:
    """Per-row tests and the joint test of L beta = r."""

    rows: pd.DataFrame
    statistic: float
    numdf: int
    dendf: float
    p_value: float
    kind: str  # "F" or "chi2"

    def __repr__(self) -> str:
        den = "" if self.kind == "chi2" else f", {self.dendf:.6g}"
        return (
            f"{self.rows.to_string()}\n\nJoint test: {self.kind}({self.numdf}{den}) = "
            f"{self.statistic:.6g}, p = {self.p_value:.4g}"
        )


def wald(
    fit: Any,
    hypothesis,
    rhs=None,
    ddf: str | None = "satterthwaite",
    level: float = 0.95,
    vcov: np.ndarray | None = None,
) -> WaldTest:
    """Tests L beta = r row by row and jointly; see :mod:`multilevel.inference.hypotheses`."""
    from scipy import stats

    ddf = _check_ddf(ddf)
    names = list(fit.fixef.index)
    h = hypotheses.build(hypothesis, names, rhs)
    C = vcov_for(fit, ddf) if vcov is None else np.asarray(vcov, dtype=float)
    beta = np.asarray(fit.beta, dtype=float)
    est = h.L @ beta - h.rhs
    se = np.sqrt(np.einsum("ij,jk,ik->i", h.L, C, h.L))
    df = row_df(fit, h.L, ddf)
    rows = _table(h.labels, est, se, df, level)
    PtL, d = satterthwaite.rotate(h.L, C)
    if len(d) < h.L.shape[0]:
        raise HypothesisError(
            f"L C L' has rank {len(d)} < {h.L.shape[0]}: the hypotheses are not all estimable"
        )
    Pr = PtL @ np.linalg.lstsq(h.L, h.rhs, rcond=None)[0] if np.any(h.rhs) else 0.0
    t2 = (PtL @ beta - Pr) ** 2 / d
    q = len(d)
    F = float(np.sum(t2) / q)
    if ddf is None:
        return WaldTest(rows, q * F, q, np.inf, float(stats.chi2.sf(q * F, q)), "chi2")
    if ddf == "satterthwaite":
        nu = satterthwaite.contrast_df(_varpar_model(fit), PtL)
        dendf = satterthwaite.f_test_df(nu)
    elif ddf == "kenward-roger":
        kr = _kenward_roger(fit).test(h.L, h.rhs)
        return WaldTest(rows, kr["f"], q, kr["dendf"], kr["p"], "F")
    else:
        dendf = float(np.min(df))
    return WaldTest(rows, F, q, dendf, float(stats.f.sf(F, q, dendf)), "F")


def wald_fixed_df(
    coef: pd.Series,
    vcov: np.ndarray,
    df_rows: np.ndarray,
    df_joint: float,
    hypothesis,
    rhs=None,
    level: float = 0.95,
) -> WaldTest:
    """Tests of L beta = r for a fit with known degrees of freedom (OLS, panel models): each
    row with the smallest df among the coefficients it involves (the residual df, or the
    clusters' df of a cluster-robust covariance), the joint F with ``df_joint``."""
    from scipy import stats

    names = list(coef.index)
    h = hypotheses.build(hypothesis, names, rhs)
    C = np.asarray(vcov, dtype=float)
    beta = coef.to_numpy(dtype=float)
    est = h.L @ beta - h.rhs
    se = np.sqrt(np.einsum("ij,jk,ik->i", h.L, C, h.L))
    df = np.array([np.min(np.asarray(df_rows, float)[row != 0]) for row in h.L])
    rows = _table(h.labels, est, se, df, level)
    d = h.L @ beta - h.rhs
    try:
        q = h.L.shape[0]
        F = float(d @ np.linalg.solve(h.L @ C @ h.L.T, d)) / q
    except np.linalg.LinAlgError as e:
        raise HypothesisError(f"L V L' is singular: the hypotheses are not testable ({e})") from e
    if not np.isfinite(df_joint):
        return WaldTest(rows, q * F, q, np.inf, float(stats.chi2.sf(q * F, q)), "chi2")
    return WaldTest(rows, F, q, float(df_joint), float(stats.f.sf(F, q, df_joint)), "F")
