"""Results as data: broom's ``glance`` and ``augment`` (and ``tidy`` for the least-squares
fits), and the statsmodels names users reach for.

Column names are broom's and broom.mixed's, so that tables built in R and here line up:

* ``glance()`` -- one row. Mixed models (broom.mixed's ``glance.merMod``): nobs, sigma, logLik,
  AIC, BIC, deviance, df.residual, where a REML fit reports ``REMLcrit`` (the REML
  criterion) in place of ``deviance``. Least squares (broom's ``glance.lm``) adds r.squared,
  adj.r.squared, statistic, p.value and df, with ``deviance`` the (weighted) residual sum of
  squares.
* ``augment(data=None)`` -- the rows used, indexed as in the input, with ``.fitted`` and
  ``.resid``; a mixed model adds ``.hat`` and ``.cooksd`` (lme4's ``hatvalues`` and
  ``cooks.distance``, :mod:`multilevel.inference.leverage`), ``.fixed`` (X beta), ``.mu``
  (the mean: ``.fitted`` for a linear mixed model), ``.offset``, ``.sqrtXwt`` and ``.sqrtrwt``
  (sqrt(w) for a linear mixed model), ``.weights`` and ``.wtres`` (sqrt(w) times the
  residual), as broom.mixed's ``augment.merMod``. Without ``data`` a mixed model shows the
  columns its formula reads; a least-squares fit, which keeps no data, shows only the added columns
  (indexed by row position) unless ``data`` is given. For ``panel`` they are those of the
  estimated (transformed, e.g. demeaned) regression, as plm's.
* ``tidy(level=0.95)`` for ``ols``, ``panel`` and ``lmlist`` -- term, estimate, std.error,
  statistic, p.value, conf.low, conf.high (t intervals on each fit's degrees of freedom);
  ``lmlist`` adds ``level`` first, as broom.mixed's ``tidy.lmList4``.
* ``params``, ``bse``, ``pvalues``, ``conf_int()``, ``fittedvalues``: statsmodels' names.
  ``fittedvalues`` is a Series on the input's index when the input was a pandas DataFrame (NaN
  where a row was dropped), otherwise on the positions of the rows used.
* ``fitted`` and ``resid`` of every fit follow one rule (:func:`row_values`): a Series on the
  input's full index, NaN on rows dropped for missing values and never shifted, when the input
  was a pandas DataFrame; the NumPy array of the rows used otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from multilevel.inference.tails import t_ppf

__all__ = ["LmListTables", "LmerTables", "OlsTables", "input_index", "row_values"]


def _used_rows(frame: Any, rows: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows used of a data frame, keeping its index (all columns unless ``columns``)."""
    from multilevel.data import as_pandas

    df = as_pandas(frame)
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    return df.iloc[np.asarray(rows)].copy()


def _aligned(values: np.ndarray, rows: Any, data: Any, name: str) -> pd.Series:
    """Values of the rows used as a Series on the input's index (NaN at rows dropped)."""
    from multilevel.data import as_pandas

    values = np.asarray(values, dtype=float)
    if rows is None:
        return pd.Series(values, name=name)
    rows = np.asarray(rows)
    if data is None:
        return pd.Series(values, index=pd.Index(rows), name=name)
    index = data if isinstance(data, pd.Index) else as_pandas(data).index
    out = np.full(len(index), np.nan)
    out[rows] = values
    return pd.Series(out, index=index, name=name)


def input_index(data: Any) -> pd.Index | None:
    """The index of the input when it is a pandas DataFrame (else None): what ``fitted`` and
    ``resid`` are aligned with."""
    return data.index if isinstance(data, pd.DataFrame) else None


def row_values(values: np.ndarray, rows: Any, index: pd.Index | None, name: str) -> Any:
    """Per-row values of a fit as users get them: a Series on the input's full index (NaN at
    rows dropped, never shifted) when the input was a pandas DataFrame, else the array of the
    rows used."""
    if index is None or rows is None:
        return values
    return _aligned(values, rows, index, name)


