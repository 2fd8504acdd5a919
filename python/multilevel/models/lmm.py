"""Linear mixed models: :func:`lmer`, lme4's ``lmer`` from Python.

The formula and the data become a :class:`multilevel.design.Design` (y, X and, per random
term, grouping codes and Z columns, already in lme4's term order); the Rust core
``multilevel._core.LmmProblem`` forms the blocked cross-products once and minimises the
profiled ML or REML objective over theta; :class:`multilevel.results.LmerFit` presents the
result. One call crosses into Rust per fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from multilevel import design as _design
from multilevel.data import as_pandas
from multilevel.design import checks as _checks
from multilevel.results.lmer import LmerFit

__all__ = ["lmer"]


def _problem_class() -> Any:
    """The class that holds the numerical problem: the Rust core's ``LmmProblem``."""
    from multilevel import _core

    return _core.LmmProblem


def make_problem(design: _design.Design, problem_class: Any = None, threads: int = 0) -> Any:
    """The core's problem for a design (terms in the design's order, which is theta's order);
    ``threads`` as the core's (0: all cores)."""
    if problem_class is None and hasattr(design, "problem"):  # design.fast.LazyDesign
        return design.problem(threads)
    cls = problem_class if problem_class is not None else _problem_class()
    terms = [(t.codes, len(t.levels), t.Z, False) for t in design.terms]
    return cls(design.y, design.X, terms, design.weights, design.offset, threads=threads)


# Random-effects terms beyond which a fit is refused up front (see `check_term_count`).
MAX_TERMS = 200


def check_term_count(formula: str) -> None:
    """Raise FormulaError when the formula has more random-effects terms than MAX_TERMS.

    Each term brings at least one covariance parameter, BOBYQA's work per step and its number
    of evaluations grow with the parameters, and crossed terms make each evaluation factor a
    dense block that grows with them (measured, 2 cores: 100 scalar terms of 4 levels on 2,000
    rows take about 10 s, 200 more than two minutes; lme4 1.1-31 takes 5 s for 20 such terms
    and 406 s for 50, and has no limit)."""
    from multilevel.exceptions import FormulaError
    from multilevel.formula import parse

    n = len(parse(formula).random)
    if n > MAX_TERMS:
        raise FormulaError(
            f"the formula has {n} random-effects terms (after expanding / and ||); at most "
            f"{MAX_TERMS} can be fitted: the optimiser has a covariance parameter per term and a "
            f"fit of this size would take hours (lme4 has no limit but takes 400 s for 50 "
            f"crossed scalar terms). Combine grouping factors into one (an interaction, "
            f"(1 | a:b)) or fit fewer terms",
            formula,
        )


