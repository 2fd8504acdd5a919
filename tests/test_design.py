"""Data to arrays: X, y, Z, codes, levels, term order, NA policy, new data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

from multilevel.design import build, build_fixed, lme4_term_order, new_matrices
from multilevel.exceptions import (
    DataError,
    FormulaError,
    MissingValuesWarning,
    RankDeficiencyWarning,
)


@pytest.fixture
def df():
    rng = np.random.default_rng(42)
    n = 80
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.uniform(1, 2, size=n),
            "g": rng.choice(["b", "a", "d", "c"], size=n),
            "h": rng.integers(1, 13, size=n),
            "f": rng.choice(["u", "v", "w"], size=n),
        }
    )


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- fixed part


def test_build_fixed_basic(df):
    fd = build_fixed("y ~ x + np.log(z) + C(f)", df)
    assert fd.names == ["(Intercept)", "x", "np.log(z)", "C(f)v", "C(f)w"]  # lme4 names
    assert fd.X.dtype == np.float64 and fd.X.flags.f_contiguous
    assert fd.X.shape == (80, 5) and fd.nobs == 80 and fd.n_dropped == 0
    np.testing.assert_array_equal(fd.y, df["y"].to_numpy())
    np.testing.assert_allclose(fd.X[:, 2], np.log(df["z"]))
    np.testing.assert_array_equal(fd.rows, np.arange(80))
    assert fd.dropped_columns == [] and fd.weights is None


def test_build_fixed_no_intercept_and_powers(df):
    assert build_fixed("y ~ 0 + x", df).names == ["x"]
    assert build_fixed("y ~ x - 1", df).names == ["x"]
    fd = build_fixed("y ~ x + I(x**2)", df)
    np.testing.assert_allclose(fd.X[:, 2], df["x"] ** 2)


def test_build_fixed_interactions(df):
    fd = build_fixed("y ~ x*f", df)
    assert fd.names == ["(Intercept)", "x", "fv", "fw", "x:fv", "x:fw"]  # as lme4 names them


def test_build_fixed_refuses_bars(df):
    with pytest.raises(FormulaError, match="without random-effects"):
        build_fixed("y ~ x + (1 | g)", df)


def test_build_fixed_weights_and_extra(df):
    df = df.assign(w=np.linspace(1, 2, 80), cl=df["g"])
    df.loc[5, "cl"] = None
    fd = quiet(build_fixed, "y ~ x", df, weights="w", extra=["cl"])
    assert fd.nobs == 79 and fd.n_dropped == 1
    np.testing.assert_array_equal(fd.weights, np.delete(df["w"].to_numpy(), 5))
    np.testing.assert_array_equal(fd.extra["cl"], np.delete(df["cl"].to_numpy(), 5))
    fd2 = build_fixed("y ~ x", df, weights=df["w"].to_numpy())
    np.testing.assert_array_equal(fd2.weights, df["w"].to_numpy())


def test_rank_deficient_column_dropped(df):
    df = df.assign(x2=2 * df["x"] + 1)
    with pytest.warns(RankDeficiencyWarning, match=r"dropping 1 column / coefficient: x2"):
        fd = build_fixed("y ~ x + x2 + z", df)
    assert fd.names == ["(Intercept)", "x", "z"]
    assert fd.dropped_columns == ["x2"]
    assert fd.X.shape == (80, 3) and fd.X.flags.f_contiguous


def test_rank_deficient_keeps_earlier_columns(df):
    # x is a combination of later columns: the later one goes, as R's qr(tol = 1e-7)
    df = df.assign(a=df["x"] - df["z"])
    with pytest.warns(RankDeficiencyWarning, match="a$"):
        fd = build_fixed("y ~ x + z + a", df)
    assert fd.dropped_columns == ["a"]


@pytest.mark.parametrize(("eps", "kept"), [(1e-2, True), (1e-5, True), (1e-9, False)])
def test_nearly_collinear_column_follows_the_qr_rule(df, eps, kept):
    # the Gram-matrix screen lets clearly full-rank X through; closer cases take R's rule
    rng = np.random.default_rng(7)
    df = df.assign(x2=df["x"] + eps * rng.normal(size=len(df)))
    with warnings.catch_warnings():
        warnings.simplefilter("error" if kept else "ignore", RankDeficiencyWarning)
        fd = build_fixed("y ~ x + x2", df)
    assert fd.names == (["(Intercept)", "x", "x2"] if kept else ["(Intercept)", "x"])


def test_rank_deficient_in_build(df):
    df = df.assign(x2=-df["x"])
    with pytest.warns(RankDeficiencyWarning, match="x2"):
        d = build("y ~ x + x2 + (1 | g)", df)
    assert d.fixed_names == ["(Intercept)", "x"] and d.dropped_columns == ["x2"]


def test_boolean_response_is_zero_one(df):
    df = df.assign(b=df["y"] > 0)
    fd = build_fixed("b ~ x", df)
    np.testing.assert_array_equal(fd.y, (df["y"] > 0).astype(float).to_numpy())


def test_response_expression(df):
    fd = build_fixed("np.log(z) ~ x", df)
    np.testing.assert_allclose(fd.y, np.log(df["z"]))


# ---------------------------------------------------------------- random terms


def test_build_random_terms(df):
    d = build("y ~ x + (1 + x | g)", df, data_name="df")
    (t,) = d.terms
    assert t.group == "g" and t.names == ["(Intercept)", "x"]
    assert list(t.levels) == ["a", "b", "c", "d"]
    assert t.codes.dtype == np.int32
    np.testing.assert_array_equal(t.levels[t.codes], df["g"].to_numpy())
    assert t.Z.dtype == np.float64 and t.Z.flags.f_contiguous and t.Z.shape == (80, 2)
    np.testing.assert_array_equal(t.Z[:, 1], df["x"].to_numpy())
    assert d.data_name == "df" and d.nobs == 80 and d.weights is None and d.offset is None


def test_numeric_group_levels_sorted_numerically(df):
    df = df.assign(h=df["h"] * 10)  # 10, 20, ..., 120: string sort would put 100 first
    d = build("y ~ (1 | h)", df)
    assert list(d.terms[0].levels) == sorted(df["h"].unique())


def test_string_levels_sorted_c_locale():
    d = build(
        "y ~ (1 | g)",
        {"y": np.arange(8.0), "g": ["b", "B", "a", "A", "_", "1", "b", "a"]},
    )
    assert list(d.terms[0].levels) == ["1", "A", "B", "_", "a", "b"]


def test_categorical_order_respected_and_unused_dropped(df):
    cat = pd.Categorical(df["g"], categories=["d", "zz", "b", "a", "c"])
    d = build("y ~ (1 | g)", df.assign(g=cat))
    assert list(d.terms[0].levels) == ["d", "b", "a", "c"]
    np.testing.assert_array_equal(d.terms[0].levels[d.terms[0].codes], df["g"].to_numpy())


def test_interaction_levels_as_r():
    # R: levels((a:b)[, drop = TRUE]) == c("x:1", "x:2", "y:1", "y:2", "z:1")
    data = {
        "y": np.arange(10.0),
        "a": ["x", "y", "x", "y", "z"] * 2,
        "b": [2, 1, 1, 2, 1] * 2,
    }
    d = build("y ~ (1 | a:b)", data)
    t = d.terms[0]
    assert t.group == "a:b"
    assert list(t.levels) == ["x:1", "x:2", "y:1", "y:2", "z:1"]
    assert [t.levels[c] for c in t.codes[:5]] == ["x:2", "y:1", "x:1", "y:2", "z:1"]


def test_nested_levels_as_lme4():
    # lme4 on Pastes: (1 | batch/cask) -> "cask:batch" with rows "a:A", "a:B", ...
    batch = np.repeat(list("ABCD"), 6)
    cask = np.tile(np.repeat(list("abc"), 2), 4)
    data = {"y": np.arange(24.0), "batch": batch, "cask": cask}
    d = build("y ~ 1 + (1 | batch/cask)", data)
    assert [t.group for t in d.terms] == ["cask:batch", "batch"]
    assert list(d.terms[0].levels[:5]) == ["a:A", "a:B", "a:C", "a:D", "b:A"]
    assert list(d.terms[1].levels) == ["A", "B", "C", "D"]


def test_double_bar_terms_are_diagonal(df):
    d = build("y ~ x + (1 + x || g)", df)
    assert [(t.names, t.diagonal) for t in d.terms] == [(["(Intercept)"], True), (["x"], True)]


def test_zero_plus_factor_gives_all_levels(df):
    d = build("y ~ (0 + f | g)", df)
    assert d.terms[0].Z.shape[1] == 3
    np.testing.assert_array_equal(d.terms[0].Z.sum(axis=1), np.ones(80))


# ---------------------------------------------------------------- term order


def test_term_order_rule():
    assert lme4_term_order([10, 30]) == [1, 0]
    assert lme4_term_order([30, 10]) == [0, 1]
    # no increase: formula order kept, ties too
    assert lme4_term_order([5, 5, 3]) == [0, 1, 2]
    # an increase: rev(order(nl)); R's order is stable, rev reverses the tie
    assert lme4_term_order([5, 5, 7]) == [2, 1, 0]
    assert lme4_term_order([3, 9, 3]) == [1, 2, 0]


def test_term_order_in_build():
    rng = np.random.default_rng(0)
    n = 200
    data = {"y": rng.normal(size=n), "a": np.arange(n) % 10, "b": np.arange(n) % 30}
    d = build("y ~ (1 | a) + (1 | b)", data)
    assert [t.group for t in d.terms] == ["b", "a"] and d.term_order == [1, 0]
    d = build("y ~ (1 | b) + (1 | a)", data)
    assert [t.group for t in d.terms] == ["b", "a"] and d.term_order == [0, 1]


def test_term_order_ties_reversed_only_when_reordering():
    n = 200
    data = {
        "y": np.random.default_rng(0).normal(size=n),
        "a": np.arange(n) % 10,
        "b": (np.arange(n) // 7) % 10,
        "c": np.arange(n) % 30,
    }
    assert [t.group for t in build("y ~ (1|a) + (1|b)", data).terms] == ["a", "b"]
    assert [t.group for t in build("y ~ (1|a) + (1|b) + (1|c)", data).terms] == ["c", "b", "a"]


# ---------------------------------------------------------------- data sources


def test_pandas_polars_dict_identical(df):
    formula = "y ~ x + C(f) + np.log(z) + (1 + x | g) + (1 | h) + (1 | g:f)"
    designs = [
        build(formula, df),
        build(formula, pl.from_pandas(df)),
        build(formula, {k: df[k].to_numpy() for k in df.columns}),
        build(formula, {k: df[k].tolist() for k in df.columns}),
        build(formula, pl.from_pandas(df).with_columns(pl.col("g").cast(pl.Categorical))),
    ]
    ref = designs[0]
    for d in designs[1:]:
        np.testing.assert_array_equal(d.y, ref.y)
        np.testing.assert_array_equal(d.X, ref.X)
        assert d.fixed_names == ref.fixed_names
        for a, b in zip(d.terms, ref.terms):
            assert a.group == b.group and a.names == b.names
            np.testing.assert_array_equal(a.codes, b.codes)
            np.testing.assert_array_equal(a.Z, b.Z)
            assert list(map(str, a.levels)) == list(map(str, b.levels))


def test_frames_reused_reordered_renamed_give_the_same_design(df):
    # column positions are remembered per columns Index: a frame whose columns changed
    # (reordered, renamed, reassigned in place, a duplicate name elsewhere) is read afresh
    ref = build("y ~ x + (1 + x | g)", df)
    swapped = df.copy()
    build("y ~ x + (1 + x | g)", swapped)
    swapped.columns = ["x", "y", "z", "g", "h", "f"]  # in place: the names x and y swapped
    cases = [
        ("y ~ x + (1 + x | g)", df),
        ("y ~ x + (1 + x | g)", df[["g", "z", "x", "y"]]),
        ("y ~ w + (1 + w | g)", df.rename(columns={"x": "w", "y": "x"}).assign(y=df["y"])),
        ("x ~ y + (1 + y | g)", swapped),
        ("y ~ x + (1 + x | g)", pd.concat([df, df[["z"]].rename(columns={"z": "h"})], axis=1)),
    ]
    for formula, data in cases:
        d = build(formula, data)
        np.testing.assert_array_equal(d.y, ref.y)
        np.testing.assert_array_equal(d.X, ref.X)
        np.testing.assert_array_equal(d.terms[0].Z, ref.terms[0].Z)
        np.testing.assert_array_equal(d.terms[0].codes, ref.terms[0].codes)


def test_design_does_not_alias_the_input(df):
    d = build("y ~ x + (1 | g)", df)
    y0 = df["y"].to_numpy().copy()
    d.y[:] = 0.0  # the design's own copy
    np.testing.assert_array_equal(df["y"].to_numpy(), y0)


def test_missing_values_dropped_and_counted(df):
    df = df.astype({"h": "Int64"})
    df.loc[2, "x"] = np.nan
    df.loc[5, "g"] = None
    df.loc[7, "h"] = pd.NA
    df.loc[9, "f"] = np.nan  # f is not used: row 9 stays
    with pytest.warns(MissingValuesWarning, match=r"3 rows.*'x'.*'g'.*'h'"):
        d = build("y ~ x + (1 | g) + (1 | h)", df)
    assert d.n_dropped == 3 and d.nobs == 77
    np.testing.assert_array_equal(d.rows, np.delete(np.arange(80), [2, 5, 7]))
    np.testing.assert_array_equal(d.y, df["y"].to_numpy()[d.rows])


def test_missing_polars_null_same_as_pandas(df):
    df = df.copy()
    df.loc[[1, 4], "x"] = np.nan
    pdf = pl.from_pandas(df).with_columns(pl.col("x").fill_nan(None))
    assert pdf["x"].null_count() == 2
    a = quiet(build, "y ~ x + (1 | g)", df)
    b = quiet(build, "y ~ x + (1 | g)", pdf)
    assert a.n_dropped == b.n_dropped == 2
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.rows, b.rows)


def test_missing_in_weights_and_offset(df):
    w = np.ones(80)
    w[3] = np.nan
    df = df.assign(off=np.zeros(80))
    df.loc[6, "off"] = np.nan
    with pytest.warns(MissingValuesWarning, match="2 rows"):
        d = build("y ~ x + (1 | g)", df, weights=w, offset="off")
    assert d.n_dropped == 2 and d.weights.shape == (78,) and d.offset.shape == (78,)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_transformation_nan_rows_dropped(df):
    df = df.assign(z=df["z"] - 1.5)  # log of negatives
    with pytest.warns(MissingValuesWarning, match="transformation"):
        d = build("y ~ np.log(z) + (1 | g)", df)
    assert d.n_dropped == int((df["z"] < 0).sum())
    assert np.isfinite(d.X).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_transformation_nan_in_z_drops_weights_and_offset_rows_too(df):
    # NaN made by a transformation in a random term's Z: the row leaves y, X, Z, the weights
    # and the offset alike, exactly as if it had not been in the data.
    rng = np.random.default_rng(3)
    df = df.assign(z=df["z"] - 1.5, w=rng.uniform(1, 2, len(df)), off=rng.normal(size=len(df)))
    with pytest.warns(MissingValuesWarning, match="transformation"):
        d = build("y ~ x + (1 + np.log(z) | g)", df, weights="w", offset="off")
    keep = np.flatnonzero(df["z"] > 0)
    clean = build("y ~ x + (1 + np.log(z) | g)", df.iloc[keep], weights="w", offset="off")
    assert d.n_dropped == len(df) - len(keep)
    np.testing.assert_array_equal(d.rows, keep)
    for got, want in [
        (d.y, clean.y),
        (d.X, clean.X),
        (d.weights, clean.weights),
        (d.offset, clean.offset),
        (d.terms[0].Z, clean.terms[0].Z),
    ]:
        np.testing.assert_array_equal(got, want)
    assert d.X.flags.f_contiguous and d.terms[0].Z.flags.f_contiguous


# ---------------------------------------------------------------- new data


def test_new_matrices_same_data_reproduces(df):
    d = build("y ~ x + C(f) + (1 + x | g) + (1 | h)", df)
    nm = new_matrices(d, df)
    np.testing.assert_array_equal(nm.X, d.X)
    for (codes, Z), t in zip(nm.terms, d.terms):
        np.testing.assert_array_equal(codes, t.codes)
        np.testing.assert_array_equal(Z, t.Z)
    np.testing.assert_array_equal(nm.rows, np.arange(80))


def test_new_matrices_uses_training_levels(df):
    d = build("y ~ C(f) + (1 | g)", df)
    new = pd.DataFrame({"f": ["w", "u"], "g": ["c", "a"]})  # no response needed
    nm = new_matrices(d, new)
    np.testing.assert_array_equal(nm.X, [[1, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(nm.terms[0][0], [2, 0])


def test_new_matrices_new_levels(df):
    d = build("y ~ x + (1 | g)", df)
    new = {"x": [0.0, 1.0, 2.0], "g": ["a", "q", "r"]}
    with pytest.raises(DataError, match=r"'g'.*q, r"):
        new_matrices(d, new)
    nm = new_matrices(d, new, allow_new_levels=True)
    np.testing.assert_array_equal(nm.terms[0][0], [0, -1, -1])


def test_new_matrices_interaction_codes():
    data = {"y": np.arange(10.0), "a": ["x", "y", "x", "y", "z"] * 2, "b": [2, 1, 1, 2, 1] * 2}
    d = build("y ~ (1 | a:b)", data)
    nm = new_matrices(d, {"a": ["z", "x", "z"], "b": [1, 2, 2]}, allow_new_levels=True)
    np.testing.assert_array_equal(nm.terms[0][0], [4, 1, -1])


@pytest.mark.parametrize("re_form", ["~0", "0", np.nan, pd.NA])
def test_re_form_none(df, re_form):
    d = build("y ~ x + (1 | g) + (1 | h)", df)
    assert new_matrices(d, df, re_form=re_form).terms == [None, None]


def test_re_form_subset(df):
    d = build("y ~ x + (1 | g) + (1 + x | h)", df)
    groups = [t.group for t in d.terms]
    nm = new_matrices(d, df.drop(columns=["h"]), re_form="~ (1 | g)")
    assert [x is not None for x in nm.terms] == [g == "g" for g in groups]
    with pytest.raises(FormulaError, match="not a random-effects term"):
        new_matrices(d, df, re_form="~(1 | f)")


def test_new_matrices_drops_missing_rows(df):
    d = build("y ~ x + (1 | g)", df)
    new = pd.DataFrame({"x": [1.0, np.nan, 3.0], "g": ["a", "b", "c"]})
    with pytest.warns(MissingValuesWarning):
        nm = new_matrices(d, new)
    np.testing.assert_array_equal(nm.rows, [0, 2])
    assert nm.X.shape == (2, 2)


@pytest.mark.parametrize("n_keys", [7, 300, 10**7])
def test_unique_keys_is_numpys_unique(n_keys):
    # By counting when the key range is small, by sorting when it is large: the same levels
    # (sorted) and the same inverse as np.unique, whichever way.
    from multilevel.factors import unique_keys

    rng = np.random.default_rng(n_keys)
    key = rng.integers(0, n_keys, size=500)
    key[key % 3 == 0] = key.min()  # repeated keys and gaps in the range
    want_uniq, want_codes = np.unique(key, return_inverse=True)
    uniq, codes = unique_keys(key, n_keys)
    np.testing.assert_array_equal(uniq, want_uniq)
    np.testing.assert_array_equal(codes, want_codes)


def test_codes_seen_flags_categories_and_missing():
    from multilevel.factors import codes_seen

    codes = np.array([2, 0, 2, -1], dtype=np.int8)
    assert codes_seen(codes, 4).tolist() == [True, False, True, False, True]
    assert codes_seen(codes[:3], 4).tolist() == [True, False, True, False, False]


def _formulaic_matrix(expr, frame):
    import formulaic

    mm = formulaic.model_matrix(expr, frame, na_action="ignore", output="pandas")
    return np.asarray(mm, dtype=float), [str(c) for c in mm.columns], mm.model_spec


@pytest.mark.parametrize(
    "expr",
    ["1 + f", "1 + f + x", "1 + x + f + k", "k + x"],
)
def test_fast_path_with_categoricals_is_formulaics_matrix(expr):
    # Categoricals after an intercept skip formulaic: the same columns, names and values,
    # for the fit's data and for new data whose categories come in another order.
    from multilevel.design.numeric import numeric_spec

    rng = np.random.default_rng(5)
    n = 60
    frame = pd.DataFrame(
        {
            "f": pd.Categorical(rng.choice(["b", "a", "c"], n), categories=["c", "a", "b"]),
            "k": pd.Categorical(rng.choice([3, 1], n)),
            "x": rng.normal(size=n),
        }
    )
    spec = numeric_spec(expr, frame)
    assert spec is not None
    got = spec.get_model_matrix(frame)
    want, names, fspec = _formulaic_matrix(expr, frame)
    assert got.columns == names
    np.testing.assert_array_equal(np.asarray(got), want)
    new = pd.DataFrame(
        {
            "f": pd.Categorical(["a", "b", "c"], categories=["b", "a", "c"]),
            "k": pd.Categorical([1, 3, 1]),
            "x": [0.5, 1.5, -1.0],
        }
    )
    want_new = np.asarray(fspec.get_model_matrix(new), dtype=float)
    np.testing.assert_array_equal(np.asarray(spec.get_model_matrix(new)), want_new)


def test_fast_path_leaves_other_factors_to_formulaic():
    from multilevel.design.numeric import numeric_spec

    frame = pd.DataFrame(
        {
            "f": pd.Categorical(["a", "b", "a"]),
            "s": ["u", "v", "u"],  # object strings: formulaic's levels
            "x": [1.0, 2.0, 3.0],
        }
    )
    assert numeric_spec("0 + f", frame) is None  # no intercept: full dummy coding
    assert numeric_spec("1 + s", frame) is None
    assert numeric_spec("1 + f:x", frame) is None
    assert numeric_spec("1 + f", frame) is not None
