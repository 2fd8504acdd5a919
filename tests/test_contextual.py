"""Contextual effects: cvar / dvar in every formula of the package, and up().

Golden values: tests/reference/econ/contextual_*.json, written by
tests/reference/cases_contextual.R (``Rscript tests/reference/make_reference.R contextual``),
where the group mean is R's ``ave(x, g)``.

Tolerances (stated at each assertion):
- lmer at lme4's theta: objective, estimates, standard errors, variance components, conditional
  modes and variances, fitted values to 1e-10 relative (the reference script asks for 1e-8; the
  linear algebra agrees to about 1e-13).
- lmer at our own optimum: the objective no worse than lme4's by 1e-6 relative (the golden
  tier); for ``(1 | school)`` (one theta, both optimisers converge tightly) estimates 1e-8
  relative and standard errors / variance components 1e-6 relative; for the three-theta model
  with a random dvar slope (a flat optimum: our objective is lower by about 2e-13 relative, the
  two thetas differ by about 1e-5 relative) estimates within 1e-4 of a standard error and
  standard errors / variance components within 1e-4 relative, ten times tighter than the
  golden tiers of tests/test_lmer_golden.py.
- lm and plm: estimates 1e-8 relative, standard errors and covariances 1e-6 relative.
- Predictions: 1e-8 relative at lme4's theta and beta; 1e-6 relative at our fit.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.design import build_fixed
from multilevel.exceptions import DataError, MissingColumnError, MissingValuesWarning
from multilevel.results import LmerFit

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "econ"

AT_THETA_RTOL = 1e-10
OBJ_FIT_RTOL = 1e-6
EST_RTOL = 1e-8
SE_RTOL = 1e-6
PRED_RTOL = 1e-8
PRED_FIT_RTOL = 1e-6

F_CVAR = "mathach ~ ses + cvar(ses, school) + (1 | school)"
F_DVAR = "mathach ~ dvar(ses, school) + cvar(ses, school) + (1 + dvar(ses, school) | school)"


def load(name: str) -> dict:
    return json.loads((REF / f"{name}.json").read_text(encoding="utf-8"))


def _arr(x) -> np.ndarray:
    if isinstance(x, list):
        return np.asarray([_arr(v) for v in x], dtype=float)
    return np.asarray(np.nan if x is None else x, dtype=float)


def _cov_close(got, ref, rtol: float) -> None:
    ref = _arr(ref)
    sd = np.sqrt(np.diag(ref))
    assert np.all(np.abs(got - ref) <= rtol * np.outer(sd, sd))


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.fixture(scope="module")
def hsb():
    return ml.datasets.load("hsb")


@pytest.fixture(scope="module")
def grunfeld():
    return ml.datasets.load("grunfeld")


_FITS: dict[str, LmerFit] = {}


def _lmer(formula: str, data, key: str | None = None) -> LmerFit:
    if key is not None and key in _FITS:
        return _FITS[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer(formula, data)
    if key is not None:
        _FITS[key] = fit
    return fit


def _at_theta(fit: LmerFit, theta) -> LmerFit:
    sol = fit.problem.solution(np.asarray(theta, dtype=float), fit.reml)
    return LmerFit(fit.design, fit.problem, sol, fit.reml)


# --------------------------------------------------------------------------------------------
# lmer against lme4
# --------------------------------------------------------------------------------------------

LMER_CASES = {
    # case: (beta tolerance at our optimum, as (kind, value); SE / variance-component rtol)
    "contextual_hsb_cvar_reml": (("rel", EST_RTOL), SE_RTOL),
    "contextual_hsb_dvar_reml": (("se", 1e-4), 1e-4),
}


@pytest.fixture(params=sorted(LMER_CASES))
def lmer_case(request, hsb, lmm_core):
    ref = load(request.param)
    return request.param, ref, _lmer(ref["formula"], hsb, key=request.param)


def _varcomp(fit: LmerFit) -> tuple[np.ndarray, np.ndarray]:
    vc = fit.varcorr
    is_var = vc["var2"].isna().to_numpy()
    return vc["vcov"].to_numpy()[is_var], vc["sdcor"].to_numpy()[~is_var]


def _ref_varcomp(ref: dict) -> tuple[np.ndarray, np.ndarray]:
    v = [r["vcov"] for r in ref["varcorr"] if r["var2"] is None]
    c = [r["sdcor"] for r in ref["varcorr"] if r["var2"] is not None]
    return np.asarray(v), np.asarray(c)


def test_lmer_design(lmer_case):
    _, ref, fit = lmer_case
    assert list(fit.fixef.index) == ref["fixef_names"]
    assert [list(t.names) for t in fit.design.terms] == [t["columns"] for t in ref["terms"]]
    assert fit.nobs == ref["nobs"] and fit.n_dropped == ref["n_dropped"] == 0
    assert fit.ngroups == ref["ngroups"]


def test_lmer_at_lme4_theta(lmer_case):
    _, ref, fit = lmer_case
    # objective at lme4's theta and at the reference's other thetas: 1e-10 relative
    assert (
        _rel(fit.problem.objective(np.asarray(ref["theta"]), True), ref["objective_at_theta"])
        < AT_THETA_RTOL
    )
    for other in ref["objective_at_other_theta"]:
        got = fit.problem.objective(np.asarray(other["theta"], dtype=float), True)
        assert _rel(got, other["objective"]) < AT_THETA_RTOL, other["label"]
    at = _at_theta(fit, ref["theta"])
    # beta, its covariance, sigma, variance components, fitted values: 1e-10 relative
    assert _rel(at.beta, ref["beta"]) < AT_THETA_RTOL
    assert _rel(at.se.to_numpy(), ref["se"]) < AT_THETA_RTOL
    se = np.asarray(ref["se"])  # covariances relative to sqrt(v_ii v_jj)
    assert np.all(
        np.abs(at.vcov.to_numpy() - _arr(ref["vcov"])) <= AT_THETA_RTOL * np.outer(se, se)
    )
    assert _rel(at.sigma, ref["sigma"]) < AT_THETA_RTOL
    v, c = _varcomp(at)
    rv, rc = _ref_varcomp(ref)
    assert _rel(v, rv) < AT_THETA_RTOL
    assert np.all(np.abs(c - rc) <= AT_THETA_RTOL)  # correlations: absolute
    assert _rel(at.fitted, ref["fitted"]) < AT_THETA_RTOL
    # conditional modes and variances: 1e-10 relative to their conditional sd / variance
    for g, r in ref["ranef"].items():
        cv_ref = _arr(r["condvar"])
        sd = np.sqrt(np.diagonal(cv_ref, axis1=1, axis2=2))
        assert np.all(np.abs(at.ranef[g].to_numpy() - _arr(r["values"])) <= AT_THETA_RTOL * sd)
        assert _rel(at.ranef_condvar[g], cv_ref) < AT_THETA_RTOL
    assert _rel(at.loglik, ref["loglik"]) < AT_THETA_RTOL


def test_lmer_at_our_optimum(lmer_case):
    name, ref, fit = lmer_case
    (kind, btol), setol = LMER_CASES[name]
    # objective no worse than lme4's by 1e-6 relative (lower is a success)
    assert fit.objective <= ref["objective"] + OBJ_FIT_RTOL * abs(ref["objective"])
    se_ref = np.asarray(ref["se"])
    if kind == "rel":  # estimates 1e-8 relative
        assert _rel(fit.beta, ref["beta"]) < btol
    else:  # estimates within 1e-4 of a standard error
        assert np.all(np.abs(fit.beta - np.asarray(ref["beta"])) <= btol * se_ref)
    # standard errors, sigma and variance components: 1e-6 (cvar) / 1e-4 (dvar) relative
    assert _rel(fit.se.to_numpy(), se_ref) < setol
    assert _rel(fit.sigma, ref["sigma"]) < setol
    v, c = _varcomp(fit)
    rv, rc = _ref_varcomp(ref)
    assert _rel(v, rv) < setol
    assert np.all(np.abs(c - rc) <= setol)  # correlations: absolute
    assert fit.singular == ref["singular"]


def test_cvar_is_the_school_mean_column(hsb, lmm_core):
    """The design column equals ave(ses, school); the fit equals one on an explicit column."""
    fit = _lmer(F_CVAR, hsb, key="contextual_hsb_cvar_reml")
    m = hsb.groupby("school", observed=True)["ses"].transform("mean").to_numpy()
    # group means: 1e-14 relative to the scale of ses
    assert np.max(np.abs(fit.design.X[:, 2] - m)) < 1e-14 * np.max(np.abs(hsb["ses"]))
    explicit = _lmer("mathach ~ ses + m + (1 | school)", hsb.assign(m=m))
    # same model: estimates 1e-8 relative
    assert _rel(fit.beta, explicit.beta) < EST_RTOL


# --------------------------------------------------------------------------------------------
# predict: training means for known schools
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predict_ref():
    return load("contextual_predict_hsb")


@pytest.mark.parametrize("which", ["cvar", "dvar"])
def test_predict_matches_lme4(which, predict_ref, hsb, lmm_core):
    ref = predict_ref
    r = ref["fits"][which]
    key = f"contextual_hsb_{which}_reml"
    fit = _lmer(r["formula"], hsb, key=key)
    at = _at_theta(fit, r["theta"])
    new = pd.DataFrame(ref["newdata"])
    known = ~np.asarray(ref["new_levels"])
    # the design's training means (and the new schools' own means): 1e-14 absolute
    assert _rel(at.beta, r["beta"]) < AT_THETA_RTOL
    for f, tol in ((at, PRED_RTOL), (fit, PRED_FIT_RTOL)):
        # known schools, all random effects: 1e-8 relative at lme4's theta, 1e-6 at our fit
        got = f.predict(new[known])
        assert _rel(got, _arr(r["predict_re_known"])[known]) < tol
        # new schools too: b = 0 and their own ses mean
        got = f.predict(new, allow_new_levels=True)
        assert _rel(got, r["predict_re"]) < tol
        got = f.predict(new, re_form="~0", allow_new_levels=True)
        assert _rel(got, r["predict_fixed"]) < tol


def test_predict_uses_training_means(predict_ref, hsb, lmm_core):
    fit = _lmer(F_CVAR, hsb, key="contextual_hsb_cvar_reml")
    new = pd.DataFrame(predict_ref["newdata"])
    known = ~np.asarray(predict_ref["new_levels"])
    from multilevel import design as _design

    nm = _design.new_matrices(fit.design, new, allow_new_levels=True)
    # the cvar column: training means of known schools, own means of new ones, 1e-15 absolute
    np.testing.assert_allclose(nm.X[:, 2], predict_ref["ses_mean"], rtol=0, atol=1e-15)
    # one row alone gets its school's training mean, not its own ses
    one = fit.predict(new[known].iloc[[0]])
    assert one[0] == pytest.approx(fit.predict(new[known])[0], rel=1e-14)
    # predicting the training data reproduces the fitted values (1e-10 relative)
    assert _rel(fit.predict(hsb), fit.fitted) < 1e-10
    assert _rel(fit.predict(re_form="~0"), fit.design.X @ fit.beta) < 1e-10


def test_predict_new_groups_is_an_error_naming_them(predict_ref, hsb, lmm_core):
    fit = _lmer(F_CVAR, hsb, key="contextual_hsb_cvar_reml")
    new = pd.DataFrame(predict_ref["newdata"])
    with pytest.raises(DataError, match=r"cvar\(ses, school\).*'9999', '8888'") as info:
        fit.predict(new)
    assert "allow_new_levels=True" in str(info.value)
    assert "factor" not in str(info.value)  # school is not a factor of X
    with pytest.raises(DataError, match="9999"):
        fit.predict(new, re_form="~0")
    from multilevel import design as _design

    d = _design.build("mathach ~ 1 + (1 + dvar(ses, school) | school)", hsb)
    with pytest.raises(DataError, match=r"dvar\(ses, school\).*'9999'"):
        _design.new_matrices(d, new, allow_new_levels=False)
    nm = _design.new_matrices(d, new, allow_new_levels=True)
    # Z's dvar column: ses minus the training mean (known) or the own mean (new), 1e-15
    np.testing.assert_allclose(
        nm.terms[0][1][:, 1], new["ses"] - predict_ref["ses_mean"], rtol=0, atol=1e-15
    )


def test_predict_groups_given_as_other_types(grunfeld, lmm_core):
    """int firms in training, strings or floats in new data: the same groups."""
    fit = _lmer("inv ~ value + cvar(value, firm) + (1 | firm)", grunfeld)
    new = grunfeld.iloc[[0, 25, 199]]
    base = fit.predict(new)
    for firm in (new["firm"].astype(str), new["firm"].astype(float)):
        got = fit.predict(new.assign(firm=firm.to_numpy()))
        np.testing.assert_allclose(got, base, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# lm and plm against R
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["iid", "HC1", "CR1"])
def test_ols_matches_lm(kind, hsb):
    ref = load("contextual_ols_hsb")
    vcov = {"CR1": ref["cluster"]} if kind == "CR1" else kind
    fit = ml.ols(ref["formula"], hsb, vcov=vcov)
    assert list(fit.coef.index) == ref["names"]
    # estimates 1e-8 relative
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=EST_RTOL)
    # standard errors 1e-6 relative; covariances 1e-6 relative to sqrt(v_ii v_jj) (the
    # covariance of the intercept and ses is zero up to rounding)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"][kind], rtol=SE_RTOL)
    _cov_close(fit.vcov.to_numpy(), ref["vcov"][kind], SE_RTOL)
    assert fit.nobs == ref["nobs"]


@pytest.mark.parametrize("model", ["pooled", "random"])
def test_panel_matches_plm(model, grunfeld):
    ref = load("contextual_panel_grunfeld")
    r = ref[model]
    fit = ml.panel(ref["formula"], grunfeld, entity="firm", time="year", model=model)
    assert list(fit.coef.index) == ref["names"]
    # estimates 1e-8 relative; standard errors 1e-6 relative, covariances 1e-6 relative to
    # sqrt(v_ii v_jj)
    np.testing.assert_allclose(fit.coef.to_numpy(), r["coef"], rtol=EST_RTOL)
    np.testing.assert_allclose(fit.se.to_numpy(), r["se"], rtol=SE_RTOL)
    _cov_close(fit.vcov.to_numpy(), r["vcov"], SE_RTOL)
    assert fit.nobs == r["nobs"]
    cl = ml.panel(ref["formula"], grunfeld, entity="firm", time="year", model=model, vcov="cluster")
    _cov_close(cl.vcov.to_numpy(), r["vcov_CR1"], SE_RTOL)
    if model == "random":
        # Swamy-Arora components and theta: 1e-8 relative
        assert fit.sigma2_e == pytest.approx(r["sigma2_idios"], rel=EST_RTOL)
        assert fit.sigma2_u == pytest.approx(r["sigma2_id"], rel=EST_RTOL)
        assert fit.theta == pytest.approx(r["theta"], rel=EST_RTOL)


def test_mundlak_random_equals_within(grunfeld):
    """Random effects with the entity means (Mundlak) give the within slopes (balanced)."""
    ref = load("panel_grunfeld")["within"]
    re = ml.panel(
        "inv ~ value + capital + cvar(value, firm) + cvar(capital, firm)",
        grunfeld,
        entity="firm",
        time="year",
        model="random",
    )
    # 1e-8 relative
    np.testing.assert_allclose(
        re.coef[["value", "capital"]].to_numpy(), list(ref["coef"].values()), rtol=EST_RTOL
    )


def test_within_drops_entity_means(grunfeld):
    ref = load("panel_grunfeld")["within"]
    with pytest.warns(ml.MultilevelWarning, match=r"cvar\(value, firm\)"):
        fe = ml.panel(
            "inv ~ value + capital + cvar(value, firm)", grunfeld, entity="firm", time="year"
        )
    assert list(fe.coef.index) == ["value", "capital"]
    np.testing.assert_allclose(fe.coef.to_numpy(), list(ref["coef"].values()), rtol=EST_RTOL)


def test_lmlist_with_dvar(hsb):
    """Centred within each school, each intercept is the school's mean of mathach."""
    fit = ml.lmlist("mathach ~ dvar(ses, school)", hsb, group="school")
    plain = ml.lmlist("mathach ~ ses", hsb, group="school")
    means = hsb.groupby("school", observed=True)["mathach"].mean()
    # 1e-10 relative
    np.testing.assert_allclose(
        fit.coef["(Intercept)"].to_numpy(), means.loc[fit.coef.index].to_numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(
        fit.coef["dvar(ses, school)"].to_numpy(), plain.coef["ses"].to_numpy(), rtol=1e-10
    )


# --------------------------------------------------------------------------------------------
# missing values: the rows used define the means
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hsb_na(hsb):
    d = hsb.copy()
    d.loc[[3, 40, 41, 500, 2000], "ses"] = np.nan
    d.loc[[10, 900], "mathach"] = np.nan
    d["school"] = d["school"].astype(object)
    d.loc[[7, 3000], "school"] = None
    return d


def _complete(d: pd.DataFrame) -> pd.DataFrame:
    return d.dropna(subset=["mathach", "ses", "school"]).reset_index(drop=True)


def test_missing_values_lmer(hsb_na, lmm_core):
    with pytest.warns(MissingValuesWarning, match="dropped 9 rows"):
        fit = ml.lmer(F_CVAR, hsb_na)
    assert fit.n_dropped == 9 and fit.nobs == len(hsb_na) - 9
    ref = _lmer(F_CVAR, _complete(hsb_na))
    # the means are those of the complete rows (a missing mathach drops its ses from the
    # mean too): the same design to 1e-15 and the same fit to 1e-10
    np.testing.assert_allclose(fit.design.X, ref.design.X, rtol=0, atol=1e-15)
    assert _rel(fit.beta, ref.beta) < 1e-10
    full = hsb_na.groupby("school")["ses"].transform("mean").to_numpy()[fit.design.rows]
    assert np.max(np.abs(fit.design.X[:, 2] - full)) > 1e-4  # not the all-rows mean


def test_missing_values_ols_and_panel(hsb_na, grunfeld):
    with pytest.warns(MissingValuesWarning):
        fit = ml.ols("mathach ~ ses + cvar(ses, school)", hsb_na, vcov={"CR1": "school"})
    ref = ml.ols("mathach ~ ses + cvar(ses, school)", _complete(hsb_na), vcov={"CR1": "school"})
    assert fit.n_dropped == 9
    # 1e-10 relative
    np.testing.assert_allclose(fit.coef.to_numpy(), ref.coef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(fit.se.to_numpy(), ref.se.to_numpy(), rtol=1e-10)
    g = grunfeld.astype({"value": float})
    g.loc[[5, 60], "value"] = np.nan
    f = "inv ~ value + capital + cvar(value, firm)"
    with pytest.warns(MissingValuesWarning):
        a = ml.panel(f, g, entity="firm", time="year", model="random")
    b = ml.panel(f, g.dropna().reset_index(drop=True), entity="firm", time="year", model="random")
    np.testing.assert_allclose(a.coef.to_numpy(), b.coef.to_numpy(), rtol=1e-10)


def test_transform_nan_left_out_of_means():
    df = pd.DataFrame(
        {
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "x": [1.0, -1.0, 4.0, 2.0, 8.0, 4.0],
            "g": ["a", "a", "a", "b", "b", "b"],
        }
    )
    with np.errstate(invalid="ignore"):
        with pytest.warns(MissingValuesWarning, match="transformation"):
            fit = ml.ols("y ~ cvar(np.log(x), g)", df)
        with pytest.warns(MissingValuesWarning, match="transformation"):
            fd = build_fixed("y ~ cvar(np.log(x), g)", df)
    assert fit.n_dropped == fd.n_dropped == 1
    # a's mean is that of log(1) and log(4) only: 1e-15 absolute
    np.testing.assert_allclose(fd.X[:2, 1], np.log(2.0), rtol=0, atol=1e-15)


def test_transform_inf_is_an_error():
    df = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "x": [0.0, 1, 2, 3, 4, 5], "g": list("aaabbb")})
    with np.errstate(divide="ignore"), pytest.raises(DataError, match=r"non-finite.*0, 1, 2"):
        ml.ols("y ~ cvar(np.log(x), g)", df)


