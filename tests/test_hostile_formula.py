"""Hostile inputs, formula syntax: malformed formulas (the error and the caret's position) and
the R formula features users reach for first (scale, centring, offset(), transformations,
interactions, nested and uncorrelated terms), with lme4's numbers where it fits."""

from __future__ import annotations

import numpy as np
import pytest

import multilevel as ml
from _hostile import caught, check_lme4, expect_error, reference, sleepstudy, small
from multilevel.exceptions import FormulaError, FormulaWarning, MissingColumnError
from multilevel.formula import parse

# fmt: off
BAD = [  # formula, message, caret position
    pytest.param("y x + (1 | g)", "formula has no '~'", 13, id="no-tilde"),
    pytest.param("y ~ x ~ z + (1 | g)", "formula has more than one '~'", 6, id="two-tildes"),
    pytest.param(" ~ x + (1 | g)", "empty left-hand side", 1, id="empty-lhs"),
    pytest.param("y ~ ", "empty right-hand side", 4, id="empty-rhs"),
    pytest.param("y ~ x + (1 | g", "'(' is never closed", 8, id="unclosed-paren"),
    pytest.param("y ~ x) + (1 | g)", "')' without '('", 5, id="stray-close"),
    pytest.param("y | g ~ x", "'|' is not allowed in the response", 2, id="bar-in-response"),
    pytest.param("y ~ x + 1 | g", "must be enclosed in parentheses", 10, id="bar-without-parens"),
    pytest.param("y ~ x + log((1 | g))", "must be a term of the sum", 15, id="bar-inside-call"),
    pytest.param("y ~ x + ( | g)", "nothing on the left of '|'", 10, id="empty-left-of-bar"),
    pytest.param("y ~ x + (1 | )", "nothing on the right of '|'", 13, id="empty-right-of-bar"),
    pytest.param("y ~ x + (1 | g | h)", "more than one '|'", 15, id="two-bars"),
    pytest.param("y ~ x + (1 ||| g)", "more than one '|'", 13, id="triple-bar"),
    pytest.param("y ~ x + (1 | g + h)", "grouping factor '+' must be a column name (or 'a:b', 'a/b')", 15, id="group-sum"),
    pytest.param("y ~ x + (1 | log(g))", "grouping factor must be a column name", 13, id="group-call"),
    pytest.param("y ~ x + (1 | g/)", "empty grouping factor around '/'", 15, id="group-slash-empty"),
    pytest.param("y ~ x $ z + (1 | g)", "unexpected character '$'", 6, id="dollar"),
    pytest.param("y ~ x + \u22121 + (1 | g)", "unexpected character", 8, id="unicode-minus"),
    pytest.param("y ~ x + 'a + (1 | g)", "unterminated quote", 8, id="unterminated-quote"),
    pytest.param("y ~ x + + z + (1 | g)", "empty term", 8, id="empty-term"),
    pytest.param("y ~ x + offset() + (1 | g)", "offset() needs an expression", 8, id="offset-empty"),
    pytest.param("y ~ x + (1 + | g)", "cannot read the left side of '|'", 9, id="bad-bar-lhs"),
]
# fmt: on


@pytest.mark.parametrize("formula, message, position", BAD)
def test_malformed(formula, message, position):
    with pytest.raises(FormulaError) as info:
        ml.lmer(formula, small())
    assert message in info.value.message
    assert info.value.position == position
    assert str(info.value).splitlines()[-1] == "  " + " " * position + "^"


def test_formula_not_a_string():
    expect_error(
        lambda: ml.lmer(None, small()), FormulaError, r"formula must be a string, not NoneType"
    )


# fmt: off
PARSED = [  # formula -> (fixed part, random terms, offsets)
    pytest.param("y ~ x + (1 + x || g)", ("x", ["(1 | g)", "(0 + x | g)"], ()), id="double-bar"),
    pytest.param("y ~ x + (1 | a/b/c)", ("x", ["(1 | c:(b:a))", "(1 | b:a)", "(1 | a)"], ()), id="nested-three"),
    pytest.param("y ~ x + (1 | a:b)", ("x", ["(1 | a:b)"], ()), id="interaction-group"),
    pytest.param("y ~ offset(log(t)) + (1 | g)", ("1", ["(1 | g)"], ("log(t)",)), id="offset-only"),
    pytest.param("y ~ x + offset(t) + offset(2 * z) + (1 | g)", ("x", ["(1 | g)"], ("t", "2 * z")), id="two-offsets"),
    pytest.param("y ~ my.x + (1 | my.g)", ("my.x", ["(1 | my.g)"], ()), id="dotted"),
    pytest.param("y ~\n  x +\n  (1 | g)", ("x", ["(1 | g)"], ()), id="newlines"),
    pytest.param("y ~ 0 + x + (0 + x | g)", ("0 + x", ["(0 + x | g)"], ()), id="no-intercepts"),
]
# fmt: on


@pytest.mark.parametrize("formula, expected", PARSED)
def test_parse(formula, expected):
    p = parse(formula)
    assert (p.fixed, [t.text for t in p.random], p.offsets) == expected


