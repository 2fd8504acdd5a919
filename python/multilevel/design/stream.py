"""Streaming fits: a linear mixed model from record batches that are never all in memory.

A linear mixed model needs the rows only through A = [Z X y]'W[Z X y], a sum over rows, which
``multilevel._core.Accumulator`` builds batch by batch. Two passes over the batches:

1. the levels of every grouping factor and of every non-numeric fixed column, in R's order
   (as :mod:`multilevel.factors` orders them over the complete rows), and the rows with
   missing values;
2. per batch: y, X and each term's codes and Z (through the same functions as the in-memory
   design, with the factors' levels of pass 1, so the names and codes are identical), the
   rows with missing values dropped, and ``acc.add``.

The accumulator centres the rows on the first batch's means (``Accumulator(centre=True)``, as
the in-memory pass centres on all rows' means), so ``acc.problem().fit`` gives the same
estimates as the in-memory fit of the same rows (objective to 1e-12 relative whatever the
batch size), also for data far from zero (a response of 1e8 + 300). The result is a
:class:`StreamedLmerFit`: its design holds the levels and names but no rows, so the row-wise
accessors (fitted, resid, predict on the training data) raise :class:`StreamedDataError`.

>>> import pyarrow as pa, multilevel as ml
>>> df = ml.datasets.load("sleepstudy")
>>> formula = "Reaction ~ Days + (Days | Subject)"
>>> fit = ml.lmer(formula, pa.Table.from_pandas(df), batch_rows=50)
>>> round(fit.objective, 3), fit.rows
(1743.628, {'read': 180, 'dropped': 0, 'used': 180})
>>> abs(fit.objective / ml.lmer(formula, df).objective - 1) < 1e-12
True

Sources (:func:`batches_of`): a Parquet file or folder, a pyarrow Table, RecordBatchReader or
``dataset.Dataset``, a polars LazyFrame, anything with ``__arrow_c_stream__``; a one-shot
stream is spilled to a temporary Parquet file by the first pass. Dask and Spark DataFrames:
:mod:`multilevel.distributed` (a partial accumulator per partition, tree-reduced as bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multilevel.contextual import formula_context
from multilevel.data import column_values, drop_missing, is_numeric, warn_missing, weight_vector
from multilevel.design.fast import gram_full_rank
from multilevel.design.fixed import FixedSpec
from multilevel.design.matrix import (
    as_float_matrix,
    lme4_names,
    model_matrix,
    quote_columns,
    reraise_own,
    response_vector,
    spec_frame,
)
from multilevel.design.random import Design, ReTerm, TermSpec, _check_levels, lme4_term_order
from multilevel.design.rank import drop_rank_deficient
from multilevel.design.stream_sources import (
    DEFAULT_BATCH_ROWS,
    Source,
    _schema_message,
    batches_of,
    is_stream_source,
)
from multilevel.design.stream_state import final_state, moments_batch, stateful_calls
from multilevel.exceptions import DataError
from multilevel.factors import cat_codes, interaction, lookup
from multilevel.formula import ParsedFormula, parse

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "Source",
    "StreamPlan",
    "StreamedDataError",
    "StreamedDesign",
    "accumulate",
    "batches_of",
    "is_stream_source",
    "plan",
]

PROGRESS_ROWS = 2_000_000  # passes over more rows than this show a progress bar by default
# formulaic's stateful transforms learn from the data they first see: one batch is not the data.
# center() and scale() learn a mean and a standard deviation, which pass 1 gathers over all the
# complete rows (``stream_state``); the others are refused.
_STATEFUL = ("cvar(", "dvar(", "standardize(", "poly(", "bs(", "cr(")
_NOT_STREAMED = (*_STATEFUL, "offset(")  # offset() terms: pass offset= when streaming


class StreamedDataError(DataError):
    """A row-wise quantity asked of a fit whose data were streamed (no rows kept)."""


# -- one batch ----------------------------------------------------------------------------------
@dataclass
class StreamPlan:
    """What pass 1 found and pass 2 needs: the formula, the factors' levels, the names."""

    formula: str
    parsed: ParsedFormula
    used: list[str]
    weights: str | None
    offset: str | None
    fixed_levels: dict[str, pd.Index] = field(default_factory=dict)
    term_levels: list[pd.Index] = field(default_factory=list)  # per formula term
    term_index: list[pd.Index] = field(default_factory=list)  # value (or tuple) -> code
    factor_levels: list[list[pd.Index]] = field(default_factory=list)
    level_keys: list[Any] = field(default_factory=list)
    arrow_levels: dict[int, Any] = field(default_factory=dict)  # term -> its levels in Arrow
    schema: Any = None
    n_read: int = 0
    n_dropped: int = 0
    n_used: int = 0
    keep: np.ndarray | None = None  # columns of X kept (rank)
    order: list[int] = field(default_factory=list)  # lme4's term order (the accumulator's)
    z_q: list[int] = field(default_factory=list)  # columns of each term's Z, formula order
    specs: Any = None  # (fixed spec, [term specs]) of the first batch
    # formulaic's state of each center()/scale() call over all the complete rows (pass 1)
    transform_state: dict[str, dict] = field(default_factory=dict)
    # derived columns added to each batch's frame before anything reads it (glmer's cbind()
    # response and offset(), for instance); the formula then names them
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def frame(self, batch: Any) -> pd.DataFrame:
        """A record batch as the pandas frame the formula reads."""
        df = _to_pandas(batch)
        return df if self.prepare is None else self.prepare(df)

    def frames(self, source: Source) -> Iterator[tuple[str, pd.DataFrame]]:
        """The source's batches again, schema-checked, as (label, frame) pairs."""
        for label, batch in source.batches():
            _check_schema(self, batch, label)
            yield label, self.frame(batch)


