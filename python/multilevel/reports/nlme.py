"""nlme's report of a linear mixed model: ``summary(lme)`` and ``intervals(lme)``.

The numbers are nlme's: fixed effects with the between/within denominator degrees of freedom
(``inference/nlme_df.py``), random-effect standard deviations and correlations, AIC, BIC and
the (restricted) log-likelihood, the standardized within-group residuals (response minus the
innermost fitted values, over sigma) and intervals on nlme's scales (t with the nlme DF for
the fixed effects; log standard deviations and atanh correlations for the random part, from
the observed information). Every table is a DataFrame; ``str()`` prints them in nlme's layout
with R's number formatting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.inference import varcomp, wald
from multilevel.results.rformat import abbreviate, r_format, r_matrix, r_named_vector


@dataclass
class NlmeSummary:
    """The parts of nlme's ``summary(lme)``."""

    method: str
    data_name: str | None
    fit_stats: pd.Series  # AIC, BIC, logLik
    random: pd.DataFrame  # StdDev (and Corr columns) per random-effect column, then Residual
    random_formulas: list[str]
    fixed: pd.DataFrame  # Value, Std.Error, DF, t-value, p-value
    fixed_formula: str
    correlation: pd.DataFrame
    residuals: pd.Series  # Min, Q1, Med, Q3, Max of the standardized within-group residuals
    nobs: int
    ngroups: dict[str, int]

    def __str__(self) -> str:
        return render(self)

    def _repr_html_(self) -> str:
        return f"<pre>{self}</pre>"


def summary(fit: Any) -> NlmeSummary:
    """nlme's ``summary(lme)`` of the fit (nested grouping factors only, as nlme)."""
    t = wald.coef_table(fit, "nlme")
    fixed = pd.DataFrame(
        {
            "Value": t["estimate"],
            "Std.Error": t["std_error"],
            "DF": t["df"].astype(int),
            "t-value": t["statistic"],
            "p-value": t["p_value"],
        }
    )
    fixed.index.name = None
    V = fit.vcov_model.to_numpy()
    sd = np.sqrt(np.diag(V))
    corr = pd.DataFrame(V / np.outer(sd, sd), index=fit.fixef.index, columns=fit.fixef.index)
    # nlme's BIC of a REML fit counts the N - p observations of the restricted likelihood.
    n_bic = fit.nobs - (len(fit.beta) if fit.reml else 0)
    bic = -2.0 * fit.loglik + np.log(n_bic) * fit.df
    stats_ = pd.Series({"AIC": fit.aic, "BIC": bic, "logLik": fit.loglik})
    rows, formulas = [], []
    s2 = float(fit.sigma) ** 2
    for term, lam in zip(fit.design.terms, fit.lambda_):
        S = s2 * lam @ lam.T
        sds = np.sqrt(np.diag(S))
        for i, name in enumerate(term.names):
            cors = {}
            for j in range(i):
                den = sds[i] * sds[j]
                cors[term.names[j]] = S[i, j] / den if den > 0 else np.nan
            rows.append((f"{term.group}", name, sds[i], cors))
        formulas.append(
            f"~{' + '.join(n if n != '(Intercept)' else '1' for n in term.names)} | {term.group}"
        )
    random = pd.DataFrame(
        {"group": [r[0] for r in rows], "StdDev": [r[2] for r in rows]}, index=[r[1] for r in rows]
    )
    for r in rows:
        for other, c in r[3].items():
            random.loc[r[1], f"Corr({other})"] = c
    random.loc["Residual", ["group", "StdDev"]] = ["Residual", float(fit.sigma)]
    resid = np.asarray(fit.resid, dtype=float) / float(fit.sigma)
    resid = resid[np.isfinite(resid)]
    q = np.quantile(resid, [0.0, 0.25, 0.5, 0.75, 1.0])
    return NlmeSummary(
        "REML" if fit.reml else "ML",
        fit.data_name,
        stats_,
        random,
        formulas,
        fixed,
        f"{fit.design.parsed.response} ~ {fit.design.parsed.fixed}",
        corr,
        pd.Series(q, index=["Min", "Q1", "Med", "Q3", "Max"]),
        int(fit.nobs),
        dict(fit.ngroups),
    )


def intervals(fit: Any, level: float = 0.95) -> dict[str, pd.DataFrame]:
    """nlme's ``intervals(lme)``: fixed effects, random-effect SDs and correlations, sigma."""
    t = wald.coef_table(fit, "nlme", level)
    fixed = pd.DataFrame({"lower": t["ci_lower"], "est.": t["estimate"], "upper": t["ci_upper"]})
    vc = varcomp.table(fit, "sd", level)
    random = pd.DataFrame(
        {"lower": vc["ci_lower"], "est.": vc["estimate"], "upper": vc["ci_upper"]}
    )
    sigma = random.loc[["sd(Residual)"]]
    return {"fixed": fixed, "random": random.drop(index="sd(Residual)"), "sigma": sigma}


def render(s: NlmeSummary) -> str:
    lines = [f"Linear mixed-effects model fit by {s.method}"]
    if s.data_name:
        lines.append(f"  Data: {s.data_name} ")
    cells = r_format(list(s.fit_stats.to_numpy()), 7)
    lines += [
        r_named_vector(["AIC", "BIC", "logLik"], cells).replace("\n", "\n  ").join(["  ", ""]),
        "",
        "Random effects:",
    ]
    for f in s.random_formulas:
        lines.append(f" Formula: {f}")
    sd = r_format(list(s.random["StdDev"].to_numpy()), 8)
    corr_cols = [c for c in s.random.columns if c.startswith("Corr(")]
    header = ["StdDev"] + (["Corr"] if corr_cols else [])
    cells = []
    for k, (name, row) in enumerate(s.random.iterrows()):
        cell = [sd[k]]
        if corr_cols:
            vals = [f"{row[c]:.3f}" for c in corr_cols if pd.notna(row[c])]
            cell.append(
                " ".join(vals)
                if vals
                else (abbreviate(str(name)) if name != "Residual" and k == 0 else "")
            )
        cells.append(cell)
    lines.append(r_matrix(list(s.random.index), header, cells, right=False))
    lines += ["", f"Fixed effects:  {s.fixed_formula} "]
    f = s.fixed
    cols = [
        r_format(list(f["Value"]), 7),
        r_format(list(f["Std.Error"]), 7),
        [str(int(v)) for v in f["DF"]],
        r_format(list(f["t-value"]), 7),
        r_format(list(f["p-value"]), 4),
    ]
    lines.append(r_matrix(list(f.index), list(f.columns), [list(r) for r in zip(*cols)]))
    if len(f) > 1:
        names = [abbreviate(n) for n in f.index]
        cm = s.correlation.to_numpy()
        cells = [
            [f"{cm[i, j]:.3f}" if j < i else "" for j in range(len(f) - 1)]
            for i in range(1, len(f))
        ]
        lines += [" Correlation: ", r_matrix(list(f.index[1:]), names[:-1], cells, right=False)]
    lines += [
        "",
        "Standardized Within-Group Residuals:",
        r_named_vector(list(s.residuals.index), r_format(list(s.residuals), 7)),
        "",
        f"Number of Observations: {s.nobs}",
    ]
    if len(s.ngroups) == 1:
        lines.append(f"Number of Groups: {next(iter(s.ngroups.values()))} ")
    else:
        lines += [
            "Number of Groups: ",
            r_named_vector(list(s.ngroups), [str(v) for v in s.ngroups.values()]),
        ]
    return "\n".join(lines)
