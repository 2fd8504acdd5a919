"""Streaming fits (multilevel.design.stream): ``ml.lmer`` on Parquet files and folders, pyarrow
Tables, RecordBatchReaders and Datasets, polars LazyFrames and Dask DataFrames gives the
in-memory fit of the same rows (objective to 1e-10 relative, whatever the batch size); the
row-wise accessors raise; bad input gives errors that name the batch or the file.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.design import stream
from multilevel.exceptions import DataError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")

REL = 1e-10
ROOT = Path(__file__).resolve().parents[1]
FORMULA = "y ~ x1 * x2 + f + (1 + x1 | g) + (1 | h)"


def _frame(n: int = 2000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 40, n)
    df = pd.DataFrame(
        {
            "g": np.char.add("s", g.astype(str)),
            "h": rng.integers(0, 70, n),
            "f": rng.choice(["lo", "mid", "hi"], n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )
    b = rng.normal(size=(40, 2)) * [1.0, 0.5]
    df["y"] = 1 + 0.5 * df.x1 + b[g, 0] + b[g, 1] * df.x1 + 0.7 * rng.normal(size=70)[df.h]
    df["y"] += rng.normal(size=n)
    df.loc[[7, 100], "x2"] = np.nan
    df.loc[50, "g"] = None
    return df


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _same(fit, ref, rel: float = REL) -> None:
    """The same objective (at the optimum, and at the in-memory theta to 1e-10: the rows'
    cross-products are the same), names, levels; estimates to the optimiser's tolerance."""
    assert abs(fit.objective / ref.objective - 1) < rel
    at = fit.problem.objective(ref.theta, ref.reml)
    assert abs(at / ref.problem.objective(ref.theta, ref.reml) - 1) < rel
    assert list(fit.fixef.index) == list(ref.fixef.index)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-3, atol=1e-4)
    assert fit.nobs == ref.nobs and fit.n_dropped == ref.n_dropped
    assert fit.ngroups == ref.ngroups
    for k, tab in ref.ranef.items():
        assert list(fit.ranef[k].index) == list(tab.index)
        np.testing.assert_allclose(fit.ranef[k], tab, rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def data():
    df = _frame()
    return df, _quiet(ml.lmer, FORMULA, df)


@pytest.mark.parametrize("batch_rows", [97, 500, 1999, 1 << 20])
def test_table_any_batch_size(data, batch_rows):
    df, ref = data
    fit = _quiet(ml.lmer, FORMULA, pa.Table.from_pandas(df), batch_rows=batch_rows)
    _same(fit, ref)
    assert fit.rows == {"read": 2000, "dropped": 3, "used": 1997}
    np.testing.assert_allclose(fit.vcov, ref.vcov, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(fit.varcorr.vcov, ref.varcorr.vcov, rtol=1e-5, atol=1e-9)
    assert abs(fit.loglik - ref.loglik) < 1e-6 and abs(fit.sigma - ref.sigma) < 1e-7


def test_ml_weights_offset(data):
    df, _ = data
    df = df.assign(o=0.1 * df.x1)
    kw = {"reml": False, "weights": "w", "offset": "o"}
    ref = _quiet(ml.lmer, FORMULA, df, **kw)
    fit = _quiet(ml.lmer, FORMULA, pa.Table.from_pandas(df), batch_rows=300, **kw)
    _same(fit, ref)


def test_sources(data, tmp_path):
    df, ref = data
    table = pa.Table.from_pandas(df, preserve_index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k in range(3):
        pq.write_table(table.slice(700 * k, 700), folder / f"part{k}.parquet")
    pq.write_table(table, tmp_path / "all.parquet")
    import pyarrow.dataset as ds

    sources = {
        "file": tmp_path / "all.parquet",
        "folder": str(folder),
        "reader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches(300)),
        "dataset": ds.dataset(folder),
    }
    pl = pytest.importorskip("polars")
    sources["lazy"] = pl.from_pandas(df).lazy()
    for name, src in sources.items():
        fit = _quiet(ml.lmer, FORMULA, src, batch_rows=400)
        _same(fit, ref)
        assert fit.rows["used"] == 1997, name


def test_dictionary_columns_keep_their_order(tmp_path):
    df = _frame().dropna()
    df["g"] = pd.Categorical(df.g, categories=sorted(df.g.unique(), reverse=True))
    ref = _quiet(ml.lmer, FORMULA, df)
    fit = _quiet(ml.lmer, FORMULA, pa.Table.from_pandas(df), batch_rows=333)
    _same(fit, ref)
    assert list(fit.ranef["g"].index)[:2] == ["s9", "s8"]


def test_make_panel_parquet(tmp_path):
    out = tmp_path / "panel.parquet"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benches/make_panel.py"),
            "--rows",
            "6000",
            "--groups",
            "300",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    formula = "y ~ x1 + x2 + x3 + (1 + x1 | g)"
    ref = _quiet(ml.lmer, formula, pd.read_parquet(out), reml=False)
    for batch_rows in (1000, 4096, 100_000):
        fit = _quiet(ml.lmer, formula, out, reml=False, batch_rows=batch_rows)
        _same(fit, ref)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x1 + x3 + x2 + (1 | g)",  # x3 = 2 x1: dropped after pass 2, a third pass
        "y ~ x1 + (1 | g/k)",
        "y ~ x1 + (1 | g:k) + (0 + x1 | h)",
        "log(y + 10) ~ I(x1**2) + C(f) + (x1 || g)",  # formulaic's path, per batch
    ],
)
def test_formulas(formula):
    df = _frame()
    df["x3"], df["k"] = 2 * df.x1, np.arange(len(df)) % 3
    ref = _quiet(ml.lmer, formula, df)
    fit = _quiet(ml.lmer, formula, pa.Table.from_pandas(df), batch_rows=333)
    _same(fit, ref)
    assert fit.design.dropped_columns == ref.design.dropped_columns


def test_row_wise_accessors_raise(data):
    df, ref = data
    fit = _quiet(ml.lmer, FORMULA, pa.Table.from_pandas(df))
    for get in (lambda: fit.fitted, lambda: fit.resid, lambda: fit.predict()):
        with pytest.raises(stream.StreamedDataError, match="the data were streamed"):
            get()
    text = str(fit.summary())
    assert "not available: the data were streamed" in text and "Fixed effects:" in text
    new = df.dropna().head(5)
    np.testing.assert_allclose(fit.predict(new), ref.predict(new), rtol=1e-6)
    assert abs(fit.refit_ml().objective / ref.refit_ml().objective - 1) < REL


def test_progress_bar(data, capsys):
    df, _ = data
    _quiet(ml.lmer, FORMULA, pa.Table.from_pandas(df), progress=True)
    assert "pass 2" in capsys.readouterr().err


# -- bad input ----------------------------------------------------------------------------------
def test_schema_differs(data):
    df, _ = data
    t1 = pa.Table.from_pandas(df.iloc[:1000], preserve_index=False)
    t2 = pa.Table.from_pandas(df.iloc[1000:].astype({"h": float}), preserve_index=False)
    with pytest.raises(DataError, match=r"schema of batch 1 .*h: double"):
        _quiet(ml.lmer, FORMULA, _SchemaChange(t1, t2))


class _SchemaChange:
    """A pyarrow.dataset-like source whose second batch has another schema."""

    __module__ = "pyarrow.fake"

    def __init__(self, t1, t2):
        self.t1, self.t2 = t1, t2
        self.schema = t1.schema

    def to_batches(self, columns=None, batch_size=None):
        yield self.t1.select(columns).to_batches()[0]
        yield self.t2.select(columns).to_batches()[0]


def test_file_missing_a_column(data, tmp_path):
    df, _ = data
    pq.write_table(pa.Table.from_pandas(df.iloc[:1000]), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pandas(df.iloc[1000:].drop(columns="x2")), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet' has no column 'x2'"):
        ml.lmer(FORMULA, tmp_path)


def test_not_parquet(tmp_path):
    (tmp_path / "notes.parquet").write_text("y,x\n1,2\n")
    with pytest.raises(DataError, match=r"notes\.parquet' is not a Parquet file"):
        ml.lmer(FORMULA, tmp_path / "notes.parquet")
    with pytest.raises(DataError, match="no such file"):
        ml.lmer(FORMULA, tmp_path / "absent.parquet")


def test_level_not_seen_in_first_pass(data):
    df, _ = data
    table = pa.Table.from_pandas(df.dropna(), preserve_index=False)
    source = stream.batches_of(table, stream.columns_of(ml.formula.parse(FORMULA), None, None), 500)
    p = stream.plan(FORMULA, source)
    p.term_index[0] = p.term_index[0][:-1]  # as if the data changed between the passes
    with pytest.raises(
        DataError, match=r"batch \d: level .* of 'g' was not seen in the first pass"
    ):
        stream.accumulate(p, source)


def test_stateful_transforms_refused(data):
    df, _ = data
    with pytest.raises(NotImplementedError, match="cannot be used with streamed data"):
        ml.lmer("y ~ poly(x1, 2) + (1 | g)", pa.Table.from_pandas(df))


# -- Dask ---------------------------------------------------------------------------------------
def test_dask_local_cluster(data):
    pytest.importorskip("dask.dataframe", reason="dask[dataframe] is not installed")
    distributed = pytest.importorskip("distributed", reason="distributed is not installed")
    import dask.dataframe as dd

    df, ref = data
    ml_ref = _quiet(ml.lmer, FORMULA, df, reml=False)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        for npartitions in (1, 7, 20):  # 20: two levels of the tree reduction
            ddf = dd.from_pandas(df, npartitions=npartitions)
            fit = _quiet(ml.lmer, FORMULA, ddf)
            _same(fit, ref)
            assert fit.rows == {"read": 2000, "dropped": 3, "used": 1997}
        _same(_quiet(ml.lmer, FORMULA, dd.from_pandas(df, npartitions=5), reml=False), ml_ref)
        # a partition whose rows are all dropped, and an empty one
        gaps = df.assign(y=np.where(np.arange(len(df)) < 400, np.nan, df.y))
        ddf = dd.concat(
            [dd.from_pandas(gaps, npartitions=7), dd.from_pandas(gaps.iloc[:0], npartitions=1)]
        )
        fit = _quiet(ml.lmer, FORMULA, ddf)
        _same(fit, _quiet(ml.lmer, FORMULA, gaps))
        assert fit.rows["read"] == 2000 and fit.rows["used"] == fit.nobs < 1700


def test_files_whose_schemas_differ(data, tmp_path):
    df, _ = data
    pq.write_table(pa.Table.from_pandas(df.iloc[:1000]), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pandas(df.iloc[1000:].astype({"h": str})), tmp_path / "b.parquet")
    with pytest.raises(
        DataError,
        match=r"batch 0 of '.*b\.parquet' differs.*h: (large_)?string \(first batch: int64\)",
    ):
        _quiet(ml.lmer, FORMULA, tmp_path)


def test_in_memory_inputs_keep_their_path(data):
    df, _ = data
    pl = pytest.importorskip("polars")
    for d in (df, pl.from_pandas(df), {"y": [1.0]}):
        assert not stream.is_stream_source(d)
    for d in ("x.parquet", Path("x"), pa.table({"y": [1.0]}), pl.from_pandas(df).lazy()):
        assert stream.is_stream_source(d)
    fit = _quiet(ml.lmer, FORMULA, pl.from_pandas(df))
    assert not hasattr(fit, "rows") and len(fit.fitted) == fit.nobs
