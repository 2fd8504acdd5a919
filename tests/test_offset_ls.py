"""Offsets in least-squares fits: ``ols(offset=)`` and ``offset(expr)`` terms as R's ``lm``,
``lmlist(offset=)`` and ``offset(expr)`` as lme4's ``lmList``; ``panel`` refuses them (plm
has no offset).

References: tests/reference/offset/<case>.json (``Rscript tests/reference/make_reference.R
offset``, tests/reference/cases_offset.R), fitted on tests/reference/data/sleepstudy_ls_offset.csv
(sleepstudy with t, w, and an offset o missing in three rows).

R-squared and F are those of R's current ``summary.lm``, computed from the fitted values
without the offset (the R 4.2 that made the references keeps the offset in them; both are in
the JSON, see cases_offset.R).

Tolerances: least squares is a direct solve (QR here, QR in R), so coefficients, standard
errors, sigma, R-squared, F, the log-likelihood and fitted values agree to 1e-10 relative
(measured about 1e-13); residuals, differences of numbers near 250, to 1e-9 absolute.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import multilevel as ml
from conftest import load_reference, load_reference_data
from multilevel.exceptions import DataError, FormulaError, MissingColumnError

OLS = [
    "ols_formula_offset",
    "ols_offset_weights",
    "ols_both_offsets",
    "ols_offset_no_intercept",
    "ols_offset_weights_no_intercept",
]
RTOL = 1e-10


@pytest.fixture(scope="module")
def data():
    return load_reference_data(load_reference("ols_formula_offset", "offset"))


def _fit_ols(ref, data, vcov="iid"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rows with a missing offset are dropped, as lm
        return ml.ols(ref["formula"], data, weights=ref["weights"], offset=ref["offset"], vcov=vcov)


@pytest.mark.parametrize("case", OLS)
def test_ols_offset_as_lm(case, data):
    ref = load_reference(case, "offset")
    fit = _fit_ols(ref, data)
    assert list(fit.coef.index) == ref["names"] and fit.nobs == ref["nobs"]
    np.testing.assert_array_equal(fit.rows + 1, ref["rows"])
    for mine, theirs in [
        (fit.coef, ref["coef"]),
        (fit.se, ref["se"]),
        (fit.sigma, ref["sigma"]),
        (fit.r2, ref["r2"]),
        (fit.adj_r2, ref["adj_r2"]),
        (fit.fvalue, ref["fvalue"]),
        (fit.loglik, ref["loglik"]),
        (fit.aic, ref["aic"]),
        (fit.fitted.dropna(), ref["fitted"]),
    ]:
        np.testing.assert_allclose(mine, theirs, rtol=RTOL)
    assert fit.f_df == tuple(ref["f_df"])
    # R 4.2's summary.lm keeps the offset in the explained sum of squares; R's current one
    # (and this library) does not: the two differ on every case here
    assert abs(fit.r2 - ref["r2_r42"]) > 1e-5 and abs(fit.fvalue - ref["fvalue_r42"]) > 1e-2
    np.testing.assert_allclose(fit.resid.dropna(), ref["resid"], rtol=0, atol=1e-9)
    # the dropped rows are NaN on the input's index
    assert fit.fitted.index.equals(data.index) and fit.fitted.isna().sum() == len(data) - fit.nobs
    hc1 = _fit_ols(ref, data, vcov="HC1")
    np.testing.assert_allclose(hc1.se, ref["se_hc1"], rtol=RTOL)


def test_offset_array_equals_column_and_formula(data):
    a = ml.ols("Reaction ~ Days", data, offset=10 * np.log(data["t"].to_numpy()))
    b = ml.ols("Reaction ~ Days + offset(10 * log(t))", data)
    c = ml.ols("Reaction ~ Days", data.assign(o10=10 * np.log(data["t"])), offset="o10")
    for other in (b, c):
        np.testing.assert_allclose(a.coef, other.coef, rtol=1e-13)
        np.testing.assert_allclose(a.fitted, other.fitted, rtol=1e-13)


def test_no_offset_numbers_unchanged(data):
    """A fit without an offset takes the old path: the same numbers as before, bit for bit."""
    fit = ml.ols("Reaction ~ Days", data)
    X = np.column_stack([np.ones(len(data)), data["Days"]])
    beta = np.linalg.lstsq(X, data["Reaction"].to_numpy(), rcond=None)[0]
    np.testing.assert_array_equal(fit.coef, beta)
    assert fit.offset is None


@pytest.mark.parametrize("case", ["lmlist_formula_offset", "lmlist_offset"])
def test_lmlist_offset_as_lme4(case, data):
    ref = load_reference(case, "offset")
    formula = ref["formula"].split("|")[0].strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmlist(formula, data, group="Subject", offset=ref["offset"])
    assert list(fit.coef.columns) == ref["names"]
    assert [str(v) for v in fit.coef.index] == ref["levels"]
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=RTOL)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=RTOL)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=RTOL)
    assert fit.pooled_sigma == pytest.approx(ref["pooled_sigma"], rel=RTOL)
    np.testing.assert_array_equal(fit.rows + 1, ref["rows"])
    np.testing.assert_allclose(fit.fitted.dropna(), ref["fitted"], rtol=RTOL)
    np.testing.assert_allclose(fit.resid.dropna(), ref["resid"], rtol=0, atol=1e-9)


def test_panel_refuses_offset_and_says_why(data):
    with pytest.raises(FormulaError, match=r"panel\(\) does not take offset\(\) terms \(R's plm"):
        ml.panel("Reaction ~ Days + offset(t)", data, entity="Subject")


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda d: ml.ols("Reaction ~ Days", d, offset=np.ones(3)), DataError, "length 3"),
        (lambda d: ml.ols("Reaction ~ Days", d, offset="nope"), MissingColumnError, "'nope'"),
        (lambda d: ml.ols("Reaction ~ Days", d, offset="Subject"), DataError, "must be numeric"),
        (
            lambda d: ml.lmlist("Reaction ~ Days", d, group="Subject", offset=np.ones(2)),
            DataError,
            "offset has length 2",
        ),
        (lambda d: ml.ols("Reaction ~ Days + offset(t2)", d), MissingColumnError, "'t2'"),
    ],
)
def test_bad_offsets_named(call, exc, msg, data):
    with pytest.raises(exc, match=msg):
        call(data)


def test_missing_offset_rows_dropped_and_counted(data):
    with pytest.warns(Warning, match="missing"):
        fit = ml.ols("Reaction ~ Days", data, offset="o")
    assert fit.n_dropped == 3 and fit.nobs == len(data) - 3
