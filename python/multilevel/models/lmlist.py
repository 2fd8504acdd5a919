"""Separate least-squares fits per group, as nlme's ``lmList`` and Stata's ``statsby``.

``lmlist(formula, data, group)`` fits ``formula`` by least squares within every level of
``group`` and collects the coefficients (one row per group), their standard errors, and the
mean and covariance matrix of the per-group coefficients across groups (the "variance of the
slopes" that a random-slope model estimates with shrinkage).

Standard errors: with ``pool=True`` (nlme's default, ``summary(lmList, pool=TRUE)``) every
group's standard errors use the pooled residual standard deviation
``sqrt(sum_g SSR_g / sum_g (n_g - p))``; with ``pool=False`` each group uses its own (Stata's
``statsby _se``).

A group with fewer than ``min_obs`` rows (default ``p + 1``: one residual degree of freedom)
or whose model matrix is rank deficient cannot have its regression; it is skipped with a
warning naming it (a :class:`~multilevel.exceptions.DataError` if no group remains).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from multilevel.design.fixed import fixed_arrays
from multilevel.exceptions import DataError, MultilevelWarning
from multilevel.factors import factor
from multilevel.inference.tails import t_pvalue
from multilevel.results.html import HtmlFitMixin
from multilevel.results.keep import KeepMixin
from multilevel.results.tidy import AlignedRows, LmListTables, input_index

__all__ = ["LmListFit", "lmlist"]


class LmListFit(AlignedRows, KeepMixin, LmListTables, HtmlFitMixin):
    """Result of :func:`lmlist`.

    Attributes
    ----------
    coef : pandas.DataFrame
        Groups (rows, in level order) by coefficients.
    se : pandas.DataFrame
        Their standard errors (pooled or per group, see ``pool``).
    t, p : pandas.DataFrame
        t statistics and two-sided p-values (``sum_g (n_g - p)`` degrees of freedom when
        pooled, ``n_g - p`` otherwise).
    coef_mean : pandas.Series
        Mean of the per-group coefficients.
    coef_cov : pandas.DataFrame
        Covariance matrix of the per-group coefficients across groups (divisor ``G - 1``).
    sigma : pandas.Series
        Residual standard deviation of each group's fit; ``pooled_sigma`` the pooled one.
    nobs : pandas.Series
        Rows used per group; ``skipped`` the groups left out.
    df : pandas.Series
        Degrees of freedom of each group's t-tests.
    fitted, resid : pandas.Series or numpy.ndarray
        Fitted values and residuals (NaN in skipped groups): a Series on the input's full
        index (NaN also at rows dropped for missing values) when the data were a pandas
        DataFrame, else the array of the rows used; ``rows`` their positions in the input.
    """

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    @property
    def coef_corr(self) -> pd.DataFrame:
        """Correlation matrix of the per-group coefficients across groups."""
        sd = np.sqrt(np.diag(self.coef_cov.to_numpy()))
        return self.coef_cov / np.outer(sd, sd)

    def summary(self) -> str:
        """Mean, standard deviation and range of each coefficient across groups."""
        lines = [
            f"Separate fits of {self.formula} by {self.group}: {len(self.coef)} groups, "
            f"{int(self.nobs.sum())} rows"
            + (f" ({len(self.skipped)} group(s) skipped)" if self.skipped else ""),
            (
                f"Standard errors: {'pooled' if self.pool else 'per group'}; "
                f"pooled residual std. error {self.pooled_sigma:.4f}"
            ),
            "",
            f"{'':<16}{'mean':>11}{'std dev':>11}{'min':>11}{'median':>11}{'max':>11}",
            "-" * 71,
        ]
        for name in self.coef.columns:
            c = self.coef[name]
            lines.append(
                f"{name[:15]:<16}{c.mean():>11.4g}{c.std(ddof=1):>11.4g}{c.min():>11.4g}"
                f"{c.median():>11.4g}{c.max():>11.4g}"
            )
        lines.append("-" * 71)
        lines.append("Correlation of the coefficients across groups:")
        lines.append(self.coef_corr.round(3).to_string())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<LmListFit {len(self.coef)} groups of {self.formula}>"


def lmlist(
    formula: str,
    data: Any,
    group: str,
    min_obs: int | None = None,
    pool: bool = True,
    offset: str | np.ndarray | None = None,
) -> LmListFit:
    """Fit ``formula`` by least squares separately in each level of ``group``.

    Parameters
    ----------
    formula : str
        ``"y ~ x"``.
    data : pandas or polars DataFrame, or dict of arrays
    group : str
        Grouping column.
    min_obs : int, optional
        Fewest rows a group needs; default (and at least) the number of coefficients + 1.
    pool : bool
        Pool the residual variance across groups for the standard errors (nlme's default).
    offset : str or array, optional
        A term with coefficient 1 (a column name or one value per row), added to any
        ``offset(expr)`` terms of the formula, as lme4's ``lmList(offset=)``: each group's
        coefficients are those of ``y - offset``, and ``fitted`` includes the offset.

    Returns
    -------
    LmListFit

    Examples
    --------
    >>> import multilevel as ml
    >>> hsb = ml.datasets.load("hsb")
    >>> fits = ml.lmlist("mathach ~ ses", hsb, group="school")
    >>> fits.coef.shape
    (160, 2)
    >>> print(round(fits.coef_mean["ses"], 4), round(fits.coef_cov.loc["ses", "ses"], 4))
    2.2016 2.6602
    """
    if not isinstance(group, str):
        raise TypeError(f"group must be the name of the grouping column, not {group!r}")
    prep = fixed_arrays(formula, data, None, [group], offset)
    y, X, names = prep.y, prep.X, prep.names
    yo = y if prep.offset is None else y - prep.offset  # what the coefficients explain
    codes, levels = factor(pd.Series(prep.extras[0], name=group))
    p = X.shape[1]
    need = p + 1 if min_obs is None else max(int(min_obs), p + 1)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(levels)))[:-1]
    coefs, ses_raw, ssrs, dfs, used, nobs, skipped = [], [], [], [], [], [], []
    fitted = np.full(len(y), np.nan)  # NaN in the groups skipped
    for lev, rows in zip(levels, np.split(order, bounds)):
        if len(rows) < need:
            skipped.append((lev, f"{len(rows)} row(s)"))
            continue
        Xg, yg = X[rows], yo[rows]
        Q, R = np.linalg.qr(Xg)
        d = np.abs(np.diag(R))
        if d.min() <= 1e-10 * max(d.max(), 1.0) * max(Xg.shape):
            skipped.append((lev, "rank-deficient model matrix"))
            continue
        b = np.linalg.solve(R, Q.T @ yg)
        fitted[rows] = Xg @ b
        e = yg - fitted[rows]
        if prep.offset is not None:
            fitted[rows] += prep.offset[rows]
        Rinv = np.linalg.solve(R, np.eye(p))
        coefs.append(b)
        ses_raw.append(np.sqrt(np.sum(Rinv**2, axis=1)))  # sqrt(diag((X'X)^-1))
        ssrs.append(float(e @ e))
        dfs.append(len(rows) - p)
        used.append(lev)
        nobs.append(len(rows))
    if skipped:
        msg = "; ".join(f"{lev!r} ({why})" for lev, why in skipped[:20])
        more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        if not used:
            raise DataError(
                f"no level of {group!r} has enough rows for {formula!r} "
                f"(needs {need} rows and a full-rank model matrix): {msg}{more}"
            )
        warnings.warn(
            f"{len(skipped)} group(s) of {group!r} too small for their regression were "
            f"skipped (needs {need} rows and a full-rank model matrix): {msg}{more}",
            MultilevelWarning,
            stacklevel=2,
        )
    idx = pd.Index(used, name=group)
    coef = pd.DataFrame(np.array(coefs), index=idx, columns=names)
    ssrs_a, dfs_a = np.array(ssrs), np.array(dfs, dtype=float)
    sigma = pd.Series(np.sqrt(ssrs_a / dfs_a), index=idx, name="sigma")
    pooled_sigma = math.sqrt(ssrs_a.sum() / dfs_a.sum())
    raw = np.array(ses_raw)
    if pool:
        se_vals = raw * pooled_sigma
        df_t = np.full(len(used), dfs_a.sum())
    else:
        se_vals = raw * sigma.to_numpy()[:, None]
        df_t = dfs_a
    se = pd.DataFrame(se_vals, index=idx, columns=names)
    t = coef / se
    pvals = np.array([[t_pvalue(t.iat[i, j], df_t[i]) for j in range(p)] for i in range(len(used))])
    cov = (
        np.cov(coef.to_numpy(), rowvar=False, ddof=1) if len(used) > 1 else np.full((p, p), np.nan)
    )
    return LmListFit(
        coef=coef,
        se=se,
        t=t,
        p=pd.DataFrame(pvals, index=idx, columns=names),
        coef_mean=coef.mean(axis=0).rename("mean"),
        coef_cov=pd.DataFrame(np.atleast_2d(cov), index=names, columns=names),
        sigma=sigma,
        pooled_sigma=pooled_sigma,
        nobs=pd.Series(nobs, index=idx, name="nobs"),
        skipped=[lev for lev, _ in skipped],
        n_dropped=prep.n_dropped,
        formula=formula,
        group=group,
        pool=pool,
        df=pd.Series(df_t, index=idx, name="df"),
        _fitted_rows=fitted,
        _resid_rows=y - fitted,
        rows=prep.rows,
        input_index=input_index(data),
    )
