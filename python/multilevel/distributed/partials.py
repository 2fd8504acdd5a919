"""Partial accumulators of partitions (Dask, Spark): one per partition, as bytes with what
the driver's design needs, merged associatively (a tree reduction).

Pass 1 over a partition (:func:`_first_pass`) gives its distinct values and row counts; pass
2 (:func:`_partition_frames`) its :class:`Partial`; :func:`_merge` adds Partials (the
accumulators through ``Accumulator.merge``, X'X by summing, or the R of X by a QR of the
stacked R's).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.design.fast import gram_full_rank
from multilevel.design.stream import (
    Pass2,
    StreamPlan,
    _pass1_batch,
    _qr_r,
    _rank_keep,
    accumulate_frames,
)
from multilevel.exceptions import DataError
from multilevel.formula import parse

__all__ = ["Partial"]

_DESIGN_LOCK = threading.Lock()


@dataclass
class Partial:
    """A Dask partition's (or a merged group's) accumulator as bytes, with the X'X (or the R,
    ``gram`` False) of its X, its row counts and what the client's design needs (names, each
    Z's width, specs)."""

    acc: bytes | None
    r: np.ndarray | None
    n_dropped: int
    n_used: int
    x_names: list[str] | None = None
    z_names: list[list[str]] | None = None
    z_q: list[int] | None = None
    specs: Any = None
    gram: bool = True


def _partition(p: StreamPlan, df: pd.DataFrame, label: str, qr: bool = False) -> Partial:
    """Pass 2 over one partition (a Dask partition's frame)."""
    return _partition_frames(p, iter([(label, df)]), qr)


def _partition_frames(
    p: StreamPlan, frames: Iterator[tuple[str, pd.DataFrame]], qr: bool = False
) -> Partial:
    """Pass 2 over the frames of one partition (a Dask partition, the batches of a Spark
    partition), with a copy of the plan (threads of one process share it)."""
    import copy

    p = copy.copy(p)
    n_rows = [0]

    def counted() -> Iterator[tuple[str, pd.DataFrame]]:
        for label, df in frames:
            n_rows[0] += len(df)
            yield label, df

    try:
        with _DESIGN_LOCK:  # formulaic is not known to be thread-safe; a process builds serially
            out = accumulate_frames(p, counted(), threads=1, qr=qr)
    except DataError as exc:
        if str(exc).startswith("no rows left"):
            return Partial(None, None, n_rows[0], 0, gram=not qr)
        raise
    return Partial(
        out.acc.to_bytes(),
        out.r,
        out.n_dropped,
        out.n_used,
        out.x_names,
        out.z_names,
        p.z_q,
        p.specs,
        out.gram,
    )


def _first_pass(formula: str, cols: list[str], weights: Any, offset: Any, df: pd.DataFrame):
    """Pass 1 over one partition: (distinct values, rows read, rows dropped)."""
    q = StreamPlan(formula, parse(formula), cols, weights, offset)
    seen: dict = {}
    with _DESIGN_LOCK:
        _pass1_batch(q, df, "a partition", seen)
    return seen, q.n_read, q.n_dropped


def _merge(parts: list[Partial]) -> Partial:
    """Partials merged (an associative step of the tree reduction)."""
    from multilevel import _core

    acc, out = None, Partial(None, None, 0, 0)
    for part in parts:
        out.n_dropped += part.n_dropped
        if part.acc is None:
            continue
        a = _core.Accumulator.from_bytes(part.acc, threads=1)
        if acc is None:
            acc, n_dropped = a, out.n_dropped
            out = Partial(
                None,
                part.r,
                n_dropped,
                part.n_used,
                part.x_names,
                part.z_names,
                part.z_q,
                part.specs,
                part.gram,
            )
        else:
            acc.merge(a)
            out.r = out.r + part.r if out.gram else _qr_r(np.vstack([out.r, part.r]))
            out.n_used += part.n_used
    out.acc = None if acc is None else acc.to_bytes()
    return out


def collect_levels(p: StreamPlan, parts: Any) -> dict:
    """Pass 1's per-partition results (levels seen, rows read, rows dropped) added into the
    plan's counts; the levels of each column, concatenated."""
    seen: dict = {}
    for s, n_read, n_dropped in parts:
        p.n_read += n_read
        p.n_dropped += n_dropped
        for k, v in s.items():
            seen.setdefault(k, []).extend(v)
    return seen


def pass2_of(p: StreamPlan, m: Partial, qr: bool) -> Pass2:
    """The reduced partial of pass 2 as the driver's accumulator."""
    from multilevel import _core

    if m.acc is None:
        raise DataError("no rows left after dropping rows with missing values")
    p.z_q, p.specs = m.z_q, m.specs
    acc = _core.Accumulator.from_bytes(m.acc)
    return Pass2(acc, m.x_names, m.z_names, m.r, m.n_dropped, m.n_used, gram=not qr)


def reduce_full_rank(p: StreamPlan, reduce: Callable[..., Pass2]) -> Pass2:
    """Pass 2 run by ``reduce(keep, qr=)``: again with the blocked QR when X'X leaves the
    rank in doubt, and once more without the columns R's rule drops."""
    out = reduce(None)
    if not gram_full_rank(out.r):
        out = reduce(None, qr=True)
        if _rank_keep(p, out):
            out = reduce(p.keep)
    return out
