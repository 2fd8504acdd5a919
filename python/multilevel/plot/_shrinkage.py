"""The shrinkage plot: each group's own least-squares coefficients against the model's, with an
arrow from one to the other.

Within group j, with Z_j its rows of the random-effect columns of the grouping factor,

* the group's own estimate is the least-squares fit of y_j on Z_j (nlme's ``lmList``);
* the model's estimate is the same projection of the model's conditional fitted values,
  (Z_j'Z_j)^-1 Z_j' (X_j beta + Z_j b_j). When the fixed part has the same columns as the
  term (``y ~ x + (x | g)``) this is exactly ``fit.coef[g]``; when it also has group-level
  predictors (``+ sector``), it adds their contribution, so that both ends of an arrow
  describe the same group's line.

The arrow is therefore the group's projection of the residuals: how far the model pulled
the group's own line towards the population line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.plot._common import axes, group_codes, group_name, group_z, term_index


def group_estimates(fit: Any, group: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Per level of ``group``: own least-squares coefficients, the model's, and the row count.

    Levels with fewer rows than columns, or a rank-deficient Z_j, are left out of the first
    two tables (their own fit does not exist).
    """
    codes = group_codes(fit, group)
    Z = group_z(fit, group)
    y = np.asarray(fit.design.y, dtype=float)
    fitted = np.asarray(fit.fitted, dtype=float)
    fitted = fitted[np.isfinite(fitted)]  # rows used, if aligned with the input
    cols = list(fit.ranef[group].columns)
    levels = fit.ranef[group].index
    n = np.bincount(codes, minlength=len(levels))
    order = np.argsort(codes, kind="stable")
    own, model, kept = [], [], []
    for k, rows in enumerate(np.split(order, np.cumsum(n)[:-1])):
        Zk = Z[rows]
        if len(rows) < Zk.shape[1] or np.linalg.matrix_rank(Zk) < Zk.shape[1]:
            continue
        coef, *_ = np.linalg.lstsq(Zk, np.column_stack([y[rows], fitted[rows]]), rcond=None)
        own.append(coef[:, 0])
        model.append(coef[:, 1])
        kept.append(k)
    idx = levels[kept]
    return (
        pd.DataFrame(own, index=idx, columns=cols),
        pd.DataFrame(model, index=idx, columns=cols),
        pd.Series(n, index=levels, name="n"),
    )


def _sizes(n: np.ndarray) -> np.ndarray:
    """Marker areas growing with the group size, from 12 to 120 points^2."""
    n = np.asarray(n, dtype=float)
    span = n.max() - n.min()
    return 12.0 + 108.0 * ((n - n.min()) / span if span > 0 else np.full(n.shape, 0.5))


def shrinkage(
    fit: Any, group: str | None = None, term: Any = None, ax: Any = None, **kwargs: Any
) -> Any:
    """Per-group least-squares estimates against the model's, with arrows (a shrinkage plot).

    Each group's own least-squares coefficients (open circles, area growing with the
    group's number of rows) and the model's coefficients for it (filled), joined by an arrow
    from the first to the second; the population estimate (``fit.fixef``, 0 for a term
    without a fixed counterpart) is marked. See the module notes for what "the model's
    coefficients" are when the fixed part has group-level predictors.

    With two terms (default, when the factor has at least two: the first two) the plot is
    the plane of the two coefficients; with one term the groups are stacked vertically,
    sorted by their own estimate, and the arrows are horizontal.

    Parameters
    ----------
    fit : LmerFit
    group : str, optional
        Grouping factor; default the fit's first.
    term : int, str or pair of them, optional
        One term (1-D plot) or two (2-D plot), by position or name.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to ``Axes.scatter`` for the groups' own estimates.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.collections[0]`` the own estimates, ``[1]`` the model's, ``[2]`` the arrows (a
        ``Quiver``, one arrow per group with its own fit); the population estimate is a
        marker line (2-D) or a vertical line (1-D) in ``ax.lines``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> from multilevel import plot
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> ax = plot.shrinkage(fit)
    >>> len(ax.collections[2].U), ax.get_xlabel(), ax.get_ylabel()
    (18, '(Intercept)', 'Days')
    """
    g = group_name(fit, group)
    own, model, n = group_estimates(fit, g)
    cols = list(own.columns)
    if term is None:
        picked = [0, 1] if len(cols) > 1 else [0]
    elif isinstance(term, (list, tuple)):
        picked = [term_index(cols, t, g) for t in term]
    else:
        picked = [term_index(cols, term, g)]
    if len(picked) not in (1, 2):
        raise ValueError(f"term must name one or two terms, got {term!r}")
    fe = fit.fixef
    pop = [float(fe[cols[k]]) if cols[k] in fe.index else 0.0 for k in picked]
    a, b = own.iloc[:, picked].to_numpy(), model.iloc[:, picked].to_numpy()
    if len(picked) == 1:
        order = np.argsort(a[:, 0], kind="stable")
        y = np.arange(len(order), dtype=float)
        a = np.column_stack([a[order, 0], y])
        b = np.column_stack([b[order, 0], y])
        sizes = _sizes(n[own.index].to_numpy()[order])
    else:
        sizes = _sizes(n[own.index].to_numpy())
    tall = min(10.0, max(3.0, 0.16 * len(a) + 1.0))
    ax = axes(ax, figsize=(6.0, 5.0) if len(picked) == 2 else (5.0, tall))
    kwargs.setdefault("facecolors", "none")
    kwargs.setdefault("edgecolors", "C0")
    ax.scatter(a[:, 0], a[:, 1], s=sizes, label="own least squares", zorder=3, **kwargs)
    ax.scatter(b[:, 0], b[:, 1], s=sizes, color="C1", label="mixed model", zorder=3)
    ax.quiver(
        a[:, 0],
        a[:, 1],
        b[:, 0] - a[:, 0],
        b[:, 1] - a[:, 1],
        angles="xy",
        scale_units="xy",
        scale=1.0,
        width=0.004,
        headwidth=4,
        headlength=5,
        headaxislength=4.5,
        color="0.3",
        zorder=4,
    )
    if len(picked) == 2:
        ax.plot(
            [pop[0]],
            [pop[1]],
            marker="P",
            ms=11,
            color="C3",
            ls="none",
            label="population",
            zorder=4,
        )
        ax.set_xlabel(cols[picked[0]])
        ax.set_ylabel(cols[picked[1]])
    else:
        ax.axvline(pop[0], color="C3", lw=1.2, label="population")
        ax.set_yticks([])
        ax.set_xlabel(cols[picked[0]])
        ax.set_ylabel(f"{g} (sorted by own estimate)")
    ax.set_title(f"Shrinkage: {g}")
    ax.legend(loc="best", fontsize="small")
    return ax
