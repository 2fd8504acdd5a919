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
    title = f"Mixed-effects {h['method']} regression"
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
        f"{r.response[:12]:>12} | Coefficient  Std. err.      z    P>|z|     [95% conf. interval]",
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
    lines += [rule, r.lr_line]
    return "\n".join(lines)
