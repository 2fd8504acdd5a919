"""Plots of the conditional modes of the random effects (lme4's ``ranef(fit, condVar = TRUE)``):
the caterpillar plot, their normal QQ plot, and the scatter of two random coefficients with
the ellipse of their estimated covariance."""

from __future__ import annotations

from typing import Any

import numpy as np

from multilevel.plot._common import (
    axes,
    group_name,
    level_labels,
    normal_quantile,
    ppoints,
    re_covariance,
    term_index,
)


def caterpillar(
    fit: Any,
    group: str | None = None,
    term: int | str | None = None,
    level: float = 0.95,
    ax: Any = None,
    **kwargs: Any,
) -> Any:
    """Conditional modes of one random effect with their intervals, sorted (a caterpillar plot).

    The display of lme4's ``dotplot(ranef(fit, condVar = TRUE))`` for one term: each level's
    conditional mode b_j with the interval b_j +/- z sqrt(var_j), where var_j is the
    conditional variance (``fit.ranef_condvar``) and z the normal quantile for ``level``;
    levels sorted by their mode, a vertical line at 0.

    Parameters
    ----------
    fit : LmerFit
    group : str, optional
        Grouping factor; default the fit's first.
    term : int or str, optional
        Random-effect term (position or name, e.g. ``"Days"``); default the first.
    level : float
        Coverage of the intervals (0.95).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kwargs
        Passed to ``Axes.scatter`` for the points (``color``, ``s``, ``marker``, ...).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.collections[0]`` holds the points (one per level, bottom to top in sorted
        order), ``ax.collections[1]`` the intervals.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.caterpillar(fit, term="Days")
    >>> len(ax.collections[0].get_offsets()), ax.get_xlabel()
    (18, 'Conditional mode of Days')
    """
    g = group_name(fit, group)
    re = fit.ranef[g]
    j = term_index(list(re.columns), term, g)
    name = re.columns[j]
    mode = re.iloc[:, j].to_numpy()
    half = normal_quantile(level) * np.sqrt(np.asarray(fit.ranef_condvar[g])[:, j, j])
    order = np.argsort(mode, kind="stable")
    y = np.arange(len(mode))
    ax = axes(ax, figsize=(5.0, min(10.0, max(3.0, 0.16 * len(mode) + 1.0))))
    kwargs.setdefault("color", "C0")
    kwargs.setdefault("s", 16)
    ax.scatter(mode[order], y, zorder=3, **kwargs)
    ax.hlines(y, (mode - half)[order], (mode + half)[order], color=kwargs["color"], lw=1.2)
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    level_labels(ax, y, [str(v) for v in re.index[order]], "y")
    ax.set_ylim(-1, len(mode))
    ax.set_xlabel(f"Conditional mode of {name}")
    ax.set_ylabel(g)
    ax.set_title(f"{g}: {name} ({level:.0%} intervals)")
    return ax


def qq_ranef(
    fit: Any, group: str | None = None, term: int | str | None = None, ax: Any = None, **kwargs: Any
) -> Any:
    """Normal QQ plot of the conditional modes of one random effect.

    The sorted modes against the normal quantiles at R's ``ppoints``, with the reference
    line through the quartiles (R's ``qqline``). Conditional modes are shrunk towards 0, so
    the slope of the line is below the estimated standard deviation of the effect.

    Parameters
    ----------
    fit : LmerFit
    group : str, optional
        Grouping factor; default the fit's first.
    term : int or str, optional
        Random-effect term (position or name); default the first.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        One point per level in ``ax.collections[0]``; the reference line in ``ax.lines[0]``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.qq_ranef(fit, term="(Intercept)")
    >>> len(ax.collections[0].get_offsets()), len(ax.lines)
    (18, 1)
    """
    g = group_name(fit, group)
    re = fit.ranef[g]
    j = term_index(list(re.columns), term, g)
    ax = axes(ax)
    qq_points(ax, re.iloc[:, j].to_numpy(), **kwargs)
    ax.set_ylabel(f"Conditional mode of {re.columns[j]}")
    ax.set_title(f"Normal QQ plot: {g}, {re.columns[j]}")
    return ax


def qq_points(ax: Any, values: np.ndarray, **kwargs: Any) -> None:
    """Sorted ``values`` against normal quantiles, and the line through the quartiles."""
    from scipy import stats

    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    q = stats.norm.ppf(ppoints(len(v)))
    kwargs.setdefault("s", 12)
    ax.scatter(q, v, **kwargs)
    y1, y2 = np.quantile(v, [0.25, 0.75])
    x1, x2 = stats.norm.ppf([0.25, 0.75])
    slope = (y2 - y1) / (x2 - x1)
    ax.axline((x1, y1), slope=slope, color="C3", lw=1.0)
    ax.set_xlabel("Standard normal quantiles")


def ranef_scatter(
    fit: Any,
    group: str | None = None,
    terms: tuple[int | str, int | str] = (0, 1),
    level: float = 0.95,
    ax: Any = None,
    **kwargs: Any,
) -> Any:
    """Scatter of two random coefficients with the ellipse of their estimated covariance.

    Points are the levels' conditional modes of the two terms; the ellipse is the region
    holding ``level`` of a bivariate normal with mean 0 and the covariance estimated for the
    two effects (from ``fit.varcorr``): x' S^-1 x <= chi2_2(level). The modes are shrunk, so
    they spread less than the ellipse; terms from ``||`` have covariance 0 (an upright
    ellipse).

    Parameters
    ----------
    fit : LmerFit
    group : str, optional
        Grouping factor (with at least two random-effect terms); default the fit's first.
    terms : pair of int or str
        The two terms, by position or name; the first on the x axis.
    level : float
        Probability content of the ellipse.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        Points in ``ax.collections[0]``, the ellipse in ``ax.patches[0]``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.ranef_scatter(fit)
    >>> len(ax.collections[0].get_offsets()), type(ax.patches[0]).__name__
    (18, 'Ellipse')
    """
    from matplotlib.patches import Ellipse
    from scipy import stats

    g = group_name(fit, group)
    re = fit.ranef[g]
    cols = list(re.columns)
    if len(cols) < 2:
        raise ValueError(f"{g!r} has one random-effect term ({cols[0]}); a scatter needs two")
    i, j = (term_index(cols, t, g) for t in terms)
    if i == j:
        raise ValueError(f"terms must differ, got {cols[i]!r} twice")
    S = re_covariance(fit, g, [cols[i], cols[j]])
    evals, evecs = np.linalg.eigh(S)
    r = np.sqrt(stats.chi2.ppf(level, 2))
    minor, major = 2 * r * np.sqrt(np.clip(evals, 0.0, None))  # eigh: ascending
    angle = np.degrees(np.arctan2(evecs[1, 1], evecs[0, 1]))  # direction of the larger axis
    ax = axes(ax)
    kwargs.setdefault("s", 16)
    ax.scatter(re.iloc[:, i], re.iloc[:, j], zorder=3, **kwargs)
    ax.add_patch(
        Ellipse((0.0, 0.0), width=major, height=minor, angle=angle, fill=False, color="C3", lw=1.2)
    )
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.axvline(0.0, color="0.7", lw=0.6)
    ax.autoscale_view()
    ax.set_xlabel(cols[i])
    ax.set_ylabel(cols[j])
    ax.set_title(f"{g}: conditional modes and {level:.0%} ellipse")
    return ax
