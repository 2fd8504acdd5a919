"""Hostile inputs, column names: R-style dotted names, names of formula functions and modules,
integer labels, spaces, digits, keywords, unicode, duplicates and near misses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import caught, check_lme4, expect_error, reference, sleepstudy, small
from multilevel.exceptions import DataError, FormulaError, MissingColumnError


def renamed(**names):
    return small().rename(columns=names)


# fmt: off
SAME = [  # (formula, data): the fit of "y ~ x + (1 | g)" on small(), coefficient names as given
    pytest.param("my.y ~ my.x + (1 | my.g)", lambda: renamed(y="my.y", x="my.x", g="my.g"), ["(Intercept)", "my.x"], id="dotted"),
    pytest.param("y ~ x.1 + (1 | g.a.b)", lambda: renamed(x="x.1", g="g.a.b"), ["(Intercept)", "x.1"], id="dotted-with-digits"),
    pytest.param("y ~ I + (1 | g)", lambda: renamed(x="I"), ["(Intercept)", "I"], id="column-I"),
    pytest.param("y ~ C + (1 | g)", lambda: renamed(x="C"), ["(Intercept)", "C"], id="column-C"),
    pytest.param("y ~ np + (1 | g)", lambda: renamed(x="np"), ["(Intercept)", "np"], id="column-np"),
    pytest.param("y ~ log + (1 | g)", lambda: renamed(x="log"), ["(Intercept)", "log"], id="column-log"),
    pytest.param("y ~ scale + (1 | g)", lambda: renamed(x="scale"), ["(Intercept)", "scale"], id="column-scale"),
    pytest.param("y ~ offset + (1 | g)", lambda: renamed(x="offset"), ["(Intercept)", "offset"], id="column-offset"),
    pytest.param("y ~ poly + (1 | C)", lambda: renamed(x="poly", g="C"), ["(Intercept)", "poly"], id="group-named-C"),
    pytest.param("`0` ~ `1` + (1 | `2`)", lambda: small()[["y", "x", "g"]].set_axis([0, 1, 2], axis=1), ["(Intercept)", "1"], id="integer-labels"),
    pytest.param("y ~ `my x` + (1 | `my g`)", lambda: renamed(x="my x", g="my g"), ["(Intercept)", "my x"], id="spaces"),
    pytest.param("y ~ `1x` + (1 | g)", lambda: renamed(x="1x"), ["(Intercept)", "1x"], id="leading-digit"),
    pytest.param("y ~ `class` + (1 | g)", lambda: renamed(x="class"), ["(Intercept)", "class"], id="python-keyword"),
    pytest.param("y ~ größe + (1 | gruppe)", lambda: renamed(x="größe", g="gruppe"), ["(Intercept)", "größe"], id="unicode"),
    pytest.param("Y ~ x + (1 | g)", lambda: renamed(y="Y"), ["(Intercept)", "x"], id="case-differs"),
    pytest.param("y ~ x + (1 | g)", lambda: small().assign(**{"x.unused": 1, "dup": 1}).rename(columns={"dup": "x.unused"}), ["(Intercept)", "x"], id="unused-duplicate-name"),
    pytest.param("y ~ x + (1 | g)", lambda: small().set_axis(["y", "x", "z", "t", "f", "g"], axis=1).assign(**{"0": 1}), ["(Intercept)", "x"], id="extra-string-zero-column"),
]
# fmt: on


@pytest.mark.parametrize("formula, make, names", SAME)
def test_same_fit(formula, make, names):
    ref, _ = caught(lambda: ml.lmer("y ~ x + (1 | g)", small()))
    fit, _ = caught(lambda: ml.lmer(formula, make()))
    assert abs(fit.objective - ref.objective) <= 1e-10 * abs(ref.objective)
    assert list(fit.fixef.index) == names


# fmt: off
ERRORS = [
    pytest.param("y ~ X + (1 | g)", lambda: small(), MissingColumnError, r"column 'X' is not in the data; did you mean 'x'\?", id="near-miss"),
    pytest.param("y ~ my.x + (1 | g)", lambda: small(), MissingColumnError, r"column 'my.x' is not in the data", id="dotted-absent"),
    pytest.param("y ~ x + (1 | my.g)", lambda: small(), MissingColumnError, r"column 'my.g' is not in the data", id="dotted-group-absent"),
    pytest.param("y ~ np + np.log(t) + (1 | g)", lambda: renamed(x="np"), FormulaError, r"column 'np' has the name of a formula function or module that the formula also calls", id="np-column-and-np-call"),
    pytest.param("y ~ x + (1 | g)", lambda: small().set_axis(["y", "x", "x", "t", "f", "g"], axis=1), DataError, r"more than one column named 'x', which the model uses", id="duplicate-used-name"),
    pytest.param("y ~ x + (1 | g)", lambda: small()[["y", "x", "g"]].set_axis([0, 1, 2], axis=1), MissingColumnError, r"column 'y' is not in the data", id="integer-labels-by-name"),
    pytest.param("y ~ `x` + (1 | `gg`)", lambda: small(), MissingColumnError, r"column 'gg' is not in the data; did you mean 'g'\?", id="backticked-absent"),
]
# fmt: on


@pytest.mark.parametrize("formula, make, exc, match", ERRORS)
def test_error(formula, make, exc, match):
    expect_error(lambda: ml.lmer(formula, make()), exc, match)


# fmt: off
LME4 = [
    pytest.param("dotted_names", "my.y ~ my.x + (my.x | my.g)", lambda s: pd.DataFrame({"my.y": s.Reaction, "my.x": s.Days, "my.g": s.Subject}), ["(Intercept)", "my.x"], id="dotted-lme4"),
    pytest.param("columns_I_C_np", "Reaction ~ I + C + np + (1 | Subject)", lambda s: pd.DataFrame({"Reaction": s.Reaction, "I": s.Days, "C": s.Days**2 / 10, "np": (s.Days > 4).astype(float), "Subject": s.Subject}), ["(Intercept)", "I", "C", "np"], id="I-C-np-lme4"),
]
# fmt: on


@pytest.mark.parametrize("case, formula, make, names", LME4)
def test_lme4(case, formula, make, names):
    fit, _ = caught(lambda: ml.lmer(formula, make(sleepstudy())))
    check_lme4(fit, reference(case), names)


def test_dotted_names_predict_and_ols():
    d = renamed(y="my.y", x="my.x", g="my.g")
    fit, _ = caught(lambda: ml.lmer("my.y ~ my.x + (1 | my.g)", d))
    np.testing.assert_allclose(fit.predict(d.iloc[:3]), fit.fitted[:3], rtol=1e-12)
    o = ml.ols("my.y ~ np.log(t) + my.x", d)
    assert list(o.coef.index) == ["(Intercept)", "np.log(t)", "my.x"]
