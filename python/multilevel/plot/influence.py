"""Index plot of an influence diagnostic per group, as HLMdiag's ``dotplot_diag``.

The groups are sorted by the diagnostic and drawn one per row (the largest at the top), the
value along x; a vertical line marks the cutoff, and the groups beyond it are drawn as red
triangles and labelled. The default cutoff is HLMdiag's "internal" one: ``Q3 + 3 IQR`` of the
values (for ``covratio`` and the ``rvc`` columns, values outside ``Q1 - 3 IQR .. Q3 + 3 IQR``
are flagged, with a line at each end).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.plot._common import axes

__all__ = ["influence"]

_TWO_SIDED = ("covratio",)
_LABELS = {
    "cooksd": "Cook's distance",
    "mdffits": "MDFFITS",
    "covtrace": "COVTRACE",
    "covratio": "COVRATIO",
}


def _cutoffs(values: np.ndarray, two_sided: bool) -> tuple[float, float]:
    q1, q3 = np.quantile(values, [0.25, 0.75])
    iqr = q3 - q1
    return (q1 - 3.0 * iqr if two_sided else -np.inf), q3 + 3.0 * iqr


def influence(
    fit: Any,
    level: str | None = None,
    diagnostic: str = "cooksd",
    cutoff: float | str = "internal",
    ax: Any = None,
    **kwargs: Any,
) -> Any:
    """Dot plot of one influence diagnostic per group with its cutoff (HLMdiag's
    ``dotplot_diag``).

    Parameters
    ----------
    fit : LmerFit or DataFrame
        A fit (its :meth:`~multilevel.LmerFit.influence` is computed for ``level``) or the
        table that ``fit.influence()`` returned.
    level : str, optional
        The grouping factor (only with a fit).
    diagnostic : str
        A column of the table: ``"cooksd"`` (default), ``"mdffits"``, ``"covtrace"``,
        ``"covratio"``, ``"rvc.sigma2"``, ...
    cutoff : float, (low, high) or "internal"
        Groups above it (or outside ``(low, high)``) are flagged; ``"internal"``:
        ``Q3 + 3 IQR`` of the values (outside ``Q1 - 3 IQR .. Q3 + 3 IQR`` for COVRATIO and
        the rvc columns).
    ax : matplotlib Axes, optional
    **kwargs
        Styling of the points within the cutoff (``Axes.scatter``).

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> import multilevel.plot as mlp
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
    >>> mlp.influence(fit, "Subject").get_xlabel()
    "Cook's distance"
    """
    frame = fit if isinstance(fit, pd.DataFrame) else fit.influence(level)
    if diagnostic not in frame.columns:
        cols = [c for c in frame.columns if c not in ("nobs", "converged")]
        raise KeyError(f"no diagnostic {diagnostic!r}; the table has {cols}")
    values = frame[diagnostic].astype(float)
    values = values[np.isfinite(values.to_numpy())].sort_values(kind="stable")
    v = values.to_numpy()
    two_sided = diagnostic in _TWO_SIDED or diagnostic.startswith("rvc.")
    if isinstance(cutoff, str):
        if cutoff != "internal":
            raise ValueError(f"cutoff must be a number or 'internal', not {cutoff!r}")
        lo, hi = _cutoffs(v, two_sided)
    elif isinstance(cutoff, (tuple, list)):
        lo, hi = float(cutoff[0]), float(cutoff[1])
    else:
        lo, hi = -np.inf, float(cutoff)
    pos = np.arange(1, len(v) + 1)
    extreme = (v > hi) | (v < lo)
    ax = axes(ax, figsize=(5.0, max(3.0, 0.12 * len(v) + 1.0)) if len(v) <= 60 else None)
    kwargs.setdefault("color", "C0")
    kwargs.setdefault("s", 14)
    ax.scatter(v[~extreme], pos[~extreme], **kwargs)
    if extreme.any():
        ax.scatter(v[extreme], pos[extreme], color="C3", marker="^", s=30, zorder=3)
        for x, y, name in zip(v[extreme], pos[extreme], values.index[extreme]):
            ax.annotate(
                str(name), (x, y), xytext=(0, -9), textcoords="offset points", ha="center",
                fontsize=8,
            )  # fmt: skip
    for c in (lo, hi):
        if np.isfinite(c):
            ax.axvline(c, color="C3", lw=1.0)
    ax.set_yticks([])
    ax.set_xlabel(_LABELS.get(diagnostic, diagnostic))
    group = frame.attrs.get("level", frame.index.name)
    ax.set_title(f"Influence of each {group}" if group else "Influence of each group")
    return ax
