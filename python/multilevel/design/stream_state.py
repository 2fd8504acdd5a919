"""center() and scale() in streamed formulas: formulaic's stateful transforms learn a mean and a
standard deviation from the data they first see, and one batch is not the data. Pass 1 of a
stream (:mod:`multilevel.design.stream`) evaluates each ``center(...)``/``scale(...)`` call's
argument on every batch's complete rows with stand-ins that keep the rows' count, mean and sum
of squared deviations in formulaic's state of the call (:func:`moments_batch`); the batches
merge as Chan, Golub and LeVeque (:func:`final_state`) into the state formulaic would have
computed on all those rows at once, which pass 2 puts into the first batch's model spec, so
that every batch (and ``predict(newdata)``) is transformed as the in-memory design is.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from multilevel.contextual import formula_context
from multilevel.data import pandas_frame
from multilevel.design.matrix import quote_columns, reraise_own
from multilevel.exceptions import DataError

__all__ = ["final_state", "moments_batch", "stateful_calls"]

STREAMED_STATEFUL = ("center", "scale")


def stateful_calls(expr: str) -> list[str]:
    """The ``center(...)`` and ``scale(...)`` calls of an expression, as written.

    >>> stateful_calls("x + scale(np.log(z), ddof=0):f + center(w)")
    ['scale(np.log(z), ddof=0)', 'center(w)']
    """
    out = []
    names = "|".join(STREAMED_STATEFUL)
    for m in re.finditer(rf"(?<![\w.`])(?:{names})\(", expr):
        depth = 0
        for j in range(m.end() - 1, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            if depth == 0:
                out.append(expr[m.start() : j + 1])
                break
    return out


def _moments(data: Any, center: Any, scale: Any, ddof: float, state: dict) -> np.ndarray:
    """Pass 1's stand-in for formulaic's scale(): the rows' count, mean (two passes) and sum
    of squared deviations, with the call's arguments, kept in formulaic's state of the call."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 1:
        raise DataError("center() and scale() of streamed data take one numeric column")
    n = len(x)
    mean = float(x.mean()) if n else 0.0
    if n:
        mean += float((x - mean).mean())
    state.update(n=n, mean=mean, m2=float(((x - mean) ** 2).sum()), args=(center, scale, ddof))
    return x


def _record_transforms() -> dict[str, Any]:
    from formulaic.utils.stateful_transforms import stateful_transform

    @stateful_transform
    def scale(data, center=True, scale=True, ddof=1, _state={}):  # noqa: B006 (formulaic's)
        return _moments(data, center, scale, ddof, _state)

    @stateful_transform
    def center(data, _state={}):  # noqa: B006
        return _moments(data, True, False, 1, _state)

    return {"scale": scale, "center": center}


def moments_batch(plan: Any, frame: Any, seen: dict) -> None:
    """Pass 1: the moments of each center()/scale() argument over a batch's complete rows,
    under formulaic's key of the call (the key of its state in the model specs)."""
    exprs = [plan.parsed.fixed] + [t.expr for t in plan.parsed.random]
    calls = list(dict.fromkeys(c for e in exprs for c in stateful_calls(e)))
    if not calls:
        return
    import formulaic

    expr, _ = quote_columns("0 + " + " + ".join(calls), frame.columns, plan.formula)
    context = {**formula_context(), **_record_transforms()}
    try:
        mm = formulaic.model_matrix(
            expr, pandas_frame(frame), na_action="ignore", output="pandas", context=context
        )
    except Exception as exc:
        reraise_own(exc)
        raise DataError(f"cannot evaluate {', '.join(calls)}: {exc}") from None
    for key, state in mm.model_spec.transform_state.items():
        if state.get("n"):
            seen.setdefault(("moments", key), []).append(
                (state["n"], state["mean"], state["m2"], state["args"])
            )


def final_state(parts: list) -> dict:
    """formulaic's state of a scale() call (``center``, ``scale``, ``ddof``) from the batches'
    (n, mean, m2, args), merged as Chan, Golub and LeVeque: what the call computes on all the
    rows at once (numpy's mean, and sqrt(sum (x - center)^2 / (n - ddof)))."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b, _ in parts:
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    center, scale, ddof = parts[0][3]
    c = (np.float64(mean) if center else None) if isinstance(center, bool) else np.array(center)
    if isinstance(scale, bool):
        off = 0.0 if c is None else float(c)
        ss = m2 + n * (mean - off) ** 2 if not (isinstance(center, bool) and center) else m2
        s = np.sqrt(np.float64(ss) / (n - ddof)) if scale else None
    else:
        s = np.array(scale)
    return {"ddof": ddof, "center": c, "scale": s}