# --------------------------------------------------------------------------------------------
# input errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["cvar", "dvar"])
def test_non_numeric_variable(fn, hsb):
    with pytest.raises(DataError, match=rf"{fn}\(\): column 'sex' is not numeric"):
        ml.ols(f"mathach ~ {fn}(sex, school)", hsb)
    with pytest.raises(DataError, match="'sex' is not numeric"):
        _lmer(f"mathach ~ ses + (1 + {fn}(sex, school) | school)", hsb)


def test_unknown_columns(hsb):
    with pytest.raises(MissingColumnError, match=r"'sesx'.*did you mean.*'ses'"):
        ml.ols("mathach ~ cvar(sesx, school)", hsb)
    with pytest.raises(MissingColumnError, match=r"'schol'.*did you mean 'school'"):
        _lmer("mathach ~ dvar(ses, schol) + (1 | school)", hsb)


def test_group_must_be_a_column(hsb):
    with pytest.raises(DataError, match="second argument must be a column"):
        ml.ols("mathach ~ cvar(ses, 1)", hsb)
    for bad in ("cvar(ses)", "dvar(ses, school, sector)"):
        with pytest.raises(DataError, match=r"var\(\) takes a variable and one grouping column"):
            ml.ols(f"mathach ~ {bad}", hsb)


