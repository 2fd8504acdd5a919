"""DuckDB relations (issue 13, scope 2): read through the Arrow C stream interface
(``__arrow_c_stream__``), spilled to a temporary Parquet file by the first pass, then fitted
as any stream. Golden: lme4's sleepstudy REML criterion (1743.6282719599, lme4 1.1-31) to
1e-10 relative, and the in-memory glmer of cbpp to 1e-9."""

from __future__ import annotations

import pytest

import multilevel as ml

duckdb = pytest.importorskip("duckdb")


def test_lmer_from_a_duckdb_relation():
    con = duckdb.connect()
    con.register("sleep", ml.datasets.load("sleepstudy"))
    rel = con.sql("select * from sleep where Days >= 0")
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", rel)
    assert fit.objective == pytest.approx(1743.6282719599, rel=1e-10)
    assert fit.rows == {"read": 180, "dropped": 0, "used": 180}


def test_glmer_from_a_duckdb_relation():
    cbpp = ml.datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    con = duckdb.connect()
    con.register("cbpp", cbpp)
    rel = con.sql("select * from cbpp")
    fit = ml.glmer(f, rel, family="binomial", nagq=0)
    ref = ml.glmer(f, cbpp, family="binomial", nagq=0)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-9)
    assert fit.rows["used"] == 56
