"""Stata's ``mixed`` report: header, coefficient table, random-effects parameters, LR test.

Every number comes from the fit and :mod:`multilevel.inference`: z tests of the fixed
effects, the Wald chi-square of the non-constant fixed effects, the variance components with
standard errors from the observed information (log and atanh scales for the intervals) and
the LR test against the linear model. Numbers are printed as Stata prints them: ``%9.0g``
(seven significant digits, no leading zero, trailing zeros dropped), z with two decimals,
p-values with three (four in the header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.inference import varcomp, wald


def g9(x: float) -> str:
    """Stata's ``%9.0g``: at most 9 characters, 7 significant digits where they fit."""
    if x is None or not np.isfinite(x):
        return "."
    if x == 0:
        return "0"
    for digits in (7, 6, 5, 4):
        s = f"{x:.{digits}g}"
        if "e" in s:
            mant, exp = s.split("e")
            s = f"{mant}e{exp[0]}{int(exp[1:]):02d}"
        elif "." in s:
            s = s.rstrip("0").rstrip(".")
        s = s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s
        if len(s) <= 9:
            return s
    return f"{x:.2e}"


def _stata_name(name: str) -> str:
    return "_cons" if name == "(Intercept)" else name


def _structure(t: Any) -> str:
    if len(t.names) == 1:
        return "Identity"
    return "Independent" if getattr(t, "diagonal", False) else "Unstructured"


@dataclass
class StataReport:
    """The tables of Stata's ``mixed`` output, as data and as text."""

    header: dict[str, Any]
    fixed: pd.DataFrame
    random: pd.DataFrame
    lr_line: str
    response: str
    eform: bool = False

    def __str__(self) -> str:
        return render(self)

    def _repr_html_(self) -> str:
        return f"<pre>{self}</pre>"


def report(fit: Any, level: float = 0.95, variance: bool = True) -> StataReport:
    """Stata's ``mixed`` report of a linear mixed model fit."""
    fixed = wald.coef_table(fit, None, level)
    fixed.index = [_stata_name(n) for n in fixed.index]
    # Stata lists the constant last.
    order = [n for n in fixed.index if n != "_cons"] + [n for n in fixed.index if n == "_cons"]
    fixed = fixed.loc[order]
    names = list(fit.fixef.index)
    slopes = [n for n in names if n != "(Intercept)"]
    if slopes:
        w = wald.wald(fit, np.eye(len(names))[[names.index(n) for n in slopes]], ddf=None)
        chi2, df, p = w.statistic, w.numdf, w.p_value
    else:
        chi2, df, p = float("nan"), 0, float("nan")
    random = _stata_order(varcomp.table(fit, "var" if variance else "sd", level))
    groups = []
    for t in fit.design.terms:
        if t.group in [g[0] for g in groups]:
            continue
        counts = np.bincount(np.asarray(t.codes)[np.asarray(t.codes) >= 0], minlength=len(t.levels))
        groups.append(
            (t.group, len(t.levels), int(counts.min()), float(counts.mean()), int(counts.max()))
        )
    header = {
        "method": "REML" if fit.reml else "ML",
        "nobs": int(fit.nobs),
        "groups": groups,
        "wald_chi2": chi2,
        "wald_df": df,
        "wald_p": p,
        "loglik": float(fit.loglik),
        "structures": [(t.group, _structure(t)) for t in fit.design.terms],
    }
    return StataReport(
        header, fixed, random, varcomp.lr_test_vs_lm(fit).line(), str(fit.design.parsed.response)
    )


_GLMM_TITLES = {
    ("binomial", "logit"): ("Mixed-effects logistic regression", "logistic", "Odds ratio"),
    ("binomial", "probit"): ("Mixed-effects probit regression", "probit", "exp(b)"),
    ("binomial", "cloglog"): ("Mixed-effects cloglog regression", "cloglog", "exp(b)"),
    ("poisson", "log"): ("Mixed-effects Poisson regression", "Poisson", "IRR"),
    ("negative.binomial", "log"): ("Mixed-effects nbinomial regression", "nbinomial", "IRR"),
}


