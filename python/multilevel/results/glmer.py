"""The result of a generalized linear mixed model fit: ``GlmerFit`` (lme4's glmerMod).

A fit holds the design (y, X and the terms, as :func:`multilevel.design.build` made them),
the family, the response as the family sees it (proportions for a binomial with trials as
prior weights), the offset, and the core's result (``_core.GlmmFit``: theta, beta, the
conditional modes, eta, mu, the covariance of beta and the Hessian of the objective). The
core's problem (``_core.GlmmProblem``) is kept for the objective at other parameters (the
convergence check, profiles, the LR test against the GLM); a fit that was pickled or saved
rebuilds it from the design on first use, and holds a :class:`StoredGlmmFit` in place of the
core's result. Tables (tidy, glance, augment) are in :mod:`multilevel.results.glmer_tables`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel import design as _design
from multilevel.exceptions import ConvergenceWarning, MultilevelWarning, SingularFitWarning
from multilevel.results.glmer_tables import GlmerTables
from multilevel.results.keep import KeepMixin
from multilevel.results.summary import SINGULAR_MESSAGE

__all__ = [
    "GlmerFit",
    "SeparationWarning",
    "StoredGlmmFit",
    "convergence_message",
    "scaled_gradient",
]

# lme4's glmerControl: check.conv.grad tol 2e-3, isSingular tol 1e-4, deriv12's step 1e-4.
GRAD_TOL = 2e-3
SINGULAR_TOL = 1e-4
DERIV_DELTA = 1e-4


class SeparationWarning(MultilevelWarning):
    """A binomial response (quasi-)completely separated by a column of X, or fitted
    probabilities numerically 0 or 1: some fixed effects run off to infinity."""


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


@dataclass
class StoredGlmmFit:
    """The fields of the core's ``GlmmFit`` as plain values: what a pickled or saved fit
    holds, and the result of a fit whose separated columns were held fixed (``widen``)."""

    nagq: int
    theta: np.ndarray
    beta: np.ndarray
    u: list
    b: list
    objective: float
    vcov: np.ndarray
    hessian: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    weights: np.ndarray
    condvar: list
    stage1: Any = None
    stage2: Any = None

    @classmethod
    def of(cls, res: Any) -> StoredGlmmFit:
        if isinstance(res, StoredGlmmFit):
            return res
        kw = {}
        for f in fields(cls):
            v = getattr(res, f.name)
            if isinstance(v, list) and f.name in ("u", "b", "condvar"):
                v = [np.array(a) for a in v]
            elif f.name in ("stage1", "stage2"):
                v = None if v is None else tuple(list(a) if isinstance(a, list) else a for a in v)
            elif not isinstance(v, (int, float)):
                v = np.array(v)
            kw[f.name] = v
        return cls(**kw)

    @classmethod
    def widen(cls, res: Any, free: list[int], held: dict[int, float], p: int) -> StoredGlmmFit:
        """A fit of the free columns, with the held coefficients put back at their values,
        an infinite variance and no Hessian rows (their information is zero)."""
        r = cls.of(res)
        nt = len(r.theta)
        beta = np.empty(p)
        beta[free] = r.beta
        for j, v in held.items():
            beta[j] = v
        vcov = np.zeros((p, p))
        vcov[np.ix_(free, free)] = r.vcov
        vcov[list(held), list(held)] = np.inf
        keep = list(range(nt)) + [nt + j for j in range(len(free))]
        hess = np.full((nt + p, nt + p), np.nan)
        pos = list(range(nt)) + [nt + j for j in free]
        hess[np.ix_(pos, pos)] = np.asarray(r.hessian)[np.ix_(keep, keep)]
        return dataclasses.replace(r, beta=beta, vcov=vcov, hessian=hess)


class GlmerFit(GlmerTables, KeepMixin):
    """A fitted GLMM (lme4's glmerMod): the estimates and lme4's accessors.

    ``fit.fitted`` and ``fit.resid()`` are pandas Series on the input's index (NaN at rows
    dropped for missing values) when the data were a pandas DataFrame, NumPy arrays of the
    rows used otherwise. A fit pickles and saves (``fit.save(path)``, ``ml.load(path)``);
    the core's problem is rebuilt from the design on first use after loading.
    """

    streamed = False  # True for a fit of streamed data (results/glmer_stream.py): no rows

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
        self._newdata_spec: tuple = ({}, [], None)
        self._data = None
        self._problem = None
        self._threads = 0
        self._input_index: pd.Index | None = None
        self._kept_frame: pd.DataFrame | None = None
        self.separated: list[str] = []
        self.nb_theta = getattr(family, "theta", None)

    # --------------------------------------------------------------- keeping
    @property
    def problem(self) -> Any:
        """The core's ``GlmmProblem`` (rebuilt from the design after unpickling or loading)."""
        if self._problem is None:
            from multilevel.models.glmm import make_problem

            self._problem = make_problem(
                self.design, self.family, self.y, self.prior_weights, self.offset, self._threads
            )
        return self._problem

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_problem"] = None
        state["_res"] = StoredGlmmFit.of(self._res)
        fam = self.family  # its link functions are closures: kept by name
        state["family"] = (fam.name, fam.link.name, getattr(fam, "theta", None))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from multilevel import families as fm

        name, link, theta = state["family"]
        state["family"] = fm.family(name, link=link, **({} if theta is None else {"theta": theta}))
        self.__dict__.update(state)

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
            return self.problem.objective(list(v[:nt]), list(v[nt:]), self.nagq)

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
        if self.nagq == 0 or self.separated:
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
        # a streamed fit keeps no fitted values: its separation was checked over the batches
        if self.family.name == "binomial" and not self.separated and not self.streamed:
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
        return float(np.sum(self.resid_values("deviance") ** 2))

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
    def fitted(self) -> pd.Series | np.ndarray:
        """mu on the response scale: a Series on the input's index (NaN at rows dropped for
        missing values) when the data were a pandas DataFrame, else an array of the rows
        used (:attr:`fitted_values` is always that array)."""
        return self._aligned(self.fitted_values, "fitted")

    @property
    def input_index(self) -> pd.Index | None:
        """The index of the input data when it was a pandas DataFrame (kept by pickle and
        ``save``), else None: :attr:`fitted` and :meth:`resid` are aligned with it."""
        return getattr(self, "_input_index", None)

    def _aligned(self, values: np.ndarray, name: str) -> pd.Series | np.ndarray:
        index = self.input_index
        if index is None:
            return values
        out = np.full(len(index), np.nan)
        out[np.asarray(self.design.rows)] = values
        return pd.Series(out, index=index, name=name)

    def _prepare(self, newdata) -> tuple[pd.DataFrame, np.ndarray]:
        """New data with the fit's derived columns (``scale(x)`` at the training centre and
        scale, as R's makepredictcall) and its offset (the formula's ``offset()`` terms
        evaluated on the new data, plus the ``offset=`` column when it was given by name)."""
        from multilevel.models.glmm import _eval

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
            kept = newdata is None and source is None
            if kept:  # a loaded fit: the kept columns at the rows used
                source = getattr(self, "_kept_frame", None)
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
            if newdata is None and not kept:
                eta = eta[np.asarray(self.design.rows)]
        return eta if type == "link" else self.family.linkinv(eta)

    def resid(self, type: str = "deviance") -> pd.Series | np.ndarray:
        """Residuals as lme4's ``residuals(fit, type)``: "deviance" (the default), "pearson",
        "response" or "working"; a Series on the input's index (NaN at rows dropped) when
        the data were a pandas DataFrame, else an array of the rows used."""
        return self._aligned(self.resid_values(type), "resid")

    def resid_values(self, type: str = "deviance") -> np.ndarray:
        """:meth:`resid` as an array of the rows used."""
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

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        parm: list[str] | None = None,
        nsim: int = 500,
        seed: Any = None,
        boot_type: str = "perc",
    ) -> pd.DataFrame:
        """Confidence intervals, as lme4's ``confint`` of a glmer fit.

        ``method="wald"`` (the default here): the fixed effects, beta -/+ z se (lme4's rows
        for the variance parameters are NA there and left out). ``"profile"`` (lme4's
        default): likelihood-profile intervals of the random-effect standard deviations and
        correlations (rows named as ``fit.profile()``: ``sd_(Intercept)|herd``, lme4's
        ``.sig01``) and of the fixed effects. ``"boot"``: parametric bootstrap (lme4's
        ``bootMer``), ``nsim`` responses simulated from the fit and refitted, percentile
        intervals unless ``boot_type`` says otherwise.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
        ...                ml.datasets.load("cbpp"), family="binomial")
        >>> ci = fit.confint(method="profile")
        >>> ci.index[0], ci.round(3).to_numpy().tolist()[:2]
        ('sd_(Intercept)|herd', [[0.346, 1.1], [-1.901, -0.948]])
        """
        method = method.lower()
        if method == "profile":
            from multilevel.inference.profile import GlmerProfiler

            return GlmerProfiler(self).confint(level, parm)
        if method == "boot":
            from multilevel.inference.bootstrap import glmer_bootstrap

            ci = glmer_bootstrap(self, nsim, seed=seed, progress=False).confint(level, boot_type)
            ci.index.name = "parameter"
            return ci if parm is None else ci.loc[list(parm)]
        if method != "wald":
            raise ValueError(f"method must be 'wald', 'profile' or 'boot'; got {method!r}")
        t = self.coef_table(level)
        lo, hi = f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"
        out = pd.DataFrame({lo: t.ci_lower, hi: t.ci_upper}, index=t.index)
        return out if parm is None else out.loc[list(parm)]

    def profile(self, parm: list[str] | None = None, level: float = 0.99) -> dict[str, Any]:
        """Likelihood profiles (lme4's ``profile`` of a glmer fit): per parameter, a trace
        with ``values`` from the lower to the upper end of the ``level`` interval and
        ``zeta`` there (signed square root of the deviance's rise, the other parameters
        optimised over)."""
        from multilevel.inference.profile import GlmerProfiler

        return GlmerProfiler(self).traces(parm, level)

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
        if self.nagq == 0 or self.family.has_dispersion:
            return None
        from multilevel.models.glmm import _glm_start

        X = np.asarray(self.design.X, float)
        y, w = self.y, self.prior_weights
        mustart = (
            self.family.initialize(y, w).mustart
            if self.family.name == "binomial"
            else (self.family.initialize(y).mustart)
        )
        beta = _glm_start(X, y, self.family, w, self.offset, mustart)
        nt = len(self.theta)
        glm = self.problem.objective([0.0] * nt, list(map(float, beta)), self.nagq)
        chi2 = max(0.0, glm - self.objective)
        p = stats.chi2.sf(chi2, nt)
        return chi2, nt, float(0.5 * p if nt == 1 else p)

    @property
    def response_name(self) -> str:
        from multilevel.models.glmm import _split_args

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
