"""Bundled datasets: shapes, columns, R's factor level orders and exact values from R.

The exact values are R's doubles written as C99 hexadecimal floats (``sprintf("%a", x)`` in R),
so the comparison is bit for bit, independent of any decimal formatting.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from multilevel import datasets
from multilevel.exceptions import DataError, MultilevelError

SHAPES = {
    "cbpp": (56, ["herd", "incidence", "size", "period"]),
    "dyestuff": (30, ["Batch", "Yield"]),
    "exam": (
        4059,
        [
            "school",
            "normexam",
            "schgend",
            "schavg",
            "vr",
            "intake",
            "standLRT",
            "sex",
            "type",
            "student",
        ],
    ),
    "grunfeld": (200, ["firm", "year", "inv", "value", "capital"]),
    "hsb": (7185, ["mathach", "ses", "minority", "sex", "school", "sector", "meanses"]),
    "insteval": (73421, ["s", "d", "studage", "lectage", "service", "dept", "y"]),
    "pastes": (60, ["strength", "batch", "cask", "sample"]),
    "penicillin": (144, ["diameter", "plate", "sample"]),
    "sleepstudy": (180, ["Reaction", "Days", "Subject"]),
}

# (dataset, column) -> (number of levels, first levels in R's order, ordered)
LEVELS = {
    ("sleepstudy", "Subject"): (18, ["308", "309", "310", "330", "331"], False),
    ("dyestuff", "Batch"): (6, ["A", "B", "C", "D", "E", "F"], False),
    ("penicillin", "plate"): (24, ["a", "b", "c", "d"], False),
    ("penicillin", "sample"): (6, ["A", "B", "C", "D", "E", "F"], False),
    ("pastes", "batch"): (10, ["A", "B", "C"], False),
    ("pastes", "cask"): (3, ["a", "b", "c"], False),
    ("pastes", "sample"): (30, ["A:a", "A:b", "A:c", "B:a"], False),
    ("hsb", "school"): (160, ["1224", "1288", "1296", "1308"], False),
    ("hsb", "sector"): (2, ["Public", "Catholic"], False),
    ("hsb", "minority"): (2, ["No", "Yes"], False),
    ("hsb", "sex"): (2, ["Male", "Female"], False),
    ("insteval", "s"): (2972, ["1", "2", "3"], False),
    ("insteval", "d"): (1128, ["1", "6", "7", "8", "12"], False),
    ("insteval", "studage"): (4, ["2", "4", "6", "8"], True),
    ("insteval", "lectage"): (6, ["1", "2", "3", "4", "5", "6"], True),
    ("insteval", "service"): (2, ["0", "1"], False),
    (
        "insteval",
        "dept",
    ): (14, ["15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"], False),
    ("exam", "school"): (65, ["1", "2", "3"], False),
    ("exam", "schgend"): (3, ["mixed", "boys", "girls"], False),
    ("exam", "vr"): (3, ["bottom 25%", "mid 50%", "top 25%"], False),
    ("exam", "sex"): (2, ["F", "M"], False),
    ("exam", "student"): (650, ["1", "2", "3"], False),
    ("cbpp", "herd"): (15, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"], False),
    ("cbpp", "period"): (4, ["1", "2", "3", "4"], False),
}

# (dataset, 0-based row, column, R's value as a hexadecimal float)
EXACT = [
    ("sleepstudy", 1, "Reaction", "0x1.02b467381d7dcp+8"),  # 258.7047
    ("sleepstudy", 1, "Days", "0x1p+0"),
    ("sleepstudy", 89, "Reaction", "0x1.da7e425aee632p+7"),  # 237.2466
    ("sleepstudy", 179, "Reaction", "0x1.6c1fa43fe5c92p+8"),  # 364.1236
    ("sleepstudy", 179, "Days", "0x1.2p+3"),
    ("dyestuff", 0, "Yield", "0x1.824p+10"),  # 1545
    ("dyestuff", 29, "Yield", "0x1.694p+10"),  # 1445
    ("penicillin", 0, "diameter", "0x1.bp+4"),  # 27
    ("penicillin", 143, "diameter", "0x1.2p+4"),  # 18
    ("pastes", 0, "strength", "0x1.f666666666666p+5"),  # 62.8
    ("pastes", 59, "strength", "0x1.c4ccccccccccdp+5"),  # 56.6
    ("hsb", 0, "mathach", "0x1.7810624dd2f1bp+2"),  # 5.876
    ("hsb", 0, "ses", "-0x1.872b020c49ba6p+0"),  # -1.528
    ("hsb", 0, "meanses", "-0x1.b645a1cac0831p-2"),  # -0.428
    ("hsb", 3599, "mathach", "0x1.3851eb851eb85p+2"),  # 4.88
    ("hsb", 3599, "ses", "-0x1.78d4fdf3b645ap-2"),  # -0.368
    ("hsb", 3599, "meanses", "-0x1.db22d0e560419p-5"),  # -0.058
    ("hsb", 7184, "mathach", "0x1.6bba5e353f7cfp+4"),  # 22.733
    ("hsb", 7184, "ses", "0x1.95810624dd2f2p-1"),  # 0.792
    ("hsb", 7184, "meanses", "0x1.410624dd2f1aap-1"),  # 0.627
    ("insteval", 0, "y", "0x1.4p+2"),  # 5
    ("insteval", 73420, "y", "0x1.8p+1"),  # 3
    ("cbpp", 0, "incidence", "0x1p+1"),
    ("cbpp", 0, "size", "0x1.cp+3"),
    ("cbpp", 55, "incidence", "0x0p+0"),
    ("cbpp", 55, "size", "0x1.ep+3"),
    ("exam", 0, "normexam", "0x1.0b9892329d0b4p-2"),  # 0.2613242
    ("exam", 0, "standLRT", "0x1.3cf553d4936abp-1"),  # 0.6190592
    ("exam", 1999, "normexam", "-0x1.1c37a3db3bfb6p-1"),  # -0.555112
    ("exam", 1999, "standLRT", "0x1.7c030065808d6p-2"),  # 0.3711052
    ("exam", 4058, "normexam", "-0x1.0770ef566490ap+0"),  # -1.029067
    ("exam", 4058, "standLRT", "-0x1.5d54da4ce8102p+0"),  # -1.364576
    ("grunfeld", 0, "inv", "0x1.3d9999999999ap+8"),  # 317.6
    ("grunfeld", 0, "value", "0x1.80dp+11"),  # 3078.5
    ("grunfeld", 0, "capital", "0x1.6666666666666p+1"),  # 2.8
    ("grunfeld", 199, "inv", "0x1.47ae147ae147bp+2"),  # 5.12
    ("grunfeld", 199, "value", "0x1.d0f5c28f5c28fp+5"),  # 58.12
    ("grunfeld", 199, "capital", "0x1.ca8f5c28f5c29p+3"),  # 14.33
]


def test_names():
    assert datasets.names() == sorted(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_and_columns(name):
    nrow, columns = SHAPES[name]
    df = datasets.load(name)
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (nrow, len(columns))
    assert list(df.columns) == columns
    assert not df.isna().any().any()


@pytest.mark.parametrize("key", sorted(LEVELS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_factor_levels_in_r_order(key):
    name, column = key
    n_levels, first, ordered = LEVELS[key]
    col = datasets.load(name)[column]
    assert isinstance(col.dtype, pd.CategoricalDtype)
    cats = [str(c) for c in col.cat.categories]
    assert len(cats) == n_levels
    assert cats[: len(first)] == first
    assert col.cat.ordered is ordered
    assert col.notna().all()


@pytest.mark.parametrize(("name", "row", "column", "hexval"), EXACT)
def test_exact_values(name, row, column, hexval):
    value = datasets.load(name)[column].iloc[row]
    assert float(value) == float.fromhex(hexval)


def test_numeric_dtypes():
    assert datasets.load("sleepstudy")["Days"].dtype == "float64"
    grunfeld = datasets.load("grunfeld")
    assert grunfeld["firm"].dtype == "int64"
    assert grunfeld["year"].dtype == "int64"
    assert datasets.load("insteval")["y"].dtype == "int64"


def test_hsb_values():
    hsb = datasets.load("hsb")
    # First, middle and last students as in nlme's MathAchieve (R).
    assert list(hsb["school"].iloc[[0, 3599, 7184]].astype(str)) == ["1224", "5192", "9586"]
    assert list(hsb["sex"].iloc[[0, 3599, 7184]].astype(str)) == ["Female", "Male", "Female"]
    assert list(hsb["minority"].iloc[[0, 3599, 7184]].astype(str)) == ["No", "Yes", "No"]
    assert int((hsb["minority"] == "Yes").sum()) == 1974
    sector = hsb.groupby("school", observed=True)["sector"].agg(lambda s: s.nunique())
    assert (sector == 1).all()  # sector is a school-level variable
    per_school = hsb.drop_duplicates("school")["sector"].value_counts()
    assert per_school["Public"] == 90 and per_school["Catholic"] == 70


def test_insteval_last_row():
    row = datasets.load("insteval").iloc[73420]
    assert (str(row["s"]), str(row["d"]), str(row["dept"]), str(row["lectage"])) == (
        "2972",
        "2121",
        "2",
        "2",
    )


def test_case_insensitive_and_fresh_copy():
    a = datasets.load("Sleepstudy")
    b = datasets.load("SLEEPSTUDY")
    pd.testing.assert_frame_equal(a, b)
    a.loc[0, "Reaction"] = math.nan
    assert not datasets.load("sleepstudy")["Reaction"].isna().any()


def test_describe():
    for name in datasets.names():
        text = datasets.describe(name)
        assert text.startswith("R package ") and "\n" not in text
    assert "nlme" in datasets.describe("hsb")
    assert "plm" in datasets.describe("grunfeld")
    assert datasets.describe("exam") == "R package mlmRev 1.0.8, data object Exam"
    assert datasets.describe("InstEval") == datasets.describe("insteval")


def test_unknown_name_lists_available():
    with pytest.raises(DataError) as info:
        datasets.load("sleepstudyy")
    assert isinstance(info.value, MultilevelError)
    for name in datasets.names():
        assert name in str(info.value)
    with pytest.raises(DataError):
        datasets.describe("nope")


REFERENCE_DATA = Path(__file__).parent / "reference" / "data"


@pytest.mark.parametrize(
    ("stem", "nrow", "extra", "n_missing"),
    [
        ("sleepstudy_weights", 180, "w", 0),
        ("sleepstudy_offset", 180, "off", 0),
        ("sleepstudy_na", 163, None, 6),
    ],
)
def test_reference_data_files(stem, nrow, extra, n_missing):
    df = datasets._read_with_sidecar(REFERENCE_DATA / f"{stem}.csv")
    assert len(df) == nrow
    assert list(df.columns[:3]) == ["Reaction", "Days", "Subject"]
    assert list(df["Subject"].cat.categories) == list(
        datasets.load("sleepstudy")["Subject"].cat.categories
    )
    if extra is not None:
        assert df[extra].dtype == "float64"
    assert int(df[["Reaction", "Days"]].isna().any(axis=1).sum()) == n_missing
