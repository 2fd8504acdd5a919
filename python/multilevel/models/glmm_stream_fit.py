"""``ml.glmer`` on a streaming source: pass 1 (levels, missing values), the design pass (the
arrays spilled to disk), the GLM start, then lme4's two stages over the spilled batches
(:class:`multilevel.models.glmm_stream.StreamedGlmm`), each evaluation a few passes.

>>> import pyarrow as pa, multilevel as ml
>>> cbpp = ml.datasets.load("cbpp")
>>> f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
>>> fit = ml.glmer(f, pa.Table.from_pandas(cbpp), family="binomial", nagq=0, batch_rows=20)
>>> round(fit.objective, 4), fit.rows["used"], fit.passes > 10
(184.1086, 56, True)
>>> abs(fit.objective - ml.glmer(f, cbpp, family="binomial", nagq=0).objective) < 1e-6
True
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np

from multilevel import _core
from multilevel import families as fm
from multilevel.design import stream
from multilevel.design import stream_glmm as sg
from multilevel.exceptions import FitError
from multilevel.models.glmm_stream import FD_STEP, STEP_TOL_TIGHT, StreamedGlmm
from multilevel.results.glmer import StoredGlmmFit

__all__ = ["glmer_stream"]


def glmer_stream(
    formula: str,
    data: Any,
    family: Any = "binomial",
    nagq: int = 1,
    weights: Any = None,
    offset: Any = None,
    threads: int = 0,
    batch_rows: int | None = None,
    progress: bool | None = None,
    data_name: str | None = None,
):
    """The streamed fit; see :func:`multilevel.models.glmm.glmer`."""
    from multilevel.results.glmer_stream import StreamedGlmerFit

    fam = fm.family(family)
    if nagq < 0:
        raise ValueError("nagq must be >= 0")
    gf = sg.glmm_frame(formula, fam, weights, offset)
    source = _source(data, gf.columns, batch_rows or stream.DEFAULT_BATCH_ROWS)
    try:
        sg.scale_stats(source, gf)
        response = stream.parse(gf.formula).response
        if response in gf.columns:
            gf.binary_levels = sg.binary_levels(source, response, fam)
        p = stream.plan(
            gf.formula,
            source,
            sg.WEIGHTS if gf.weighted else None,
            sg.OFFSET if gf.has_offset else None,
            progress,
            gf.prepare,
        )
        rows = sg.spill_rows(p, source, fam, progress)
    finally:
        source.cleanup()
    try:
        nterms = len(rows.z_names)
        if nagq > 1 and (nterms != 1 or len(rows.z_names[0]) != 1):
            raise ValueError(
                "nagq > 1 is only available for models with a single, scalar random-effects term"
            )
        stream.warn_dropped(rows.n_dropped)
        names = [gf.renamed.get(n, n) for n in (rows.x_names[j] for j in rows.keep)]
        for name, complete in rows.separated:
            warnings.warn(_separation(name, complete), _separation_class(), stacklevel=3)
        show = bool(progress) if progress is not None else rows.n_used > stream.PROGRESS_ROWS
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(desc="glmer passes over the batches", unit=" passes")
        model = StreamedGlmm(rows, fam, threads, bar)
        try:
            res = _fit(model, nagq)
        finally:
            if bar is not None:
                bar.close()
        out = SimpleNamespace(
            acc=SimpleNamespace(nobs=rows.n_used),
            x_names=rows.x_names,
            z_names=rows.z_names,
            n_dropped=rows.n_dropped,
        )
        design = stream.design_of(p, out, data_name, allow_n=True)
        empty = np.empty(0)
        fit = StreamedGlmerFit(res, design, fam, empty, empty, empty, nagq, formula)
        fit._names = names
        fit._newdata_spec = (gf.scales, gf.off_exprs, offset if isinstance(offset, str) else None)
        fit._threads = threads
        fit.rows = {"read": rows.n_read, "dropped": rows.n_dropped, "used": rows.n_used}
        fit.passes = model.passes
        s = model.state
        fit._streamed_sums = {"dev": s["dev"], "pearson": float(s["sums"][2])}
        fit._glm_objective = model.glm_objective
        fit._warn(stacklevel=3)
        return fit
    finally:
        rows.cleanup()


def _separation_class():
    from multilevel.results.glmer import SeparationWarning

    return SeparationWarning


def _separation(name: str, complete: bool) -> str:
    kind = "complete" if complete else "quasi-complete"
    return (
        f"{kind} separation: column {name!r} of the fixed effects predicts the binomial "
        f"response perfectly on one side of a threshold; its estimate diverges (the estimate "
        f"and its standard error are meaningless). Remove or merge the column, or use a "
        f"penalised (bias-reduced) fit."
    )


def _source(data: Any, columns: list[str], batch_rows: int) -> stream.Source:
    """The record batches of any streamed input; a Dask or Spark DataFrame is first written
    by its workers to a temporary Parquet folder, which is then streamed."""
    from multilevel.distributed.dask_fit import is_dask
    from multilevel.distributed.spark import is_spark

    if not (is_dask(data) or is_spark(data)):
        return stream.batches_of(data, columns, batch_rows)
    import shutil
    import tempfile
    from pathlib import Path

    from multilevel.exceptions import DataError

    have = list(data.columns)
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"the data have no column {', '.join(repr(c) for c in missing)}")
    folder = Path(tempfile.mkdtemp(prefix="multilevel-glmer-parts-"))
    try:
        if is_dask(data):
            data[columns].to_parquet(str(folder / "parts"), write_index=False)
        else:
            data.select(*columns).write.mode("overwrite").parquet(str(folder / "parts"))
        src = stream.batches_of(folder / "parts", columns, batch_rows)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def cleanup() -> None:
        shutil.rmtree(folder, ignore_errors=True)

    return stream.Source(src.batches, src.n_rows, cleanup)


# -- the two stages ---------------------------------------------------------------------------
def _lower(model: StreamedGlmm) -> list[float]:
    out: list[float] = []
    for q in model.q:
        out += [0.0 if i == j else -math.inf for j in range(q) for i in range(j, q)]
    return out


def _theta0(model: StreamedGlmm) -> list[float]:
    out: list[float] = []
    for q in model.q:
        out += [1.0 if i == j else 0.0 for j in range(q) for i in range(j, q)]
    return out


def _safe(f):
    def g(v):
        try:
            value = f(v)
        except FitError:
            return math.inf
        return value if math.isfinite(value) else math.inf

    return g


def _fit(model: StreamedGlmm, nagq: int):
    model.beta = model.glm_start()
    # -2 log-likelihood of the GLM (theta = 0, u = 0: no log det, no penalty), for the LR test
    dev, sums, _ = model.sweep(
        model.beta, [np.zeros((n, q)) for n, q in zip(model.n_levels, model.q, strict=True)], None
    )
    model.glm_objective = model.aic(dev, sums)
    lower = _lower(model)
    theta0 = _theta0(model)
    nth, np_ = len(theta0), model.p

    def stage1_f(t):
        return model.objective(t, None, 0)

    f0 = _safe(stage1_f)(theta0)
    theta, f1, n1, status1 = _core.bobyqa(_safe(stage1_f), theta0, lower)
    stage1 = (theta0, list(theta), f0, f1, n1, status1)
    value = model.objective(theta, None, 0)
    beta1 = model.beta.copy()
    rx = np.asarray(model.state["sol"].vcov_unscaled)
    if nagq == 0:
        return _stored(model, 0, theta, beta1, value, rx, None, stage1, None)
    x0 = list(theta) + list(beta1)
    lower2 = lower + [-math.inf] * np_
    steps = [0.1] * nth + [0.2 * min(max(math.sqrt(rx[j, j]), 1e-6), 10.0) for j in range(np_)]

    def stage2_f(v):
        return model.objective(v[:nth], np.asarray(v[nth:]), nagq)

    f20 = _safe(stage2_f)(x0)
    x, f2, n2, status2 = _core.bobyqa(
        _safe(stage2_f), x0, lower2, steps, xtol_rel=1e-6, xtol_abs=1e-10, ftol_abs=1e-9
    )
    stage2 = (x0, list(x), f20, f2, n2, status2)
    model.step_tol = STEP_TOL_TIGHT
    hess, grad = _hessian(lambda v: _nan_on_failure(stage2_f, v), np.asarray(x))
    value = model.objective(x[:nth], np.asarray(x[nth:]), nagq)
    vcov = _vcov(model, hess, nth, np_, x)
    return _stored(model, nagq, x[:nth], x[nth:], value, vcov, (hess, grad), stage1, stage2)


def _nan_on_failure(f, v) -> float:
    try:
        return f(v)
    except FitError:
        return math.nan


def _hessian(f, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences (lme4's deriv12) as the core's ``glmm::fit::hessian``."""
    n, h = len(x), FD_STEP
    f0 = f(x)
    hess = np.zeros((n, n))
    fp, fm_ = np.zeros(n), np.zeros(n)
    for i in range(n):
        xp = x.copy()
        xp[i] = x[i] + h
        fp[i] = f(xp)
        xp[i] = x[i] - h
        fm_[i] = f(xp)
        hess[i, i] = (fp[i] - 2.0 * f0 + fm_[i]) / (h * h)
    grad = (fp - fm_) / (2.0 * h)
    for i in range(n):
        for j in range(i):
            v = 0.0
            for si, sj, sign in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
                xp = x.copy()
                xp[i] += si * h
                xp[j] += sj * h
                v += sign * f(xp)
            hess[i, j] = hess[j, i] = v / (4.0 * h * h)
    return hess, grad