def columns_of(parsed: ParsedFormula, weights: Any, offset: Any) -> list[str]:
    cols = list(parsed.variables())
    for extra in (weights, offset):
        if extra is not None and not isinstance(extra, str):
            raise DataError("with streamed data, weights and offset must be column names")
        if isinstance(extra, str) and extra not in cols:
            cols.append(extra)
    return cols


def _complete_rows(plan: StreamPlan, df: pd.DataFrame, label: str):
    """drop_missing of the in-memory design on one batch: (frame, weights, offset, dropped,
    positions of the rows kept)."""
    vectors: dict[str, Any] = {}
    for name, arg in (("weights", plan.weights), ("offset", plan.offset)):
        if arg is not None:
            vectors[arg] = weight_vector(arg, df, name)[0]
    n = len(df)
    if n == 0:  # an empty batch or partition
        return None, None, None, 0, None
    try:
        frame, rows, n_dropped, vecs = drop_missing(df, plan.used, vectors, warn=False)
    except DataError as exc:
        if str(exc).startswith("no rows left"):
            return None, None, None, n, None
        raise DataError(f"{label}: {exc}") from None
    w = vecs.get(plan.weights) if plan.weights else None
    o = vecs.get(plan.offset) if plan.offset else None
    return frame, w, o, n_dropped, rows


def _group_values(frame: Any, factors: tuple[str, ...]) -> pd.DataFrame:
    """The grouping columns (native dtypes: distinct values and lookups stay vectorised)."""
    return pd.DataFrame({f: np.asarray(column_values(frame, f)) for f in factors})


def _fixed_factor_names(parsed: ParsedFormula, df: pd.DataFrame) -> list[str]:
    return [
        v
        for v in dict.fromkeys(parsed.fixed_variables() + parsed.response_variables())
        if v in df.columns and not is_numeric(df[v]) and v != parsed.response
    ]


def _pass1_batch(plan: StreamPlan, df: pd.DataFrame, label: str, seen: dict) -> None:
    frame, _, _, n_dropped, _ = _complete_rows(plan, df, label)
    plan.n_read += len(df)
    plan.n_dropped += n_dropped
    if frame is None:
        return
    moments_batch(plan, frame, seen)
    for v in _fixed_factor_names(plan.parsed, df):
        seen.setdefault(("fixed", v), []).append(pd.unique(np.asarray(column_values(frame, v))))
    for k, t in enumerate(plan.parsed.random):
        if len(t.group_factors) == 1:  # a hash of the values: 5x faster than of frame rows
            f = t.group_factors[0]
            v = column_values(frame, f)
            if not isinstance(getattr(v, "dtype", None), pd.StringDtype):  # Arrow strings stay
                v = np.asarray(v)
            g = pd.DataFrame({f: pd.unique(v)})
        else:
            g = _group_values(frame, t.group_factors).drop_duplicates()
        seen.setdefault(("term", k), []).append(g)


