"""The large-data path of an in-memory lmer (multilevel.design.fast): the same design and the
same fit as the general path, with X and Z made only on first use.

The path starts at ``fast.LAZY_ROWS`` rows; the tests lower that threshold to run it on
small data, and compare with the general path (threshold out of reach) on the same rows."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.design import fast
from multilevel.design.random import build


@pytest.fixture
def lazy(monkeypatch):
    monkeypatch.setattr(fast, "LAZY_ROWS", 10)
    monkeypatch.setattr(fast, "BLOCK_ROWS", 37)  # several blocks, the last one short


def general(monkeypatch):
    monkeypatch.setattr(fast, "LAZY_ROWS", 10**15)


def _panel(n=600, groups=40, seed=3):
    rng = np.random.default_rng(seed)
    g = rng.integers(5, 5 + groups, size=n) * 3  # integers with gaps
    x1 = rng.normal(size=n)
    u = rng.normal(size=(groups * 3 + 20, 2))
    y = 1 + 0.5 * x1 + u[g // 3, 0] + u[g // 3, 1] * x1 + rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": y,
            "x1": x1,
            "x2": rng.normal(size=n),
            "f": pd.Categorical(rng.choice(["lo", "mid", "hi"], size=n)),
            "g": g,
            "s": np.array([f"s{v % 7}" for v in g], dtype=object),
        }
    )


CASES = [
    ("y ~ x1 + x2 + (1 + x1 | g)", False),
    ("y ~ x1 + f + (1 | g) + (1 | s)", True),
    ("y ~ 0 + x1 + (x1 || g)", True),
    ("y ~ x1 + (1 | g:s)", False),
    ("y ~ x1 * x2 + (1 + x1 | g)", False),  # products of numeric columns, formulaic's order
    ("y ~ x2 + x1:x2:x1 + (0 + x1:x2 | g)", True),
]


@pytest.mark.parametrize(("formula", "reml"), CASES)
def test_lazy_fit_equals_general(formula, reml, monkeypatch):
    df = _panel()
    general(monkeypatch)
    ref = ml.lmer(formula, df, reml=reml)
    assert type(ref.design).__name__ == "Design"
    monkeypatch.setattr(fast, "LAZY_ROWS", 10)
    monkeypatch.setattr(fast, "BLOCK_ROWS", 37)
    fit = ml.lmer(formula, df, reml=reml)
    assert type(fit.design).__name__ == "LazyDesign"
    # the sums over blocks differ from the one-pass sums only by rounding
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-6, atol=1e-8)
    assert fit.design.fixed_names == ref.design.fixed_names
    assert fit.design.fixed_spec.names == ref.design.fixed_spec.names
    assert fit.design.fixed_spec.columns == ref.design.fixed_spec.columns
    assert fit.design.fixed_spec.factor_levels == ref.design.fixed_spec.factor_levels
    for a, b in zip(fit.design.terms, ref.design.terms):
        assert a.group == b.group and a.names == b.names and a.q == b.q
        assert a.levels.equals(b.levels) and a.levels.dtype == b.levels.dtype
        np.testing.assert_array_equal(a.codes, b.codes)
        assert a.codes.dtype == b.codes.dtype
        np.testing.assert_array_equal(a.Z, b.Z)  # made on first use
    np.testing.assert_array_equal(fit.design.X, ref.design.X)
    np.testing.assert_array_equal(fit.design.y, ref.design.y)
    np.testing.assert_array_equal(fit.design.rows, ref.design.rows)
    # the general path centres the columns inside the pass (model/transform.rs), the lazy path's
    # Accumulator does not: fitted values agree to rounding, absolutely near zero
    np.testing.assert_allclose(fit.fitted, ref.fitted, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(fit.resid, ref.resid, rtol=1e-6, atol=1e-9)
    for k in ref.ranef:
        np.testing.assert_allclose(fit.ranef[k], ref.ranef[k], rtol=1e-6, atol=1e-8)


def test_lazy_missing_values_dropped_as_general(lazy):
    df = _panel()
    df.loc[[3, 50, 51], "x2"] = np.nan
    with pytest.warns(ml.MissingValuesWarning, match="dropped 3 rows with missing values"):
        fit = ml.lmer("y ~ x1 + x2 + (1 | g)", df)
    assert type(fit.design).__name__ == "LazyDesign"
    assert fit.design.n_dropped == 3 and fit.nobs == 597
    assert 3 not in set(fit.design.rows.tolist()) and len(fit.design.rows) == 597
    ref = ml.lmer("y ~ x1 + x2 + (1 | g)", df.drop(index=[3, 50, 51]).reset_index(drop=True))
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)


def test_lazy_not_taken_for_transforms_weights_or_rank_deficiency(lazy):
    df = _panel()
    df["x3"] = 2 * df["x1"]
    for kwargs, formula in [
        ({}, "y ~ np.log(x1 + 10) + (1 | g)"),
        ({"weights": np.ones(len(df))}, "y ~ x1 + (1 | g)"),
        ({}, "y ~ x1 * f + (1 | g)"),
    ]:
        assert type(ml.lmer(formula, df, **kwargs).design).__name__ == "Design"
    with pytest.warns(ml.RankDeficiencyWarning, match="x3"):
        fit = ml.lmer("y ~ x1 + x3 + (1 | g)", df)
    assert type(fit.design).__name__ == "Design"


def test_lazy_inf_is_an_error(lazy):
    df = _panel()
    df.loc[7, "x1"] = np.inf
    with pytest.raises(ml.DataError, match="'x1' has non-finite values"):
        ml.lmer("y ~ x1 + (1 | g)", df)


def test_lazy_fit_makes_no_arrays_of_all_rows(lazy):
    """The fit, pre-fit checks included, reads the rows a block at a time: y, X, each Z and an
    integer grouping column's codes are made only when asked for afterwards."""
    fit = ml.lmer("y ~ x1 + x2 + (1 + x1 | g) + (1 | s)", _panel())
    d = fit.design
    assert type(d).__name__ == "LazyDesign"
    assert not d._lazy  # no y, X or rows
    assert all(t._z is None for t in d.terms)
    assert [t._codes is None for t in d.terms] == [t.group == "g" for t in d.terms]