# fmt: off
VARIABLES = [
    pytest.param("y ~ scale(x) + center(z) + (1 | g)", ["y", "x", "z", "g"], id="stateful-transforms"),
    pytest.param("y ~ C(f, Treatment('b')) + (1 | g)", ["y", "f", "g"], id="contrast-argument"),
    pytest.param("y ~ poly(x, degree=2) + (1 | g)", ["y", "x", "g"], id="keyword-argument"),
    pytest.param("np.log(y) ~ np.exp(x) + np.pi + (1 | g)", ["y", "x", "g"], id="numpy-constants"),
    pytest.param("y ~ x + offset(np.log(t)) + (1 | g)", ["y", "x", "t", "g"], id="offset-variable"),
    pytest.param("my.y ~ I(my.x ** 2) + (1 | my.g)", ["my.y", "my.x", "my.g"], id="dotted-inside-call"),
    pytest.param("y ~ x.clip(0) + (1 | g)", ["y", "x", "g"], id="method-call"),
]
# fmt: on


@pytest.mark.parametrize("formula, variables", VARIABLES)
def test_variables(formula, variables):
    assert parse(formula).variables() == variables


# fmt: off
SAME = [  # two formulas, one fit
    pytest.param("y ~ I(x * 2) + (1 | g)", "y ~ x2 + (1 | g)", id="I-times-two"),
    pytest.param("y ~ center(x) + (1 | g)", "y ~ xc + (1 | g)", id="center"),
    pytest.param("y ~ scale(x) + (scale(x) | g)", "y ~ xs + (xs | g)", id="scale-in-random-part"),
    pytest.param("y ~ x * z + (1 | g)", "y ~ x + z + x:z + (1 | g)", id="star-expands"),
    pytest.param("y ~ x + (1 | g)", "y~x+(1|g)", id="no-spaces"),
    pytest.param("y ~ x + (1 | g)", "y ~ x + (1 | g) + 0 + 1", id="zero-then-one"),
    pytest.param("y ~ x + (1 | g)", "y ~ 1 + x + (1 | `g`)", id="backticked-group"),
    pytest.param("y ~ x + (x || g)", "y ~ x + (1 | g) + (0 + x | g)", id="double-bar-equals-two-terms"),
    pytest.param("np.log(t) ~ x + (1 | g)", "lt ~ x + (1 | g)", id="log-response"),
    pytest.param("y ~ x + offset(2 * t) + (1 | g)", "y2 ~ x + (1 | g)", id="offset-is-subtracted"),
]
# fmt: on


@pytest.mark.parametrize("a, b", SAME)
def test_same_fit(a, b):
    d = small()
    d["x2"], d["xc"] = 2 * d.x, d.x - d.x.mean()
    d["xs"] = (d.x - d.x.mean()) / d.x.std(ddof=1)
    d["lt"], d["y2"] = np.log(d.t), d.y - 2 * d.t
    fa, _ = caught(lambda: ml.lmer(a, d))
    fb, _ = caught(lambda: ml.lmer(b, d))
    if "offset" not in a:
        assert abs(fa.objective - fb.objective) <= 1e-9 * abs(fb.objective)
    np.testing.assert_allclose(fa.beta, fb.beta, rtol=1e-7)
    np.testing.assert_allclose(fa.theta, fb.theta, rtol=1e-6)


# fmt: off
LME4 = [
    pytest.param("scale_days", "Reaction ~ scale(Days) + (1 | Subject)", ["(Intercept)", "scale(Days)"], id="scale"),
    pytest.param("scale_days_slope", "Reaction ~ scale(Days) + (scale(Days) | Subject)", ["(Intercept)", "scale(Days)"], id="scale-slope"),
    pytest.param("center_days", "Reaction ~ center(Days) + (1 | Subject)", ["(Intercept)", "center(Days)"], id="center"),
    pytest.param("response_on_rhs", "Reaction ~ Reaction + Days + (1 | Subject)", ["(Intercept)", "Days"], id="response-on-rhs"),
    pytest.param("rank_deficient", "Reaction ~ Days + Days2 + (1 | Subject)", ["(Intercept)", "Days"], id="rank-deficient"),
    pytest.param("logical_and_character", "Reaction ~ late + shift + (1 | Subject)", ["(Intercept)", "lateTRUE", "shiftodd"], id="logical-and-text"),
]
# fmt: on


@pytest.mark.parametrize("case, formula, names", LME4)
def test_lme4(case, formula, names):
    ss = sleepstudy()
    ss["Days2"] = 2 * ss.Days
    ss["late"] = ss.Days > 4
    ss["shift"] = np.where(ss.Days % 2 == 0, "even", "odd")
    fit, _ = caught(lambda: ml.lmer(formula, ss))
    check_lme4(fit, reference(case), names)


def test_response_on_rhs_warns_as_r():
    with pytest.warns(FormulaWarning, match="the response 'y' appeared on the right-hand side"):
        fit = ml.lmer("y ~ y + x + (1 | g)", small())
    assert list(fit.fixef.index) == ["(Intercept)", "x"]


def test_scale_uses_training_mean_for_new_data():
    d = small()
    fit, _ = caught(lambda: ml.lmer("y ~ scale(x) + (1 | g)", d))
    new = d.iloc[:3].assign(x=[0.0, 1.0, 2.0])
    xs = (new.x - d.x.mean()) / d.x.std(ddof=1)
    expected = fit.beta[0] + fit.beta[1] * xs + fit.ranef["g"].iloc[0, 0]
    np.testing.assert_allclose(fit.predict(new), expected, rtol=1e-10)


def test_missing_column_inside_scale():
    expect_error(
        lambda: ml.lmer("y ~ scale(xx) + (1 | g)", small()),
        MissingColumnError,
        r"'xx' is not in the data; did you mean 'x'",
    )