def _one_row(**values: Any) -> pd.DataFrame:
    return pd.DataFrame({k: [v] for k, v in values.items()})


# ------------------------------------------------------------------------------- lmer
def tidy_mixed(
    t: pd.DataFrame, vc: pd.DataFrame, group: str, conf_int: bool, with_df: bool
) -> pd.DataFrame:
    """broom.mixed's ``tidy`` of a mixed model: the fixed effects from a coefficient table
    ``t`` (estimate, std_error, statistic, df, p_value, ci_lower, ci_upper; df shown when
    ``with_df``, as lmerTest's t tests) and the random-effect parameters (sd__x, cor__x.y,
    sd__Observation) from varcorr ``vc``, whose grouping column is ``group``."""
    cols = {
        "effect": "fixed",
        "group": None,
        "term": list(t.index),
        "estimate": t["estimate"].to_numpy(),
        "std.error": t["std_error"].to_numpy(),
        "statistic": t["statistic"].to_numpy(),
    }
    if with_df:
        cols["df"] = t["df"].to_numpy()
    cols["p.value"] = t["p_value"].to_numpy()
    fixed = pd.DataFrame(cols)
    if conf_int:
        fixed["conf.low"] = t["ci_lower"].to_numpy()
        fixed["conf.high"] = t["ci_upper"].to_numpy()
    terms = []
    for _, r in vc.iterrows():
        if r[group] == "Residual":
            terms.append("sd__Observation")
        elif r["var2"] is None or (isinstance(r["var2"], float) and np.isnan(r["var2"])):
            terms.append(f"sd__{r['var1']}")
        else:
            terms.append(f"cor__{r['var1']}.{r['var2']}")
    ran = pd.DataFrame(
        {
            "effect": "ran_pars",
            "group": vc[group].to_numpy(),
            "term": terms,
            "estimate": vc["sdcor"].to_numpy(),
        }
    )
    return pd.concat([fixed, ran], ignore_index=True)


class AlignedRows:
    """``fitted`` and ``resid`` of a least-squares fit by :func:`row_values`'s rule, from the
    arrays of the rows used (``_fitted_rows``, ``_resid_rows``), ``rows`` and the input's
    ``input_index``."""

    @property
    def fitted(self: Any) -> Any:
        """Fitted values (see the class documentation for their alignment)."""
        return row_values(self._rows_of("fitted"), self.rows, self._index(), "fitted")

    @property
    def resid(self: Any) -> Any:
        """Residuals y - fitted, aligned as :attr:`fitted`."""
        return row_values(self._rows_of("resid"), self.rows, self._index(), "resid")

    def _rows_of(self: Any, name: str) -> np.ndarray:
        # a fit saved before fitted/resid became aligned holds the arrays under their names
        return self.__dict__.get(f"_{name}_rows", self.__dict__.get(name))

    def _index(self: Any) -> pd.Index | None:
        return self.__dict__.get("input_index")