# --------------------------------------------------------------------------------------------
# data types
# --------------------------------------------------------------------------------------------


def test_polars_and_dict_give_the_same_fit(hsb, lmm_core):
    pl = pytest.importorskip("polars")
    base = _lmer(F_DVAR, hsb, key="contextual_hsb_dvar_reml")
    d = {c: hsb[c].to_numpy() for c in ["mathach", "ses", "school"]}
    d["school"] = d["school"].astype(str)
    for data in (d, pl.from_pandas(pd.DataFrame(d))):
        fit = _lmer(F_DVAR, data)
        # same levels, same fit: 1e-10 relative
        assert _rel(fit.beta, base.beta) < 1e-10
        assert list(fit.ranef["school"].index) == list(base.ranef["school"].index)


def test_direct_calls():
    x = pd.Series([1.0, 2.0, np.nan, 10.0, 4.0])
    g = pd.Series([2, 2, 1, 1, 1])
    np.testing.assert_array_equal(ml.cvar(x, g), [1.5, 1.5, np.nan, 7.0, 7.0])
    np.testing.assert_array_equal(ml.dvar(x, g), [-0.5, 0.5, np.nan, 3.0, -3.0])
    b = pd.Series([True, False, True, True])
    np.testing.assert_array_equal(ml.cvar(b, pd.Series(list("aabb"))), [0.5, 0.5, 1.0, 1.0])


