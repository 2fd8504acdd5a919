"""``ml.lmer`` on a Dask DataFrame: levels from every partition, a partial accumulator per
partition (bytes), an associative tree reduction, the optimiser on the client; fitted values
and residuals come back lazily as Dask Series (:func:`dask_fitted`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.design.stream import (
    Pass2,
    StreamedDesign,
    _finish_pass1,
    columns_of,
    design_of,
    new_plan,
    warn_dropped,
)
from multilevel.distributed.partials import (
    _first_pass,
    _merge,
    _partition,
    collect_levels,
    pass2_of,
    reduce_full_rank,
)
from multilevel.exceptions import DataError
from multilevel.formula import parse

__all__ = ["dask_rowwise", "fit_dask", "is_dask"]


def is_dask(data: Any) -> bool:
    """True for a Dask DataFrame."""
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(
        data, "map_partitions"
    )


def fit_dask(
    formula: str,
    ddf: Any,
    weights: Any = None,
    offset: Any = None,
    data_name: str | None = None,
    split_every: int = 8,
) -> tuple[StreamedDesign, Any, dict[str, int]]:
    """Levels from the whole frame, a partial accumulator per partition (bytes), a tree
    reduction (``from_bytes`` + ``merge``), the problem on the client."""
    import dask
    import pyarrow as pa

    parsed = parse(formula)
    cols = columns_of(parsed, weights, offset)
    missing = [c for c in cols if c not in ddf.columns]
    if missing:
        raise DataError(f"the Dask frame has no column {', '.join(repr(c) for c in missing)}")
    ddf = ddf[cols]
    p = new_plan(formula, weights, offset)
    meta = pa.Schema.from_pandas(ddf._meta, preserve_index=False)
    p.schema = meta.remove_metadata()

    parts = dask.compute(
        *[dask.delayed(_first_pass)(formula, cols, weights, offset, d) for d in ddf.to_delayed()]
    )
    seen = collect_levels(p, parts)
    dictionaries = {
        c: list(ddf._meta[c].cat.categories)
        for c in cols
        # known categories: the Dask column says so (its meta's pandas accessor cannot)
        if isinstance(ddf._meta[c].dtype, pd.CategoricalDtype) and ddf[c].cat.known
    }
    _finish_pass1(p, seen, dictionaries)

    def reduce(keep: np.ndarray | None, qr: bool = False) -> Pass2:
        p.keep = keep
        level = [
            dask.delayed(_partition)(p, d, f"partition {k}", qr)
            for k, d in enumerate(ddf.to_delayed())
        ]
        while len(level) > 1:
            level = [
                dask.delayed(_merge)(level[i : i + split_every])
                for i in range(0, len(level), split_every)
            ]
        return pass2_of(p, dask.compute(level[0])[0] if level else _merge([]), qr)

    out = reduce_full_rank(p, reduce)
    design = design_of(p, out, data_name)
    design.partitions = (ddf, p)  # fitted values and residuals, lazily (dask_rowwise)
    warn_dropped(out.n_dropped)
    counts = {"read": p.n_read, "dropped": out.n_dropped, "used": out.n_used}
    return design, out.acc.problem(), counts


def _partition_rowwise(
    df: pd.DataFrame, p: Any, beta: np.ndarray, bs: list, what: str, label: str
) -> pd.Series:
    """Fitted values (or residuals) of one partition's rows used by the fit."""
    from multilevel.design.stream import batch_arrays

    positions: list = []
    arrays, _ = batch_arrays(p, df, label, positions)
    index = df.index[positions[0]]
    if arrays is None:
        return pd.Series(np.empty(0), index=index, name=what)
    y, X, _names, terms, _w, o = arrays
    if p.keep is not None:
        X = X[:, p.keep]
    f = X @ beta
    for k, b in zip(p.order, bs):  # the fit's terms are in lme4's order
        codes, Z, _ = terms[k]
        f += np.einsum("ij,ij->i", Z, b[codes])
    if o is not None:
        f += o
    return pd.Series(y - f if what == "resid" else f, index=index, name=what)


def dask_rowwise(fit: Any, ddf: Any, p: Any, what: str) -> Any:
    """``fit.fitted`` or ``fit.resid`` of a Dask-fed fit: a lazy Dask Series, one partition
    per partition of the data (their index, the rows the fit used), computed from each
    partition's rows with the fit's beta and conditional modes."""
    beta = np.asarray(fit.beta, dtype=float)
    bs = [np.asarray(b, dtype=float) for b in fit.b]
    return ddf.map_partitions(
        _partition_rowwise,
        p,
        beta,
        bs,
        what,
        "a partition",
        meta=pd.Series(np.empty(0), name=what),
    )
