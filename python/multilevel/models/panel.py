"""Panel-data estimators with one-way (entity) effects, as R's plm and Stata's xtreg.

For ``y_it = x_it' beta + a_i + e_it`` with entities ``i`` and times ``t``:

``"within"`` (plm ``model="within"``, Stata ``xtreg, fe``)
    Least squares on entity-demeaned data; ``s^2 = SSR / (n - N - K)`` with ``N`` entities
    and ``K`` slopes. Columns constant within every entity (the intercept, time-invariant
    regressors) drop out. ``fixef`` holds the entity intercepts ``ybar_i - xbar_i' beta``.
``"random"`` (plm ``model="random"``, Swamy-Arora; Stata ``xtreg, re`` on balanced panels)
    Feasible GLS: least squares on ``y_it - theta_i ybar_i`` and ``x_it - theta_i xbar_i``
    with ``theta_i = 1 - sqrt(s2_e / (T_i s2_u + s2_e))``. ``s2_e = SSR_within / (n - N - K)``;
    ``s2_u`` solves plm's quadratic-form equation on the between residuals
    ``sum_i T_i ebar_i^2 = (N - K - 1) s2_e + (n - tr[(Z'B Z)^-1 Z'S Z]) s2_u``, where the
    between regression weights each entity mean by ``T_i`` (``Z'BZ = sum T_i zbar zbar'``,
    ``Z'SZ = sum T_i^2 zbar zbar'``); balanced, this is the textbook
    ``s2_u = SSR_between / (N - K - 1) - s2_e / T``. A negative ``s2_u`` is set to 0.
    Columns aliased in the between regression (entity means ``cvar(x, entity)`` beside ``x``:
    Mundlak's model, whose slopes on ``x`` are the within slopes) are left out of it, as plm
    does, and ``K`` counts the others.
    Stata's ``xtreg, re`` uses a different ``s2_u`` formula on unbalanced panels.
``"between"`` (plm ``model="between"``, Stata ``xtreg, be``)
    Least squares on the entity means, one row per entity.
``"pooled"`` (plm ``model="pooling"``)
    Least squares on the rows as they are.
``"fd"`` (plm ``model="fd"``)
    Least squares on first differences of consecutive rows of each entity ordered by time
    (as plm, gaps in the time index are not checked); the intercept, when the formula has
    one, is kept and estimates the mean change per period.

Covariances (``vcov=``): ``"iid"`` as above, or ``{"CR0" | "CR1": column}`` clustered on a
column (``"cluster"`` is ``{"CR1": entity}``; pyfixest's ``{"CRV1": column}`` is CR1). CR1
applies ``G/(G-1) * (n-1)/(n-K)`` with ``K`` the number of estimated coefficients (not
counting the absorbed entity effects): Stata's ``vce(cluster)`` for ``xtreg`` and plm's
``vcovHC(method="arellano", type="sss")``; CR0 is plm's ``type="HC0"``. Cluster-robust
tests use ``G - 1`` degrees of freedom.

R-squared: ``r2`` is plm's: the squared correlation of the transformed response (demeaned for
within, quasi-demeaned for random, differenced for fd) with its fitted values; ``r2_within``,
``r2_between`` and ``r2_overall`` are Stata's: squared correlations of ``y`` with ``x' beta``
after within demeaning, of the entity means, and of the raw rows.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from multilevel._tallqr import kept_columns, tall_r
from multilevel.design.checks import no_formula_offset
from multilevel.design.fixed import fixed_arrays
from multilevel.design.rank import RANK_TOL, rank_keep
from multilevel.exceptions import DataError, MultilevelWarning
from multilevel.factors import factor
from multilevel.inference.sandwich import Sandwich, cluster_sums, sandwich
from multilevel.inference.tails import chi2_sf
from multilevel.models.ols import OlsFit, parse_vcov, summary_text, vcov_label
from multilevel.results.tidy import input_index

__all__ = ["HausmanTest", "PanelFit", "hausman", "panel"]

_MODELS = ("within", "random", "between", "pooled", "fd")


def _group_means(A: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Entity means of the columns of A: (N, k)."""
    return cluster_sums(A.reshape(len(A), -1), codes, len(counts)) / counts[:, None]


def _corr2(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) ** 2 / den**2 if den > 0 else math.nan


