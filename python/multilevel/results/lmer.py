"""The fitted linear mixed model: :class:`LmerFit`, lme4's ``merMod``.

:class:`LmerFit` wraps the design (``multilevel.design.Design``) and the numerical problem
(``multilevel._core.LmmProblem``) of one fit together with the optimum the core returned. Every
number comes from the core; this module only arranges them as lme4 presents them:

* ``fixef``, ``vcov``, ``se`` -- lme4's ``fixef()``, ``vcov()`` and the standard errors;
* ``ranef`` and ``ranef_condvar`` -- ``ranef(fit, condVar = TRUE)``, one table per grouping
  factor (terms on the same factor, e.g. after ``||``, are merged as lme4 merges them);
* ``coef`` -- ``coef()``: fixed plus random effects per level;
* ``varcorr`` -- ``as.data.frame(VarCorr(fit))`` with lme4's row order and group names;
* ``loglik``, ``aic``, ``bic``, ``deviance``, ``df`` -- ``logLik()`` and friends, where a REML
  fit reports its REML log-likelihood, as lme4 does.

Printing is in :mod:`multilevel.results.summary`; the inference methods come from
:class:`multilevel.inference.methods.InferenceMixin`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from multilevel.data import n_rows
from multilevel.exceptions import ConvergenceWarning, SingularFitWarning
from multilevel.inference.methods import InferenceMixin
from multilevel.results.html import HtmlFitMixin
from multilevel.results.keep import KeepMixin
from multilevel.results.rformat import make_unique
from multilevel.results.summary import (
    SINGULAR_MESSAGE,
    LmerSummary,
    convergence_message,
    fit_text,
)
from multilevel.results.tidy import LmerTables, input_index, row_values

__all__ = ["LmerFit"]


class LmerFit(InferenceMixin, KeepMixin, LmerTables, HtmlFitMixin):
    """A fitted linear mixed model (lme4's ``merMod``), returned by :func:`multilevel.lmer`.

    Holds the design and the core's problem, so that other quantities (a refit with ML, the
    objective at another theta, conditional variances) are computed on demand.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> fit.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    >>> round(fit.sigma, 3), fit.nobs, fit.ngroups
    (25.592, 180, {'Subject': 18})
    >>> fit.varcorr.round(1)
            grp         var1  var2   vcov  sdcor
    0   Subject  (Intercept)  None  612.1   24.7
    1   Subject         Days  None   35.1    5.9
    2   Subject  (Intercept)  Days    9.6    0.1
    3  Residual         None  None  654.9   25.6
    """

    def __init__(
        self,
        design: Any,
        problem: Any,
        result: Any,
        reml: bool,
        data_name: str | None = None,
        data: Any = None,
        weights_name: str | None = None,
        offset_name: str | None = None,
    ):
        self.design = design
        self._problem = problem
        self._result = result
        self.reml = bool(reml)
        self.data_name = data_name if data_name is not None else getattr(design, "data_name", None)
        self._data = data  # a reference (no copy) for predict(re_form=...) on the fit's rows
        self.weights_name = weights_name
        self.offset_name = offset_name

    @classmethod
    def _fit(
        cls,
        design: Any,
        problem: Any,
        reml: bool,
        start=None,
        max_fun=None,
        warn: bool = True,
        **kwargs: Any,
    ) -> LmerFit:
        theta0 = None if start is None else np.asarray(start, dtype=float)
        result = problem.fit(bool(reml), theta0=theta0, max_fun=max_fun)
        fit = cls(design, problem, result, reml, **kwargs)
        if warn:
            fit._warn()
        return fit

    # -- keeping (pickle): the Rust problem is dropped and rebuilt from the design on use --
    @property
    def problem(self) -> Any:
        """The core's ``LmmProblem``; rebuilt from :attr:`design` after unpickling."""
        if self._problem is None:
            from multilevel.models.lmm import make_problem

            self._problem = make_problem(self.design)
        return self._problem

    def __getstate__(self) -> dict[str, Any]:
        from multilevel.results.stored import snapshot

        state = dict(self.__dict__)
        state["_problem"] = None
        state["_result"] = snapshot(self._result)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _warn(self, stacklevel: int = 4) -> None:
        if self.singular:
            warnings.warn(SINGULAR_MESSAGE, SingularFitWarning, stacklevel=stacklevel)
        if not self.converged:
            warnings.warn(convergence_message(self), ConvergenceWarning, stacklevel=stacklevel)

    # -- raw estimates ---------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """Relative covariance parameters (lme4's ``getME(fit, "theta")``)."""
        return np.asarray(self._result.theta, dtype=float)

    @property
    def beta(self) -> np.ndarray:
        """Fixed-effect estimates as an array."""
        return np.asarray(self._result.beta, dtype=float)

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return float(self._result.sigma)

    @property
    def objective(self) -> float:
        """What was minimised: the REML criterion or -2 log-likelihood (ML)."""
        return float(self._result.objective)

    @property
    def optimizer(self) -> dict:
        """The optimiser's summary: theta0, theta, f0, f, n_eval, status, message."""
        o = getattr(self._result, "optimizer", None)
        keys = ("theta0", "theta", "f0", "f", "n_eval", "status", "message")
        return {} if o is None else {k: getattr(o, k) for k in keys}

    @property
    def check(self) -> dict:
        """The post-fit check: gradient, hessian, scaled_gradient, converged, singular."""
        c = getattr(self._result, "check", None)
        keys = ("gradient", "hessian", "scaled_gradient", "converged", "singular", "message")
        return {} if c is None else {k: getattr(c, k) for k in keys}

    @property
    def singular(self) -> bool:
        """True when the fit is on the boundary (lme4's ``isSingular``)."""
        return bool(self.check.get("singular", False))

    @property
    def converged(self) -> bool:
        """False when the gradient check after the fit failed."""
        return bool(self.check.get("converged", True))

    @property
    def b(self) -> list[np.ndarray]:
        """Conditional modes per term (arrays levels x q), in the order of ``design.terms``."""
        return [
            np.asarray(x, dtype=float).reshape(len(t.levels), -1)
            for x, t in zip(self._result.b, self.design.terms)
        ]

    @property
    def u(self) -> list[np.ndarray]:
        """Spherical conditional modes per term."""
        return [
            np.asarray(x, dtype=float).reshape(len(t.levels), -1)
            for x, t in zip(self._result.u, self.design.terms)
        ]

    @property
    def lambda_(self) -> list[np.ndarray]:
        """Per term the q x q lower-triangular relative covariance factor."""
        return [np.asarray(x, dtype=float) for x in self._result.lambda_]

    # -- sizes -----------------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        """Number of observations used."""
        return int(self.design.nobs)

    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing values."""
        return int(self.design.n_dropped)

    @cached_property
    def ngroups(self) -> dict[str, int]:
        """Number of levels per grouping factor (lme4's ``ngrps``)."""
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group, len(t.levels))
        return out

    @property
    def df(self) -> int:
        """Number of parameters: fixed effects + theta + sigma."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def npar(self) -> int:
        """Number of parameters (lme4's ``npar`` in ``anova``): the same as :attr:`df`."""
        return self.df

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom as lme4's ``df.residual``: nobs - df."""
        return self.nobs - self.df

    # -- likelihood --------------------------------------------------------------------------
    @property
    def loglik(self) -> float:
        """Log-likelihood; the REML log-likelihood for a REML fit (as lme4's ``logLik``)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's criterion from :attr:`loglik` and :attr:`df` (as lme4's ``AIC``)."""
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        """Schwarz's criterion from :attr:`loglik` and :attr:`df` (as lme4's ``BIC``)."""
        return -2.0 * self.loglik + math.log(self.nobs) * self.df

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()``: -2 log-likelihood for ML; for REML the REML criterion.

        lme4 returns the REML criterion for REML fits (with a deprecation note); use
        ``fit.refit_ml().deviance`` for the ML deviance.
        """
        return self.objective

    # -- fixed effects --------------------------------------------------------------------
    @cached_property
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates, indexed by the columns of X."""
        return pd.Series(self.beta, index=list(self.design.fixed_names), name="fixef")

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects: :attr:`vcov_model`, or the cluster-robust
        one when the fit was made with ``lmer(..., vcov=...)`` (then :attr:`robust` is set)."""
        if self.robust is not None:
            return self.robust.frame()
        return self.vcov_model

    @cached_property
    def vcov_model(self) -> pd.DataFrame:
        """Model-based covariance matrix of the fixed effects, sigma^2 (R_X' R_X)^-1."""
        names = list(self.design.fixed_names)
        v = self.sigma**2 * np.asarray(self._result.vcov_unscaled, dtype=float)
        return pd.DataFrame(v, index=names, columns=names)

    @cached_property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.vcov.index, name="se")

    # -- cluster-robust covariance (multilevel.inference.lmer_robust) ----------------------
    robust: Any = None  # a lmer_robust.RobustVcov when made with lmer(..., vcov=...)

    def vcov_robust(self, type: str = "CR2", cluster: Any = None) -> pd.DataFrame:
        """Cluster-robust covariance of the fixed effects, as clubSandwich's ``vcovCR``.

        Parameters
        ----------
        type : {"CR0", "CR1", "CR1p", "CR1S", "CR2", "CR3", "CR4"}
        cluster : str, array or None
            A grouping factor, a column of the data or an array; None: the grouping factor
            with fewest levels. See :mod:`multilevel.inference.lmer_robust`.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
        >>> fit.vcov_robust("CR2", cluster="Subject").round(2)
                     (Intercept)  Days
        (Intercept)        46.57 -1.45
        Days               -1.45  2.39
        """
        from multilevel.inference import lmer_robust

        return lmer_robust.vcov_robust(self, type, cluster).frame()

    def coef_test(self, type: str | None = None, cluster: Any = None) -> pd.DataFrame:
        """Cluster-robust t-tests with Satterthwaite df (clubSandwich's ``coef_test``).

        Without arguments, the covariance chosen by ``lmer(..., vcov=...)``, else CR2 on the
        grouping factor with fewest levels. Columns: Estimate, Std. Error, df, t value,
        Pr(>|t|).
        """
        from multilevel.inference import lmer_robust

        if type is None and cluster is None and self.robust is not None:
            r = self.robust
        else:
            r = lmer_robust.vcov_robust(self, "CR2" if type is None else type, cluster)
        return r.coef_table(self.beta)

    # -- random effects -----------------------------------------------------------------
    def _groups(self) -> dict[str, list[int]]:
        """Grouping factor -> indices of its terms, in order of first appearance."""
        out: dict[str, list[int]] = {}
        for k, t in enumerate(self.design.terms):
            out.setdefault(t.group, []).append(k)
        return out

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: DataFrame levels x term columns."""
        out = {}
        bs = self.b
        for g, ks in self._groups().items():
            t0 = self.design.terms[ks[0]]
            vals = np.hstack([bs[k] for k in ks])
            cols = [n for k in ks for n in self.design.terms[k].names]
            out[g] = pd.DataFrame(
                vals,
                index=pd.Index(t0.levels, name=g).astype(str)
                if not isinstance(t0.levels, pd.Index)
                else pd.Index(t0.levels, name=g),
                columns=cols,
            )
        return out

    @cached_property
    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Conditional variances of the random effects per grouping factor, (levels, q, q).

        ``sigma^2 Lambda (L L')^-1 Lambda'``, its diagonal blocks per level, as lme4's
        ``attr(ranef(fit, condVar = TRUE)[[g]], "postVar")``. For a factor with several terms
        the blocks of the terms are placed on the diagonal (lme4 reports them separately and
        does not compute the covariances between the terms).
        """
        cv = [np.asarray(c, dtype=float) for c in self.problem.condvar(self.theta)]
        s2 = self.sigma**2
        out = {}
        for g, ks in self._groups().items():
            nl = cv[ks[0]].shape[0]
            qs = [cv[k].shape[1] for k in ks]
            arr = np.zeros((nl, sum(qs), sum(qs)))
            o = 0
            for k, q in zip(ks, qs):
                arr[:, o : o + q, o : o + q] = s2 * cv[k]
                o += q
            out[g] = arr
        return out

    @cached_property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor, fixed effects plus the level's random effects (lme4's ``coef``)."""
        fe = self.fixef
        out = {}
        for g, re in self.ranef.items():
            missing = [c for c in re.columns if c not in fe.index]
            cols = missing + list(fe.index)
            base = pd.Series(0.0, index=cols)
            base[list(fe.index)] = fe.to_numpy()
            df = pd.DataFrame(np.tile(base.to_numpy(), (len(re), 1)), index=re.index, columns=cols)
            for c in re.columns:
                df[c] = df[c] + re[c].to_numpy()
            out[g] = df
        return out

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(fit))``.

        One block per term (group names made unique as lme4 does: "Subject", "Subject.1"):
        variances, then covariances in the order (1,2), (1,3), ..., (2,3), ...; then the
        residual. Column ``sdcor`` holds standard deviations and correlations.
        """
        rows = []
        s2 = self.sigma**2
        gnames = make_unique([t.group for t in self.design.terms])
        for gname, t, lam in zip(gnames, self.design.terms, self.lambda_):
            S = s2 * lam @ lam.T
            sd = np.sqrt(np.diag(S))
            q = S.shape[0]
            for i in range(q):
                rows.append((gname, t.names[i], None, S[i, i], sd[i]))
            for i in range(q):
                for j in range(i + 1, q):
                    den = sd[i] * sd[j]
                    cor = S[i, j] / den if den > 0 else np.nan
                    rows.append((gname, t.names[i], t.names[j], S[i, j], cor))
        rows.append(("Residual", None, None, s2, self.sigma))
        return pd.DataFrame(
            {
                "grp": pd.Series([r[0] for r in rows], dtype=object),
                "var1": pd.Series([r[1] for r in rows], dtype=object),
                "var2": pd.Series([r[2] for r in rows], dtype=object),
                "vcov": np.array([r[3] for r in rows], dtype=float),
                "sdcor": np.array([r[4] for r in rows], dtype=float),
            }
        )

    # -- fitted values --------------------------------------------------------------------
    def _re_part(
        self, terms: Sequence[tuple[np.ndarray, np.ndarray]] | None, which: Sequence[int]
    ) -> np.ndarray:
        bs = self.b
        total = None
        for k in which:
            codes, Z = (
                terms[k]
                if terms is not None
                else (self.design.terms[k].codes, self.design.terms[k].Z)
            )
            codes = np.asarray(codes)
            Z = np.asarray(Z, dtype=float).reshape(codes.shape[0], -1)
            known = codes >= 0
            contrib = np.zeros(codes.shape[0])
            contrib[known] = np.einsum("ij,ij->i", Z[known], bs[k][codes[known]])
            total = contrib if total is None else total + contrib
        return total

    @property
    def input_index(self) -> pd.Index | None:
        """The index of the input data when it was a pandas DataFrame (kept by pickle and
        ``save``), else None: :attr:`fitted` and :attr:`resid` are aligned with it."""
        if "_input_index" in self.__dict__:
            return self.__dict__["_input_index"]
        return input_index(self._data)

    @cached_property
    def _fitted_rows(self) -> np.ndarray:
        """Fitted values X beta + Z b (+ offset) of the rows used, in their order."""
        f = np.asarray(self.design.X, dtype=float) @ self.beta
        re = self._re_part(None, range(len(self.design.terms)))
        if re is not None:
            f = f + re
        if self.design.offset is not None:
            f = f + np.asarray(self.design.offset, dtype=float)
        f.setflags(write=False)
        return f

    @cached_property
    def _resid_rows(self) -> np.ndarray:
        r = np.asarray(self.design.y, dtype=float) - self._fitted_rows
        r.setflags(write=False)
        return r

    @cached_property
    def fitted(self) -> Any:
        """Fitted values X beta + Z b (+ offset): a Series on the input's index (NaN at rows
        dropped for missing values) when the data were a pandas DataFrame, else an array of
        the rows used."""
        return row_values(self._fitted_rows, self.design.rows, self.input_index, "fitted")

    @cached_property
    def resid(self) -> Any:
        """Response residuals y - fitted, aligned as :attr:`fitted`."""
        return row_values(self._resid_rows, self.design.rows, self.input_index, "resid")

    def scaled_residuals(self) -> np.ndarray:
        """Pearson residuals divided by sigma, sqrt(w) (y - fitted) / sigma, of the rows used
        (an array, as lme4's ``residuals(fit, scaled = TRUE)``)."""
        r = self._resid_rows
        if self.design.weights is not None:
            r = r * np.sqrt(np.asarray(self.design.weights, dtype=float))
        return r / self.sigma

    def predict(
        self,
        newdata: Any = None,
        re_form: Any = None,
        allow_new_levels: bool = False,
        offset: Any = None,
    ) -> np.ndarray:
        """Predictions, as lme4's ``predict(fit, newdata, re.form, allow.new.levels)``.

        Parameters
        ----------
        newdata : DataFrame or dict, optional
            New rows; ``None`` predicts for the rows of the fit.
        re_form : None, NA-like, "~0" or a formula
            ``None`` conditions on all random effects; ``"~0"`` (or ``np.nan``/``pd.NA``) on
            none (population level); a formula such as ``"~(1 | Subject)"`` on those terms.
        allow_new_levels : bool
            Allow levels absent from the fit; their random effects are 0.
        offset : array-like, optional
            Offset for ``newdata`` (the fit's own offset is used when ``newdata`` is None).

        Returns
        -------
        numpy.ndarray
            One prediction per row of ``newdata`` (NaN where a used variable is missing).

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
        >>> new = {"Days": [0.0, 1.0], "Subject": ["308", "999"]}
        >>> fit.predict(new, allow_new_levels=True).round(2).tolist()
        [253.66, 261.87]
        """
        from multilevel import design as _design

        if newdata is None:
            if re_form is None:
                return np.array(self._fitted_rows)
            if self._data is None:
                raise ValueError("predict(re_form=...) needs newdata for a fit without its data")
            full = self.predict(
                self._data,
                re_form=re_form,
                allow_new_levels=allow_new_levels,
                offset=np.zeros(n_rows(self._data)),
            )
            out = full[np.asarray(self.design.rows)]
            if self.design.offset is not None:
                out = out + np.asarray(self.design.offset, dtype=float)
            return out
        if n_rows(newdata) == 0:  # no rows: no predictions (formulaic cannot build X of none)
            return np.empty(0)
        nm = _design.new_matrices(
            self.design, newdata, re_form=re_form, allow_new_levels=allow_new_levels
        )
        rows = np.asarray(nm.rows)
        pred = np.asarray(nm.X, dtype=float) @ self.beta
        terms = list(nm.terms)
        re = self._re_part(terms, [k for k, tm in enumerate(terms) if tm is not None])
        if re is not None:
            pred = pred + re
        if offset is None and self.design.parsed.offsets:  # the formula's offset() terms
            from multilevel.design.matrix import new_formula_offset

            pred = pred + new_formula_offset(self.design, newdata)[rows]
        if offset is None and isinstance(self.offset_name, str):
            cols = newdata.keys() if isinstance(newdata, dict) else newdata.columns
            if self.offset_name in cols:
                offset = np.asarray(newdata[self.offset_name], dtype=float)
        if offset is not None:
            pred = pred + np.asarray(offset, dtype=float).reshape(-1)[rows]
        n_new = n_rows(newdata)
        if len(rows) == n_new:
            return pred
        out = np.full(n_new, np.nan)
        out[rows] = pred
        return out

    # -- refits ---------------------------------------------------------------------------
    def refit_ml(self) -> LmerFit:
        """The same model fitted by maximum likelihood (lme4's ``refitML``); self if ML."""
        if not self.reml:
            return self
        return LmerFit._fit(
            self.design,
            self.problem,
            False,
            start=self.theta,
            warn=False,
            data_name=self.data_name,
            data=self._data,
            weights_name=self.weights_name,
            offset_name=self.offset_name,
        )

    def influence(self, level: str | int | None = None) -> pd.DataFrame:
        """Leave-one-group-out influence diagnostics (HLMdiag's Cook's distance, MDFFITS,
        COVTRACE, COVRATIO, the change in the fixed effects and the relative variance change),
        from real refits without each level of ``level`` (``level=1``: without each row, as
        HLMdiag's ``level = 1``); see :mod:`multilevel.inference.influence`.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
        >>> fit.influence("Subject")["cooksd"].round(3).nlargest(2).to_dict()
        {'309': 0.149, '335': 0.129}
        """
        from multilevel.inference.influence import influence

        return influence(self, level)

    def objective_at(self, theta: Sequence[float], reml: bool | None = None) -> float:
        """The profiled objective at another theta (REML unless this is an ML fit)."""
        return float(
            self.problem.objective(
                np.asarray(theta, dtype=float), self.reml if reml is None else bool(reml)
            )
        )

    # -- printing -------------------------------------------------------------------------
    def summary(self, style: str = "lme4", **kwargs: Any) -> Any:
        """A report of the fit; ``print(fit.summary())`` shows it.

        ``style="lme4"``: as ``print(summary(fit))`` of lme4; ``"stata"``: as Stata's
        ``mixed`` (z tests, variance components with standard errors and intervals, the LR
        test against the linear model; ``variance=False`` for standard deviations);
        ``"nlme"``: as nlme's ``summary(lme)`` (nested grouping factors only). Each report's
        tables are DataFrames too.
        """
        if style == "lme4":
            return LmerSummary(self)
        if style == "stata":
            from multilevel.reports import stata

            return stata.report(self, **kwargs)
        if style == "nlme":
            from multilevel.reports import nlme

            return nlme.summary(self)
        raise ValueError(f"style must be 'lme4', 'stata' or 'nlme'; got {style!r}")

    def intervals(self, level: float = 0.95) -> dict[str, pd.DataFrame]:
        """nlme's ``intervals(lme)``: fixed effects (t with nlme's DF), random-effect SDs and
        correlations, and sigma, each as a DataFrame with lower, est. and upper."""
        from multilevel.reports import nlme

        return nlme.intervals(self, level)

    def __repr__(self) -> str:
        return fit_text(self)
