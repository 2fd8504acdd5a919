"""Results as data for glmer fits: broom.mixed's ``tidy``, ``glance`` and ``augment`` of a
glmerMod, and the statsmodels names.

* ``tidy(conf_int=False, level=0.95)`` -- one row per fixed effect (effect "fixed": estimate,
  std.error, statistic (z), p.value, and with ``conf_int`` Wald conf.low, conf.high) and per
  variance parameter (effect "ran_pars", group, ``sd__(Intercept)``, ``cor__a.b``, and
  ``sd__Observation`` in group "Residual" for families with a dispersion), as broom.mixed.
* ``glance()`` -- nobs, sigma, logLik, AIC, BIC, deviance (lme4's ``deviance()``: the sum of
  the squared deviance residuals), df.residual.
* ``augment(data=None)`` -- the rows used (the columns the formula reads, on the input's
  index) with .fitted (eta, the link scale, as ``predict``), .resid (deviance residuals),
  .fixed (X beta), .mu, .offset, .sqrtXwt (sqrt of the working weights), .sqrtrwt (sqrt of
  the weights of the Pearson residuals), .weights (prior weights), .wtres (Pearson
  residuals) and .eta, and .hat and .cooksd after .resid: lme4's ``hatvalues`` and
  ``cooks.distance`` of a glmerMod (:mod:`multilevel.inference.leverage`; the working weights
  at the fit inside, the prior weights in front, so binomial trials can take .hat above 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.results.tidy import MixedAliases, tidy_mixed

__all__ = ["GlmerTables"]


class GlmerTables(MixedAliases):
    """``tidy``, ``glance``, ``augment`` and statsmodels' names for a glmer fit."""

    def tidy(self: Any, conf_int: bool = False, level: float = 0.95) -> pd.DataFrame:
        """One row per fixed effect and variance parameter, as broom.mixed's ``tidy``.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
        ...                ml.datasets.load("cbpp"), family="binomial")
        >>> fit.tidy().iloc[[0, 4], :5].round(4)
             effect group             term  estimate  std.error
        0     fixed  None      (Intercept)   -1.3985     0.2325
        4  ran_pars  herd  sd__(Intercept)    0.6423        NaN
        """
        t = self.coef_table(level)
        return tidy_mixed(t, self.varcorr, "group", conf_int, with_df=False)

    def glance(self: Any) -> pd.DataFrame:
        """One row as broom.mixed's ``glance``: nobs, sigma, logLik, AIC, BIC, deviance,
        df.residual."""
        values = {
            "nobs": self.nobs,
            "sigma": self.sigma,
            "logLik": self.loglik,
            "AIC": self.aic,
            "BIC": self.bic,
            "deviance": self.deviance,
            "df.residual": self.nobs - self.df,
        }
        return pd.DataFrame({k: [v] for k, v in values.items()})

    def _model_frame(self: Any) -> pd.DataFrame:
        from multilevel.data import as_pandas
        from multilevel.formula import expr_variables

        kept = getattr(self, "_kept_frame", None)
        if kept is None:
            return pd.DataFrame(index=pd.Index(np.asarray(self.design.rows)))
        lhs, rhs = self.formula.split("~", 1)
        names = []
        for e in (lhs, rhs):
            try:
                names += expr_variables(e)
            except Exception:  # an expression the variable finder does not read
                continue
        cols = [c for c in dict.fromkeys(names) if c in kept.columns]
        out = as_pandas(kept)[cols].copy()
        if getattr(self, "_input_index", None) is None:
            out.index = pd.Index(np.asarray(self.design.rows))
        return out

    def augment(self: Any, data: Any = None) -> pd.DataFrame:
        """The rows used with broom.mixed's columns for a glmer fit (see
        :mod:`multilevel.results.glmer_tables`); ``data`` given: its rows used, all columns."""
        from multilevel.results.tidy import _used_rows

        d = self.design
        out = self._model_frame() if data is None else _used_rows(data, d.rows)
        fam = self.family
        mu, eta = self.fitted_values, self.linear_predictor
        w = np.asarray(self.prior_weights, float)
        var = fam.variance(mu)
        hat, cooksd = self._leverage_rows()
        out[".fitted"] = eta
        out[".resid"] = self.resid_values("deviance")
        out[".hat"] = hat
        out[".cooksd"] = cooksd
        out[".fixed"] = np.asarray(d.X, float) @ np.asarray(self.fixef, float)
        out[".mu"] = mu
        out[".offset"] = np.asarray(self.offset, float)
        out[".sqrtXwt"] = np.sqrt(w * fam.mu_eta(eta) ** 2 / var)
        out[".sqrtrwt"] = np.sqrt(w / var)
        out[".weights"] = w
        out[".wtres"] = self.resid_values("pearson")
        out[".eta"] = eta
        return out

    def _leverage_parts(self: Any) -> tuple:
        fam = self.family
        mu, eta = self.fitted_values, self.linear_predictor
        w = np.asarray(self.prior_weights, float)
        W = w * fam.mu_eta(eta) ** 2 / fam.variance(mu)  # the working weights at the fit
        pearson = self.resid_values("pearson")
        X = np.asarray(self.design.X, float)
        return self.design.terms, self._lambdas(), X, W, w, pearson, float(self.sigma)

    def _leverage_aligned(self: Any, values: np.ndarray, name: str) -> Any:
        return self._aligned(values, name)

    def conf_int(self: Any, level: float = 0.95) -> pd.DataFrame:
        """Wald intervals of the fixed effects (columns lower, upper)."""
        t = self.coef_table(level)
        return pd.DataFrame({"lower": t["ci_lower"], "upper": t["ci_upper"]}, index=t.index)

    @property
    def fittedvalues(self: Any) -> pd.Series:
        """Fitted means as a Series (on the input's index when it was a pandas DataFrame)."""
        f = self.fitted
        if isinstance(f, pd.Series):
            return f
        return pd.Series(f, index=pd.Index(np.asarray(self.design.rows)), name="fitted")
