"""Dask-fed fits give fitted values and residuals lazily, as Dask Series aligned with the
partitions' index: the in-memory fit's, on the same rows (missing values dropped)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import multilevel as ml

dd = pytest.importorskip("dask.dataframe", reason="dask[dataframe] is not installed")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")

from test_stream_fit import FORMULA, _frame  # noqa: E402


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_dask_fitted_and_resid_lazy():
    import dask

    df = _frame()
    df.index = df.index * 3 + 11  # an index that is not the positions
    ref = _quiet(ml.lmer, FORMULA, df)
    with dask.config.set(scheduler="synchronous"):
        fit = _quiet(ml.lmer, FORMULA, dd.from_pandas(df, npartitions=4))
        fitted, resid = fit.fitted, fit.resid
        assert type(fitted).__module__.split(".")[0] in ("dask", "dask_expr")
        assert fitted.npartitions == 4 and fitted.name == "fitted" and resid.name == "resid"
        f, r = fitted.compute(), resid.compute()
    used = df.index[ref.design.rows]
    assert list(f.index) == list(used) and list(r.index) == list(used)
    # the estimates agree to the optimiser's tolerance, so the fitted values to about that
    np.testing.assert_allclose(f.to_numpy(), ref.fitted.loc[used], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.to_numpy(), ref.resid.loc[used], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f.to_numpy() + r.to_numpy(), ref.design.y, rtol=1e-12)
    # exactly X beta + Z b of the fit's own estimates
    X = ref.design.X
    own = X @ fit.beta
    for k, t in enumerate(ref.design.terms):
        own = own + np.einsum("ij,ij->i", t.Z, fit.b[k][t.codes])
    np.testing.assert_allclose(f.to_numpy(), own, rtol=1e-12, atol=1e-12)


def test_dask_categorical_grouping_column():
    """A pandas categorical column in a Dask frame (known categories): its categories give
    the levels' order, and the fit is lme4's (sleepstudy REML criterion 1743.6282719599,
    lme4 1.1-31, to 1e-10). It raised AttributeError (the meta's accessor has no ``known``)."""
    sleep = ml.datasets.load("sleepstudy")
    sleep["Subject"] = sleep["Subject"].astype(str).astype("category")
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", dd.from_pandas(sleep, npartitions=3))
    assert fit.objective == pytest.approx(1743.6282719599, rel=1e-10)
    assert list(fit.ranef["Subject"].index) == list(sleep["Subject"].cat.categories)
