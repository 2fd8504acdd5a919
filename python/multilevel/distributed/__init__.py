"""Fits on distributed data frames: a partial accumulator per partition, reduced as bytes.

:mod:`multilevel.distributed.spark`: ``ml.lmer(formula, data=<pyspark.sql.DataFrame>)``.
:mod:`multilevel.distributed.dask_fit`: ``ml.lmer(formula, data=<dask.dataframe.DataFrame>)``.
Both build on :mod:`multilevel.distributed.partials`.
"""