def test_lazy_block_sums_equal_the_arrays(lazy):
    df = _panel()
    df.loc[[4, 9], "x2"] = np.nan  # dropped rows are not in the sums
    with pytest.warns(ml.MissingValuesWarning):
        fit = ml.lmer("y ~ x1 * x2 + (1 + x1 | g) + (0 + x2 | s)", df)
    d = fit.design
    assert d.y_range == (d.y[0], d.y.min(), d.y.max())
    for t in d.terms:  # (1 + x1 | g) from X's block, (0 + x2 | s) from its own
        np.testing.assert_array_equal(t.sizes, np.max(np.abs(t.Z), axis=0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.assign(y=2.0), r"the response 'y' is constant \(2 in all 600 rows used\)"),
        (
            lambda df: df.assign(x1=df["x1"] * 1e13),
            r"column 'x1' of the random-effects term \(1 \+ x1 \| g\) has values of size",
        ),
    ],
)
def test_lazy_checks_before_the_fit_as_general(change, message, monkeypatch):
    df = change(_panel())
    made, lazy_design = [], fast.lazy_design
    monkeypatch.setattr(fast, "lazy_design", lambda *a: made.append(lazy_design(*a)) or made[-1])
    for rows in (10**15, 10):  # the general path, then the lazy one
        monkeypatch.setattr(fast, "LAZY_ROWS", rows)
        with pytest.raises(ml.DataError, match=message):
            ml.lmer("y ~ x1 + (1 + x1 | g)", df)
    assert [type(d).__name__ for d in made] == ["NoneType", "LazyDesign"]


def test_lazy_design_pickles_as_plain(lazy):
    df = _panel()
    fit = ml.lmer("y ~ x1 + (1 + x1 | g)", df)
    d = pickle.loads(pickle.dumps(fit.design))
    assert type(d).__name__ == "Design" and type(d.terms[0]).__name__ == "ReTerm"
    np.testing.assert_array_equal(d.X, fit.design.X)
    np.testing.assert_array_equal(d.terms[0].Z, fit.design.terms[0].Z)
    again = pickle.loads(pickle.dumps(fit))
    assert again.objective == fit.objective
    assert again.problem.objective(fit.theta, True) == pytest.approx(fit.objective, rel=1e-12)


def test_int_codes_as_factor():
    from multilevel.factors import interaction

    for vals in (np.array([9, 3, 3, 12, 9]), np.array([-4, 7, -4, 0], dtype=np.int32)):
        codes, levels = fast.int_codes(vals)
        ref = interaction([vals])
        np.testing.assert_array_equal(codes, ref.codes)
        assert codes.dtype == np.int32
        assert levels.equals(ref.levels) and levels.dtype == ref.levels.dtype
    assert fast.int_codes(np.array([0, 10**12])) is None  # sparse values: hashing instead
    assert fast.int_codes(np.array([0.5, 1.0])) is None


def test_build_lazy_flag_only(monkeypatch):
    monkeypatch.setattr(fast, "LAZY_ROWS", 10)
    df = _panel()
    assert type(build("y ~ x1 + (1 | g)", df)).__name__ == "Design"
    assert type(build("y ~ x1 + (1 | g)", df, lazy=True)).__name__ == "LazyDesign"


@pytest.mark.parametrize("formula", ["y ~ x1 * x2 + (1 + x1 | g)", "y ~ x1 + f + (1 | s)"])
def test_lazy_predict_newdata(formula, monkeypatch):
    df = _panel()
    general(monkeypatch)
    ref = ml.lmer(formula, df)
    monkeypatch.setattr(fast, "LAZY_ROWS", 10)
    fit = ml.lmer(formula, df)
    assert type(fit.design).__name__ == "LazyDesign"
    new = df.iloc[[5, 1, 400]].reset_index(drop=True)
    np.testing.assert_allclose(fit.predict(new), ref.predict(new), rtol=1e-8)
    np.testing.assert_allclose(
        fit.predict(new, re_form="NA"), ref.predict(new, re_form="NA"), rtol=1e-8
    )


def test_plain_lmer_imports_neither_formulaic_nor_scipy():
    """A fit of a plain formula (sums of columns, ``(1 + x | g)``) imports neither formulaic nor
    scipy (with what they import, about 60 MB of the process): the formula is read without
    formulaic, and scipy is imported by the inference that needs it. The large path's peak
    memory counts every module the process holds."""
    code = (
        "import sys, numpy as np, pandas as pd, multilevel as ml\n"
        "from multilevel.design import fast\n"
        "rng = np.random.default_rng(0)\n"
        "df = pd.DataFrame({'y': rng.normal(size=200), 'x': rng.normal(size=200),"
        " 'g': np.arange(200) % 20})\n"
        "kinds = [type(ml.lmer('y ~ x + (1 + x | g)', df).design).__name__]\n"
        "fast.LAZY_ROWS = 10\n"
        "kinds.append(type(ml.lmer('y ~ 1 + x + (1 | g)', df).design).__name__)\n"
        "print(kinds, sorted(m for m in ('formulaic', 'scipy') if m in sys.modules))"
    )
    python = str(Path(ml.__file__).parents[1])
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": python, "PATH": ""},
    )
    assert out.stdout.strip() == "['Design', 'LazyDesign'] []"