def glmm_report(fit: Any, level: float = 0.95, eform: bool = False) -> StataReport:
    """Stata's ``melogit`` / ``mepoisson`` (``meglm``) report of a glmer fit: z tests of the
    fixed effects (with ``eform``: exp(b), its standard error exp(b) se by the delta method
    and the exp of the z interval's ends), the variance components with standard errors
    from the inverse Hessian of the objective over (theta, beta) by the delta method (log
    scale for the intervals of variances), and the LR test against the model without
    random effects (families without a dispersion)."""
    fam = fit.family
    title, base, elabel = _GLMM_TITLES.get(
        (fam.name, fam.link.name), ("Mixed-effects GLM", "GLM", "exp(b)")
    )
    fixed = fit.coef_table(level)
    names = list(fixed.index)
    slopes = [i for i, n in enumerate(names) if n != "(Intercept)"]
    if slopes:
        b = fixed.estimate.to_numpy()[slopes]
        V = fit.vcov.to_numpy()[np.ix_(slopes, slopes)]
        chi2 = float(b @ np.linalg.solve(V, b))
        df = len(slopes)
        from scipy import stats

        p = float(stats.chi2.sf(chi2, df))
    else:
        chi2, df, p = float("nan"), 0, float("nan")
    if eform:
        e = np.exp(fixed.estimate)
        fixed = fixed.assign(
            estimate=e,
            std_error=e * fixed.std_error,
            ci_lower=np.exp(fixed.ci_lower),
            ci_upper=np.exp(fixed.ci_upper),
        )
    fixed.index = [_stata_name(n) for n in fixed.index]
    order = [n for n in fixed.index if n != "_cons"] + [n for n in fixed.index if n == "_cons"]
    fixed = fixed.loc[order]
    groups = []
    for t in fit.design.terms:
        if t.group in [g[0] for g in groups]:
            continue
        counts = np.bincount(np.asarray(t.codes), minlength=t.n_levels)
        groups.append(
            (t.group, t.n_levels, int(counts.min()), float(counts.mean()), int(counts.max()))
        )
    method = {0: "nAGQ = 0", 1: "Laplace"}.get(fit.nagq, "aghermite")
    header = {
        "method": "ML",
        "title": title,
        "integration": (method, fit.nagq if fit.nagq > 1 else 1),
        "coef_label": elabel if eform else "Coefficient",
        "nobs": int(fit.nobs),
        "groups": groups,
        "wald_chi2": chi2,
        "wald_df": df,
        "wald_p": p,
        "loglik": float(fit.loglik),
        "structures": [(t.group, _structure(t)) for t in fit.design.terms],
        "notes": [],
    }
    if eform and "_cons" in fixed.index:
        what = {"Odds ratio": "baseline odds", "IRR": "baseline incidence rate"}.get(
            elabel, "exp(baseline)"
        )
        header["notes"].append(
            f"Note: _cons estimates {what} (conditional on zero random effects)."
        )
    lr = fit.lr_test_vs_glm()
    if lr is None:
        line = ""
    elif lr[1] == 1:
        line = (
            f"LR test vs. {base} model: chibar2(01) = {lr[0]:.2f}"
            f"{'Prob >= chibar2 = ':>26}{lr[2]:.4f}"
        )
    else:
        line = (
            f"LR test vs. {base} model: chi2({lr[1]}) = {lr[0]:.2f}"
            f"{'Prob > chi2 = ':>28}{lr[2]:.4f}\n"
            "Note: LR test is conservative and provided only for reference."
        )
    return StataReport(header, fixed, fit.varcomp_table(level), line, fit.response_name, eform)


def _stata_order(t: pd.DataFrame) -> pd.DataFrame:
    """Within each group: variances (the constant's last), then covariances; residual last."""

    def key(name: str) -> tuple:
        group, _, par = name.rpartition(": ")
        first = list(dict.fromkeys(n.rpartition(": ")[0] for n in t.index))
        kind = 1 if par.startswith(("cov(", "corr(")) else 0
        return (first.index(group) if group else len(first), kind, "(Intercept)" in par)

    return t.loc[sorted(t.index, key=key)]


