"""Every input error names its culprit: column, rows, grouping factor, formula position."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

from multilevel.design import build, build_fixed, new_matrices
from multilevel.exceptions import DataError, FormulaError, MissingColumnError


@pytest.fixture
def df():
    rng = np.random.default_rng(3)
    n = 40
    return pd.DataFrame(
        {
            "Reaction": rng.normal(size=n),
            "Days": rng.integers(0, 10, n).astype(float),
            "Subject": np.repeat(np.arange(8), 5),
            "label": rng.choice(["p", "q"], n),
        }
    )


def test_missing_column_suggests_close_match(df):
    with pytest.raises(MissingColumnError) as exc:
        build("Reaction ~ Dayz + (1 | Subject)", df)
    assert exc.value.column == "Dayz"
    assert "'Days'" in str(exc.value)


def test_missing_grouping_column(df):
    with pytest.raises(MissingColumnError, match=r"'Subjects'.*'Subject'"):
        build("Reaction ~ Days + (1 | Subjects)", df)


def test_missing_response_column(df):
    with pytest.raises(MissingColumnError, match=r"'reaction'.*'Reaction'"):
        build_fixed("reaction ~ Days", df)


def test_missing_column_in_function(df):
    with pytest.raises(MissingColumnError, match="'dys'"):
        build("Reaction ~ np.log(dys) + (1 | Subject)", df)


def test_missing_weights_column(df):
    with pytest.raises(MissingColumnError, match="'wts'"):
        build("Reaction ~ Days + (1 | Subject)", df, weights="wts")


def test_missing_column_in_newdata(df):
    d = build("Reaction ~ Days + (1 | Subject)", df)
    with pytest.raises(MissingColumnError, match="'Subject'"):
        new_matrices(d, df.drop(columns="Subject"))


def test_response_not_numeric(df):
    with pytest.raises(DataError, match="response 'label' must be numeric"):
        build("label ~ Days + (1 | Subject)", df)


def test_infinite_value_names_column_and_rows(df):
    df.loc[[4, 17], "Days"] = np.inf
    with pytest.raises(DataError, match=r"'Days'.*inf.*rows 4, 17"):
        build("Reaction ~ Days + (1 | Subject)", df)


def test_infinite_response(df):
    df.loc[2, "Reaction"] = -np.inf
    with pytest.raises(DataError, match=r"'Reaction'.*rows 2"):
        build_fixed("Reaction ~ Days", df)


def test_all_rows_missing(df):
    df["Days"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no rows left"):
            build("Reaction ~ Days + (1 | Subject)", df)


def test_empty_data(df):
    with pytest.raises(DataError, match="no rows"):
        build_fixed("Reaction ~ Days", df.iloc[:0])


def test_one_level_grouping_factor(df):
    df["one"] = "only"
    with pytest.raises(DataError, match=r"'one'.*> 1 sampled level"):
        build("Reaction ~ Days + (1 | one)", df)


def test_one_level_after_dropping_missing(df):
    df["g2"] = np.where(np.arange(40) < 20, "a", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="'g2'"):
            build("Reaction ~ Days + (1 | g2)", df)


def test_levels_not_fewer_than_observations(df):
    df["row"] = np.arange(40)
    with pytest.raises(
        DataError,
        match=r"levels of each grouping factor must be < number of "
        r"observations.*'row'",
    ):
        build("Reaction ~ Days + (1 | row)", df)


def test_too_many_random_effects(df):
    df["pair"] = np.arange(40) // 2  # 20 levels x q = 2 -> 40 random effects = nobs
    with pytest.raises(DataError, match=r"random effects \(= 40\) for term \(1 \+ Days \| pair\)"):
        build("Reaction ~ Days + (1 + Days | pair)", df)
    build("Reaction ~ Days + (1 | pair)", df)  # 20 < 40 is fine


def test_allow_n_relaxes_the_checks(df):
    df["pair"] = np.arange(40) // 2
    d = build("Reaction ~ Days + (1 + Days | pair)", df, allow_n=True)
    assert d.terms[0].n_levels == 20


@pytest.mark.parametrize(
    "weights, words",
    [
        (np.r_[np.ones(39), -1.0], "non-negative.*rows 39"),
        (np.r_[np.inf, np.ones(39)], "non-finite.*rows 0"),
        (np.ones(5), "length 5"),
    ],
)
def test_bad_weights(df, weights, words):
    with pytest.raises(DataError, match=words):
        build("Reaction ~ Days + (1 | Subject)", df, weights=weights)


def test_bad_weights_in_build_fixed(df):
    df["w"] = -1.0
    with pytest.raises(DataError, match="non-negative"):
        build_fixed("Reaction ~ Days", df, weights="w")


def test_non_numeric_weights_column(df):
    with pytest.raises(DataError, match="weights column 'label' must be numeric"):
        build("Reaction ~ Days + (1 | Subject)", df, weights="label")


def test_offset_wrong_length(df):
    with pytest.raises(DataError, match="offset has length 3"):
        build("Reaction ~ Days + (1 | Subject)", df, offset=[1.0, 2.0, 3.0])


def test_data_of_wrong_type():
    with pytest.raises(DataError, match="pandas or polars"):
        build("y ~ (1 | g)", [1, 2, 3])


def test_formula_errors_surface_from_build(df):
    with pytest.raises(FormulaError) as exc:
        build("Reaction ~ Days + (1 | Subject", df)
    assert exc.value.position == 18


def test_new_levels_named(df):
    d = build("Reaction ~ Days + (1 | Subject)", df)
    new = pl.DataFrame({"Days": [1.0, 2.0], "Subject": [3, 99]})
    with pytest.raises(DataError, match=r"grouping factor 'Subject'.*99.*allow_new_levels"):
        new_matrices(d, new)


def test_new_fixed_factor_level_named(df):
    d = build("Reaction ~ Days + label + (1 | Subject)", df)
    with pytest.raises(DataError, match=r"factor 'label' has new levels.*'zz'"):
        new_matrices(d, {"Days": [1.0], "label": ["zz"], "Subject": [1]})


def test_new_level_inside_c_transform(df):
    d = build("Reaction ~ C(Subject) + (1 | label)", df)
    with pytest.raises(DataError, match="categories"):
        new_matrices(d, {"Subject": [77], "label": ["p"]})


def test_reml_and_max_fun_are_checked():
    # issue 15: reml="False" (a string) used to fit REML; max_fun=-5 raised OverflowError
    import multilevel as ml

    df = ml.datasets.load("sleepstudy")
    with pytest.raises(TypeError, match="reml must be True or False, not 'False'"):
        ml.lmer("Reaction ~ Days + (1 | Subject)", df, reml="False")
    with pytest.raises(ValueError, match="max_fun must be a positive integer or None, not -5"):
        ml.lmer("Reaction ~ Days + (1 | Subject)", df, max_fun=-5)
    fit = ml.lmer("Reaction ~ Days + (1 | Subject)", df, reml=np.bool_(False))
    assert not fit.reml


def test_duplicate_column_names_and_empty_newdata():
    # issue 15: two columns with the same name raised AttributeError from pandas;
    # predict() on no rows raised a reshape error
    import multilevel as ml

    df = ml.datasets.load("sleepstudy")
    twice = pd.concat([df, df[["Days"]]], axis=1)
    with pytest.raises(DataError, match="more than one column named 'Days', which the model"):
        ml.lmer("Reaction ~ Days + (1 | Subject)", twice)
    fit = ml.lmer("Reaction ~ Days + (1 | Subject)", df)
    assert fit.predict(df.iloc[:0]).shape == (0,)