# --------------------------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------------------------


def test_up_invariants(hsb):
    s = ml.up(hsb, "school")
    assert list(s.columns) == ["school", "sector", "meanses"]
    assert list(s["school"]) == list(hsb["school"].cat.categories)  # categorical order
    assert s["school"].dtype == hsb["school"].dtype and s["sector"].dtype == hsb["sector"].dtype
    first = hsb.drop_duplicates("school").set_index("school")
    np.testing.assert_array_equal(s["meanses"], first.loc[s["school"], "meanses"])


def test_up_mean_matches_groupby(hsb):
    s = ml.up(hsb, "school", agg="mean")
    assert list(s.columns) == ["school", "mathach", "ses", "sector", "meanses"]
    g = hsb.groupby("school", observed=True)[["mathach", "ses"]].mean()
    # 1e-14 relative to the scale of the column (pandas sums in one pass)
    for c in ("mathach", "ses"):
        np.testing.assert_allclose(s[c], g[c], rtol=0, atol=1e-14 * hsb[c].abs().max())
    # up's means are the cvar values
    m = ml.cvar(hsb["ses"], hsb["school"])
    np.testing.assert_array_equal(np.unique(m), np.unique(s["ses"]))


@pytest.mark.parametrize("agg", ["median", "sum", "min", "max", "sd", "count"])
def test_up_other_aggregates(agg, hsb):
    s = ml.up(hsb, "school", agg=agg)
    stat = {"sd": "std", "count": "count"}.get(agg, agg)
    g = hsb.groupby("school", observed=True)["ses"].agg(stat)
    np.testing.assert_allclose(s["ses"].to_numpy(), g.to_numpy(), rtol=1e-12)
    c = ml.up(hsb, "school", agg=lambda a: a.max() - a.min())
    np.testing.assert_allclose(
        c["ses"].to_numpy(),
        (hsb.groupby("school", observed=True)["ses"].agg(lambda a: a.max() - a.min())),
    )


