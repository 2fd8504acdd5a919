"""Arrow dictionary columns when streaming: dictionaries that differ between batches merge
in order of first appearance (the levels' order, as a pandas categorical's categories), and
the codes come from the dictionary's values looked up once per batch."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml

pa = pytest.importorskip("pyarrow")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")


def _batch(rng, n, dictionary, codes):
    return pa.record_batch(
        {
            "y": rng.normal(size=n) + np.asarray(codes) * 0.3,
            "x": rng.normal(size=n),
            "g": pa.DictionaryArray.from_arrays(
                pa.array(np.asarray(codes, dtype=np.int32)), pa.array(dictionary)
            ),
        }
    )


def test_dictionaries_that_differ_between_batches():
    rng = np.random.default_rng(2)
    b1 = _batch(rng, 300, ["s7", "s2", "s5"], rng.integers(0, 3, 300))
    b2 = _batch(rng, 300, ["s9", "s2", "s7", "s1"], rng.integers(0, 4, 300))
    b3 = _batch(rng, 300, ["s9", "s2", "s7", "s1"], rng.integers(0, 4, 300))  # repeated
    reader = pa.RecordBatchReader.from_batches(b1.schema, [b1, b2, b3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer("y ~ x + (1 | g)", reader, batch_rows=128)
        df = pd.concat([b.to_pandas() for b in (b1, b2, b3)], ignore_index=True)
        df["g"] = pd.Categorical(df.g.astype(str), categories=["s7", "s2", "s5", "s9", "s1"])
        ref = ml.lmer("y ~ x + (1 | g)", df)
    assert list(fit.ranef["g"].index) == ["s7", "s2", "s5", "s9", "s1"]
    assert list(ref.ranef["g"].index) == list(fit.ranef["g"].index)
    assert abs(fit.objective / ref.objective - 1) < 1e-10


def test_many_valued_dictionary():
    """20,000 dictionary values over several batches (merged by pandas Index operations; a
    check of each value against a list took minutes here)."""
    rng = np.random.default_rng(3)
    labels = [f"id{v:05d}" for v in range(20_000)]
    batches = [_batch(rng, 50_000, labels, rng.integers(0, 20_000, 50_000)) for _ in range(4)]
    table = pa.Table.from_batches(batches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer("y ~ x + (1 | g)", table, batch_rows=50_000)
    assert fit.ngroups == {"g": 20_000}
    assert list(fit.ranef["g"].index[:3]) == labels[:3]


def test_string_codes_by_index_in_as_lookup():
    """Term codes of string columns by pyarrow.compute.index_in equal factors.lookup's,
    for Arrow-backed and object strings; a value that is no level gives -1."""
    from multilevel.design import stream
    from multilevel.factors import lookup

    p = stream.StreamPlan(
        "y ~ 1 + (1 | g)", ml.formula.parse("y ~ 1 + (1 | g)"), ["y", "g"], None, None
    )
    index = pd.Index(["b", "a", "c"], dtype=object)
    values = np.array(["a", "c", "zz", "b", "a"], dtype=object)
    want = lookup(index, pd.Series(values))
    assert want.tolist() == [1, 2, -1, 0, 1]
    for v in (values, pd.array(values, dtype="string[pyarrow]")):
        got = stream._lookup_values(p, 0, index, v)
        assert got.tolist() == want.tolist()
    mixed = np.array(["a", 3], dtype=object)  # not all strings: the general lookup
    assert stream._lookup_values(p, 0, index, mixed).tolist() == [1, -1]