def _vcov(model: StreamedGlmm, hess: np.ndarray, nth: int, np_: int, x) -> np.ndarray:
    """The beta block of (H / 2)^-1, or (R_X R_X')^-1 at the mode when H / 2 is not positive
    definite."""
    try:
        c = np.linalg.cholesky(hess / 2.0)
        inv = np.linalg.inv(c).T @ np.linalg.inv(c)
        return inv[nth:, nth:]
    except np.linalg.LinAlgError:
        s = model.state
        _, _, acc = model.sweep(np.asarray(x[nth:]), s["b"], "joint")
        return np.asarray(acc.problem().solution(list(x[:nth]), False).vcov_unscaled)


def _stored(model, nagq, theta, beta, value, vcov, hg, stage1, stage2) -> StoredGlmmFit:
    s = model.state
    acc = s["acc"]
    condvar = [np.asarray(c) for c in acc.problem().condvar(list(s["theta"]))]
    hess, grad = (np.empty((0, 0)), np.empty(0)) if hg is None else hg
    res = StoredGlmmFit(
        nagq=nagq,
        theta=np.asarray(theta, float),
        beta=np.asarray(beta, float),
        u=[uk.reshape(-1) for uk in s["u"]],
        b=[bk.reshape(-1) for bk in s["b"]],
        objective=float(value),
        vcov=np.asarray(vcov, float),
        hessian=np.asarray(hess),
        eta=np.empty(0),
        mu=np.empty(0),
        weights=np.empty(0),
        condvar=condvar,
        stage1=stage1,
        stage2=stage2,
    )
    res.gradient = np.asarray(grad)
    return res
