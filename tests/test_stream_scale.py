"""center() and scale() in streamed lmer formulas (multilevel.design.stream_state): pass 1
gathers each argument's mean and sum of squared deviations over all the complete rows, pass 2
transforms every batch with them, so the streamed fit is the in-memory one (the same column
names, the transformed columns' state to 1e-13, the objective to 1e-12 whatever the batch
size) and lme4's (tests/reference/hostile/, written by tests/reference/cases_hostile.R, within
the hostile catalogue's tolerances). Dotted R names stream too. Stateful transforms that cannot
stream (poly(), bs(), cvar(), ...) are refused by name.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import check_lme4, reference

pa = pytest.importorskip("pyarrow")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")

REL = 1e-12


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


def _state(spec):
    return {k: v for k, v in spec.transform_state.items()}


def _same(fit, ref):
    assert abs(fit.objective / ref.objective - 1) < REL
    assert list(fit.fixef.index) == list(ref.fixef.index)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-7, atol=1e-8)
    # the state of every center()/scale() call: all the complete rows', as in memory
    got, want = _state(fit.design.fixed_spec.model_spec), _state(ref.design.fixed_spec.model_spec)
    assert got.keys() == want.keys()
    for key, w in want.items():
        for item in ("center", "scale"):
            if w[item] is None:
                assert got[key][item] is None
            else:
                assert got[key][item] == pytest.approx(float(w[item]), rel=1e-13), (key, item)


FORMULAS = [
    "Reaction ~ scale(Days) + (1 | Subject)",
    "Reaction ~ scale(Days) + (scale(Days) | Subject)",
    "Reaction ~ center(Days) + (1 | Subject)",
    "Reaction ~ scale(np.log(Days + 1), ddof=0) + center(Days):x + (1 | Subject)",
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("batch_rows", [1, 7, 50, 1000])
def test_scale_and_center_stream_as_in_memory(sleep, formula, batch_rows):
    # two rows with Days missing: the means are those of the 178 complete rows
    data = sleep.assign(x=np.cos(np.arange(180.0)))
    data.loc[[3, 40], "Days"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.lmer(formula, data)
        fit = ml.lmer(formula, pa.Table.from_pandas(data), batch_rows=batch_rows)
    assert fit.nobs == ref.nobs == 178
    _same(fit, ref)
    new = data.iloc[[0, 9, 50, 171]].fillna({"Days": 3.0})
    np.testing.assert_allclose(fit.predict(new), ref.predict(new), rtol=1e-9)


@pytest.mark.parametrize(
    ("case", "formula"),
    [
        ("scale_days", "Reaction ~ scale(Days) + (1 | Subject)"),
        ("scale_days_slope", "Reaction ~ scale(Days) + (scale(Days) | Subject)"),
        ("center_days", "Reaction ~ center(Days) + (1 | Subject)"),
    ],
)
def test_scale_and_center_against_lme4(sleep, case, formula):
    fit = ml.lmer(formula, pa.Table.from_pandas(sleep), batch_rows=40)
    check_lme4(fit, reference(case), list(ml.lmer(formula, sleep).fixef.index))


def test_dotted_names_stream(sleep):
    dotted = pd.DataFrame({"my.y": sleep.Reaction, "my.x": sleep.Days, "my.g": sleep.Subject})
    formula = "my.y ~ my.x + (my.x | my.g)"
    fit = ml.lmer(formula, pa.Table.from_pandas(dotted), batch_rows=33)
    ref = ml.lmer(formula, dotted)
    assert abs(fit.objective / ref.objective - 1) < REL
    assert list(fit.ranef) == ["my.g"]
    check_lme4(fit, reference("dotted_names"), ["(Intercept)", "my.x"])
    # and inside scale()
    fit = ml.lmer("my.y ~ scale(my.x) + (1 | my.g)", pa.Table.from_pandas(dotted), batch_rows=7)
    _same(fit, ml.lmer("my.y ~ scale(my.x) + (1 | my.g)", dotted))


def test_dask_partitions_merge_the_moments(sleep):
    dd = pytest.importorskip("dask.dataframe")
    data = sleep.assign(Subject=sleep.Subject.astype(str)).sort_values("Days", kind="stable")
    formula = "Reaction ~ scale(Days) + (1 | Subject)"
    ref = ml.lmer(formula, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer(formula, dd.from_pandas(data.reset_index(drop=True), npartitions=3))
    _same(fit, ref)


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        ("Reaction ~ poly(Days, 2) + (1 | Subject)", r"poly\(\) learns from the whole data"),
        ("Reaction ~ bs(Days, 3) + (1 | Subject)", r"bs\(\) learns from the whole data"),
        ("Reaction ~ cvar(Days, Subject) + (1 | Subject)", r"cvar\(\) learns"),
        ("scale(Reaction) ~ Days + (1 | Subject)", "of the response cannot be used"),
    ],
)
def test_transforms_that_cannot_stream_are_refused(sleep, formula, words):
    with pytest.raises(NotImplementedError, match=words):
        ml.lmer(formula, pa.Table.from_pandas(sleep))
