"""Formula functions with streamed data: stateless ones (``np.log(x + 1)``, ``C(f)``,
products) give the in-memory columns and objective; functions that learn from the whole data
(``center``, ``scale``, ``poly``...) are refused by name before any pass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import multilevel as ml

pa = pytest.importorskip("pyarrow")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")


def _data():
    df = ml.datasets.load("sleepstudy")
    df["f"] = (df.Days % 3).astype(str)
    df["h"] = df.Days % 4
    return df


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ np.log(Days + 1) + C(f) + (1 | Subject)",
        "Reaction ~ C(h) * Days + (1 + np.sqrt(Days) | Subject)",
    ],
)
def test_stateless_transforms_stream(formula):
    df = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.lmer(formula, df)
        fit = ml.lmer(formula, pa.Table.from_pandas(df), batch_rows=37)
    assert list(fit.fixef.index) == list(ref.fixef.index)
    assert abs(fit.objective / ref.objective - 1) < 1e-10
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", ["poly", "bs"])  # center/scale stream: tests/test_stream_scale.py
def test_stateful_transforms_refused_by_name(fn):
    with pytest.raises(NotImplementedError, match=rf"{fn}\(\) learns from the whole data"):
        ml.lmer(f"Reaction ~ {fn}(Days) + (1 | Subject)", pa.Table.from_pandas(_data()))
