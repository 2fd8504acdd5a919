"""The rows of a streamed GLMM: pass 1 and the design pass, whose arrays are spilled to disk.

A GLMM needs its rows once per PIRLS reweighting, not once per fit: the working weights and
response change with the linear predictor. Building the design (formula, factor codes, Z)
costs far more than a reweighting, so it is built once per batch (the plan of
:mod:`multilevel.design.stream`, with the levels of pass 1) and the finished arrays are
written to a temporary folder: y, the prior weights, the offset, X and each term's codes and
Z. Every later pass memory-maps one batch at a time (the operating system's page cache keeps
them when memory allows), so memory stays bounded by a batch whatever the number of rows.

glmer's formula extras become derived columns of each batch (``StreamPlan.prepare``), as the
in-memory ``glmer`` adds them to its frame: ``cbind(s, f)`` gives the proportion and the
trials (prior weights), ``offset(expr)`` adds to ``offset=``, and a binomial factor or boolean
response becomes 0/1 (the first level, over all batches, is failure).
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multilevel import families as fm
from multilevel.design import stream
from multilevel.design.fast import gram_full_rank
from multilevel.design.rank import drop_rank_deficient
from multilevel.exceptions import DataError, FormulaError
from multilevel.formula import expr_variables, parse

# The in-memory glmer's reading of its formula extras (cbind(), offset(), scale()), reused
# batch by batch
from multilevel.models.glmm import _CBIND, _OFFSET, _SCALE, _eval, _split_args

__all__ = ["Spill", "StreamedGlmmRows", "spill_rows"]

RESPONSE, WEIGHTS, OFFSET = "__ml_y__", "__ml_w__", "__ml_o__"


@dataclass
class GlmmFrame:
    """glmer's formula rewritten to read derived columns, the source columns it needs, and
    the function that adds the derived columns to a batch."""

    formula: str
    columns: list[str]
    weighted: bool
    has_offset: bool
    off_exprs: list[str]
    prepare: Callable[[pd.DataFrame], pd.DataFrame]
    binary_levels: list[Any] | None = None  # a factor response: its levels (first = failure)
    # scale(x) as a derived column: column -> (x, mean, sd), R's scale over x's non-missing
    # values (as the in-memory glmer), filled by scale_stats before the first pass
    scales: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)


def glmm_frame(formula: str, fam: fm.Family, weights: Any, offset: Any) -> GlmmFrame:
    """The rewrite of ``models.glmm._frame`` for batches (no data needed to decide it)."""
    for extra, what in ((weights, "weights"), (offset, "offset")):
        if extra is not None and not isinstance(extra, str):
            raise DataError(f"with streamed data, {what} must be a column name")
    off_exprs = [m.group("expr") for m in _OFFSET.finditer(formula)]
    body = _OFFSET.sub("", formula)
    columns: list[str] = []
    scales: dict[str, tuple[str, float, float]] = {}
    for v in sorted(set(_SCALE.findall(body))):
        col = f"__ml_scale_{v}__"
        scales[col] = (v, math.nan, math.nan)
        body = re.sub(rf"\bscale\(\s*{re.escape(v)}\s*\)", col, body)
        columns.append(v)
    if "center(" in body or "scale(" in body:
        raise NotImplementedError(
            "center() and scale() of an expression learn from the whole data; with streamed "
            "data for glmer, add the transformed column to the data first (scale(x) of a "
            "column works)"
        )
    m = _CBIND.match(body)
    cbind = None
    if m:
        if fam.name != "binomial":
            raise fm.ResponseError("cbind(successes, failures) needs the binomial family")
        cbind = _split_args(m.group("args"))
        if len(cbind) != 2:
            raise FormulaError("cbind() takes two arguments: successes, failures", formula)
        for e in cbind:
            columns += expr_variables(e)
        body = f"{RESPONSE} ~" + m.group("rhs")
    for e in off_exprs:
        columns += expr_variables(e)
    columns += [v for v in parse(body).variables() if v != RESPONSE and v not in scales]
    columns += [c for c in (weights, offset) if c is not None]
    columns = list(dict.fromkeys(columns))
    weighted = cbind is not None or weights is not None
    has_offset = bool(off_exprs) or offset is not None
    frame = GlmmFrame(body, columns, weighted, has_offset, off_exprs, lambda df: df)
    frame.scales = scales
    frame.renamed = {col: f"scale({v})" for col, (v, _, _) in scales.items()}

    def prepare(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy(deep=False)
        for col, (v, centre, sd) in frame.scales.items():
            df[col] = (df[v].to_numpy(float) - centre) / sd
        trials = None
        if cbind is not None:
            s, f = _eval(cbind[0], df), _eval(cbind[1], df)
            bad = (s < 0) | (f < 0)
            if np.any(bad):
                raise fm.ResponseError(
                    f"binomial response: negative successes or failures in {int(bad.sum())} rows"
                )
            trials = s + f
            df[RESPONSE] = np.where(trials > 0, s / np.where(trials > 0, trials, 1.0), 0.0)
        elif frame.binary_levels is not None:
            lhs = parse(body).response
            v = df[lhs]
            df[lhs] = np.where(v.isna(), np.nan, (v != frame.binary_levels[0]).astype(float))
        if weighted:
            w = None if weights is None else df[weights].to_numpy(float)
            df[WEIGHTS] = trials if w is None else (w if trials is None else w * trials)
        if has_offset:
            o = np.zeros(len(df)) if offset is None else df[offset].to_numpy(float)
            for e in off_exprs:
                o = o + _eval(e, df)
            df[OFFSET] = o
        return df

    frame.prepare = prepare
    return frame


def scale_stats(source: stream.Source, frame: GlmmFrame) -> None:
    """The mean and standard deviation (n - 1) of every scale(x) column over its non-missing
    values in all batches: one pass, sums about the first value seen (no cancellation for
    data far from 0)."""
    if not frame.scales:
        return
    acc: dict[str, list[float]] = {}
    for _, batch in source.batches():
        for col, (v, _, _) in frame.scales.items():
            x = np.asarray(batch.column(v).to_numpy(zero_copy_only=False), float)
            x = x[~np.isnan(x)]
            if not len(x):
                continue
            a = acc.setdefault(col, [float(x[0]), 0.0, 0.0, 0.0])
            d = x - a[0]
            a[1] += len(x)
            a[2] += float(d.sum())
            a[3] += float(d @ d)
    for col, (v, _, _) in frame.scales.items():
        shift, n, s1, s2 = acc.get(col, [0.0, 0.0, 0.0, 0.0])
        if n < 2:
            raise DataError(f"scale({v}): fewer than two non-missing values")
        mean = s1 / n
        sd = math.sqrt(max(s2 - n * mean * mean, 0.0) / (n - 1))
        frame.scales[col] = (v, shift + mean, sd)


def binary_levels(source: stream.Source, response: str, fam: fm.Family) -> list[Any] | None:
    """The levels of a non-numeric binomial response over every batch (R's factor order:
    a dictionary's order, else sorted), or None for a numeric one; a boolean is 0/1."""
    if fam.name != "binomial":
        return None
    import pyarrow as pa

    levels: set = set()
    dictionary = None
    for _, batch in source.batches():
        if response not in batch.schema.names:
            return None
        t = batch.schema.field(response).type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return None
        if pa.types.is_boolean(t):
            return [False, True]
        col = batch.column(response)
        if pa.types.is_dictionary(t):
            dictionary = list(col.dictionary.to_pylist())
        levels.update(v for v in col.to_pylist() if v is not None)
    if dictionary is not None:
        return [v for v in dictionary if v in levels] or dictionary
    ordered = sorted(levels)
    if len(ordered) > 2:
        warnings.warn(
            f"binomial response is a factor with {len(ordered)} levels: the first level "
            f"({ordered[0]!r}) is failure, all others success",
            fm.ResponseWarning,
            stacklevel=4,
        )
    return ordered


# -- the spilled design -------------------------------------------------------------------------
# Spilled designs up to this size stay in memory: opening a batch's files costs about 4 ms a
# pass, more than the arithmetic of a small batch.
MEMORY_BUDGET = 1 << 28


@dataclass
class Spill:
    """One batch's arrays, in memory (``arrays``) or on disk, where ``load()`` memory-maps
    them."""

    folder: Path
    index: int
    n: int
    names: tuple[str, ...]
    arrays: dict[str, np.ndarray] | None = None

    def load(self) -> dict[str, np.ndarray]:
        if self.arrays is not None:
            return self.arrays
        return {
            k: np.load(self.folder / f"{self.index}-{k}.npy", mmap_mode="r") for k in self.names
        }

    def write(self) -> None:
        """To disk, and out of memory."""
        if self.arrays is not None:
            for key, arr in self.arrays.items():
                np.save(self.folder / f"{self.index}-{key}.npy", arr)
            self.arrays = None


@dataclass
class StreamedGlmmRows:
    """The spilled batches and what the fit needs to know about the rows."""

    plan: stream.StreamPlan
    folder: Path
    batches: list[Spill]
    x_names: list[str]
    z_names: list[list[str]]
    keep: np.ndarray  # columns of X kept (R's rank rule)
    n_read: int
    n_dropped: int
    n_used: int
    separated: list[tuple[str, bool]] = field(default_factory=list)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for b in self.batches:
            yield b.load()


class _Separation:
    """Per column of X, the range of the rows with successes and of those with failures
    (``models.glmm.separation_columns`` over all the batches)."""

    def __init__(self) -> None:
        self.lo: dict[bool, np.ndarray] = {}
        self.hi: dict[bool, np.ndarray] = {}

    def add(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        keep = w > 0
        for flag, rows in ((True, keep & (y > 0)), (False, keep & (y < 1))):
            if rows.any():
                lo, hi = X[rows].min(axis=0), X[rows].max(axis=0)
                self.lo[flag] = lo if flag not in self.lo else np.minimum(self.lo[flag], lo)
                self.hi[flag] = hi if flag not in self.hi else np.maximum(self.hi[flag], hi)

    def columns(self, names: list[str]) -> list[tuple[str, bool]]:
        if len(self.lo) < 2:
            return []
        out = []
        for j, name in enumerate(names):
            lo = min(self.lo[True][j], self.lo[False][j])
            hi = max(self.hi[True][j], self.hi[False][j])
            if lo == hi:
                continue
            for a, b in ((False, True), (True, False)):
                if self.hi[a][j] <= self.lo[b][j]:
                    out.append((name, bool(self.hi[a][j] < self.lo[b][j])))
                    break
        return out


def spill_rows(
    p: stream.StreamPlan,
    source: stream.Source,
    fam: fm.Family,
    progress: bool | None = None,
) -> StreamedGlmmRows:
    """The design pass: each batch's complete rows through the plan, checked by the family
    (``initialize``), written to a temporary folder; X'X for the rank."""
    folder = Path(tempfile.mkdtemp(prefix="multilevel-glmer-"))
    try:
        return _spill(p, source, fam, folder, progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _spill(p, source, fam, folder: Path, progress) -> StreamedGlmmRows:
    spills: list[Spill] = []
    gram = None
    n_used = held = 0
    batches = stream.DesignedBatches(p)
    sep = _Separation()
    with stream._bar(source.n_rows, progress, "pass 2 (design)") as bar:
        for label, arrays in batches.of(p.frames(source), bar):
            y, X, _, terms, w, o = arrays
            with warnings.catch_warnings():
                warnings.simplefilter("error", fm.ResponseWarning)
                try:
                    start = fam.initialize(y, w)
                except fm.ResponseWarning as warning:
                    warnings.warn(f"{label}: {warning}", fm.ResponseWarning, stacklevel=5)
                    start = _initialize_quietly(fam, y, w)
                except fm.ResponseError as exc:
                    raise type(exc)(f"{label}: {exc}") from None
            pw = np.asarray(start.weights, float)  # the prior weights (times the trials)
            if fam.name == "binomial":
                sep.add(X, start.y, pw)
            arrays_out = {
                "y": np.asarray(start.y, float),
                "pw": np.asarray(pw, float),
                "o": np.zeros(len(y)) if o is None else np.asarray(o, float),
                "mustart": np.asarray(start.mustart, float),
                "X": np.asfortranarray(X),
            }
            for k in p.order:
                codes, Z, _ = terms[k]
                arrays_out[f"codes{k}"] = np.asarray(codes, np.int32)
                arrays_out[f"Z{k}"] = np.asfortranarray(Z)
            spill = Spill(folder, len(spills), len(y), tuple(arrays_out), arrays_out)
            spills.append(spill)
            held += sum(a.nbytes for a in arrays_out.values())
            if held > MEMORY_BUDGET:
                for b in spills:
                    b.write()
            gram = X.T @ X if gram is None else gram + X.T @ X
            n_used += len(y)
    if not spills:
        raise DataError("no rows left after dropping rows with missing values")
    names0, znames0, n_dropped = batches.names, batches.z_names, batches.n_dropped
    keep = np.arange(len(names0))
    if not gram_full_rank(gram):
        r = None
        for b in spills:
            X = np.asarray(b.load()["X"])
            r = stream._qr_r(X if r is None else np.vstack([r, X]))
        if r.shape[0] < r.shape[1]:
            r = np.vstack([r, np.zeros((r.shape[1] - r.shape[0], r.shape[1]))])
        _, keep_list, _ = drop_rank_deficient(np.asfortranarray(r), names0, stacklevel=6)
        keep = np.asarray(keep_list)
    p.keep = None if len(keep) == len(names0) else keep
    names = [names0[j] for j in keep]
    return StreamedGlmmRows(
        p,
        folder,
        spills,
        names0,
        znames0,
        keep,
        p.n_read,
        n_dropped,
        n_used,
        [c for c in sep.columns(names0) if c[0] in names] if fam.name == "binomial" else [],
    )


def _initialize_quietly(fam: fm.Family, y, w):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fm.ResponseWarning)
        return fam.initialize(y, w)