def _finish_pass1(plan: StreamPlan, seen: dict, dictionaries: dict[str, Any]) -> None:
    """Levels in R's order from the distinct values of the complete rows."""

    def as_factor_input(name: str, values: np.ndarray) -> Any:
        if name in dictionaries:  # an Arrow dictionary / pandas categorical: its order
            return pd.Categorical(values, categories=dictionaries[name])
        return pd.Series(values)

    for (kind, key), parts in seen.items():
        if kind == "fixed":
            vals = pd.unique(np.concatenate(parts))
            inter = interaction([as_factor_input(key, vals)])
            plan.fixed_levels[key] = inter.levels
        elif kind == "moments":
            plan.transform_state[key] = final_state(parts)
    plan.term_levels, plan.term_index, plan.factor_levels, plan.level_keys = [], [], [], []
    for k, t in enumerate(plan.parsed.random):
        parts = seen.get(("term", k))
        if not parts:
            raise DataError("no rows left after dropping rows with missing values")
        combos = pd.concat(parts, ignore_index=True).drop_duplicates(ignore_index=True)
        inter = interaction([as_factor_input(f, combos[f].to_numpy()) for f in t.group_factors])
        order = np.argsort(inter.codes, kind="stable")
        combos = combos.iloc[order]
        index = (
            pd.Index(combos.iloc[:, 0].to_numpy())
            if len(t.group_factors) == 1
            else pd.MultiIndex.from_frame(combos)
        )
        plan.term_levels.append(inter.levels)
        plan.term_index.append(index)
        plan.factor_levels.append(inter.factor_levels)
        plan.level_keys.append(inter.level_keys if hasattr(inter, "level_keys") else None)
    plan.order = lme4_term_order([len(lv) for lv in plan.term_levels])


def _to_pandas(batch: Any) -> pd.DataFrame:
    return batch.to_pandas(split_blocks=True, self_destruct=False)


def _dictionaries(batch: Any) -> dict[str, Any]:
    """The Arrow dictionary of each dictionary-encoded column of a batch."""
    import pyarrow as pa

    return {
        f.name: col.dictionary
        for f, col in zip(batch.schema, batch.columns)
        if pa.types.is_dictionary(f.type)
    }


def _merge_dictionaries(known: dict[str, pd.Index], last: dict[str, Any], batch: Any) -> None:
    """The values of each dictionary column in order of first appearance over the batches
    (a batch repeating the previous batch's dictionary costs one comparison)."""
    for name, d in _dictionaries(batch).items():
        if name in last and last[name].equals(d):
            continue
        last[name] = d
        values = pd.Index(d.to_numpy(zero_copy_only=False))
        if name not in known:
            known[name] = values
        else:
            new = values[~values.isin(known[name])]
            if len(new):
                known[name] = known[name].append(new)


def new_plan(formula: str, weights: Any, offset: Any) -> StreamPlan:
    """The plan before any batch: the formula checked for streaming."""
    parsed = parse(formula)
    for s in _NOT_STREAMED:
        if s in formula:
            why = "is not read from streams" if s == "offset(" else "learns from the whole data"
            raise NotImplementedError(f"{s[:-1]}() {why}; it cannot be used with streamed data")
    if stateful_calls(parsed.response):
        raise NotImplementedError(
            "center()/scale() of the response cannot be used with streamed data: transform the "
            "response column before streaming"
        )
    return StreamPlan(formula, parsed, columns_of(parsed, weights, offset), weights, offset)


