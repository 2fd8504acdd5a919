"""The inference methods of a linear mixed model fit (mixed into ``LmerFit``).

Each method is a thin door to the module that holds the mathematics: ``wald`` (tables and
linear hypotheses), ``satterthwaite`` and ``kenward_roger`` (degrees of freedom), ``nlme_df``,
``varcomp`` (variance components, their uncertainty, the LR test against the linear model),
``variance`` (R2 and ICC), ``profile`` and ``bootstrap`` (intervals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.inference import bootstrap as _bootstrap
from multilevel.inference import varcomp, variance, wald
from multilevel.inference.profile import Profiler


class InferenceMixin:
    """p-values, degrees of freedom, tests and intervals for an ``LmerFit``."""

    def coef_table(self, ddf: str | None = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """Fixed effects with standard errors, degrees of freedom, tests and intervals.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "residual", "nlme", None}
            Denominator degrees of freedom: lmerTest's Satterthwaite approximation, pbkrtest's
            Kenward-Roger (with its adjusted covariance), nobs - p, nlme's between/within
            rule, or None for z tests (Stata's ``mixed``).
        level : float
            Confidence level of the intervals.

        Returns
        -------
        DataFrame indexed by term: estimate, std_error, df, statistic, p_value, ci_lower,
        ci_upper.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
        >>> t = fit.coef_table()
        >>> t["df"].round(4).tolist(), t.loc["Days", "p_value"] < 1e-5
        ([16.9997, 17.0], np.True_)
        """
        return wald.coef_table(self, ddf, level)

    def wald(
        self, L: Any, rhs: Any = None, ddf: str | None = "satterthwaite", level: float = 0.95
    ) -> wald.WaldTest:
        """Tests of linear hypotheses L beta = rhs, row by row and jointly.

        ``L`` is a matrix (one column per fixed effect), a dict of named rows
        (``{"diff": {"a": 1, "b": -1}}``) or text: ``"sectorCatholic = 0"``,
        ``"ses + ses:sectorCatholic = 0"``, ``["a = 0", "b = c"]``.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
        >>> t = fit.wald("Days = 10")
        >>> round(t.statistic, 4), round(t.dendf, 2)
        (0.0914, 17.0)
        """
        return wald.wald(self, L, rhs, ddf, level)

    def model_wald(self) -> wald.WaldTest:
        """Wald chi-square test that every fixed effect but the intercept is zero (Stata)."""
        names = list(self.fixef.index)
        idx = [i for i, n in enumerate(names) if n != "(Intercept)"]
        if not idx:
            raise ValueError("the model has no fixed effect besides the intercept")
        return wald.wald(self, np.eye(len(names))[idx], ddf=None)

    def varcomp(self, scale: str = "sd", level: float = 0.95) -> pd.DataFrame:
        """Variance components with standard errors and intervals (Stata's ``mixed``).

        ``scale="sd"``: standard deviations and correlations (Stata's ``estat sd``);
        ``"var"``: variances and covariances. Standard errors by the delta method from the
        observed information; intervals on the log (atanh for correlations) scale.
        """
        return varcomp.table(self, scale, level)

    def recov(self, group: str | None = None) -> pd.DataFrame:
        """The random-effects covariance matrix of a grouping (Stata's ``estat recovariance``)."""
        return varcomp.recov(self, group)

    def lrtest_vs_lm(self) -> varcomp.LRTest:
        """LR test against the linear regression without random effects (Stata's last line)."""
        return varcomp.lr_test_vs_lm(self)

    def icc(self) -> dict[str, float]:
        """Adjusted and unadjusted intraclass correlation (R's performance::icc)."""
        return variance.icc(self)

    def r2(self) -> dict[str, float]:
        """Nakagawa and Schielzeth's marginal and conditional R2 (performance::r2_nakagawa)."""
        return variance.r2(self)

    def profile(self, parm: list[str] | None = None, level: float = 0.99) -> dict[str, Any]:
        """Profile traces (zeta against each parameter) out to ``level``, for plotting."""
        prof = Profiler(self)
        names = prof.names if parm is None else list(parm)
        from scipy import stats

        zmax = stats.norm.ppf(0.5 + level / 2.0)
        out = {}
        for n in names:
            k = prof.names.index(n)
            lo, hi = prof.limit(k, -zmax), prof.limit(k, zmax)
            psi = prof.hat[k] if k < len(prof.hat) else prof.beta_hat[k - len(prof.hat)]
            values = np.unique(np.concatenate([np.linspace(lo, psi, 8), np.linspace(psi, hi, 8)]))
            out[n] = (values, np.array([prof.zeta(k, v)[0] for v in values]))
        prof.model.restore()
        return out

    def confint(
        self,
        parm: list[str] | None = None,
        level: float = 0.95,
        method: str = "profile",
        nsim: int = 500,
        seed: Any = None,
        boot_type: str = "perc",
    ) -> pd.DataFrame:
        """Confidence intervals of the variance parameters and fixed effects (lme4's ``confint``).

        ``method="profile"`` (likelihood profiles, lme4's default), ``"wald"`` (fixed effects
        only; the variance parameters get NaN, as lme4) or ``"boot"`` (parametric bootstrap,
        ``nsim`` replicates, percentile intervals unless ``boot_type`` says otherwise).
        """
        method = method.lower()
        if method == "profile":
            return Profiler(self).confint(level, parm)
        if method == "wald":
            t = wald.coef_table(self, None, level)
            names = [p.name for p in varcomp.params(self)]
            pct = [f"{100 * (0.5 - level / 2):.3g} %", f"{100 * (0.5 + level / 2):.3g} %"]
            out = pd.DataFrame(
                np.nan, index=pd.Index(names + list(t.index), name="parameter"), columns=pct
            )
            out.loc[t.index, pct[0]] = t.ci_lower.to_numpy()
            out.loc[t.index, pct[1]] = t.ci_upper.to_numpy()
            return out if parm is None else out.loc[list(parm)]
        if method == "boot":
            res = _bootstrap.bootstrap(self, nsim, seed=seed, progress=False)
            ci = res.confint(level, boot_type)
            ci.index.name = "parameter"
            return ci if parm is None else ci.loc[list(parm)]
        raise ValueError(f"method must be 'profile', 'wald' or 'boot'; got {method!r}")

    def simulate(self, nsim: int = 1, seed: Any = None, re_form: Any = "~0") -> pd.DataFrame:
        """Responses simulated from the fitted model (lme4's ``simulate``).

        ``re_form="~0"`` (default) draws new random effects; ``None`` keeps the fitted ones.
        """
        return _bootstrap.simulate(self, nsim, seed, re_form)

    def tidy(
        self, ddf: str | None = "satterthwaite", conf_int: bool = False, level: float = 0.95
    ) -> pd.DataFrame:
        """One row per fixed effect and per variance parameter, as broom.mixed's ``tidy``.

        Columns effect ("fixed" / "ran_pars"), group, term, estimate, std.error, statistic,
        df, p.value (and conf.low, conf.high with ``conf_int=True``). Variance parameters
        are named as broom.mixed names them: ``sd__(Intercept)``, ``cor__(Intercept).Days``,
        ``sd__Observation`` (group "Residual").
        """
        t = wald.coef_table(self, ddf, level)
        from multilevel.results.tidy import tidy_mixed

        return tidy_mixed(t, self.varcorr, "grp", conf_int, with_df=True)
