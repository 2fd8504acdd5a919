"""Profile (zeta) plots: for each parameter psi, zeta(psi) = sign(psi - psi_hat)
sqrt(d(psi) - d_hat) against psi (lme4's ``xyplot(profile(fit))``). A straight line means a
quadratic log-likelihood, where Wald intervals are good; the profile interval at ``level`` is
where |zeta| <= z, marked by its ends."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from multilevel.plot._common import normal_quantile, pyplot


def traces_of(traces: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{parameter: (values, zeta)}`` sorted by value, from a dict of pairs or a DataFrame
    with columns ``parameter``, ``value``, ``zeta``."""
    if isinstance(traces, pd.DataFrame):
        missing = {"parameter", "value", "zeta"} - set(traces.columns)
        if missing:
            raise KeyError(
                f"profile traces need columns parameter, value, zeta; missing {sorted(missing)}"
            )
        pairs = {
            str(p): (d["value"].to_numpy(), d["zeta"].to_numpy())
            for p, d in traces.groupby("parameter", sort=False)
        }
    elif isinstance(traces, Mapping):
        pairs = {str(k): (np.asarray(v[0]), np.asarray(v[1])) for k, v in traces.items()}
    else:
        raise TypeError(
            "profile traces must be a dict name -> (values, zeta) or a DataFrame "
            f"with columns parameter, value, zeta; got {type(traces).__name__}"
        )
    out = {}
    for name, (v, zt) in pairs.items():
        v, zt = np.asarray(v, dtype=float), np.asarray(zt, dtype=float)
        if v.shape != zt.shape:
            raise ValueError(f"{name}: values and zeta differ in length")
        ok = np.isfinite(v) & np.isfinite(zt)
        order = np.argsort(v[ok], kind="stable")
        out[name] = (v[ok][order], zt[ok][order])
    return out


def interval_ends(values: np.ndarray, zeta: np.ndarray, z: float) -> list[float]:
    """Where the trace crosses -z and +z (linear interpolation), for those it reaches."""
    ends = []
    for target in (-z, z):
        s = zeta - target
        cross = np.flatnonzero(np.sign(s[:-1]) * np.sign(s[1:]) <= 0)
        if len(cross) == 0:
            continue
        i = cross[0] if target < 0 else cross[-1]
        if s[i] == s[i + 1]:
            ends.append(float(values[i]))
        else:
            ends.append(float(values[i] + (values[i + 1] - values[i]) * s[i] / (s[i] - s[i + 1])))
    return ends


def profile(
    traces: Any,
    parameters: Sequence[str] | None = None,
    level: float = 0.95,
    ax: Any = None,
    fig: Any = None,
    ncols: int = 3,
    **kwargs: Any,
) -> Any:
    """Profile zeta against each parameter, one panel per parameter.

    Each panel draws the trace, horizontal lines at zeta = -z and +z (z = 1.96 for the
    default ``level``) and vertical lines at the ends of the profile interval, where the
    trace crosses them.

    Parameters
    ----------
    traces : dict or DataFrame
        ``{name: (values, zeta)}`` (what ``fit.profile()`` returns) or a DataFrame with
        columns ``parameter``, ``value``, ``zeta``.
    parameters : list of str, optional
        The parameters to draw, in order; default all.
    level : float
        Coverage of the interval marked.
    ax : Axes or sequence of Axes, optional
        One Axes per parameter drawn (a single Axes for one parameter).
    fig : matplotlib Figure, optional
        Figure to draw new panels on (ignored when ``ax`` is given).
    ncols : int
        Panels per row of a new figure.
    **kwargs
        Passed to ``Axes.plot`` for the traces.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per parameter (``fig.axes``, unused cells removed), each with
        ``lines[0]`` the trace, ``lines[1:3]`` the lines at -z and +z, then the interval ends.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from multilevel import plot
    >>> v = np.linspace(-1.0, 3.0, 9)
    >>> fig = plot.profile({"beta": (v, 2.0 * (v - 1.0))})
    >>> ax = fig.axes[0]
    >>> len(ax.lines), ax.get_xlabel(), ax.get_ylabel()
    (5, 'beta', 'zeta')
    >>> [round(float(line.get_xdata()[0]), 2) for line in ax.lines[3:]]
    [0.02, 1.98]
    """
    tr = traces_of(traces)
    names = list(tr) if parameters is None else [str(p) for p in parameters]
    unknown = [p for p in names if p not in tr]
    if unknown:
        raise KeyError(f"no profile for {unknown}; the traces have {list(tr)}")
    z = normal_quantile(level)
    if ax is not None:
        axs = [ax] if not isinstance(ax, (Sequence, np.ndarray)) else list(np.ravel(ax))
        if len(axs) != len(names):
            raise ValueError(f"{len(names)} parameters to draw but {len(axs)} Axes given")
        fig = axs[0].figure
    else:
        nc = max(1, min(ncols, len(names)))
        nr = math.ceil(len(names) / nc)
        if fig is None:
            fig = pyplot().figure(figsize=(3.2 * nc, 2.8 * nr), layout="constrained")
        grid = fig.subplots(nr, nc, squeeze=False).ravel()
        for extra in grid[len(names) :]:
            extra.remove()
        axs = list(grid[: len(names)])
    kwargs.setdefault("color", "C0")
    for a, name in zip(axs, names):
        v, zt = tr[name]
        a.plot(v, zt, marker="o", ms=3, **kwargs)
        for h in (-z, z):
            a.axhline(h, color="0.5", lw=0.8, ls="--")
        for end in interval_ends(v, zt, z):
            a.axvline(end, color="C3", lw=0.8)
        a.set_xlabel(name)
        a.set_ylabel("zeta")
    fig.suptitle(f"Profile zeta ({level:.0%} interval marked)")
    return fig