def render(r: StataReport) -> str:
    h = r.header
    lines = []
    title = h.get("title", f"Mixed-effects {h['method']} regression")
    ll_label = "Log restricted-likelihood" if h["method"] == "REML" else "Log likelihood"
    right = [f"Number of obs     = {h['nobs']:>10,}"]
    if len(h["groups"]) == 1:
        g, n, lo, avg, hi = h["groups"][0]
        left = [title, f"Group variable: {g}"]
        right += [
            f"Number of groups  = {n:>10,}",
            "",
            "Obs per group:",
            f"{'min':>14} = {lo:>10,}",
            f"{'avg':>14} = {avg:>10.1f}",
            f"{'max':>14} = {hi:>10,}",
            "",
        ]
    else:
        left = [title]
    chi2 = f"{h['wald_chi2']:>10.2f}" if np.isfinite(h["wald_chi2"]) else f"{'.':>10}"
    prob = f"{h['wald_p']:>10.4f}" if np.isfinite(h["wald_p"]) else f"{'.':>10}"
    label = f"Wald chi2({h['wald_df']})"
    if "integration" in h:
        left += [""] * (len(right) - len(left)) + [f"Integration method: {h['integration'][0]}"]
        right += [f"Integration pts.  = {h['integration'][1]:>10}", ""]
    right += [f"{label:<18}= {chi2}", f"Prob > chi2       = {prob}"]
    ll = f"{ll_label} = {h['loglik']:.8g}"
    left += [""] * (len(right) - len(left) - 1) + [ll]
    for a, b in zip(left, right):
        lines.append(f"{a:<48}{b}".rstrip())
    if len(h["groups"]) > 1:
        lines += [
            "",
            "-" * 62,
            f"{'':16}|     No. of       Observations per group",
            f"{' Group variable':16}|     groups    Minimum    Average    Maximum",
            "-" * 16 + "+" + "-" * 45,
        ]
        for g, n, lo, avg, hi in h["groups"]:
            lines.append(f"{g:>15} |{n:>11,}{lo:>11,}{avg:>11.1f}{hi:>11,}")
        lines.append("-" * 62)
    rule = "-" * 78
    lines += [
        "",
        rule,
        f"{r.response[:12]:>12} | {h.get('coef_label', 'Coefficient'):>11}  Std. err.      z    "
        "P>|z|     [95% conf. interval]",
        "-" * 13 + "+" + "-" * 64,
    ]
    for name, row in r.fixed.iterrows():
        lines.append(
            f"{name[:12]:>12} | {g9(row.estimate):>10} {g9(row.std_error):>10} "
            f"{row.statistic:>8.2f} {row.p_value:>8.3f}    {g9(row.ci_lower):>10} "
            f"{g9(row.ci_upper):>10}"
        )
    lines += [
        rule,
        "",
        rule,
        f"{'  Random-effects parameters':<29}|   Estimate   Std. err.     [95% conf. interval]",
        "-" * 29 + "+" + "-" * 48,
    ]
    structures = dict(h["structures"])
    current = None
    for name, row in r.random.iterrows():
        if ":" in name:
            group, par = name.split(": ", 1)
            if group != current:
                if current is not None:
                    lines.append("-" * 29 + "+" + "-" * 48)
                lines.append(f"{group + ': ' + structures.get(group, ''):<29}|")
                current = group
        else:
            lines.append("-" * 29 + "+" + "-" * 48)
            par = name
        par = par.replace("(Intercept)", "_cons")
        lines.append(
            f"{par[:28]:>28} | {g9(row.estimate):>10} {g9(row.std_error):>10}    "
            f"{g9(row.ci_lower):>10} {g9(row.ci_upper):>10}"
        )
    lines += [rule] + h.get("notes", []) + ([r.lr_line] if r.lr_line else [])
    return "\n".join(lines)
