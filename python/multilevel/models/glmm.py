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

import math
import re
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from multilevel import _core
from multilevel import design as _design
from multilevel import families as fm
from multilevel.exceptions import (
    ConvergenceWarning,
    FitError,
    MultilevelWarning,
    SingularFitWarning,
)
from multilevel.results.summary import SINGULAR_MESSAGE

__all__ = ["GlmerFit", "SeparationWarning", "glmer"]

# lme4's glmerControl: check.conv.grad tol 2e-3, isSingular tol 1e-4, deriv12's step 1e-4.
GRAD_TOL = 2e-3
SINGULAR_TOL = 1e-4
DERIV_DELTA = 1e-4


class SeparationWarning(MultilevelWarning):
    """A binomial response (quasi-)completely separated by a column of X, or fitted
    probabilities numerically 0 or 1: some fixed effects run off to infinity."""


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


def _separation_message(name: str, complete: bool) -> str:
    kind = "complete" if complete else "quasi-complete"
    return (
        f"{kind} separation: column {name!r} of the fixed effects predicts the binomial "
        f"response perfectly on one side of a threshold; its coefficient runs off to "
        f"infinity (the estimate and its standard error are meaningless). Remove or merge "
        f"the column, or use a penalised (bias-reduced) fit."
    )


def scaled_gradient(gradient, hessian) -> np.ndarray | None:
    """lme4's checkConv: solve(chol(H), g), then min(|scaled|, |g|) per component (None
    when H is not positive definite)."""
    g = np.asarray(gradient, float)
    try:
        R = np.linalg.cholesky(np.asarray(hessian, float)).T
    except np.linalg.LinAlgError:
        return None
    return np.minimum(np.abs(np.linalg.solve(R, g)), np.abs(g))


