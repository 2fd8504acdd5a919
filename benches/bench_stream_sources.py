"""The same fit from four sources: pandas (in memory), Parquet (streamed), Dask (a
LocalCluster of 2 workers) and Spark (local mode): the objectives agree to 1e-10 (issue 13).

``y ~ x1 + x2 + x3 + (1 + x1 | g)`` (ML) on a panel written by ``benches/make_panel.py``.
Prints each source's seconds (the whole ``ml.lmer`` call; starting the cluster or the Spark
session is not counted), its objective in hex, and its relative difference to pandas'.

Usage::

    python benches/make_panel.py --rows 10_000_000 --groups 100_000 --out /tmp/p10m.parquet
    python benches/bench_stream_sources.py /tmp/p10m.parquet [--skip-spark] [--skip-dask]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import multilevel as ml  # noqa: E402
from multilevel.results.lmer import LmerFit  # noqa: E402,F401  (imported before timing)

FORMULA = "y ~ x1 + x2 + x3 + (1 + x1 | g)"


def timed(name: str, data, results: dict) -> None:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer(FORMULA, data, reml=False, progress=False)
    results[name] = (time.perf_counter() - t0, fit.objective)
    print(f"{name:<8}{results[name][0]:8.2f} s  objective {fit.objective.hex()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--skip-spark", action="store_true")
    a = ap.parse_args()
    import pyarrow.parquet as pq

    results: dict[str, tuple[float, float]] = {}
    df = pq.read_table(a.path).to_pandas()
    timed("pandas", df, results)
    del df
    timed("parquet", a.path, results)
    if not a.skip_dask:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        with (
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
            Client(cluster),
        ):
            ddf = dd.read_parquet(str(a.path), split_row_groups=True)
            timed("dask", ddf, results)
    if not a.skip_spark:
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        timed("spark", spark.read.parquet(str(a.path)), results)
        spark.stop()
    ref = results["pandas"][1]
    print("\nrelative difference of the objective to pandas':")
    worst = 0.0
    for name, (_, obj) in results.items():
        rel = abs(obj / ref - 1)
        worst = max(worst, rel)
        print(f"  {name:<8}{rel:.2e}")
    print(f"all within 1e-10: {worst <= 1e-10}")


if __name__ == "__main__":
    main()