def _check_threads(threads: Any) -> int:
    """``threads=`` as the core takes it: a positive int, or None for all cores (0)."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, not {threads!r}")
    return int(threads)


def _check_options(reml: Any, max_fun: Any) -> None:
    """``reml`` must be a bool (the string "False" would otherwise fit REML) and ``max_fun`` a
    positive integer or None."""
    if not isinstance(reml, (bool, np.bool_)):
        raise TypeError(f"reml must be True or False, not {reml!r}")
    if max_fun is not None and (
        isinstance(max_fun, bool) or not isinstance(max_fun, (int, np.integer)) or max_fun < 1
    ):
        raise ValueError(f"max_fun must be a positive integer or None, not {max_fun!r}")


def lmer(
    formula: str,
    data: Any,
    reml: bool = True,
    weights: Any = None,
    offset: Any = None,
    start: Sequence[float] | None = None,
    max_fun: int | None = None,
    data_name: str | None = None,
    vcov: Any = None,
    threads: int | None = None,
    batch_rows: int | None = None,
    progress: bool | None = None,
) -> LmerFit:
    """Fit a linear mixed model by REML or maximum likelihood, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        lme4 formula: ``"Reaction ~ Days + (Days | Subject)"``. Random terms ``(x | g)``,
        ``(x || g)`` (uncorrelated), ``(1 | a/b)`` (nested), ``(1 | a:b)``, crossed terms.
    data : pandas or polars DataFrame, dict of arrays, or a streaming source
        Rows with a missing value in a used column are dropped (``fit.n_dropped``). A
        Parquet file or folder path, a pyarrow Table / RecordBatchReader / Dataset, a polars
        LazyFrame, anything with ``__arrow_c_stream__``, a Dask or a PySpark DataFrame is
        streamed (:mod:`multilevel.design.stream`, :mod:`multilevel.distributed`): two passes
        over record batches or partitions, never all the rows in memory; the fit has no
        row-wise accessors (fitted, resid; a Dask-fed fit gives them as lazy Dask Series)
        and ``fit.rows`` gives the rows read, dropped and used.
    reml : bool, default True
        REML (lme4's default) or maximum likelihood.
    weights : str or array-like, optional
        Prior weights (column name or array): ``Var(e_i) = sigma^2 / w_i``.
    offset : str or array-like, optional
        A known term added to the linear predictor.
    start : sequence of float, optional
        Starting theta (lme4's ``start``); default 1 on the diagonals, 0 elsewhere.
    max_fun : int, optional
        Maximum number of objective evaluations of the optimiser.
    data_name : str, optional
        Name printed as ``Data:`` in the summary.
    vcov : str or dict, optional
        Cluster-robust covariance of the fixed effects for ``fit.vcov``, ``fit.se`` and the
        summary (clubSandwich's ``vcovCR``): ``{"CR2": "school"}`` (a column, grouping factor
        or array), or ``"CR2"`` alone to cluster on the grouping factor with fewest levels.
        Types CR0, CR1, CR1p, CR1S, CR2, CR3, CR4; see :mod:`multilevel.inference.lmer_robust`.
        Streamed data: all but CR2, clustered on the grouping factor of every term
        (:mod:`multilevel.distributed.robust`). Rows with a missing cluster value are dropped
        (and counted) before the fit. pyfixest's ``"iid"`` (the model-based covariance) and
        ``{"CRV1": column}`` (= CR1S) are accepted.
    threads : int, optional
        Number of threads for every parallel step of the fit; default
        all cores. Any number gives the same estimates to the last bit.
    batch_rows : int, optional
        Rows per record batch when streaming (default 2**20).
    progress : bool, optional
        A progress bar over the streamed passes; default on above 2,000,000 rows.

    Returns
    -------
    LmerFit

    Warns
    -----
    SingularFitWarning
        "boundary (singular) fit: see help('isSingular')" when theta is on its boundary.
    ConvergenceWarning
        When the gradient check after the fit fails.

    Examples
    --------
    >>> import multilevel as ml
    >>> df = ml.datasets.load("sleepstudy")
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=df)
    >>> round(fit.objective, 3), round(fit.sigma, 4)
    (1743.628, 25.5918)
    >>> fit.fixef.round(4).tolist()
    [251.4051, 10.4673]
    >>> round(ml.lmer("Reaction ~ Days + (Days | Subject)", data=df, reml=False).loglik, 4)
    -875.9697
    """
    n_threads = _check_threads(threads)
    _check_options(reml, max_fun)
    check_term_count(formula)
    from multilevel.design.stream_sources import is_stream_source  # no formula machinery
    from multilevel.inference.sandwich import vcov_alias

    vcov = vcov_alias(vcov, "lmer")  # pyfixest's "iid" (model-based) and {"CRV1": column}
    if is_stream_source(data):
        return _lmer_stream(
            formula,
            data,
            reml,
            weights,
            offset,
            start,
            max_fun,
            data_name,
            vcov,
            n_threads,
            batch_rows,
            progress,
        )
    fit_data, kept = data, None
    if vcov is not None:  # cluster-robust: checked, and rows missing the cluster dropped, first
        from multilevel.inference import lmer_robust

        kind, cluster = lmer_robust.parse_vcov(vcov)
        if weights is not None:
            raise NotImplementedError(lmer_robust.WEIGHTS_MESSAGE)
        fit_data, weights, offset, cluster, kept = lmer_robust.drop_missing_cluster(
            cluster, data, weights, offset
        )
    design = _design.build(
        formula, fit_data, weights=weights, offset=offset, data_name=data_name, lazy=vcov is None
    )
    if vcov is not None and not isinstance(cluster, str) and cluster is not None:
        cluster = np.asarray(cluster)[np.asarray(design.rows)]  # aligned with the rows used
    if kept is not None:
        design = lmer_robust.restore_rows(design, kept, len(as_pandas(data)))
    _checks.before_fit(design)  # causes named before the core fails on them
    problem = make_problem(design, threads=n_threads)
    with _checks.explained(design):
        fit = LmerFit._fit(
            design,
            problem,
            reml,
            start=start,
            max_fun=max_fun,
            data_name=data_name if data_name is not None else design.data_name,
            data=data,
            weights_name=weights if isinstance(weights, str) else None,
            offset_name=offset if isinstance(offset, str) else None,
        )
    if vcov is not None:
        fit.robust = lmer_robust.vcov_robust(fit, kind, cluster)
    return fit


def _lmer_stream(
    formula,
    data,
    reml,
    weights,
    offset,
    start,
    max_fun,
    data_name,
    vcov,
    threads,
    batch_rows,
    progress,
) -> LmerFit:
    """``lmer`` on a streaming source, a Dask or a Spark DataFrame (multilevel.design.stream,
    multilevel.distributed); ``vcov=`` from one more pass (multilevel.distributed.robust)."""
    from multilevel.design import stream
    from multilevel.distributed.dask_fit import fit_dask, is_dask
    from multilevel.distributed.spark import fit_spark, is_spark

    robust = None
    if vcov is not None:
        from multilevel.distributed.robust import parse_streamed_vcov

        robust = parse_streamed_vcov(vcov, weights, is_dask(data) or is_spark(data))

    def make_fit(design, problem, rows, p=None, frames=None) -> LmerFit:
        fit = stream.streamed_fit_class()._fit(
            design,
            problem,
            reml,
            start=start,
            max_fun=max_fun,
            data_name=data_name,
            weights_name=weights if isinstance(weights, str) else None,
            offset_name=offset if isinstance(offset, str) else None,
        )
        fit.rows = rows
        if robust is not None:
            from multilevel.distributed.robust import streamed_vcov

            fit.robust = streamed_vcov(fit, p, frames(), *robust)
        return fit

    if is_dask(data):
        return make_fit(*fit_dask(formula, data, weights, offset, data_name))
    if is_spark(data):
        return make_fit(*fit_spark(formula, data, weights, offset, data_name))
    return stream.fit_stream(
        formula,
        data,
        weights,
        offset,
        batch_rows or stream.DEFAULT_BATCH_ROWS,
        threads,
        progress,
        data_name,
        then=make_fit,
    )