class PanelFit(OlsFit):
    """Result of :func:`panel`; everything of :class:`~multilevel.models.ols.OlsFit` plus:

    Attributes
    ----------
    model : str
        ``"within"``, ``"random"``, ``"between"``, ``"pooled"`` or ``"fd"``.
    n_entities : int
        Number of entities in the rows used.
    r2 : float
        plm's R-squared of the (transformed) regression.
    r2_within, r2_between, r2_overall : float
        Stata's three R-squared.
    theta : float or pandas.Series
        Random effects only: the quasi-demeaning factor (one number for a balanced panel, one
        per entity otherwise); ``sigma2_e`` and ``sigma2_u`` the variance components.
    fixef : pandas.Series
        Within only: the entity intercepts ``ybar_i - xbar_i' beta`` (plm's ``fixef``).
    """

    theta: Any = None
    sigma2_e: float = math.nan
    sigma2_u: float = math.nan
    fixef: pd.Series | None = None

    def _header(self) -> list[tuple[str, str]]:
        rows = super()._header()
        rows.insert(3, ("No. entities:", f"{self.n_entities}"))
        rows += [
            ("R-sq within:", f"{self.r2_within:.4f}"),
            ("R-sq between:", f"{self.r2_between:.4f}"),
            ("R-sq overall:", f"{self.r2_overall:.4f}"),
        ]
        if self.model == "random":
            th = self.theta
            th_txt = f"{th:.4f}" if np.isscalar(th) else f"{th.min():.4f}-{th.max():.4f}"
            rows += [
                ("sigma_u:", f"{math.sqrt(self.sigma2_u):.4f}"),
                ("sigma_e:", f"{math.sqrt(self.sigma2_e):.4f}"),
                ("theta:", th_txt),
            ]
        return rows

    def summary(self, level: float = 0.95) -> str:
        """A Stata xtreg-like report."""
        return summary_text(self, self._header(), level)


