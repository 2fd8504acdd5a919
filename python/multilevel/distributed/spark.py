"""``ml.lmer`` on a PySpark DataFrame: the rows stay in Spark, only cross-products travel.

Two Spark jobs, both with ``mapInArrow`` (each partition's record batches, never the rows on
the driver):

1. the distinct values of the grouping factors (and of non-numeric fixed columns) over each
   partition's complete rows and its counts of rows read and dropped, pickled, collected; the
   driver puts the levels in R's order (:func:`multilevel.design.stream._finish_pass1`, as for
   every streamed source);
2. per partition, one ``multilevel._core.Accumulator`` over its batches (the same
   per-batch design as every streamed source), serialised with its ``to_bytes`` inside a
   pickled :class:`multilevel.distributed.partials.Partial`, then ``treeReduce``\\ d with
   ``Accumulator.merge`` on the executors.

The optimiser runs on the driver on the reduced accumulator: the objective is the in-memory
one to 1e-10 relative whatever the partitioning. When X'X leaves the rank of X in doubt, one
more job computes R's rank rule (as for the other streamed sources).

Needs ``pyspark`` (the ``spark`` extra) and a Java runtime.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np

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
    Partial,
    _first_pass,
    _merge,
    _partition_frames,
    collect_levels,
    pass2_of,
    reduce_full_rank,
)
from multilevel.exceptions import DataError
from multilevel.formula import parse

__all__ = ["fit_spark", "is_spark"]


def is_spark(data: Any) -> bool:
    """True for a ``pyspark.sql.DataFrame`` (classic or Spark Connect)."""
    return type(data).__module__.startswith("pyspark.sql") and hasattr(data, "mapInArrow")


def _pickled_batch(obj: Any) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pydict(
        {"part": [pickle.dumps(obj)]}, schema=pa.schema([("part", pa.binary())])
    )


def _levels_job(formula: str, cols: list[str], weights: Any, offset: Any):
    def run(batches: Iterator[Any]) -> Iterator[Any]:
        seen: dict = {}
        n_read = n_dropped = 0
        for batch in batches:
            s, r, d = _first_pass(formula, cols, weights, offset, batch.to_pandas())
            n_read, n_dropped = n_read + r, n_dropped + d
            for k, v in s.items():
                seen.setdefault(k, []).extend(v)
        yield _pickled_batch((seen, n_read, n_dropped))

    return run


def _accumulate_job(plan: Any, qr: bool):
    def run(batches: Iterator[Any]) -> Iterator[Any]:
        frames = ((f"batch {k} of a Spark partition", b.to_pandas()) for k, b in enumerate(batches))
        yield _pickled_batch(_partition_frames(plan, frames, qr))

    return run


def _merge_pickled(a: bytes, b: bytes) -> bytes:
    return pickle.dumps(_merge([pickle.loads(a), pickle.loads(b)]))


def fit_spark(
    formula: str,
    sdf: Any,
    weights: Any = None,
    offset: Any = None,
    data_name: str | None = None,
    depth: int = 2,
) -> tuple[StreamedDesign, Any, dict[str, int]]:
    """Levels by a Spark job, a partial accumulator per partition (``mapInArrow``), a
    ``treeReduce`` of the accumulators' bytes, the problem on the driver: (design, problem,
    row counts)."""

    parsed = parse(formula)
    cols = columns_of(parsed, weights, offset)
    missing = [c for c in cols if c not in sdf.columns]
    if missing:
        raise DataError(f"the Spark frame has no column {', '.join(repr(c) for c in missing)}")
    sdf = sdf.select(*cols)
    p = new_plan(formula, weights, offset)

    job = _levels_job(formula, cols, weights, offset)
    rows = sdf.mapInArrow(job, "part binary").collect()
    seen = collect_levels(p, (pickle.loads(bytes(row[0])) for row in rows))
    _finish_pass1(p, seen, {})

    def reduce(keep: np.ndarray | None, qr: bool = False) -> Pass2:
        p.keep = keep
        parts = sdf.mapInArrow(_accumulate_job(p, qr), "part binary").rdd.map(
            lambda row: bytes(row[0])
        )
        m: Partial = pickle.loads(parts.treeReduce(_merge_pickled, depth=depth))
        return pass2_of(p, m, qr)

    out = reduce_full_rank(p, reduce)
    design = design_of(p, out, data_name)
    warn_dropped(out.n_dropped, stacklevel=6)
    counts = {"read": p.n_read, "dropped": out.n_dropped, "used": out.n_used}
    return design, out.acc.problem(), counts
