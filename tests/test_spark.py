"""``ml.lmer`` on a PySpark DataFrame (multilevel.distributed.spark) in ``local[2]`` mode:
partial accumulators per partition with ``mapInArrow``, tree-reduced as bytes, the optimiser
on the driver; the in-memory objective to 1e-10. Skipped only when pyspark is not
importable (CI installs the ``spark`` extra and a Java runtime)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

import multilevel as ml
from multilevel.exceptions import DataError
from test_stream_fit import FORMULA, _frame

# find_spec, not importorskip: importing pyspark at collection imports the standard library's
# profile module, and the doctests of multilevel/inference/profile.py then fail to collect
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("pyarrow") is None,
    reason="pyspark is not installed (the spark extra)",
)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _import_pyspark_sql():
    """``pyspark.sql``, imported with the standard library's ``profile`` module in
    ``sys.modules``: when the doctests of ``multilevel/inference/profile.py`` (a namespace
    package, so collected as a top-level module) were collected first, ``profile`` is that
    module, and pyspark's ``import cProfile`` fails on it."""
    import importlib
    import sys
    import sysconfig
    from pathlib import Path

    ours = sys.modules.get("profile")
    if ours is not None and not hasattr(ours, "Profile"):
        path = Path(sysconfig.get_paths()["stdlib"]) / "profile.py"
        spec = importlib.util.spec_from_file_location("profile", path)
        stdlib = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stdlib)
        sys.modules["profile"] = stdlib
        try:
            return importlib.import_module("pyspark.sql")
        finally:
            sys.modules["profile"] = ours
    return importlib.import_module("pyspark.sql")


@pytest.fixture(scope="module")
def spark():
    SparkSession = _import_pyspark_sql().SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("multilevel-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_fit_equals_in_memory(spark):
    df = _frame()
    ref = _quiet(ml.lmer, FORMULA, df, reml=False)
    sdf = spark.createDataFrame(df)  # local[2]: two partitions, merged by treeReduce
    assert sdf.rdd.getNumPartitions() >= 2
    fit = _quiet(ml.lmer, FORMULA, sdf, reml=False)
    assert abs(fit.objective / ref.objective - 1) < 1e-10
    at = fit.problem.objective(ref.theta, False)
    assert abs(at / ref.problem.objective(ref.theta, False) - 1) < 1e-10
    assert list(fit.fixef.index) == list(ref.fixef.index)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-4, atol=1e-5)
    assert fit.rows == {"read": 2000, "dropped": 3, "used": 1997}
    assert fit.ngroups == ref.ngroups
    for k, tab in ref.ranef.items():
        assert list(fit.ranef[k].index) == list(tab.index)


def test_spark_missing_column(spark):
    sdf = spark.createDataFrame(_frame(200).drop(columns="x2"))
    with pytest.raises(DataError, match="the Spark frame has no column 'x2'"):
        ml.lmer(FORMULA, sdf)


def test_four_sources_agree(spark, tmp_path):
    """benches/bench_stream_sources.py in small: pandas, Parquet, Dask (a LocalCluster of 2
    workers) and Spark give the same objective to 1e-10."""
    import importlib.util
    from pathlib import Path

    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    import pyarrow.parquet as pq

    spec = importlib.util.spec_from_file_location(
        "make_panel", Path(__file__).resolve().parents[1] / "benches" / "make_panel.py"
    )
    make_panel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_panel)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(make_panel, "GROUPS_PER_BLOCK", 100)  # several row groups
    path = make_panel.write(tmp_path / "panel.parquet", rows=30_000, groups=400)
    monkey.undo()
    formula = "y ~ x1 + x2 + x3 + (1 + x1 | g)"
    objectives = {"pandas": _quiet(ml.lmer, formula, pq.read_table(path).to_pandas(), reml=False)}
    objectives["parquet"] = _quiet(ml.lmer, formula, path, reml=False, batch_rows=4096)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        ddf = dd.read_parquet(str(path), split_row_groups=True)
        assert ddf.npartitions > 1
        objectives["dask"] = _quiet(ml.lmer, formula, ddf, reml=False)
    objectives["spark"] = _quiet(ml.lmer, formula, spark.read.parquet(str(path)), reml=False)
    ref = objectives["pandas"].objective
    for name, fit in objectives.items():
        assert abs(fit.objective / ref - 1) < 1e-10, name
        assert fit.nobs == 30_000 and fit.ngroups == {"g": 400}


def test_spark_glmer_equals_in_memory(spark):
    """glmer on a Spark frame: its workers write the columns to a temporary Parquet folder,
    which is streamed (PIRLS passes on the driver); nagq = 0 to 1e-9 of the in-memory fit."""
    cbpp = ml.datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    ref = ml.glmer(f, cbpp, family="binomial", nagq=0)
    sdf = spark.createDataFrame(cbpp.astype({"herd": str, "period": str}))
    fit = ml.glmer(f, sdf, family="binomial", nagq=0)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-9)
    assert fit.rows == {"read": 56, "dropped": 0, "used": 56}
    np.testing.assert_allclose(fit.fixef, ref.fixef, atol=1e-6)
    with pytest.raises(DataError, match="no column 'size'"):
        ml.glmer(f, sdf.drop("size"), family="binomial")