class MixedAliases:
    """statsmodels' names on a mixed model: ``params``, ``bse`` and ``pvalues`` (from the
    fit's default :meth:`coef_table`: lmer's t tests with Satterthwaite's df, glmer's z
    tests)."""

    @property
    def params(self: Any) -> pd.Series:
        """Fixed-effect estimates (statsmodels' name for :attr:`fixef`)."""
        return self.fixef

    @property
    def bse(self: Any) -> pd.Series:
        """Standard errors of the fixed effects (statsmodels' name for :attr:`se`)."""
        return self.se

    @property
    def pvalues(self: Any) -> pd.Series:
        """p-values of the fixed effects, as the fit's default :meth:`coef_table`."""
        return self.coef_table()["p_value"].rename("p")

    # -- observation-level leverage (lme4's hatvalues and cooks.distance) ----------------------
    def _leverage_rows(self: Any) -> tuple[np.ndarray, np.ndarray]:
        """(hat, cooksd) of the rows used (:mod:`multilevel.inference.leverage`), from the
        fit's ``_leverage_parts()``: terms, lambdas, X, W, prior weights, Pearson residuals,
        sigma."""
        from multilevel.inference.leverage import cooks_distance, hat_diagonal

        if getattr(self, "streamed", False):
            from multilevel.design.stream import STREAMED_REASON, StreamedDataError

            raise StreamedDataError(f"hatvalues() needs every row: {STREAMED_REASON}")
        terms, lambdas, X, W, prior, pearson, sigma = self._leverage_parts()
        hat = hat_diagonal(terms, lambdas, X, W, prior)
        return hat, cooks_distance(hat, pearson, sigma, np.asarray(X).shape[1])

    def hatvalues(self: Any) -> Any:
        """The diagonal of the hat matrix, as lme4's ``hatvalues(fit)`` (broom.mixed's
        ``.hat``), aligned as :attr:`fitted`. For glmer fits these are lme4's numbers, which
        lme4 itself warns "may not make sense for GLMMs" (prior weights such as binomial
        trials can take them above 1); see :mod:`multilevel.inference.leverage`.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (1 | Subject)", ml.datasets.load("sleepstudy"))
        >>> round(float(fit.hatvalues().iloc[0]), 6)
        0.107483
        """
        return self._leverage_aligned(self._leverage_rows()[0], "hat")

    def cooks_distance(self: Any) -> Any:
        """Cook's distance of each row, as lme4's ``cooks.distance(fit)`` (broom.mixed's
        ``.cooksd``): ``(r / (1 - hat))^2 hat / (sigma^2 p)`` with Pearson residuals r,
        aligned as :attr:`fitted`. Leave-one-group-out diagnostics are :meth:`influence`."""
        return self._leverage_aligned(self._leverage_rows()[1], "cooksd")


