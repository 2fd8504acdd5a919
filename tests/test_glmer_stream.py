"""ml.glmer on streamed data (issue 13, scope 5) against lme4's glmer and the in-memory fit.

The streamed fit runs the in-memory algorithm with every PIRLS reweighting a pass over the
spilled batches, so:
- against lme4 (tests/reference/glmm/<case>.json, as tests/test_glmer.py): -2 logLik no worse
  than lme4's by more than 1e-6 relative, beta within 1% of a standard error, standard
  errors within test_glmer's tolerances, variance components within 0.5%;
- against the in-memory fit of the same rows: the objective to 1e-9 relative (both stop
  BOBYQA at xtol 1e-4 / 1e-6 of a path that rounding moves), beta within 1e-3 of a standard
  error, standard errors to 1e-4 relative, the deviance (not stationary at the optimum) to
  1e-5.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import multilevel as ml
from conftest import load_reference, load_reference_data
from multilevel import families as fm
from multilevel.design import stream_glmm as sg
from multilevel.design.stream import StreamedDataError
from multilevel.exceptions import ConvergenceWarning, DataError
from multilevel.models.glmm import SeparationWarning, glmer
from multilevel.results.glmer_stream import StreamedGlmerFit
from test_glmer import _family, check_against_lme4

CASES = [
    "cbpp_laplace",
    "cbpp_agq25",
    "cbpp_nagq0",
    "cbpp_probit_prop",
    "grouseticks",
    "contraception_urban",
    "poisson_offset_agq9",
    "gamma_log",
    "negbin",
]
_FITS: dict[str, tuple] = {}


def _fits(case: str):
    if case not in _FITS:
        ref = load_reference(case, "glmm")
        data = load_reference_data(ref)
        table = pa.Table.from_pandas(data, preserve_index=False)
        kw = dict(
            family=_family(ref), nagq=ref["nagq"], weights=ref.get("weights"),
            offset=ref.get("offset"),
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            streamed = glmer(ref["formula"], table, batch_rows=math.ceil(len(data) / 3), **kw)
            memory = glmer(ref["formula"], data, **kw)
        _FITS[case] = (ref, streamed, memory)
    return _FITS[case]


@pytest.mark.parametrize("case", CASES)
def test_streamed_fit_matches_lme4(case):
    ref, fit, _ = _fits(case)
    assert isinstance(fit, StreamedGlmerFit)
    check_against_lme4(ref, fit, case)
    assert fit.rows == {"read": ref["nobs"], "dropped": 0, "used": ref["nobs"]}
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-3)


@pytest.mark.parametrize("case", CASES)
def test_streamed_fit_matches_in_memory(case):
    _, fit, mem = _fits(case)
    assert fit.objective == pytest.approx(mem.objective, rel=1e-9)
    assert list(fit.fixef.index) == list(mem.fixef.index)
    np.testing.assert_array_less(np.abs(fit.fixef - mem.fixef) / mem.se, 1e-3)
    np.testing.assert_allclose(fit.se, mem.se, rtol=1e-4)
    np.testing.assert_allclose(fit.theta, mem.theta, rtol=1e-3, atol=1e-5)
    # the deviance alone is not stationary at the optimum: it moves with theta's last digits
    assert fit.deviance == pytest.approx(mem.deviance, rel=1e-5)
    assert fit.sigma == pytest.approx(mem.sigma, rel=1e-5)
    assert fit.aic == pytest.approx(mem.aic, rel=1e-9)
    for g, r in mem.ranef.items():
        np.testing.assert_allclose(fit.ranef[g], r, atol=1e-3 * float(r.abs().max().max()))
        np.testing.assert_allclose(fit.ranef_condvar[g], mem.ranef_condvar[g], rtol=1e-3, atol=1e-8)


def test_passes_counted_and_nagq0_needs_fewest():
    _, f0, _ = _fits("cbpp_nagq0")
    _, f1, _ = _fits("cbpp_laplace")
    assert 10 < f0.passes < f1.passes
    assert f0._res.stage2 is None and f1._res.stage2 is not None


def test_predict_newdata_summary_pickle_and_no_rows():
    _, fit, mem = _fits("cbpp_laplace")
    new = {"period": ["1", "4"], "herd": ["1", "99"]}
    np.testing.assert_allclose(
        fit.predict(new, type="response", allow_new_levels=True),
        mem.predict(new, type="response", allow_new_levels=True),
        rtol=1e-5,
    )
    assert "Laplace Approximation" in fit.summary()
    assert "Number of obs: 56, groups:  herd, 15" in fit.summary()
    back = pickle.loads(pickle.dumps(fit))
    assert back.objective == fit.objective and back.rows == fit.rows
    np.testing.assert_allclose(back.fixef, fit.fixef)
    for get in (
        lambda: fit.fitted,
        lambda: fit.resid(),
        lambda: fit.predict(),
        lambda: fit.confint(method="profile"),
        lambda: fit.confint(method="boot"),
    ):
        with pytest.raises(StreamedDataError, match="streamed"):
            get()
    ci = fit.confint()
    np.testing.assert_allclose(ci.to_numpy(), mem.confint().to_numpy(), rtol=1e-4)
    # the LR test against the GLM (Stata's report), the GLM's objective from a pass
    np.testing.assert_allclose(fit.lr_test_vs_glm(), mem.lr_test_vs_glm(), rtol=1e-6)
    stata = fit.summary(style="stata")
    np.testing.assert_allclose(stata.fixed.estimate, mem.summary(style="stata").fixed.estimate,
                               atol=1e-3 * float(mem.se.min()))  # fmt: skip
    assert fit.glance().nobs.iloc[0] == 56
    assert fit.tidy().estimate.iloc[0] == pytest.approx(mem.tidy().estimate.iloc[0], abs=1e-4)


@pytest.fixture
def panel(tmp_path):
    """A binary panel with a factor response, a boolean column, missing values in two
    files of a Parquet folder; and its pandas original."""
    rng = np.random.default_rng(7)
    n, groups = 3000, 60
    g = rng.integers(0, groups, n)
    x = rng.standard_normal(n)
    b = rng.standard_normal(groups) * 0.8
    eta = -0.3 + 0.7 * x + b[g]
    yes = rng.random(n) < 1 / (1 + np.exp(-eta))
    df = pd.DataFrame(
        {"g": [f"s{k:02d}" for k in g], "x": x, "y": np.where(yes, "yes", "no"), "t": yes}
    )
    df.loc[[5, 17, 2500], "x"] = np.nan
    folder = tmp_path / "panel"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(df.iloc[:1400], preserve_index=False), folder / "a.parquet")
    pq.write_table(pa.Table.from_pandas(df.iloc[1400:], preserve_index=False), folder / "b.parquet")
    return folder, df


def test_factor_and_boolean_responses_from_parquet_folder(panel, monkeypatch):
    folder, df = panel
    monkeypatch.setattr(sg, "MEMORY_BUDGET", 0)  # the batches on disk, memory-mapped per pass
    with pytest.warns(UserWarning, match="3 rows"):
        fit = glmer("y ~ x + (1 | g)", folder, family="binomial", batch_rows=500)
    mem = glmer("y ~ x + (1 | g)", df, family="binomial")
    assert fit.rows == {"read": 3000, "dropped": 3, "used": 2997}
    assert fit.objective == pytest.approx(mem.objective, rel=1e-9)
    np.testing.assert_allclose(fit.fixef, mem.fixef, atol=1e-3 * mem.se.min())
    fit_t = glmer("t ~ x + (1 | g)", folder, family="binomial", nagq=0)
    mem_t = glmer("t ~ x + (1 | g)", df, family="binomial", nagq=0)
    assert fit_t.objective == pytest.approx(mem_t.objective, rel=1e-9)
    assert fit_t.objective == pytest.approx(fit.objective, rel=1e-2)  # same rows, nagq 0 vs 1


def test_poisson_offset_and_vector_term_from_dask():
    dd = pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(3)
    n, groups = 1200, 40
    g = rng.integers(0, groups, n)
    x = rng.standard_normal(n)
    t = rng.uniform(1, 5, n)
    b0, b1 = rng.standard_normal(groups) * 0.5, rng.standard_normal(groups) * 0.3
    y = rng.poisson(t * np.exp(0.2 + (0.4 + b1[g]) * x + b0[g]))
    df = pd.DataFrame({"g": g, "x": x, "t": t, "y": y, "lt": np.log(t)})
    f = "y ~ x + offset(log(t)) + (1 + x | g)"
    fit = glmer(f, dd.from_pandas(df, npartitions=2), family="poisson", nagq=0)
    mem = glmer(f, df, family="poisson", nagq=0)
    assert fit.objective == pytest.approx(mem.objective, rel=1e-9)
    np.testing.assert_allclose(fit.se, mem.se, rtol=1e-4)
    by_name = glmer("y ~ x + (1 + x | g)", pa.Table.from_pandas(df), "poisson", 0, offset="lt")
    assert by_name.objective == pytest.approx(mem.objective, rel=1e-9)


def test_rank_deficient_and_separated_columns(panel):
    _, df = panel
    d2 = df.assign(x2=2 * df.x, sep=(df.y == "yes").astype(float))
    table = pa.Table.from_pandas(d2, preserve_index=False)
    with pytest.warns(UserWarning, match="x2"):
        fit = glmer("y ~ x + x2 + (1 | g)", table, family="binomial", nagq=0)
    assert list(fit.fixef.index) == ["(Intercept)", "x"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the separated fit may fail after the warning; the warning is the point
        with contextlib.suppress(ml.exceptions.FitError):
            glmer("y ~ sep + (1 | g)", table, family="binomial", nagq=0)
    assert any(issubclass(w.category, SeparationWarning) and "'sep'" in str(w.message)
               for w in caught)  # fmt: skip


def test_bad_streamed_input_is_named(tmp_path):
    df = pd.DataFrame({"y": [1, 2, -1, 3] * 5, "g": list("abcd") * 5, "x": range(20)})
    path = tmp_path / "neg.parquet"
    df.to_parquet(path)
    with pytest.raises(fm.ResponseError, match=r"batch 0 of .*neg\.parquet.*negative counts"):
        glmer("y ~ x + (1 | g)", path, family="poisson", batch_rows=8)
    table = pa.Table.from_pandas(df.assign(y=df.y.abs()))
    with pytest.raises(ValueError, match="nagq > 1"):
        glmer("y ~ x + (1 + x | g)", table, family="poisson", nagq=3)
    with pytest.raises(NotImplementedError, match="NegativeBinomial\\(theta"):
        glmer("y ~ x + (1 | g)", table, family="negative.binomial")
    with pytest.raises(fm.ResponseError, match="binomial"):
        glmer("cbind(y, x) ~ (1 | g)", table, family="poisson")
    with pytest.raises(DataError, match="column name"):
        glmer("y ~ x + (1 | g)", table, family="poisson", weights=np.ones(20))
    with pytest.raises(DataError, match="no column 'z'"):
        glmer("y ~ z + (1 | g)", table, family="poisson")
