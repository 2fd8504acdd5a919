"""Residual plots of a fitted mixed model: against the fitted values, by level of a grouping
factor, and a normal QQ plot (lme4's ``plot(fit)``, ``plot(fit, g ~ resid(.))`` and
``qqnorm(resid(fit))``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from multilevel.plot._common import axes, group_codes, group_name, level_labels
from multilevel.plot._ranef import qq_points


def _used(values: Any) -> np.ndarray:
    """The values of the rows the fit used (drops the NaN of rows left out, if aligned)."""
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def binned_means(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of x and of y within ``bins`` groups of equal count along x (a smooth without
    tuning or iteration: the sorted x cut into consecutive runs)."""
    order = np.argsort(x, kind="stable")
    parts = np.array_split(order, bins)
    return (np.array([x[p].mean() for p in parts]), np.array([y[p].mean() for p in parts]))


def resid_fitted(
    fit: Any, smooth: bool = True, bins: int | None = None, ax: Any = None, **kwargs: Any
) -> Any:
    """Residuals against fitted values (lme4's ``plot(fit)``), with a line at 0.

    The smooth, when asked for, joins the means of the residuals within ``bins`` runs of
    equal size along the sorted fitted values (default: one run per 5% of the rows, at least
    10 rows each); a trend in it shows a mean structure the model misses.

    Parameters
    ----------
    fit : LmerFit
    smooth : bool
        Draw the binned-mean smooth.
    bins : int, optional
        Number of runs of the smooth.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        Points (one per row used) in ``ax.collections[0]``; ``ax.lines`` the line at 0 and
        the smooth.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.resid_fitted(fit)
    >>> len(ax.collections[0].get_offsets()), len(ax.lines), ax.get_xlabel()
    (180, 2, 'Fitted values')
    """
    f, r = _used(fit.fitted), _used(fit.resid)
    ax = axes(ax)
    many = len(f) >= 2000
    kwargs.setdefault("s", 4 if many else 10)
    kwargs.setdefault("alpha", 0.3 if many else 0.6)
    kwargs.setdefault("linewidths", 0)
    ax.scatter(f, r, **kwargs)
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    if smooth:
        k = bins if bins is not None else max(1, min(20, len(f) // 10))
        ax.plot(*binned_means(f, r, k), color="C3", lw=1.5)
    ax.set_xlabel("Fitted values")
    ax.set_ylabel("Residuals")
    ax.set_title("Residuals against fitted values")
    return ax


def resid_by_group(
    fit: Any, group: str | None = None, sort: bool = False, ax: Any = None, **kwargs: Any
) -> Any:
    """Boxplots of the residuals by level of a grouping factor (lme4's
    ``plot(fit, g ~ resid(.))``): one box per level, in level order or sorted by median.

    Parameters
    ----------
    fit : LmerFit
    group : str, optional
        Grouping factor; default the fit's first.
    sort : bool
        Order the boxes by their median instead of by level.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.boxplot``.

    Returns
    -------
    matplotlib.axes.Axes
        One box per level (``len(ax.patches)`` or the boxes' lines).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.resid_by_group(fit)
    >>> len(ax.patches), ax.get_xlabel()
    (18, 'Subject')
    """
    g = group_name(fit, group)
    codes = group_codes(fit, g)
    r = _used(fit.resid)
    labels = [str(v) for v in fit.ranef[g].index]
    per = [r[codes == k] for k in range(len(labels))]
    order = (
        np.argsort([np.median(p) if len(p) else np.nan for p in per], kind="stable")
        if sort
        else np.arange(len(labels))
    )
    pos = np.arange(1, len(labels) + 1)
    ax = axes(ax, figsize=(max(5.0, 0.25 * len(labels) + 1.0), 4.0) if len(labels) <= 60 else None)
    kwargs.setdefault("patch_artist", True)
    kwargs.setdefault("widths", 0.6)
    kwargs.setdefault("flierprops", {"markersize": 3})
    kwargs.setdefault("boxprops", {"facecolor": "#c6dbef", "edgecolor": "0.2"})
    kwargs.setdefault("medianprops", {"color": "C3"})
    ax.boxplot([per[k] for k in order], positions=pos, **kwargs)
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    level_labels(ax, pos, [labels[k] for k in order], "x")
    if len(labels) <= 40:
        ax.tick_params(axis="x", labelrotation=90)
    ax.set_xlabel(g)
    ax.set_ylabel("Residuals")
    ax.set_title(f"Residuals by {g}")
    return ax


def qq_resid(fit: Any, ax: Any = None, **kwargs: Any) -> Any:
    """Normal QQ plot of the scaled residuals (residual / sigma, Pearson for weighted fits).

    The sorted residuals against the normal quantiles at R's ``ppoints``, with the
    reference line through the quartiles (R's ``qqnorm`` and ``qqline``).

    Parameters
    ----------
    fit : LmerFit
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        One point per row used in ``ax.collections[0]``; the reference line in ``ax.lines[0]``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.qq_resid(fit)
    >>> len(ax.collections[0].get_offsets()), ax.get_ylabel()
    (180, 'Scaled residuals')
    """
    ax = axes(ax)
    qq_points(ax, _used(fit.scaled_residuals()), **kwargs)
    ax.set_ylabel("Scaled residuals")
    ax.set_title("Normal QQ plot of the residuals")
    return ax