class LmerTables(MixedAliases):
    """``glance``, ``augment`` and statsmodels' names for :class:`~multilevel.LmerFit`."""

    def glance(self: Any) -> pd.DataFrame:
        """One row as broom.mixed's ``glance``: nobs, sigma, logLik, AIC, BIC, deviance (ML
        fits) or REMLcrit (REML fits), df.residual.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
        >>> fit.glance().round(2).iloc[0].to_dict()
        {'nobs': 180.0, 'sigma': 25.59, 'logLik': -871.81, 'AIC': 1755.63, 'BIC': 1774.79, \
'REMLcrit': 1743.63, 'df.residual': 174.0}
        """
        return _one_row(
            nobs=self.nobs,
            sigma=self.sigma,
            logLik=self.loglik,
            AIC=self.aic,
            BIC=self.bic,
            **{"REMLcrit" if self.reml else "deviance": self.objective},
            **{"df.residual": self.df_resid},
        )

    def _model_frame(self: Any) -> pd.DataFrame:
        from multilevel.results.keep import model_columns

        if self._data is not None:
            return _used_rows(self._data, self.design.rows, model_columns(self.design))
        kept = getattr(self, "_kept_frame", None)
        if kept is not None:
            return kept.copy()
        return pd.DataFrame(index=pd.Index(np.asarray(self.design.rows)))

    def augment(self: Any, data: Any = None) -> pd.DataFrame:
        """The rows used with broom.mixed's columns .fitted, .resid, .hat, .cooksd, .fixed,
        .mu, .offset, .sqrtXwt, .sqrtrwt, .weights and .wtres (see
        :mod:`multilevel.results.tidy`).

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
        >>> fit.augment().iloc[:2, :5].round(2)
           Reaction  Days Subject  .fitted  .resid
        0    249.56   0.0     308   253.66   -4.10
        1    258.70   1.0     308   273.33  -14.63
        """
        d = self.design
        out = self._model_frame() if data is None else _used_rows(data, d.rows)
        n = self.nobs
        offset = np.zeros(n) if d.offset is None else np.asarray(d.offset, dtype=float)
        weights = np.ones(n) if d.weights is None else np.asarray(d.weights, dtype=float)
        fitted, resid = self._fitted_rows, self._resid_rows
        hat, cooksd = self._leverage_rows()
        out[".fitted"] = fitted
        out[".resid"] = resid
        out[".hat"] = hat
        out[".cooksd"] = cooksd
        out[".fixed"] = np.asarray(d.X, dtype=float) @ self.beta + offset
        out[".mu"] = fitted
        out[".offset"] = offset
        out[".sqrtXwt"] = np.sqrt(weights)
        out[".sqrtrwt"] = np.sqrt(weights)
        out[".weights"] = weights
        out[".wtres"] = np.sqrt(weights) * resid
        return out

    def _leverage_parts(self: Any) -> tuple:
        d = self.design
        w = np.ones(self.nobs) if d.weights is None else np.asarray(d.weights, dtype=float)
        pearson = np.sqrt(w) * self._resid_rows
        return d.terms, self.lambda_, np.asarray(d.X, float), w, w, pearson, float(self.sigma)

    def _leverage_aligned(self: Any, values: np.ndarray, name: str) -> Any:
        return row_values(values, self.design.rows, self.input_index, name)

    def conf_int(self: Any, level: float = 0.95, ddf: str | None = "satterthwaite") -> pd.DataFrame:
        """Intervals for the fixed effects (columns lower, upper): t with Satterthwaite's df
        by default, as :meth:`coef_table`; ``ddf=None`` for normal (Wald z) intervals."""
        t = self.coef_table(ddf=ddf, level=level)
        return pd.DataFrame({"lower": t["ci_lower"], "upper": t["ci_upper"]}, index=t.index)

    @property
    def fittedvalues(self: Any) -> pd.Series:
        """Fitted values as a Series on the input's index (NaN at rows dropped); on the
        positions of the rows used when the input was not a pandas DataFrame."""
        return _aligned(self._fitted_rows, self.design.rows, self.input_index, "fitted")


# ------------------------------------------------------------------------- ols, panel
class OlsTables:
    """``tidy``, ``glance``, ``augment`` and statsmodels' names for ``ols`` and ``panel``."""

    def tidy(self: Any, level: float = 0.95) -> pd.DataFrame:
        """One row per coefficient as broom's ``tidy(conf.int = TRUE)``.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.ols("Reaction ~ Days", ml.datasets.load("sleepstudy"))
        >>> fit.tidy().round(3).iloc[1].to_dict()
        {'term': 'Days', 'estimate': 10.467, 'std.error': 1.238, 'statistic': 8.454, \
'p.value': 0.0, 'conf.low': 8.024, 'conf.high': 12.911}
        """
        ci = self.conf_int(level)
        return pd.DataFrame(
            {
                "term": list(self.coef.index),
                "estimate": self.coef.to_numpy(),
                "std.error": self.se.to_numpy(),
                "statistic": self.t.to_numpy(),
                "p.value": self.p.to_numpy(),
                "conf.low": ci["lower"].to_numpy(),
                "conf.high": ci["upper"].to_numpy(),
            }
        )

    def glance(self: Any) -> pd.DataFrame:
        """One row as broom's ``glance.lm``: r.squared, adj.r.squared, sigma, statistic,
        p.value, df, logLik, AIC, BIC, deviance, df.residual, nobs."""
        return _one_row(
            **{"r.squared": self.r2, "adj.r.squared": self.adj_r2},
            sigma=self.sigma,
            statistic=self.fvalue,
            **{"p.value": self.f_pvalue},
            df=self.f_df[0],
            logLik=self.loglik,
            AIC=self.aic,
            BIC=self.bic,
            deviance=self.ssr,
            **{"df.residual": self.df_resid},
            nobs=self.nobs,
        )

    def augment(self: Any, data: Any = None) -> pd.DataFrame:
        """The rows used of ``data`` (or, without it, only the added columns indexed by row
        position) with .fitted and .resid."""
        rows = self.rows
        if data is not None and rows is not None:
            out = _used_rows(data, rows)
        else:
            out = pd.DataFrame(index=pd.Index(np.arange(self.nobs) if rows is None else rows))
        out[".fitted"] = np.asarray(self._rows_of("fitted"), dtype=float)
        out[".resid"] = np.asarray(self._rows_of("resid"), dtype=float)
        return out

    @property
    def bse(self: Any) -> pd.Series:
        """Standard errors (statsmodels' name for :attr:`se`)."""
        return self.se

    @property
    def pvalues(self: Any) -> pd.Series:
        """Two-sided p-values (statsmodels' name for :attr:`p`)."""
        return self.p

    @property
    def fittedvalues(self: Any) -> pd.Series:
        """Fitted values as a Series on the input's index (NaN at rows dropped) when the input
        was a pandas DataFrame, else indexed by the positions of the rows used."""
        return _aligned(self._rows_of("fitted"), self.rows, self._index(), "fitted")


