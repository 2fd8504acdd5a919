"""The rank of X when streaming: X'X summed over batches screens it; when X'X leaves it in
doubt, R's rule on the R of a QR taken in row blocks decides, as in memory (the same columns
dropped, the same warning)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.design import stream
from multilevel.design.fast import gram_full_rank

pa = pytest.importorskip("pyarrow")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")


def _frame(n=800, seed=5):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 30, n)
    x1 = rng.normal(size=n)
    df = pd.DataFrame({"g": g, "x1": x1, "x2": rng.normal(size=n)})
    df["y"] = 1 + x1 + rng.normal(size=30)[g] + rng.normal(size=n)
    df["x3"] = 2 * df.x1 - df.x2  # exactly collinear
    df["x4"] = df.x1 + 1e-4 * rng.normal(size=n)  # nearly: kept by R's rule, doubted by X'X
    return df


def test_gram_screen():
    X = np.column_stack([np.ones(50), np.arange(50.0), np.arange(50.0) ** 2])
    assert gram_full_rank(X.T @ X)
    X[:, 2] = 3 * X[:, 1]
    assert not gram_full_rank(X.T @ X)


@pytest.mark.parametrize(
    ("formula", "dropped"),
    [("y ~ x1 + x2 + x3 + (1 | g)", ["x3"]), ("y ~ x1 + x4 + (1 | g)", [])],
)
def test_streamed_rank_as_in_memory(formula, dropped, monkeypatch):
    df = _frame()
    with warnings.catch_warnings(record=True) as ref_w:
        warnings.simplefilter("always")
        ref = ml.lmer(formula, df)
    passes = []
    real = stream.accumulate_frames

    def counted(*args, **kwargs):
        passes.append(kwargs.get("qr", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "accumulate_frames", counted)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fit = ml.lmer(formula, pa.Table.from_pandas(df), batch_rows=150)
    # X'X, then the QR pass, then (columns dropped) the pass with the kept columns
    assert passes == ([False, True, False] if dropped else [False, True])
    assert fit.design.dropped_columns == ref.design.dropped_columns == dropped
    assert [str(x.message) for x in w if "rank deficient" in str(x.message)] == [
        str(x.message) for x in ref_w if "rank deficient" in str(x.message)
    ]
    # x4 = x1 + 1e-4 noise makes X'X's Schur complement 1e-8 of its entries: the order of the
    # sums alone moves the objective by up to 1.2e-10 (rows of the in-memory fit shuffled:
    # -1.0e-10 .. 4.7e-11 from the 40-digit objective), so the tolerance is that noise's.
    rel = 3e-10 if "x4" in formula else 1e-12
    assert abs(fit.objective / ref.objective - 1) < rel
    assert list(fit.fixef.index) == list(ref.fixef.index)


def test_full_rank_one_pass(monkeypatch):
    df = _frame()
    passes = []
    real = stream.accumulate_frames
    monkeypatch.setattr(
        stream,
        "accumulate_frames",
        lambda *a, **k: passes.append(k.get("qr", False)) or real(*a, **k),
    )
    fit = ml.lmer("y ~ x1 + x2 + (1 | g)", pa.Table.from_pandas(df), batch_rows=150)
    assert passes == [False]
    assert abs(fit.objective / ml.lmer("y ~ x1 + x2 + (1 | g)", df).objective - 1) < 1e-12
