"""Fits on distributed data frames: a partial accumulator per partition, reduced as bytes.

:mod:`multilevel.distributed.spark`: ``ml.lmer(formula, data=<pyspark.sql.DataFrame>)``.
Dask DataFrames are handled by :func:`multilevel.design.stream.fit_dask`.
"""
