"""``ml.lmer`` on a PySpark DataFrame (multilevel.distributed.spark) in ``local[2]`` mode:
partial accumulators per partition with ``mapInArrow``, tree-reduced as bytes, the optimiser
on the driver; the in-memory objective to 1e-10. Skipped only when pyspark is not
importable (CI installs the ``spark`` extra and a Java runtime)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import multilevel as ml
from multilevel.exceptions import DataError

pytest.importorskip("pyspark", reason="pyspark is not installed (the spark extra)")
pytest.importorskip("pyarrow")

from test_stream_fit import FORMULA, _frame


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("multilevel-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_fit_equals_in_memory(spark):
    df = _frame()
    ref = _quiet(ml.lmer, FORMULA, df, reml=False)
    # four partitions: treeReduce merges the partial accumulators in two levels
    sdf = spark.createDataFrame(df).repartition(4)
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
