"""Generalized linear mixed models: ``glmer`` (lme4's glmer) and its result ``GlmerFit``.

The formula and data become y, X and the random-effects terms through the design builder
(:func:`multilevel.design.build`); a ``cbind(successes, failures)`` response becomes the
proportion y = s / (s + f) with prior weights s + f, and ``offset(expr)`` in the formula is
added to ``offset=``, both here before the design is built, as lme4 does. The family's
``initialize`` checks the response (negative counts, proportions outside [0, 1], non-positive
Gamma values raise :class:`multilevel.families.ResponseError`). The fit is lme4's two-stage
one, in Rust (``_core.GlmmProblem``): beta starts at the GLM of the fixed part (IRLS, R's
glm.fit, computed here with the families' functions), theta at 1.

Examples
--------
>>> import multilevel as ml
>>> from multilevel.models.glmm import glmer
>>> cbpp = ml.datasets.load("cbpp")
>>> fit = glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
...             family="binomial")
>>> round(fit.loglik, 2)
-92.03
>>> new = {"period": ["1", "4"], "herd": ["1", "99"]}  # herd 99 is new: b = 0
>>> fit.predict(new, type="response", allow_new_levels=True).round(4).tolist()
[0.3082, 0.0484]
>>> fit.summary(style="stata", eform=True).fixed.estimate.round(3).to_dict()
{'period2': 0.371, 'period3': 0.323, 'period4': 0.206, '_cons': 0.247}
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilevel import _core
from multilevel import design as _design
from multilevel import families as fm
from multilevel.design import checks as _checks
from multilevel.exceptions import DataError, FitError
from multilevel.results.glmer import (  # noqa: F401  (the names lived here before)
    DERIV_DELTA,
    GRAD_TOL,
    SINGULAR_TOL,
    GlmerFit,
    SeparationWarning,
    StoredGlmmFit,
    convergence_message,
    scaled_gradient,
)

__all__ = ["GlmerFit", "SeparationWarning", "glmer"]


def separation_columns(X, y, names) -> list[tuple[str, bool]]:
    """The columns of X that separate the binomial response, with True for complete (strict)
    separation and False for quasi-complete: all rows with successes on one side of a
    threshold of the column and all rows with failures on the other (ties at it allowed)."""
    pos, neg = y > 0, y < 1
    if not pos.any() or not neg.any():
        return []
    out = []
    for j, name in enumerate(names):
        x = X[:, j]
        if np.ptp(x) == 0:
            continue
        for a, b in ((neg, pos), (pos, neg)):
            if x[a].max() <= x[b].min():
                out.append((name, bool(x[a].max() < x[b].min())))
                break
    return out


def _separation_message(name: str, complete: bool, value: float, how: str) -> str:
    kind = "complete" if complete else "quasi-complete"
    where = {
        "held": f"it is held at {value:.6g}, where the fitted probabilities of the rows it "
        f"separates are within 1e-8 of 0 or 1, with an infinite standard error",
        "glm": f"the fixed effects are held at R's glm.fit values (25 IRLS iterations; "
        f"{value:.6g} here) and only theta is fitted; its standard error is infinite",
        "fit": f"the optimiser stopped at {value:.6g}",
    }[how]
    return (
        f"{kind} separation: column {name!r} of the fixed effects predicts the binomial "
        f"response perfectly on one side of a threshold; its estimate diverges ({where}: "
        f"the estimate and its standard error are meaningless). Remove or merge the column, "
        f"or use a penalised (bias-reduced) fit."
    )


_CBIND = re.compile(r"^\s*cbind\((?P<args>.*)\)\s*~(?P<rhs>.*)$", re.S)
_SCALE = re.compile(r"\bscale\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)")
_OFFSET = re.compile(r"\+\s*offset\((?P<expr>[^()]*(\([^()]*\))?[^()]*)\)")


def _split_args(text: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def _eval(expr: str, df: pd.DataFrame) -> np.ndarray:
    env = {c: df[c] for c in df.columns if isinstance(c, str)}
    env.update({"np": np, "log": np.log, "exp": np.exp, "sqrt": np.sqrt})
    return np.asarray(eval(expr, {"__builtins__": {}}, env), dtype=float)


def _glm_start(X, y, family: fm.Family, weights, offset, mustart, maxit: int = 25):
    """R's glm.fit (IRLS) for beta's start."""
    eta = family.linkfun(mustart)
    mu = family.linkinv(eta)
    dev_old = float(np.sum(family.dev_resids(y, mu, weights)))
    coef = np.zeros(X.shape[1])
    for _ in range(maxit):
        mu_eta = family.mu_eta(eta)
        good = (weights > 0) & (mu_eta != 0)
        z = (eta - offset)[good] + (y - mu)[good] / mu_eta[good]
        sw = np.sqrt(weights[good] * mu_eta[good] ** 2 / family.variance(mu)[good])
        coef, *_ = np.linalg.lstsq(X[good] * sw[:, None], z * sw, rcond=None)
        eta = X @ coef + offset
        mu = family.linkinv(eta)
        dev = float(np.sum(family.dev_resids(y, mu, weights)))
        if abs(dev - dev_old) / (abs(dev) + 0.1) < 1e-8:
            break
        dev_old = dev
    return coef


def glmer(
    formula: str,
    data,
    family="binomial",
    nagq: int = 1,
    weights=None,
    offset=None,
    threads: int | None = None,
    batch_rows: int | None = None,
    progress: bool | None = None,
) -> GlmerFit:
    """Fit a generalized linear mixed model by maximum likelihood (Laplace, or adaptive
    Gauss-Hermite quadrature with ``nagq`` > 1 nodes for one scalar random effect; ``nagq=0``
    is lme4's fast first stage).

    Parameters
    ----------
    formula : str
        lme4 formula; the response may be ``cbind(successes, failures)`` and the fixed part
        may hold ``offset(expr)``.
    data : pandas or polars DataFrame, dict of arrays, or a streaming source
        A Parquet file or folder, a pyarrow Table, Dataset or RecordBatchReader, a polars
        LazyFrame, anything with ``__arrow_c_stream__``, a Dask or a PySpark DataFrame is
        streamed (:mod:`multilevel.models.glmm_stream_fit`): the design is built once per
        batch and spilled to a temporary folder, and each PIRLS reweighting is one pass over
        it (``fit.passes`` counts them; ``nagq=0`` needs the fewest). The result keeps no
        rows (:class:`multilevel.results.glmer_stream.StreamedGlmerFit`).
    family : str or multilevel.families.Family
        "binomial", "poisson", "Gamma", "inverse.gaussian", or an instance such as
        ``families.Binomial(link="probit")`` or ``families.NegativeBinomial(theta=2.0)``.
        "negative.binomial" without a theta estimates it as lme4's ``glmer.nb``
        (``fit.nb_theta``).
    nagq : int
        0, 1 (Laplace, the default) or the number of quadrature nodes.
    weights, offset : str or array, optional
        Prior weights (binomial trials for a proportion response) and an offset.
    threads : int, optional
        Threads for the passes over the rows (default: all).
    batch_rows : int, optional
        Rows per record batch when streaming (default 2**20).
    progress : bool, optional
        Progress bars over the streamed passes that read the source; default on above
        2,000,000 rows.

    Warns
    -----
    SeparationWarning
        A column of X separates a binomial response: its estimate diverges. The fit returns
        (as lme4's glmer does) with that coefficient held at a value where the fitted
        probabilities of the separated rows are within 1e-8 of 0 or 1 and an infinite
        standard error.
    """
    from multilevel.design.stream_sources import is_stream_source

    if is_stream_source(data):
        if _nb_without_theta(family):
            raise NotImplementedError(
                "glmer.nb (negative.binomial without theta) refits the model for every theta; "
                "with streamed data give families.NegativeBinomial(theta=...)"
            )
        from multilevel.models.glmm_stream_fit import glmer_stream

        return glmer_stream(
            formula, data, family, int(nagq), weights, offset, threads or 0, batch_rows, progress
        )
    if _nb_without_theta(family):
        return _glmer_nb(formula, data, family, nagq, weights, offset, threads)
    fam = fm.family(family)
    nagq = int(nagq)
    if nagq < 0:
        raise ValueError("nagq must be >= 0")
    fr = _frame(formula, data, fam, weights, offset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = _design.build(
            fr.formula,
            fr.df,
            weights="__ml_w__" if fr.weighted else None,
            offset="__ml_o__" if fr.offset else None,
            allow_n=True,
        )
    _rewarn(caught, formula, weights)
    _checks.check_glmm(d, fam.name)  # (0 | g), a constant binomial response: named
    y = np.asarray(d.y, float)
    w = np.ones_like(y) if d.weights is None else np.asarray(d.weights, float)
    # prior weights for every family (they were dropped for all but the binomial)
    start = fam.initialize(y, w)
    o = np.zeros_like(y) if d.offset is None else np.asarray(d.offset, float)
    if nagq > 1 and (len(d.terms) != 1 or d.terms[0].q != 1):
        raise ValueError(
            "nagq > 1 is only available for models with a single, scalar random-effects term"
        )
    X = np.asfortranarray(d.X, dtype=float)
    prob = make_problem(d, fam, start.y, start.weights, o, threads or 0)
    names = [fr.renamed.get(n, n) for n in d.fixed_names]
    separated = []
    if fam.name == "binomial":
        keep = start.weights > 0
        separated = separation_columns(X[keep], start.y[keep], names)
    try:
        beta0 = _glm_start(X, start.y, fam, start.weights, o, start.mustart)
    except np.linalg.LinAlgError as exc:  # a least-squares step of the GLM start failed
        why = _checks.magnitude_problem([d.parsed.response], [start.y]) or "extreme values?"
        raise DataError(f"the GLM start values could not be computed ({exc}): {why}") from None
    held: dict[int, float] = {}
    how = "fit"
    try:
        res = prob.fit(nagq, list(map(float, beta0)))
    except FitError as e:
        if not separated:
            raise
        res, held, how = _fit_separated(d, fam, start, o, nagq, names, separated, threads, e)
    for name, complete in separated:
        value = float(np.asarray(res.beta)[names.index(name)])
        msg = _separation_message(name, complete, value, how)
        warnings.warn(msg, SeparationWarning, stacklevel=2)
    fit = GlmerFit(res, d, fam, start.y, start.weights, o, nagq, formula)
    fit._names = names
    fit._newdata_spec = (fr.scales, fr.off_exprs, offset if isinstance(offset, str) else None)
    fit._data = data
    fit._problem = prob
    fit._threads = threads or 0
    fit._input_index = data.index if isinstance(data, pd.DataFrame) else None
    fit._kept_frame = _kept_columns(fr, d, formula, weights, offset)
    fit.separated = [names[j] for j in held]
    fit._warn(stacklevel=3)
    return fit


def _rewarn(caught, formula: str, weights) -> None:
    """The design builder's warnings again, with the derived columns named as the user wrote
    them (the response, the weights or trials, the offset, scale(x))."""
    lhs = formula.split("~", 1)[0].strip()
    names = {
        "'__ml_y__'": repr(lhs),
        "'__ml_w__'": repr(weights) if isinstance(weights, str) else f"the weights of {lhs!r}",
        "'__ml_o__'": "the offset",
    }
    for w in caught:
        msg = str(w.message)
        for k, v in names.items():
            msg = msg.replace(k, v)
        msg = re.sub(r"__ml_scale_([A-Za-z_][A-Za-z0-9_.]*)__", r"scale(\1)", msg)
        warnings.warn(w.category(msg), stacklevel=3)


def make_problem(d, fam: fm.Family, y, weights, offset, threads: int = 0):
    """The core's ``GlmmProblem`` over a design's X and terms, the response as the family
    sees it, the prior weights and the offset."""
    terms = [
        (np.asarray(t.codes, np.int32), t.n_levels, np.asfortranarray(t.Z, float), False)
        for t in d.terms
    ]
    return _core.GlmmProblem(
        np.ascontiguousarray(y, float),
        np.asfortranarray(d.X, dtype=float),
        terms,
        fam.name,
        fam.link.name,
        np.ascontiguousarray(weights, float),
        np.ascontiguousarray(offset, float),
        threads,
        getattr(fam, "theta", None),
    )


@dataclass
class _Frame:
    """The data as the design builder sees it: derived columns for cbind(), scale(), the
    weights and the offset, and the formula rewritten to use them."""

    df: pd.DataFrame
    formula: str
    renamed: dict
    scales: dict
    off_exprs: list
    weighted: bool
    offset: bool


def _frame(formula, data, fam, weights, offset) -> _Frame:
    df = _design.as_pandas(data).copy()
    off_extra = None
    off_exprs = [m.group("expr") for m in _OFFSET.finditer(formula)]
    for e in off_exprs:
        v = _eval(e, df)
        off_extra = v if off_extra is None else off_extra + v
    formula = _OFFSET.sub("", formula)
    renamed, scales = {}, {}
    for m in sorted(set(_SCALE.findall(formula))):
        # R's scale(x): centred and divided by the sd (n - 1), as a column of its own.
        v = df[m].to_numpy(float)
        col = f"__ml_scale_{m}__"
        scales[col] = (m, float(np.nanmean(v)), float(np.nanstd(v, ddof=1)))
        df[col] = (v - scales[col][1]) / scales[col][2]
        formula = re.sub(rf"\bscale\(\s*{re.escape(m)}\s*\)", col, formula)
        renamed[col] = f"scale({m})"
    w_user = None
    if weights is not None:
        w_user = (
            df[weights].to_numpy(float) if isinstance(weights, str) else np.asarray(weights, float)
        )
    trials = None
    m = _CBIND.match(formula)
    if m:
        if fam.name != "binomial":
            raise fm.ResponseError("cbind(successes, failures) needs the binomial family")
        s_expr, f_expr = _split_args(m.group("args"))
        s, f = _eval(s_expr, df), _eval(f_expr, df)
        if np.any(s < 0) or np.any(f < 0):
            raise fm.ResponseError("binomial response: negative successes or failures")
        trials = s + f
        df["__ml_y__"] = np.where(trials > 0, s / np.where(trials > 0, trials, 1.0), 0.0)
        formula = "__ml_y__ ~" + m.group("rhs")
    elif fam.name == "binomial":
        lhs = formula.split("~", 1)[0].strip()
        if (lhs in df.columns and not pd.api.types.is_numeric_dtype(df[lhs])) or (
            lhs in df.columns and df[lhs].dtype == bool
        ):
            df[lhs] = np.asarray(fm._binary_from_factor(df[lhs]), dtype=float)
    prior = w_user if trials is None else (trials if w_user is None else w_user * trials)
    if prior is not None:
        df["__ml_w__"] = prior
    offset_v = None
    if offset is not None:
        offset_v = (
            df[offset].to_numpy(float) if isinstance(offset, str) else np.asarray(offset, float)
        )
    if off_extra is not None:
        offset_v = off_extra if offset_v is None else offset_v + off_extra
    if offset_v is not None:
        df["__ml_o__"] = offset_v
    return _Frame(df, formula, renamed, scales, off_exprs, prior is not None, offset_v is not None)


def _kept_columns(fr: _Frame, d, formula: str, weights, offset) -> pd.DataFrame:
    """The columns a saved fit needs, at the rows used, on the input's index: those the
    original formula reads (for predict on its rows) and the derived ones of the design."""
    from multilevel.formula import expr_variables
    from multilevel.results.keep import model_columns

    names = model_columns(d)
    for expr in [formula.split("~", 1)[0], formula.split("~", 1)[1], *fr.off_exprs]:
        try:
            names += expr_variables(expr)
        except Exception:  # an expression the variable finder does not read: skip it
            continue
    names += [c for c in (weights, offset) if isinstance(c, str)]
    names += [src for src, _, _ in fr.scales.values()]
    cols = [c for c in dict.fromkeys(names) if c in fr.df.columns]
    return fr.df[cols].iloc[np.asarray(d.rows)]


def _fit_separated(d, fam, start, o, nagq, names, separated, threads, err):
    """The fit with each separating column's coefficient held where the fitted probabilities
    of the rows it separates are within 1e-8 of 0 or 1: c (x - t) moves into the offset, t the
    middle of the gap between failures and successes, and the other parameters are fitted as
    usual (they are finite once c is held; the intercept takes back c t)."""
    X = np.asarray(d.X, float)
    keep = start.weights > 0
    span = float(np.diff(fam.linkfun(np.array([1e-8, 1 - 1e-8])))[0])
    ones = [j for j in range(X.shape[1]) if np.all(X[:, j] == 1.0)]
    held: dict[int, float] = {}
    shift = np.zeros(len(o))
    back = 0.0  # c t, summed over the held columns
    for name, _ in separated:
        j = names.index(name)
        x, yk = X[keep, j], start.y[keep]
        up = x[yk < 1].max() <= x[yk > 0].min()  # successes above the threshold
        lo, hi = (x[yk < 1].max(), x[yk > 0].min()) if up else (x[yk > 0].max(), x[yk < 1].min())
        gap = hi - lo if hi > lo else float(np.ptp(x))
        c = (1.0 if up else -1.0) * span / gap
        t = (lo + hi) / 2.0 if ones else 0.0
        held[j] = c
        shift += c * (X[:, j] - t)
        back += c * t
    free = [j for j in range(X.shape[1]) if j not in held]
    o2 = o + shift
    d2 = dataclasses.replace(d, X=np.asfortranarray(X[:, free]))
    prob2 = make_problem(d2, fam, start.y, start.weights, o2, threads or 0)
    mustart = fam.linkinv(fam.linkfun(start.mustart) + shift)
    beta0 = _glm_start(d2.X, start.y, fam, start.weights, o2, mustart)
    try:
        res2 = prob2.fit(nagq, list(map(float, beta0)))
    except FitError:
        return _fit_beta_held(d, fam, start, o, nagq, threads, err, separated, names)
    res = StoredGlmmFit.widen(res2, free, held, X.shape[1])
    if ones:
        res.beta[ones[0]] -= back
    return res, held, "held"


def _fit_beta_held(d, fam, start, o, nagq, threads, err, separated, names):
    """The last resort when the other coefficients run off too (the rows are separated by a
    combination of columns): every fixed effect held at R's glm.fit estimate (25 IRLS
    iterations) and theta fitted; the separated coefficients get an infinite standard error,
    the others none (NaN)."""
    X = np.asarray(d.X, float)
    beta = _glm_start(X, start.y, fam, start.weights, o, start.mustart)
    d0 = dataclasses.replace(d, X=np.zeros((X.shape[0], 0), order="F"))
    prob0 = make_problem(d0, fam, start.y, start.weights, o + X @ beta, threads or 0)
    try:
        res0 = prob0.fit(nagq, [])
    except FitError:
        cols = ", ".join(repr(n) for n, _ in separated)
        raise type(err)(f"{err} (the response is separated by {cols}: see the warning)") from err
    held = {names.index(n): float(beta[names.index(n)]) for n, _ in separated}
    res = StoredGlmmFit.widen(res0, [], dict(enumerate(map(float, beta))), X.shape[1])
    free = [j for j in range(X.shape[1]) if j not in held]
    res.vcov[free, free] = np.nan
    return res, held, "glm"


def _nb_without_theta(family) -> bool:
    if isinstance(family, str):
        return family.lower().replace("_", ".") in ("negative.binomial", "negbin", "nb")
    return isinstance(family, type) and issubclass(family, fm.NegativeBinomial)


def theta_ml(y, mu, weights, limit: int = 25) -> float:
    """MASS's theta.ml: the ML estimate of the negative binomial theta given the means mu,
    by Newton's method on the score from theta0 = n / sum(w (y / mu - 1)^2)."""
    from scipy.special import digamma, polygamma

    w = np.asarray(weights, float)
    n = w.sum()
    t = n / np.sum(w * (y / mu - 1.0) ** 2)
    for _ in range(limit):
        t = abs(t)
        score = np.sum(
            w * (digamma(t + y) - digamma(t) + np.log(t) + 1 - np.log(t + mu) - (y + t) / (mu + t))
        )
        info = np.sum(
            w
            * (
                -polygamma(1, t + y)
                + polygamma(1, t)
                - 1 / t
                + 2 / (mu + t)
                - (y + t) / (mu + t) ** 2
            )
        )
        step = score / info
        t = t + step
        if abs(step) <= np.finfo(float).eps ** 0.25:
            break
    return float(t)


def _glmer_nb(formula, data, family, nagq, weights, offset, threads) -> GlmerFit:
    """lme4's glmer.nb: a Poisson GLMM, MASS's theta.ml at its conditional means for a start,
    then theta maximising the GLMM's log-likelihood profiled over theta (each value a glmer
    fit with NegativeBinomial(theta) held fixed), on the log scale within log(theta0) -/+ 3
    as lme4's optTheta; the returned fit is the one at the optimum."""
    from scipy.optimize import minimize_scalar

    link = "log" if isinstance(family, str) else None

    def fit_at(fam, warn: bool) -> GlmerFit:
        with warnings.catch_warnings():
            if not warn:
                warnings.simplefilter("ignore")
            return glmer(formula, data, fam, nagq, weights, offset, threads)

    g0 = fit_at("poisson", False)
    th0 = theta_ml(g0.y, g0.fitted_values, g0.prior_weights)
    fits: dict[float, GlmerFit] = {}

    def objective(log_t: float) -> float:
        fits[log_t] = fit_at(fm.NegativeBinomial(math.exp(log_t), link=link), False)
        return fits[log_t].objective

    lt0 = math.log(th0)
    r = minimize_scalar(
        objective, bounds=(lt0 - 3, lt0 + 3), method="bounded", options={"xatol": 1e-7}
    )
    fit = fit_at(fm.NegativeBinomial(math.exp(float(r.x)), link=link), True)
    fit.nb_theta = math.exp(float(r.x))
    fit.nb_theta_start = th0
    fit.nb_evaluations = len(fits)
    return fit