def _check_duplicates(
    ent: np.ndarray,
    ent_levels: pd.Index,
    tim: np.ndarray,
    tim_levels: pd.Index,
    entity: str,
    time: str,
) -> None:
    """Each (entity, time) pair must occur once; the codes are 0-based."""
    T = len(tim_levels)
    key = ent * T + tim
    if len(ent_levels) * T <= 4 * len(key) + 1_000_000:
        dup_keys = np.flatnonzero(np.bincount(key, minlength=len(ent_levels) * T) > 1)
    else:
        k = np.sort(key)
        dup_keys = np.unique(k[1:][k[1:] == k[:-1]])
    if len(dup_keys):
        e = ent_levels[dup_keys[:5] // T].tolist()
        t = tim_levels[dup_keys[:5] % T].tolist()
        shown = ", ".join(f"({a!r}, {b!r})" for a, b in zip(e, t))
        raise DataError(
            f"duplicate ({entity}, {time}) pairs: {len(dup_keys)} pair(s) occur more than "
            f"once, e.g. {shown}; a panel needs one row per entity and time"
        )


def _regress(
    y: np.ndarray, X: np.ndarray, names: list[str]
) -> tuple[np.ndarray, float, np.ndarray]:
    """Least squares through the blocked QR: coefficients, residual sum of squares and R of X
    (``X'X = R'R``). Collinear columns are an error that names them (the design already
    dropped those of the untransformed X)."""
    R = tall_r([X, y])
    p = X.shape[1]
    keep = kept_columns(R[:, :p], RANK_TOL)
    if len(keep) < p:
        gone = [names[j] for j in range(p) if j not in set(keep.tolist())]
        raise DataError(
            "after the panel transformation these columns are collinear with the others: "
            + ", ".join(gone)
        )
    if R.shape[0] <= p:
        raise DataError(f"{len(y)} observations cannot fit {p} coefficients")
    beta = scipy.linalg.solve_triangular(R[:p, :p], R[:p, p], check_finite=False)
    return beta, float(R[p, p] ** 2), R[:p, :p]


def _drop_constant(
    Xt: np.ndarray, names: list[str], X: np.ndarray, warn_names: bool = True
) -> tuple[np.ndarray, list[int]]:
    """Keep the columns of the within-transformed Xt that are not identically 0."""
    # max |.| as max(max, -min): no row-sized temporaries
    scale = np.maximum(np.maximum(X.max(axis=0), -X.min(axis=0)), 1.0)
    top = np.maximum(Xt.max(axis=0), -Xt.min(axis=0))
    keep = [j for j in range(Xt.shape[1]) if top[j] > 1e-10 * scale[j]]
    gone = [names[j] for j in range(len(names)) if j not in keep and names[j] != "(Intercept)"]
    if gone and warn_names:
        warnings.warn(
            "columns constant within every entity drop out of the within transformation: "
            + ", ".join(gone),
            MultilevelWarning,
            stacklevel=3,
        )
    return Xt[:, keep], keep


def panel(
    formula: str,
    data: Any,
    entity: str,
    time: str | None = None,
    model: str = "within",
    vcov: str | dict[str, Any] = "iid",
) -> PanelFit:
    """Fixed-effects, random-effects, between, pooled or first-difference panel regression.

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + x2"``.
    data : pandas or polars DataFrame, or dict of arrays
    entity : str
        Column identifying the entity (firm, person, school).
    time : str, optional
        Column identifying the period; needed for ``model="fd"``. When given, each
        (entity, time) pair must occur once.
    model : {"within", "random", "between", "pooled", "fd"}
    vcov : str or dict
        ``"iid"`` (default), ``"cluster"`` (= ``{"CR1": entity}``), or
        ``{"CR0" | "CR1": column}``. See the module documentation for the factors.

    Returns
    -------
    PanelFit

    Examples
    --------
    >>> import multilevel as ml
    >>> gr = ml.datasets.load("grunfeld")
    >>> fe = ml.panel("inv ~ value + capital", gr, entity="firm", time="year")
    >>> print(round(fe.coef["value"], 6), round(fe.r2, 4))
    0.110124 0.7668
    >>> re = ml.panel("inv ~ value + capital", gr, entity="firm", time="year", model="random")
    >>> round(re.theta, 4)
    0.8612
    """
    model, kind, specs = _check_arguments(model, entity, time, vcov)
    extras: list[Any] = [entity] + ([time] if time is not None else []) + specs
    no_formula_offset(formula, "panel", "R's plm has no offset; ols and lmlist take one")
    prep = fixed_arrays(formula, data, None, extras)
    y, X, names = prep.y, prep.X, prep.names
    ent_raw = prep.extras[0]
    tim_raw = prep.extras[1] if time is not None else None
    clus = prep.extras[(2 if time is not None else 1) :]
    codes, ent_levels = factor(pd.Series(ent_raw, name=entity, copy=False))  # levels sorted
    if tim_raw is not None:
        tcodes, tim_levels = factor(tim_raw)
        _check_duplicates(codes, ent_levels, tcodes, tim_levels, entity, time)
    rows = prep.rows
    if model == "fd":  # consecutive rows of an entity, in time order
        order = np.lexsort((tcodes, codes))
        y, X, codes = y[order], X[order], codes[order]
        clus = [c[order] for c in clus]
        rows = rows[order]
    n, p = X.shape
    N = len(ent_levels)
    counts = np.bincount(codes, minlength=N).astype(float)
    has_int = "(Intercept)" in names
    label = (
        vcov_label(kind, specs)
        if not (kind == "CR1" and specs == [entity])
        else (f"CR1 ({entity})")
    )
    ybar = _group_means(y, codes, counts)[:, 0]
    Xbar = _group_means(X, codes, counts)
    theta = None
    s2e = s2u = math.nan
    fixef = None
    k_small = None  # parameters counted by the small-sample factor

    if model in ("within", "random"):
        yw = y - ybar[codes]
        Xw_all = _demeaned(X, Xbar, codes)
        Xw, keep_w = _drop_constant(Xw_all, names, X, warn_names=(model == "within"))
        if Xw.shape[1] == 0:
            raise DataError("no regressor varies within entities")
        bw, ssr_w, R_w = _regress(yw, Xw, [names[j] for j in keep_w])
        K = Xw.shape[1]
        df_w = n - N - K
        if df_w <= 0:
            raise DataError(f"{n} rows and {N} entities leave no degrees of freedom")
    if model == "within":
        yt, Xt, tnames = yw, Xw, [names[j] for j in keep_w]
        beta, R_t = bw, R_w
        k_df = N + K
        k_small = K
        fixef = pd.Series(ybar - Xbar[:, keep_w] @ bw, index=ent_levels, name="fixef")
    elif model == "random":
        s2e = ssr_w / df_w
        s2u = _swamy_arora_s2u(ybar, Xbar, counts, names, has_int, n, s2e)
        th_i = 1.0 - np.sqrt(s2e / (counts * s2u + s2e))
        yt = y - th_i[codes] * ybar[codes]
        Xt = X - th_i[codes][:, None] * Xbar[codes]
        tnames = names
        beta, _, R_t = _regress(yt, Xt, tnames)
        k_df = p
        balanced = bool(np.all(counts == counts[0]))
        theta = float(th_i[0]) if balanced else pd.Series(th_i, index=ent_levels, name="theta")
    elif model == "between":
        yt, Xt, tnames = ybar, Xbar, names
        beta, _, R_t = _regress(yt, Xt, tnames)
        k_df = p
        if clus:
            raise ValueError("cluster-robust errors are not available for the between model")
    elif model == "pooled":
        yt, Xt, tnames = y, X, names
        beta, _, R_t = _regress(yt, Xt, tnames)
        k_df = p
    else:  # fd
        same = codes[1:] == codes[:-1]
        _check_fd(same, N, entity)
        yt, Xt, tnames = _first_differences(y, X, same, names, has_int)
        beta, _, R_t = _regress(yt, Xt, tnames)
        k_df = Xt.shape[1]
        clus = [c[1:][same] for c in clus]
        rows = rows[1:][same]
    fitted = Xt @ beta
    resid = yt - fitted
    nt = len(yt)
    if nt - k_df <= 0:
        raise DataError(f"{nt} observations cannot fit {k_df} parameters in model={model!r}")
    sw_ = _covariance(kind, Xt, R_t, resid, k_df, clus, k_small)
    intercept_in_t = model in ("between", "pooled", "fd") and has_int
    fit = PanelFit(
        beta,
        tnames,
        sw_,
        y=yt,
        X=Xt,
        weights=None,
        vcov_type=label,
        k=k_df,
        n_dropped=prep.n_dropped,
        dropped_columns=prep.dropped_columns,
        formula=formula,
        model=model,
        intercept=intercept_in_t,
        rows=rows if model != "between" else None,
        fitted=fitted,
        input_index=input_index(data),
    )
    fit.n_entities = N
    fit.entity, fit.time = entity, time
    fit.theta, fit.sigma2_e, fit.sigma2_u, fit.fixef = theta, s2e, s2u, fixef
    _r_squared(fit, yt, fitted, y, X, ybar, Xbar, codes, names, tnames, beta)
    return fit


def _demeaned(X: np.ndarray, Xbar: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """X minus its entity means, column by column (contiguous passes)."""
    Xw = np.empty_like(X, order="F")
    for j in range(X.shape[1]):
        np.subtract(X[:, j], Xbar[codes, j], out=Xw[:, j])
    return Xw


def _covariance(kind, Xt, R_t, resid, k_df, clus, k_small) -> Sandwich:
    """The covariance of the transformed regression: classical from its QR factor, or a
    cluster-robust sandwich."""
    nt, k = Xt.shape
    if kind == "iid":
        R_inv = scipy.linalg.solve_triangular(R_t, np.eye(k), check_finite=False)
        B = R_inv @ R_inv.T  # (X'X)^-1 from the QR factor
        s2 = float(resid @ resid) / (nt - k_df)
        return Sandwich(s2 * B, np.full(k, float(nt - k_df)), float(nt - k_df))
    return sandwich(Xt, resid, kind, clusters=clus, k=k_small if k_small else k)


def _check_arguments(model: str, entity: str, time: str | None, vcov: Any):
    """(model, covariance kind, cluster specs) of :func:`panel`'s arguments, checked."""
    if model == "pooling":
        model = "pooled"
    if model not in _MODELS:
        raise ValueError(f"model must be one of {', '.join(_MODELS)}; got {model!r}")
    if model == "fd" and time is None:
        raise ValueError("model='fd' needs the time column (time=)")
    if isinstance(vcov, str) and vcov.lower() == "cluster":
        vcov = {"CR1": entity}
    kind, specs = parse_vcov(vcov)
    if kind in ("HC0", "HC1", "HC2", "HC3"):
        raise ValueError(
            "panel supports vcov='iid', 'cluster' or {'CR0'|'CR1': column} ({'CRV1': column})"
        )
    if kind in ("CR2", "CRV3"):
        raise ValueError(f"{kind} is not available for panel models; use CR0 or CR1 (= CRV1)")
    return model, kind, specs


def _swamy_arora_s2u(
    ybar: np.ndarray,
    Xbar: np.ndarray,
    counts: np.ndarray,
    names: list[str],
    has_int: bool,
    n: int,
    s2e: float,
) -> float:
    """The entity variance of the random-effects model (Swamy-Arora, as plm).

    T_i-weighted between regression on the columns of X (plm's "Between" model). Columns
    aliased among the entity means (the entity mean of a regressor next to the regressor, as
    in a Mundlak model) are dropped, as plm drops them; the projection, and so s2_u, depends
    only on the span."""
    N = len(counts)
    sw = np.sqrt(counts)
    kept_b = rank_keep(Xbar * sw[:, None])
    Xb = Xbar[:, kept_b]
    bb = _regress(ybar * sw, Xb * sw[:, None], [names[j] for j in kept_b])[0]
    eb = ybar - Xb @ bb
    quad = float(np.sum(counts * eb**2))
    Kz = Xb.shape[1] - 1 if has_int else Xb.shape[1]
    m_nu = N - Kz - 1
    ZBZ = (Xb * counts[:, None]).T @ Xb
    ZSZ = (Xb * (counts**2)[:, None]).T @ Xb
    m_eta = n - float(np.trace(np.linalg.solve(ZBZ, ZSZ)))
    return max((quad - m_nu * s2e) / m_eta, 0.0)


def _check_fd(same: np.ndarray, n_entities: int, entity: str) -> None:
    """DataError when no entity has two periods (nothing to difference)."""
    if not same.any():
        raise DataError(
            f"model='fd' needs two periods of an entity to difference; each of the {n_entities} "
            f"entities of {entity!r} has one row"
        )


def _first_differences(
    y: np.ndarray, X: np.ndarray, same: np.ndarray, names: list[str], has_int: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Differences of consecutive rows of the same entity (``same``), the intercept kept."""
    yt = (y[1:] - y[:-1])[same]
    Xd = (X[1:] - X[:-1])[same]
    if has_int:
        Xd[:, names.index("(Intercept)")] = 1.0
    Xt, keep_d = _drop_constant(Xd, names, X, warn_names=False)
    if has_int and names.index("(Intercept)") not in keep_d:
        keep_d = sorted([*keep_d, names.index("(Intercept)")])
        Xt = Xd[:, keep_d]
    return yt, Xt, [names[j] for j in keep_d]


def _r_squared(fit, yt, fitted, y, X, ybar, Xbar, codes, names, tnames, beta) -> None:
    """plm's and Stata's R-squared, set on ``fit``.

    plm's (summary.plm, r.squared type "cor"): the squared correlation of the transformed
    response ``yt`` and its fitted values, and the adjusted version with (n - 1) / df_resid.
    It is 1 - SSR/TSS except for random effects on unbalanced panels. Stata's (within,
    between, overall) come from the slopes."""
    fit.r2 = _corr2(yt, fitted)
    fit.adj_r2 = 1.0 - (1.0 - fit.r2) * (len(yt) - 1) / fit.df_resid
    slope = [j for j, nm in enumerate(names) if nm != "(Intercept)" and nm in tnames]
    b_s = np.array([beta[tnames.index(names[j])] for j in slope])
    b_slope = np.zeros(X.shape[1])  # X @ b_slope: x'beta over the slopes, no column copies
    b_slope[slope] = b_s
    xb = X @ b_slope
    xb_bar = Xbar[:, slope] @ b_s if slope else np.zeros(len(ybar))
    if fit.model == "within" and len(slope) == len(tnames):
        fit.r2_within = fit.r2  # the same two vectors: demeaned y and its fitted values
    else:
        fit.r2_within = _corr2(y - ybar[codes], xb - xb_bar[codes])
    fit.r2_between = _corr2(ybar, xb_bar)
    fit.r2_overall = _corr2(y, xb)


class HausmanTest:
    """Result of :func:`hausman`: ``stat``, ``df``, ``p`` and the coefficients compared."""

    def __init__(self, stat: float, df: int, p: float, names: list[str]) -> None:
        self.stat, self.df, self.p, self.names = stat, df, p, names

    def __repr__(self) -> str:
        return f"HausmanTest(chisq={self.stat:.6g}, df={self.df}, p={self.p:.4g})"


def hausman(fe: PanelFit, re: PanelFit) -> HausmanTest:
    """Hausman test of fixed against random effects, as ``plm::phtest(fe, re)``.

    ``H = d' (V_fe - V_re)^-1 d`` with ``d = b_fe - b_re`` over the coefficients both models
    estimate (not the intercept); chi-square with as many degrees of freedom.

    Examples
    --------
    >>> import multilevel as ml
    >>> gr = ml.datasets.load("grunfeld")
    >>> fe = ml.panel("inv ~ value + capital", gr, entity="firm", time="year")
    >>> re = ml.panel("inv ~ value + capital", gr, entity="firm", time="year", model="random")
    >>> h = ml.hausman(fe, re)
    >>> print(round(h.stat, 4), h.df)
    2.3304 2
    """
    names = [n for n in fe.coef.index if n in re.coef.index and n != "(Intercept)"]
    if not names:
        raise ValueError("the two fits share no coefficients")
    d = fe.coef[names].to_numpy() - re.coef[names].to_numpy()
    V = fe.vcov.loc[names, names].to_numpy() - re.vcov.loc[names, names].to_numpy()
    stat = float(d @ np.linalg.solve(V, d))
    return HausmanTest(stat, len(names), chi2_sf(stat, len(names)), names)
