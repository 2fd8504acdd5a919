"""The effect plot: the population-level fitted line of one numeric predictor with its
confidence band, one line per level of a factor.

Along a grid of the predictor, the other variables are held fixed (numeric ones at their
mean, factors at their reference level, i.e. their first level) and each grid row x gets
the prediction x'beta with the band x'beta +/- z sqrt(x' V x), V = ``fit.vcov`` (a Wald band
for the mean, with the random effects at 0: lme4's ``predict(re.form = NA)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.plot._common import axes, normal_quantile

MAX_BY_LEVELS = 12


def _frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):  # polars, Arrow
        return data.to_pandas()
    return pd.DataFrame(data)


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _levels(s: pd.Series) -> list:
    """A factor's levels in R's order: a categorical's own order, else sorted."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return list(s.cat.categories)
    return sorted(pd.unique(s.dropna()))


def _column(s: pd.Series, value: Any, n: int) -> Any:
    """``n`` copies of ``value`` with the dtype (and categories) of ``s``."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return pd.Categorical([value] * n, categories=s.cat.categories, ordered=s.cat.ordered)
    return [value] * n


def fixed_rows(fit: Any, newdata: pd.DataFrame) -> np.ndarray:
    """Rows of the fixed-effects matrix X for ``newdata``.

    Built with the fit's stored model specification (``fit.design.fixed_spec``; the public
    API has no model-matrix method) and checked against ``fit.predict(re_form=NA)``, so that
    a change in the design layer cannot silently give a wrong band.
    """
    spec = fit.design.fixed_spec
    mm = spec.model_spec.get_model_matrix(newdata, na_action="ignore")
    X = np.asarray(mm, dtype=float)[:, np.asarray(spec.keep)]
    pred = np.asarray(fit.predict(newdata, re_form=np.nan), dtype=float)
    if X.shape != (len(newdata), len(fit.beta)) or not np.allclose(
        X @ fit.beta, pred, rtol=1e-9, atol=1e-9
    ):
        raise RuntimeError(
            "effect(): the fixed-effects rows rebuilt for the grid do not "
            "reproduce fit.predict(re_form=NA); please report this"
        )
    return X


def effect(
    fit: Any,
    term: str,
    data: Any = None,
    by: str | None = None,
    level: float = 0.95,
    n: int = 50,
    ax: Any = None,
    **kwargs: Any,
) -> Any:
    """Population-level fitted line of one numeric predictor with its confidence band.

    Parameters
    ----------
    fit : LmerFit
    term : str
        A numeric column of ``data`` used by the fixed part (``"Days"``, ``"ses"``); the
        line runs over its observed range.
    data : DataFrame or dict of arrays
        The data the model was fitted to (the fit does not keep a public reference to it):
        it gives the range of ``term``, the means and the reference levels.
    by : str, optional
        A factor of ``data``: one line and band per level (at most 12 levels).
    level : float
        Coverage of the pointwise Wald band (normal quantile).
    n : int
        Number of grid points along ``term``.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.plot`` for every line.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines`` one line per level of ``by`` (one without ``by``), ``ax.collections``
        one band each, in the same order.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> hsb = ml.datasets.load("hsb")
    >>> fit = ml.lmer("mathach ~ ses * sector + (1 | school)", data=hsb)
    >>> ax = plot.effect(fit, "ses", data=hsb, by="sector")
    >>> len(ax.lines), len(ax.collections), ax.get_ylabel()
    (2, 2, 'mathach')
    """
    if data is None:
        raise ValueError(
            "effect() needs the data the model was fitted to: effect(fit, term, data=df)"
        )
    df = _frame(data)
    for name in (term, by):
        if name is not None and name not in df.columns:
            raise KeyError(f"no column {name!r} in data")
    if not _is_numeric(df[term]):
        raise TypeError(f"effect() draws a line along a numeric predictor; {term!r} is not")
    base = {
        c: (df[c].mean() if _is_numeric(df[c]) else (_levels(df[c]) or [None])[0])
        for c in df.columns
    }
    grid = np.linspace(np.nanmin(df[term]), np.nanmax(df[term]), int(n))
    by_levels = [None] if by is None else _levels(df[by])
    if len(by_levels) > MAX_BY_LEVELS:
        raise ValueError(
            f"{by!r} has {len(by_levels)} levels; effect() draws at most {MAX_BY_LEVELS} lines"
        )
    z = normal_quantile(level)
    V = np.asarray(fit.vcov, dtype=float)
    ax = axes(ax)
    for lev in by_levels:
        new = pd.DataFrame({c: _column(df[c], base[c], len(grid)) for c in df.columns})
        new[term] = grid
        if by is not None:
            new[by] = _column(df[by], lev, len(grid))
        X = fixed_rows(fit, new)
        mean = X @ fit.beta
        half = z * np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
        (line,) = ax.plot(grid, mean, label=None if by is None else f"{by} = {lev}", **kwargs)
        ax.fill_between(grid, mean - half, mean + half, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(term)
    ax.set_ylabel(str(fit.design.formula).split("~")[0].strip())
    ax.set_title(f"Effect of {term} ({level:.0%} band, population level)")
    if by is not None:
        ax.legend(fontsize="small")
    return ax