def test_up_several_columns_and_order():
    df = pd.DataFrame(
        {
            "g": [2, 1, 2, 1, 2],
            "h": ["b", "a", "a", "a", "b"],
            "z": [5.0, 1.0, 7.0, 1.0, 5.0],
            "x": [1.0, 2.0, 3.0, np.nan, 5.0],
            "w": [1.0, 1.0, np.nan, np.nan, 2.0],
        }
    )
    s = ml.up(df, ["g", "h"], agg="mean")
    assert s[["g", "h"]].values.tolist() == [[1, "a"], [2, "a"], [2, "b"]]  # first slowest
    assert s["z"].tolist() == [1.0, 7.0, 5.0]
    assert s["x"].tolist() == [2.0, 3.0, 3.0]  # missing values skipped
    # w varies: (1, a) has 1 and a missing value (mean 1), (2, a) only a missing value
    np.testing.assert_array_equal(s["w"], [1.0, np.nan, 1.5])
    assert "w" not in ml.up(df, ["g", "h"]).columns  # varies with a missing value in a group
    assert list(ml.up(df, "g").columns) == ["g"]


def test_up_missing_groups_and_inputs():
    d = {"g": ["b", "a", None, "b"], "x": [1.0, 2.0, 3.0, 1.0], "s": ["u", "v", "w", "u"]}
    with pytest.warns(MissingValuesWarning, match="dropped 1 row"):
        s = ml.up(d, "g")
    assert isinstance(s, pd.DataFrame)
    assert s.to_dict("list") == {"g": ["a", "b"], "x": [2.0, 1.0], "s": ["v", "u"]}
    pl = pytest.importorskip("polars")
    with pytest.warns(MissingValuesWarning):
        p = ml.up(pl.DataFrame(d), "g", agg="mean")
    assert isinstance(p, pl.DataFrame)
    assert p.to_dict(as_series=False) == {"g": ["a", "b"], "x": [2.0, 1.0], "s": ["v", "u"]}


def test_up_errors(hsb):
    with pytest.raises(MissingColumnError, match=r"'schol'.*'school'"):
        ml.up(hsb, "schol")
    with pytest.raises(ValueError, match="agg must be"):
        ml.up(hsb, "school", agg="average")