def convergence_message(mingrad: np.ndarray) -> str:
    k = int(np.argmax(mingrad))
    return (
        f"Model failed to converge with max|grad| = {mingrad[k]:.6g} "
        f"(tol = {GRAD_TOL:g}, component {k + 1})"
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
) -> GlmerFit:
    """Fit a generalized linear mixed model by maximum likelihood (Laplace, or adaptive
    Gauss-Hermite quadrature with ``nagq`` > 1 nodes for one scalar random effect; ``nagq=0``
    is lme4's fast first stage).

    Parameters
    ----------
    formula : str
        lme4 formula; the response may be ``cbind(successes, failures)`` and the fixed part
        may hold ``offset(expr)``.
    data : pandas or polars DataFrame, or dict of arrays
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
    """
    if _nb_without_theta(family):
        return _glmer_nb(formula, data, family, nagq, weights, offset, threads)
    fam = fm.family(family)
    original = formula
    df = _design.as_pandas(data).copy()
    nagq = int(nagq)
    if nagq < 0:
        raise ValueError("nagq must be >= 0")
    off_extra = None
    off_exprs = [m.group("expr") for m in _OFFSET.finditer(formula)]
    for m in list(_OFFSET.finditer(formula)):
        v = _eval(m.group("expr"), df)
        off_extra = v if off_extra is None else off_extra + v
    formula = _OFFSET.sub("", formula)
    renamed = {}
    scales = {}
    for m in set(_SCALE.findall(formula)):
        # R's scale(x): centred and divided by the sd (n - 1), as a column of its own.
        v = df[m].to_numpy(float)
        col = f"__ml_scale_{m}__"
        scales[col] = (m, float(np.nanmean(v)), float(np.nanstd(v, ddof=1)))
        df[col] = (v - scales[col][1]) / scales[col][2]
        formula = re.sub(rf"\bscale\(\s*{re.escape(m)}\s*\)", col, formula)
        renamed[col] = f"scale({m})"
    w_user = (
        None
        if weights is None
        else (
            df[weights].to_numpy(float) if isinstance(weights, str) else np.asarray(weights, float)
        )
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
    d = _design.build(
        formula,
        df,
        weights="__ml_w__" if prior is not None else None,
        offset="__ml_o__" if offset_v is not None else None,
        allow_n=True,
    )
    y = np.asarray(d.y, float)
    w = np.ones_like(y) if d.weights is None else np.asarray(d.weights, float)
    start = fam.initialize(y, w) if fam.name == "binomial" else fam.initialize(y)
    o = np.zeros_like(y) if d.offset is None else np.asarray(d.offset, float)
    if nagq > 1 and (len(d.terms) != 1 or d.terms[0].q != 1):
        raise ValueError(
            "nagq > 1 is only available for models with a single, scalar random-effects term"
        )
    X = np.asfortranarray(d.X, dtype=float)
    terms = [
        (np.asarray(t.codes, np.int32), t.n_levels, np.asfortranarray(t.Z, float), False)
        for t in d.terms
    ]
    prob = _core.GlmmProblem(
        np.ascontiguousarray(start.y, float),
        X,
        terms,
        fam.name,
        fam.link.name,
        np.ascontiguousarray(start.weights, float),
        o,
        threads or 0,
        getattr(fam, "theta", None),
    )
    separated = []
    if fam.name == "binomial":
        keep = start.weights > 0
        names = [renamed.get(n, n) for n in d.fixed_names]
        separated = separation_columns(X[keep], start.y[keep], names)
        for name, complete in separated:
            warnings.warn(_separation_message(name, complete), SeparationWarning, stacklevel=2)
    beta0 = _glm_start(X, start.y, fam, start.weights, o, start.mustart)
    try:
        res = prob.fit(nagq, list(map(float, beta0)))
    except FitError as e:
        if not separated:
            raise
        cols = ", ".join(repr(n) for n, _ in separated)
        raise type(e)(f"{e} (the response is separated by {cols}: see the warning)") from e
    fit = GlmerFit(res, d, fam, start.y, start.weights, o, nagq, original)
    fit._names = [renamed.get(n, n) for n in fit._names]
    fit._newdata_spec = (scales, off_exprs, offset if isinstance(offset, str) else None)
    fit._data = data
    fit._problem = prob
    fit._warn(stacklevel=3)
    return fit


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
    th0 = theta_ml(g0.y, g0.fitted, g0.prior_weights)
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


class GlmerFit:
    """A fitted GLMM (lme4's glmerMod): the estimates and lme4's accessors."""

    def __init__(self, res, d, family, y, weights, offset, nagq, formula):
        self._res = res
        self.design = d
        self.family = family
        self.y = y
        self.prior_weights = weights
        self.offset = offset
        self.nagq = nagq
        self.formula = formula
        self.theta = np.asarray(res.theta)
        self._names = list(d.fixed_names)
        self._index = None
        self._newdata_spec: tuple = ({}, [], None)
        self._data = None
        self._problem = None
        self.nb_theta = getattr(family, "theta", None)

    # --------------------------------------------------------------- checks
    @property
    def lower(self) -> np.ndarray:
        """Lower bounds of theta (the core's layout: each term's lower triangle by columns):
        0 on the diagonals, -inf elsewhere."""
        out = []
        for t in self.design.terms:
            out += [0.0 if i == j else -np.inf for j in range(t.q) for i in range(j, t.q)]
        return np.asarray(out)

    @property
    def singular(self) -> bool:
        """lme4's isSingular: a theta with lower bound 0 below 1e-4."""
        lo = self.lower
        return bool(np.any(self.theta[lo == 0] < SINGULAR_TOL))

    def gradient(self, x=None) -> np.ndarray:
        """Central differences (lme4's deriv12, step 1e-4) of the objective over
        (theta, beta) at x (default: the estimates)."""
        nt = len(self.theta)
        if x is None and len(getattr(self._res, "gradient", ())) > 0:
            # The core's, from the evaluations of its Hessian (the same differences).
            return np.asarray(self._res.gradient)
        x = np.concatenate([self.theta, np.asarray(self._res.beta)]) if x is None else x
        x = np.asarray(x, float)

        def f(v):
            return self._problem.objective(list(v[:nt]), list(v[nt:]), self.nagq)

        g = np.empty(len(x))
        for i in range(len(x)):
            e = np.zeros(len(x))
            e[i] = DERIV_DELTA
            g[i] = (f(x + e) - f(x - e)) / (2 * DERIV_DELTA)
        return g

    @property
    def scaled_gradient(self) -> np.ndarray | None:
        """lme4's convergence statistic min(|solve(chol(H), g)|, |g|) over (theta, beta);
        None for a nagq = 0 fit (lme4 checks only the nagq > 0 stage)."""
        if self.nagq == 0 or getattr(self, "_problem", None) is None:
            return None
        if not hasattr(self, "_scgrad"):
            self._scgrad = scaled_gradient(self.gradient(), np.asarray(self._res.hessian))
        return self._scgrad

    @property
    def converged(self) -> bool:
        sg = self.scaled_gradient
        return sg is None or bool(np.max(sg) <= GRAD_TOL)

    def _warn(self, stacklevel: int = 2) -> None:
        if self.singular:
            warnings.warn(SINGULAR_MESSAGE, SingularFitWarning, stacklevel=stacklevel)
        if not self.converged:
            warnings.warn(
                convergence_message(self.scaled_gradient), ConvergenceWarning, stacklevel=stacklevel
            )
        if self.family.name == "binomial":
            mu = self.fitted_values
            eps = 10 * np.finfo(float).eps
            if np.any((mu < eps) | (mu > 1 - eps)):
                big = [n for n, b in zip(self._names, self._res.beta, strict=True) if abs(b) > 10]
                warnings.warn(
                    "fitted probabilities numerically 0 or 1 occurred"
                    + (f": the fixed effects run off ({', '.join(big)})" if big else ""),
                    SeparationWarning,
                    stacklevel=stacklevel,
                )

    # --------------------------------------------------------------- estimates
    @property
    def fixef(self) -> pd.Series:
        return pd.Series(np.asarray(self._res.beta), index=self._names)

    @property
    def vcov(self) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(self._res.vcov), index=self._names, columns=self._names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(np.asarray(self._res.vcov))), index=self._names)

    @property
    def sigma(self) -> float:
        """1 for the binomial, Poisson and negative binomial; lme4's estimate otherwise."""
        if not self.family.has_dispersion:
            return 1.0
        # lme4: sqrt(pwrss / n), pwrss the Pearson residuals' sum of squares plus ||u||^2.
        mu = self.fitted_values
        r = (self.y - mu) * np.sqrt(self.prior_weights / self.family.variance(mu))
        sqr_u = sum(float(np.sum(np.asarray(u) ** 2)) for u in self._res.u)
        return math.sqrt((float(np.sum(r * r)) + sqr_u) / len(self.y))

    def _lambdas(self) -> list[np.ndarray]:
        out, k = [], 0
        for t in self.design.terms:
            q = t.q
            lam = np.zeros((q, q))
            if t.diagonal:
                lam[np.diag_indices(q)] = self.theta[k : k + q]
                k += q
            else:
                for j in range(q):
                    for i in range(j, q):
                        lam[i, j] = self.theta[k]
                        k += 1
            out.append(lam)
        return out

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        out = {}
        for t, b in zip(self.design.terms, self._res.b, strict=True):
            out[t.group] = pd.DataFrame(
                np.asarray(b).reshape(t.n_levels, t.q), index=t.levels, columns=t.names
            )
        return out

    @property
    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Per grouping factor, the conditional covariances of the modes (levels x q x q),
        lme4's ``attr(ranef(fit, condVar = TRUE)[[g]], "postVar")``."""
        s2 = self.sigma**2
        return {
            t.group: s2 * np.asarray(c)
            for t, c in zip(self.design.terms, self._res.condvar, strict=True)
        }

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        fe = self.fixef
        out = {}
        for g, r in self.ranef.items():
            c = pd.DataFrame({n: np.full(len(r), fe[n]) for n in fe.index}, index=r.index)
            for col in r.columns:
                c[col] = c.get(col, 0.0) + r[col]
            out[g] = c
        return out

    @property
    def varcorr(self) -> pd.DataFrame:
        rows = []
        s = self.sigma
        for t, lam in zip(self.design.terms, self._lambdas(), strict=True):
            cov = s * s * lam @ lam.T
            sd = np.sqrt(np.diag(cov))
            for i in range(t.q):
                rows.append((t.group, t.names[i], None, cov[i, i], sd[i]))
            for j in range(t.q):
                for i in range(j + 1, t.q):
                    cor = cov[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0
                    rows.append((t.group, t.names[j], t.names[i], cov[i, j], cor))
        if self.family.has_dispersion:
            rows.append(("Residual", None, None, s * s, s))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    # --------------------------------------------------------------- likelihood
    @property
    def objective(self) -> float:
        return float(self._res.objective)

    @property
    def df(self) -> int:
        return len(self._names) + len(self.theta) + int(self.family.has_dispersion)

    reml = False  # a GLMM is fitted by maximum likelihood (ml.anova compares without refits)

    @property
    def npar(self) -> int:
        """Number of parameters (lme4's ``npar`` in ``anova``): beta, theta (and sigma)."""
        return self.df

    @property
    def loglik(self) -> float:
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.df

    @property
    def bic(self) -> float:
        return self.objective + self.df * math.log(self.nobs)

    @property
    def deviance(self) -> float:
        """lme4's deviance() of a glmer fit: the sum of the squared deviance residuals."""
        return float(np.sum(self.resid("deviance") ** 2))

    @property
    def nobs(self) -> int:
        return len(self.y)

    @property
    def ngroups(self) -> dict[str, int]:
        return self.design.ngroups

    # --------------------------------------------------------------- fitted values
    @property
    def linear_predictor(self) -> np.ndarray:
        return np.asarray(self._res.eta)

    @property
    def fitted_values(self) -> np.ndarray:
        return np.asarray(self._res.mu)

    @property
    def fitted(self) -> np.ndarray:
        """mu on the response scale, one per row used."""
        return self.fitted_values

    def _prepare(self, newdata) -> tuple[pd.DataFrame, np.ndarray]:
        """New data with the fit's derived columns (``scale(x)`` at the training centre and
        scale, as R's makepredictcall) and its offset (the formula's ``offset()`` terms
        evaluated on the new data, plus the ``offset=`` column when it was given by name)."""
        scales, off_exprs, off_name = self._newdata_spec
        df = _design.as_pandas(newdata).copy()
        for col, (src, centre, scale) in scales.items():
            df[col] = (df[src].to_numpy(float) - centre) / scale
        off = np.zeros(len(df))
        for e in off_exprs:
            off = off + _eval(e, df)
        if off_name is not None:
            off = off + df[off_name].to_numpy(float)
        return df, off

    def predict(
        self,
        newdata=None,
        type: str = "link",
        re_form=None,
        allow_new_levels: bool = False,
    ) -> np.ndarray:
        """Predictions as lme4's ``predict(fit, newdata, type, re.form, allow.new.levels)``.

        Parameters
        ----------
        newdata : DataFrame or dict, optional
            New rows (the predictors, grouping factors and the columns of ``offset()``);
            ``None`` predicts for the rows of the fit.
        type : {"link", "response"}
            eta = offset + X beta + Z b, or mu = g^-1(eta).
        re_form : None, NA-like, "~0" or a formula
            None: all random effects; ``"~0"`` / ``np.nan``: none (b = 0); ``"~(1 | g)"``:
            the terms named.
        allow_new_levels : bool
            Levels absent from the fit get b = 0 (otherwise a ``DataError`` names them).

        Returns
        -------
        numpy.ndarray
            One value per row of ``newdata`` (NaN where a needed variable is missing).
        """
        if type not in ("link", "response"):
            raise ValueError("type must be 'link' or 'response'")
        if newdata is None and re_form is None:
            eta = self.linear_predictor
        else:
            source = self._data if newdata is None else newdata
            if source is None:
                raise ValueError("predict(re_form=...) needs newdata for a fit without its data")
            df, off = self._prepare(source)
            nm = _design.new_matrices(
                self.design, df, re_form=re_form, allow_new_levels=allow_new_levels
            )
            rows = np.asarray(nm.rows)
            eta_rows = np.asarray(nm.X, float) @ np.asarray(self._res.beta) + off[rows]
            for t, tm, b in zip(self.design.terms, nm.terms, self._res.b, strict=True):
                if tm is None:
                    continue
                codes = np.asarray(tm[0])
                Z = np.asarray(tm[1], float).reshape(len(codes), -1)
                bl = np.asarray(b).reshape(t.n_levels, t.q)
                known = codes >= 0
                eta_rows[known] += np.einsum("ij,ij->i", Z[known], bl[codes[known]])
            eta = np.full(len(df), np.nan)
            eta[rows] = eta_rows
            if newdata is None:
                eta = eta[np.asarray(self.design.rows)]
        return eta if type == "link" else self.family.linkinv(eta)

    def resid(self, type: str = "deviance") -> np.ndarray:
        y, mu, wt = self.y, self.fitted_values, self.prior_weights
        fam = self.family
        if type == "deviance":
            d = fam.dev_resids(y, mu, wt)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        if type == "pearson":
            return (y - mu) * np.sqrt(wt) / np.sqrt(fam.variance(mu))
        if type == "response":
            return y - mu
        if type == "working":
            return (y - mu) / fam.mu_eta(self.linear_predictor)
        raise ValueError("type must be 'deviance', 'pearson', 'response' or 'working'")

    # --------------------------------------------------------------- inference
    def coef_table(self, level: float = 0.95) -> pd.DataFrame:
        """z tests of the fixed effects (lme4's summary table) with Wald intervals: columns
        estimate, std_error, df (inf), statistic (z), p_value, ci_lower, ci_upper."""
        from multilevel.inference.wald import _table

        est, se = self.fixef.to_numpy(), self.se.to_numpy()
        return _table(self._names, est, se, np.full(len(est), np.inf), level)

    def confint(self, method: str = "wald", level: float = 0.95) -> pd.DataFrame:
        """Intervals of the fixed effects, lme4's ``confint(fit, method = "Wald")`` (its rows
        for theta are NA there and left out here): beta -/+ z se."""
        if method.lower() != "wald":
            raise ValueError("confint of a glmer fit: method='wald' only")
        t = self.coef_table(level)
        lo, hi = f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"
        return pd.DataFrame({lo: t.ci_lower, hi: t.ci_upper}, index=t.index)

    def _vc_elements(self, theta) -> tuple[list[str], np.ndarray]:
        """The variances and covariances (sigma^2 Lambda Lambda') in Stata's order."""
        names, vals, k = [], [], 0
        s2 = self.sigma**2
        for t in self.design.terms:
            q = t.q
            lam = np.zeros((q, q))
            for j in range(q):
                for i in range(j, q):
                    lam[i, j] = theta[k]
                    k += 1
            S = s2 * lam @ lam.T
            order = [i for i in range(q) if t.names[i] != "(Intercept)"] + [
                i for i in range(q) if t.names[i] == "(Intercept)"
            ]
            for i in order:
                names.append(f"{t.group}: var({t.names[i]})")
                vals.append(S[i, i])
            for a, i in enumerate(order):
                for j in order[a + 1 :]:
                    names.append(f"{t.group}: cov({t.names[i]},{t.names[j]})")
                    vals.append(S[i, j])
        return names, np.asarray(vals)

    def varcomp_table(self, level: float = 0.95) -> pd.DataFrame:
        """Variance components with standard errors by the delta method from the inverse
        Hessian of the objective over (theta, beta) (cov = 2 H^-1, the objective being -2
        logLik), intervals on the log scale for variances (as Stata's ``meglm``)."""
        names, est = self._vc_elements(self.theta)
        nt = len(self.theta)
        H = np.asarray(self._res.hessian, float)
        try:
            cov = 2.0 * np.linalg.inv(H)[:nt, :nt]
        except np.linalg.LinAlgError:
            cov = np.full((nt, nt), np.nan)
        J = np.empty((len(est), nt))
        for k in range(nt):  # the elements are quadratic in theta: central differences
            e = np.zeros(nt)
            e[k] = 1e-5
            J[:, k] = (
                self._vc_elements(self.theta + e)[1] - self._vc_elements(self.theta - e)[1]
            ) / 2e-5
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, cov, J), 0.0))
        z = stats.norm.ppf(0.5 + level / 2)
        is_var = np.array([": var(" in n for n in names])
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = np.where(is_var, est * np.exp(-z * se / est), est - z * se)
            hi = np.where(is_var, est * np.exp(z * se / est), est + z * se)
        return pd.DataFrame(
            {"estimate": est, "std_error": se, "ci_lower": lo, "ci_upper": hi},
            index=pd.Index(names, name="parameter"),
        )

    def lr_test_vs_glm(self) -> tuple[float, int, float] | None:
        """LR test against the model without random effects (the GLM at R's glm.fit, the
        objective at theta = 0): (chi2, df, p), p halved for one parameter (chibar2(01)).
        None for a nagq = 0 fit and for families with a dispersion."""
        if self.nagq == 0 or self.family.has_dispersion or self._problem is None:
            return None
        X = np.asarray(self.design.X, float)
        y, w = self.y, self.prior_weights
        mustart = (
            self.family.initialize(y, w).mustart
            if self.family.name == "binomial"
            else (self.family.initialize(y).mustart)
        )
        beta = _glm_start(X, y, self.family, w, self.offset, mustart)
        nt = len(self.theta)
        glm = self._problem.objective([0.0] * nt, list(map(float, beta)), self.nagq)
        chi2 = max(0.0, glm - self.objective)
        p = stats.chi2.sf(chi2, nt)
        return chi2, nt, float(0.5 * p if nt == 1 else p)

    @property
    def response_name(self) -> str:
        lhs = self.formula.split("~", 1)[0].strip()
        m = re.match(r"^cbind\((.*)\)$", lhs)
        return _split_args(m.group(1))[0] if m else lhs

    # --------------------------------------------------------------- report
    def summary(self, style: str = "lme4", **kwargs):
        """lme4's summary text (``style="lme4"``), or Stata's ``melogit`` / ``mepoisson``
        report (``style="stata"``, ``eform=True`` for odds ratios / incidence-rate ratios,
        ``level=0.95``)."""
        if style == "stata":
            from multilevel.reports import stata

            return stata.glmm_report(self, **kwargs)
        if style != "lme4":
            raise ValueError(f"style must be 'lme4' or 'stata'; got {style!r}")
        fam = self.family
        method = (
            "Laplace Approximation"
            if self.nagq == 1
            else f"Adaptive Gauss-Hermite Quadrature (nAGQ = {self.nagq})"
            if self.nagq > 1
            else "nAGQ = 0"
        )
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({method}) ['glmerMod']",
            f" Family: {fam.name}  ( {fam.link.name} )",
            f"Formula: {self.formula}",
            "",
            f"{'AIC':>9} {'BIC':>9} {'logLik':>9} {'deviance':>9} {'df.resid':>9}",
            f"{self.aic:9.1f} {self.bic:9.1f} {self.loglik:9.1f} {self.objective:9.1f} "
            f"{self.nobs - self.df:9d}",
            "",
            "Random effects:",
        ]
        vc = self.varcorr
        lines.append(f" {'Groups':<9}{'Name':<13}{'Variance':>10} {'Std.Dev.':>9}")
        for _, r in vc[vc.var2.isna()].iterrows():
            lines.append(f" {r.group:<9}{(r.var1 or ''):<13}{r.vcov:10.4g} {r.sdcor:9.4g}")
        ng = ", ".join(f"{g}, {k}" for g, k in self.ngroups.items())
        lines += [f"Number of obs: {self.nobs}, groups:  {ng}", "", "Fixed effects:"]
        est, se = self.fixef, self.se
        z = est / se
        p = pd.Series(2 * stats.norm.sf(np.abs(z)), index=est.index)
        lines.append(f"{'':<14}{'Estimate':>10} {'Std. Error':>10} {'z value':>8} {'Pr(>|z|)':>9}")
        for n in est.index:
            lines.append(f"{n:<14}{est[n]:10.5f} {se[n]:10.5f} {z[n]:8.3f} {p[n]:9.3g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"GlmerFit({self.formula!r}, family={self.family!r}, nagq={self.nagq}, "
            f"loglik={self.loglik:.4f})"
        )