# ---------------------------------------------------------------------------- lmlist
class LmListTables:
    """``tidy``, ``glance`` and ``augment`` for :class:`~multilevel.models.lmlist.LmListFit`."""

    def tidy(self: Any, level: float = 0.95) -> pd.DataFrame:
        """One row per group and coefficient (broom.mixed's ``tidy.lmList4`` with intervals):
        level, term, estimate, std.error, statistic, p.value, conf.low, conf.high."""
        if not 0.0 < level < 1.0:
            raise ValueError("level must lie strictly between 0 and 1")
        terms = list(self.coef.columns)
        g, p = self.coef.shape
        q = np.repeat([t_ppf(0.5 + level / 2.0, d) for d in self.df], p)
        est = self.coef.to_numpy().reshape(-1)
        se = self.se.to_numpy().reshape(-1)
        return pd.DataFrame(
            {
                "level": np.repeat(np.asarray(self.coef.index, dtype=object), p),
                "term": terms * g,
                "estimate": est,
                "std.error": se,
                "statistic": self.t.to_numpy().reshape(-1),
                "p.value": self.p.to_numpy().reshape(-1),
                "conf.low": est - q * se,
                "conf.high": est + q * se,
            }
        )

    def glance(self: Any) -> pd.DataFrame:
        """One row: nobs, ngroups, sigma (pooled), logLik, AIC, BIC, deviance, df.residual.

        The likelihood is the Gaussian one of the separate fits with one residual variance
        (its ML estimate: deviance / nobs) and ``ngroups * p + 1`` parameters.
        """
        p = self.coef.shape[1]
        n = int(self.nobs.sum())
        dev = float((self.sigma**2 * (self.nobs - p)).sum())
        k = self.coef.shape[0] * p + 1
        loglik = -0.5 * n * (math.log(2.0 * math.pi) + 1.0 - math.log(n) + math.log(dev))
        return _one_row(
            nobs=n,
            ngroups=self.coef.shape[0],
            sigma=self.pooled_sigma,
            logLik=loglik,
            AIC=-2.0 * loglik + 2.0 * k,
            BIC=-2.0 * loglik + math.log(n) * k,
            deviance=dev,
            **{"df.residual": n - self.coef.shape[0] * p},
        )

    def augment(self: Any, data: Any = None) -> pd.DataFrame:
        """The rows used of ``data`` (or only the added columns) with .fitted and .resid
        (NaN in groups that were skipped)."""
        if data is not None:
            out = _used_rows(data, self.rows)
        else:
            out = pd.DataFrame(index=pd.Index(np.asarray(self.rows)))
        out[".fitted"] = self._rows_of("fitted")
        out[".resid"] = self._rows_of("resid")
        return out