def plan(
    formula: str,
    source: Source,
    weights: str | None = None,
    offset: str | None = None,
    progress: bool | None = None,
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> StreamPlan:
    """Pass 1: the factors' levels and the rows with missing values; checks each batch's
    schema against the first's."""
    p = new_plan(formula, weights, offset)
    p.prepare = prepare
    seen: dict = {}
    dictionaries: dict[str, pd.Index] = {}
    last: dict[str, Any] = {}
    with _bar(source.n_rows, progress, "pass 1 (levels)") as bar:
        for label, batch in source.batches():
            _check_schema(p, batch, label)
            _merge_dictionaries(dictionaries, last, batch)
            _pass1_batch(p, p.frame(batch), label, seen)
            bar.update(batch.num_rows)
    _finish_pass1(p, seen, dictionaries)
    return p


def _check_schema(p: StreamPlan, batch: Any, label: str) -> None:
    schema = batch.schema.remove_metadata()
    if p.schema is None:
        p.schema = schema
    elif not schema.equals(p.schema):
        raise DataError(_schema_message(label, p.schema, schema))


def batch_arrays(p: StreamPlan, df: pd.DataFrame, label: str, positions: list | None = None):
    """One batch's (y, X, [(codes, Z)], weights, offset, n_dropped), terms in formula order,
    or None when no row is complete; the positions of the rows used are appended to
    ``positions`` when given."""
    frame, w, o, n_dropped, rows = _complete_rows(p, df, label)
    if frame is None:
        if positions is not None:
            positions.append(np.empty(0, np.int64))
        return None, n_dropped
    pdf = frame
    if p.fixed_levels:  # non-numeric fixed columns: categoricals with every level of pass 1
        pdf = frame.pandas()
        for v, levels in p.fixed_levels.items():
            pdf[v] = pd.Categorical(pdf[v].astype(object), categories=list(levels))
    y = response_vector(p.parsed, pdf, pdf.columns, p.formula)
    first = p.specs is None
    specs = (None, [None] * len(p.parsed.random)) if first else p.specs
    X, x_spec, names = _model_matrix(p, specs[0], p.parsed.fixed, pdf, "fixed-effects model matrix")
    terms, z_specs = [], []
    for k, t in enumerate(p.parsed.random):
        what = f"random-effects term {t.text}"
        Z, z_spec, z_names = _model_matrix(p, specs[1][k], t.expr, pdf, what)
        z_specs.append(z_spec)
        index = p.term_index[k]
        one = column_values(frame, t.group_factors[0]) if len(t.group_factors) == 1 else None
        if isinstance(one, pd.Categorical):  # an Arrow dictionary: its values looked up once
            at = lookup(index, pd.Series(np.asarray(one.categories)))
            c = cat_codes(one)
            codes = np.where(c >= 0, at[c], -1)
        elif one is not None:
            codes = _lookup_values(p, k, index, one)
        else:
            codes = index.get_indexer(
                pd.MultiIndex.from_frame(_group_values(frame, t.group_factors))
            )
        bad = codes < 0
        if bad.any():
            first = _group_values(frame, t.group_factors)[bad].iloc[0].tolist()
            raise DataError(
                f"{label}: level {', '.join(map(repr, first))} of {t.group!r} was not seen in "
                f"the first pass ({int(bad.sum())} rows); the data changed between the passes"
            )
        terms.append((codes.astype(np.int32), np.asfortranarray(Z), z_names))
    if first:  # the first batch's specs build the others' matrices, and predict(newdata)'s
        p.specs = (x_spec, z_specs)
    nan = np.isnan(y) | np.isnan(X).any(axis=1)
    for _, Z, _ in terms:
        nan |= np.isnan(Z).any(axis=1)
    for arr, what in [(y, "response"), (X, "fixed-effects model matrix")] + [
        (Z, "random-effects term") for _, Z, _ in terms
    ]:
        if np.isinf(arr).any():
            raise DataError(f"{label}: the {what} has non-finite values (inf)")
    if nan.any():  # a transformation gave NaN: dropped and counted, as in memory
        keep = ~nan
        n_dropped += int(nan.sum())
        y, X = y[keep], np.asfortranarray(X[keep])
        terms = [(c[keep], np.asfortranarray(Z[keep]), nm) for c, Z, nm in terms]
        w = None if w is None else w[keep]
        o = None if o is None else o[keep]
        rows = rows[keep]
    if positions is not None:
        positions.append(rows)
    return (y, X, names, terms, w, o), n_dropped


def _lookup_values(p: StreamPlan, k: int, index: pd.Index, values: Any) -> np.ndarray:
    """Codes of a grouping column among term ``k``'s levels: Arrow strings (what a batch's
    strings are in pandas 3) by ``pyarrow.compute.index_in`` against the levels (no Python
    objects made per row); anything else by :func:`multilevel.factors.lookup`."""
    dtype = getattr(values, "dtype", None)

    def stringy(dt: Any) -> bool:
        return isinstance(dt, pd.StringDtype) or (isinstance(dt, np.dtype) and dt.kind == "O")

    if (
        stringy(dtype)
        and stringy(index.dtype)
        and len(index)
        and all(isinstance(v, str) for v in index[:64])
    ):
        import pyarrow as pa
        import pyarrow.compute as pc

        try:  # Arrow strings as they are; an object array of str converted in C++
            arr = pa.array(values) if isinstance(dtype, pd.StringDtype) else None
            arr = arr if arr is not None else pa.array(np.asarray(values), type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = None  # not all strings: the general lookup
        if arr is not None:
            levels = p.arrow_levels.get(k)
            if levels is None or levels.type != arr.type:
                levels = p.arrow_levels[k] = pa.array(list(index), type=arr.type)
            found = pc.fill_null(pc.index_in(arr, value_set=levels), -1)
            return found.to_numpy(zero_copy_only=False).astype(np.int64)
    return lookup(index, pd.Series(np.asarray(values)))


def _model_matrix(p: StreamPlan, spec: Any, expr: str, frame: Any, what: str):
    """(matrix, spec, lme4 names) of one expression: the in-memory design's ``model_matrix``
    on the first batch (NumPy fast path or formulaic), then that batch's spec; the state of
    its center()/scale() calls is that of all the complete rows (pass 1), not the batch's."""
    if spec is None:
        mm = model_matrix(expr, frame, p.formula, what)
        state = getattr(mm.model_spec, "transform_state", None) or {}
        known = {k: p.transform_state[k] for k in state if k in p.transform_state}
        if not known:
            return as_float_matrix(mm, what), mm.model_spec, lme4_names(mm.columns)
        names = lme4_names(mm.columns)
        spec = mm.model_spec.update(transform_state={**state, **known})
        X, spec, _ = _model_matrix(p, spec, expr, frame, what)
        return X, spec, names
    try:
        mm = spec.get_model_matrix(
            spec_frame(spec, frame), na_action="ignore", context=formula_context()
        )
    except Exception as exc:
        reraise_own(exc)
        raise DataError(f"cannot build the {what}: {exc}") from None
    names = [str(c) for c in mm.columns]
    for q in quote_columns(expr, frame.columns, p.formula)[1]:  # as model_matrix names them
        names = [c.replace(f"`{q}`", q) for c in names]
    return as_float_matrix(mm, what), spec, lme4_names(names)


# -- pass 2 -------------------------------------------------------------------------------------
@dataclass
class Pass2:
    """The accumulator over all the batches and what the design needs besides."""

    acc: Any
    x_names: list[str]
    z_names: list[list[str]]
    r: np.ndarray  # X'X, or (gram False) R of X (QR of row blocks): the rank without rows
    n_dropped: int
    n_used: int
    gram: bool = True


def new_accumulator(p: StreamPlan, n_x: int, threads: int = 0) -> Any:
    from multilevel import _core

    return _core.Accumulator(
        [len(p.term_levels[k]) for k in p.order],
        [p.z_q[k] for k in p.order],
        n_x,
        threads=threads,
    )


def accumulate_frames(
    p: StreamPlan,
    frames: Iterator[tuple[str, pd.DataFrame]],
    threads: int = 0,
    bar: Any = None,
    qr: bool = False,
) -> Pass2:
    """Pass 2 over pandas frames: every batch's arrays into one accumulator (the columns of X
    in ``p.keep`` when set), with X'X of all the columns (``Pass2.r``), or with ``qr`` the R
    of a QR of X taken in row blocks (R's rank rule; a QR per batch costs more than the rest
    of the pass, so only when X'X leaves the rank in doubt)."""
    acc, r = None, None
    batches = DesignedBatches(p)
    n_used = 0
    for _, arrays in batches.of(frames, bar):
        y, X, _, terms, w, o = arrays
        if acc is None:
            n_x = X.shape[1] if p.keep is None else len(p.keep)
            acc = new_accumulator(p, n_x, threads)
        if qr:
            r = _qr_r(X if r is None else np.vstack([r, X]))
        else:
            r = X.T @ X if r is None else r + X.T @ X
        if p.keep is not None:
            X = np.asfortranarray(X[:, p.keep])
        if len(y):
            acc.add(y, X, [terms[k][:2] for k in p.order], weights=w, offset=o)
        n_used += len(y)
    if acc is None:
        raise DataError("no rows left after dropping rows with missing values")
    return Pass2(acc, batches.names, batches.z_names, r, batches.n_dropped, n_used, gram=not qr)


class DesignedBatches:
    """Each frame's arrays (:func:`batch_arrays`), batches without complete rows skipped:
    the first batch's column names (``names``, ``z_names``; ``p.z_q`` set from it) and a
    DataError naming the batch whose columns differ; ``n_dropped`` counts the rows dropped."""

    def __init__(self, p: StreamPlan):
        self.p = p
        self.names: list[str] | None = None
        self.z_names: list[list[str]] | None = None
        self.n_dropped = 0

    def of(self, frames: Iterator[tuple[str, pd.DataFrame]], bar: Any = None):
        for label, df in frames:
            arrays, dropped = batch_arrays(self.p, df, label)
            self.n_dropped += dropped
            if bar is not None:
                bar.update(len(df))
            if arrays is None:
                continue
            _, _, names, terms, _, _ = arrays
            z_names = [nm for _, _, nm in terms]
            if self.names is None:
                self.names, self.z_names = names, z_names
                self.p.z_q = [Z.shape[1] for _, Z, _ in terms]
            elif names != self.names or z_names != self.z_names:
                raise DataError(
                    f"{label}: the model matrix has columns {names} but the first batch's "
                    f"were {self.names}"
                )
            yield label, arrays


def _qr_r(a: np.ndarray) -> np.ndarray:
    if a.shape[0] <= a.shape[1]:
        return np.array(a)
    return np.linalg.qr(a, mode="r")


def accumulate(
    p: StreamPlan, source: Source, threads: int = 0, progress: bool | None = None
) -> Pass2:
    """Pass 2; when X'X leaves the rank in doubt, a third for R's qr(X) rule over all the
    rows, and a fourth when columns must be dropped (only then is it known which)."""

    def frames() -> Iterator[tuple[str, pd.DataFrame]]:
        return p.frames(source)

    with _bar(source.n_rows, progress, "pass 2 (cross-products)") as bar:
        out = accumulate_frames(p, frames(), threads, bar)
    if gram_full_rank(out.r):
        return out
    with _bar(source.n_rows, progress, "pass 3 (rank of X)") as bar:
        out = accumulate_frames(p, frames(), threads, bar, qr=True)
    if _rank_keep(p, out):
        with _bar(source.n_rows, progress, "pass 4 (full-rank columns)") as bar:
            out = accumulate_frames(p, frames(), threads, bar)
    return out


def _rank_keep(p: StreamPlan, out: Pass2) -> bool:
    """Sets ``p.keep`` (with lme4's warning) when X is rank-deficient; True if so."""
    r = out.r
    if r.shape[0] < r.shape[1]:
        r = np.vstack([r, np.zeros((r.shape[1] - r.shape[0], r.shape[1]))])
    _, keep, dropped = drop_rank_deficient(np.asfortranarray(r), out.x_names, stacklevel=6)
    if dropped and p.keep is None:
        p.keep = np.asarray(keep)
        return True
    return False


# -- the design and the fit ---------------------------------------------------------------------
class StreamedDesign(Design):
    """A :class:`Design` with the levels and names of a streamed fit but no rows."""


def design_of(
    p: StreamPlan, out: Pass2, data_name: str | None, allow_n: bool = False
) -> StreamedDesign:
    """Levels and names of the streamed data, empty row arrays; terms in lme4's order
    (``allow_n``: a factor may have a level per row, as glmer allows)."""
    names = out.x_names if p.keep is None else [out.x_names[j] for j in p.keep]
    dropped = [] if p.keep is None else [n for n in out.x_names if n not in names]
    terms = [
        ReTerm(
            t.group,
            out.z_names[k],
            np.empty(0, np.int32),
            p.term_levels[k],
            np.empty((0, len(out.z_names[k])), order="F"),
            TermSpec(p.specs[1][k], t.group_factors, p.factor_levels[k], t, p.level_keys[k]),
        )
        for k, t in enumerate(p.parsed.random)
    ]
    nobs = out.acc.nobs
    _check_levels(terms, nobs, allow_n)
    order = p.order
    keep = np.arange(len(out.x_names)) if p.keep is None else p.keep
    fixed_spec = FixedSpec(
        p.specs[0], out.x_names, keep, names, {v: list(lv) for v, lv in p.fixed_levels.items()}
    )
    return StreamedDesign(
        y=np.empty(0),
        X=np.empty((0, len(names)), order="F"),
        fixed_names=names,
        dropped_columns=dropped,
        terms=[terms[i] for i in order],
        weights=None,
        offset=None,
        n_dropped=out.n_dropped,
        rows=np.empty(0, np.int64),
        nobs=nobs,
        formula=p.formula,
        parsed=p.parsed,
        data_name=data_name,
        fixed_spec=fixed_spec,
        term_order=order,
    )


class _Bar:
    def __init__(self, bar: Any):
        self._bar = bar

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)


def _bar(total: int | None, progress: bool | None, what: str) -> _Bar:
    show = bool(progress) if progress is not None else (total or 0) > PROGRESS_ROWS
    if not show:
        return _Bar(None)
    from tqdm.auto import tqdm

    return _Bar(tqdm(total=total, desc=what, unit=" rows", unit_scale=True))


def warn_dropped(n_dropped: int, stacklevel: int = 5) -> None:
    """data.warn_missing for a stream, whose rows were dropped batch by batch."""
    if n_dropped:
        warn_missing(n_dropped, (), stacklevel)


def fit_stream(
    formula: str,
    data: Any,
    weights: Any = None,
    offset: Any = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    threads: int = 0,
    progress: bool | None = None,
    data_name: str | None = None,
    then: Callable[..., Any] | None = None,
) -> Any:
    """Both passes over a streaming source: (design, problem, row counts); with ``then``,
    ``then(design, problem, counts, plan, frames)`` while the source is still open (``frames()``
    reads its batches again as (label, pandas frame) pairs) and its result."""
    parsed = parse(formula)
    source = batches_of(data, columns_of(parsed, weights, offset), batch_rows)
    try:
        p = plan(formula, source, weights, offset, progress)
        out = accumulate(p, source, threads, progress)
        design = design_of(p, out, data_name)
        warn_dropped(out.n_dropped)
        counts = {"read": p.n_read, "dropped": out.n_dropped, "used": out.n_used}
        problem = out.acc.problem()
        del out
        if then is None:
            return design, problem, counts

        def frames() -> Iterator[tuple[str, pd.DataFrame]]:
            return p.frames(source)

        return then(design, problem, counts, p, frames)
    finally:
        source.cleanup()


# -- the result -----------------------------------------------------------------------------------
STREAMED_REASON = (
    "the data were streamed: the fit keeps the cross-products of the rows, not the rows; "
    "predict(newdata) on the rows of interest gives them"
)


def streamed_fit_class() -> type:
    """:class:`multilevel.results.lmer.LmerFit` without the row-wise accessors."""
    global _STREAMED_FIT
    if _STREAMED_FIT is None:
        from multilevel.results.lmer import LmerFit

        class StreamedLmerFit(LmerFit):
            """A fit whose data were streamed: estimates, ranef, vcov, summary; no rows.

            ``rows`` holds the numbers of rows ``read``, ``dropped`` (missing values) and
            ``used``."""

            rows: dict[str, int]
            streamed = True

            @property
            def fitted(self) -> np.ndarray:  # type: ignore[override]
                """Dask-fed fits: a lazy Dask Series (the partitions' index, rows used)."""
                source = getattr(self.design, "partitions", None)
                if source is not None:
                    from multilevel.distributed.dask_fit import dask_rowwise

                    return dask_rowwise(self, *source, "fitted")
                raise StreamedDataError(f"fitted values are not available: {STREAMED_REASON}")

            @property
            def resid(self) -> np.ndarray:  # type: ignore[override]
                """Dask-fed fits: a lazy Dask Series y - fitted."""
                source = getattr(self.design, "partitions", None)
                if source is not None:
                    from multilevel.distributed.dask_fit import dask_rowwise

                    return dask_rowwise(self, *source, "resid")
                raise StreamedDataError(f"residuals are not available: {STREAMED_REASON}")

            def scaled_residuals(self) -> np.ndarray:
                raise StreamedDataError(f"residuals are not available: {STREAMED_REASON}")

            def predict(self, newdata: Any = None, *args: Any, **kwargs: Any) -> np.ndarray:
                if newdata is None:
                    raise StreamedDataError(
                        f"predict() needs newdata for this fit: {STREAMED_REASON}"
                    )
                return super().predict(newdata, *args, **kwargs)

            def refit_ml(self) -> LmerFit:
                fit = super().refit_ml()
                if fit is not self:
                    fit.rows = self.rows
                return fit

        _STREAMED_FIT = StreamedLmerFit
    return _STREAMED_FIT


_STREAMED_FIT: type | None = None
