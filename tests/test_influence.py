"""Leave-one-group-out influence diagnostics against lme4 refits (HLMdiag's definitions).

Golden values: tests/reference/influence/*.json, made by tests/reference/cases_influence.R
(lme4's update(fit, data = subset) refits, each polished to its stationary point by the same
Newton rule as multilevel.inference.influence.polish, then HLMdiag's formulas).

Tolerance: 1e-6 relative throughout. Three diagnostics are differences of nearly equal numbers
(covtrace = |tr(V^-1 V_i) - p|, rvc = varcomp_i / varcomp - 1, dfbeta = b - b_i), so their
1e-6 is relative to the quantity they are differences of: tr(V^-1 V_i) (= covtrace + p or
p - covtrace), the ratio varcomp_i / varcomp (= 1 + rvc) and the standard error of b.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.inference import influence as infl

REF = Path(__file__).parent / "reference" / "influence"
RTOL = 1e-6

CASES = {
    "hsb_reml": ("mathach ~ ses + (ses | school)", "hsb", "school", True),
    "sleepstudy_reml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "Subject", True),
    "sleepstudy_ml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "Subject", False),
    "sleepstudy_intercept_reml": ("Reaction ~ Days + (1 | Subject)", "sleepstudy", "Subject", True),
}


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    formula, dataset, level, reml = CASES[request.param]
    ref = json.loads((REF / f"{request.param}.json").read_text())
    fit = ml.lmer(formula, ml.datasets.load(dataset), reml=reml)
    deleted = infl.deleted_fits(fit, level)
    return ref, fit, deleted, infl.diagnostics(deleted)


def test_refits_match_lme4(case):
    ref, _, d, _ = case
    assert list(d.beta.index.astype(str)) == ref["levels"]
    assert _rel(d.beta, ref["beta_delete"]) < RTOL
    assert _rel(d.vcov, ref["vcov_delete"]) < RTOL
    assert _rel(d.sigma, ref["sigma_delete"]) < RTOL
    assert _rel(d.varcomp, ref["varcomp_delete"]) < RTOL
    assert list(d.varcomp.columns) == ref["varcomp_names"]
    assert _rel(d.full_beta, ref["beta"]) < RTOL
    assert _rel(d.full_vcov, ref["vcov"]) < RTOL
    assert _rel(d.full_varcomp, ref["varcomp"]) < RTOL
    assert d.converged.all()


def test_diagnostics_match_hlmdiag_definitions(case):
    ref, fit, _, frame = case
    for key in ("cooksd", "mdffits", "covratio"):
        assert _rel(frame[key], ref[key]) < RTOL, key
    p = len(ref["beta"])
    trace = np.abs(np.asarray(ref["covtrace"]) - p)  # |tr(V^-1 V_i)| near p: compare its size
    assert np.max(np.abs(frame["covtrace"] - ref["covtrace"]) / (trace + p)) < RTOL
    rvc = frame[[f"rvc.{n}" for n in ref["varcomp_names"]]].to_numpy()
    assert np.max(np.abs(rvc - ref["rvc"]) / np.abs(1.0 + np.asarray(ref["rvc"]))) < RTOL
    dfbeta = frame[[f"dfbeta.{n}" for n in ref["fixef_names"]]].to_numpy()
    se = np.sqrt(np.diag(ref["vcov"]))
    assert np.max(np.abs(dfbeta - ref["dfbeta"]) / se) < RTOL
    assert (frame["nobs"] < fit.nobs).all() and frame.attrs["level"] == ref["level"]


def test_diagnostics_follow_their_formulas(case):
    """Each column from the refits by the formula it states (an internal consistency check,
    independent of R)."""
    _, _, d, frame = case
    b, V = d.full_beta.to_numpy(), d.full_vcov
    i = int(np.argmax(frame["cooksd"].to_numpy()))
    delta = b - d.beta.to_numpy()[i]
    assert frame["cooksd"].iloc[i] == pytest.approx(delta @ np.linalg.solve(V, delta) / len(b))
    Vi = d.vcov[i]
    assert frame["covratio"].iloc[i] == pytest.approx(np.linalg.det(Vi) / np.linalg.det(V))
    ratio = d.varcomp.iloc[i] / d.full_varcomp
    assert frame.filter(like="rvc.").iloc[i].to_numpy() == pytest.approx(ratio.to_numpy() - 1)


def test_ml_influence_is_the_method():
    fit = ml.lmer("Reaction ~ Days + (1 | Subject)", ml.datasets.load("sleepstudy"))
    a, b = ml.influence(fit), fit.influence("Subject")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == [
        "cooksd", "mdffits", "covtrace", "covratio", "dfbeta.(Intercept)", "dfbeta.Days",
        "rvc.sigma2", "rvc.D11", "nobs", "converged",
    ]  # fmt: skip
    q1, q3 = np.quantile(a["cooksd"], [0.25, 0.75])
    assert a.attrs["cutoff"] == pytest.approx(q3 + 3 * (q3 - q1), rel=1e-12)


def test_same_as_a_refit_from_the_rows():
    """Deleting a level through the accumulators gives the fit of the remaining rows."""
    df = ml.datasets.load("sleepstudy")
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", df)
    d = infl.deleted_fits(fit, "Subject")
    sub = df[df["Subject"].astype(str) != "309"]
    refit = ml.lmer("Reaction ~ Days + (Days | Subject)", sub)
    assert np.max(np.abs(d.beta.loc["309"] - refit.beta) / np.abs(refit.beta)) < 1e-5
    assert abs(d.sigma.loc["309"] / refit.sigma - 1) < 1e-5


def test_nested_level_and_errors():
    pastes = ml.datasets.load("pastes")
    fit = ml.lmer("strength ~ 1 + (1 | batch/cask)", pastes)
    frame = fit.influence("batch")
    assert len(frame) == 10 and np.isfinite(frame["cooksd"]).all()
    assert list(frame.filter(like="rvc.").columns) == ["rvc.sigma2", "rvc.D11", "rvc.D22"]
    with pytest.raises(ValueError, match="several grouping factors"):
        fit.influence()
    with pytest.raises(ValueError, match=r"not a grouping factor.*'cask:batch', 'batch'"):
        fit.influence("cask")


def test_polish_reaches_a_stationary_point():
    fit = ml.lmer("mathach ~ ses + (ses | school)", ml.datasets.load("hsb"))
    f = lambda t: fit.problem.objective(t, True)  # noqa: E731
    t = infl.polish(f, fit.theta, np.asarray(fit.problem.lower))
    g0, _ = infl._derivatives(f, fit.theta, np.arange(3), f(fit.theta))
    g1, _ = infl._derivatives(f, t, np.arange(3), f(t))
    assert f(t) <= f(fit.theta) + 1e-11 * abs(f(t))
    assert np.max(np.abs(g1)) < 1e-3 * np.max(np.abs(g0))


# -- the dot plot (multilevel.plot.influence) ---------------------------------------------------
def test_influence_plot_draws_each_group_and_the_cutoff():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import multilevel.plot as mlp

    fit = ml.lmer("mathach ~ ses + (ses | school)", ml.datasets.load("hsb"))
    frame = fit.influence("school")
    ax = mlp.influence(frame)
    try:
        cooksd = frame["cooksd"].to_numpy()
        q1, q3 = np.quantile(cooksd, [0.25, 0.75])
        cut = q3 + 3 * (q3 - q1)
        assert frame.attrs["cutoff"] == pytest.approx(cut, rel=1e-12)
        inside, beyond = ax.collections
        n_beyond = int((cooksd > cut).sum())
        assert n_beyond >= 1 and len(beyond.get_offsets()) == n_beyond
        assert len(inside.get_offsets()) == len(frame) - n_beyond
        pts = np.vstack([inside.get_offsets(), beyond.get_offsets()])
        order = np.argsort(pts[:, 1])
        np.testing.assert_array_equal(pts[order, 1], np.arange(1, len(frame) + 1))
        np.testing.assert_allclose(pts[order, 0], np.sort(cooksd), rtol=1e-12)
        (line,) = ax.lines
        assert line.get_xdata()[0] == pytest.approx(cut, rel=1e-12)
        flagged = set(frame.index[cooksd > cut].astype(str))
        assert {t.get_text() for t in ax.texts} == flagged
        assert ax.get_xlabel() == "Cook's distance" and ax.get_title() == "Influence of each school"
        ax2 = mlp.influence(frame, diagnostic="covratio")
        assert len(ax2.lines) == 2  # two-sided: a line at each end
        with pytest.raises(KeyError, match="no diagnostic"):
            mlp.influence(frame, diagnostic="leverage")
    finally:
        plt.close("all")


def test_the_diagnostics_page_runs(tmp_path, monkeypatch):
    """Every code block of docs/diagnostics.md runs, in order, in one namespace."""
    pytest.importorskip("matplotlib")
    import re

    page = Path(__file__).parent.parent / "docs" / "diagnostics.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    assert len(namespace["ax"].collections) == 2  # inside and beyond the cutoff
    assert namespace["infl"].shape[0] == 160


def test_a_refit_that_cannot_be_made_is_a_nan_row():
    """A fixed effect that lives in one subject only: without that subject X is rank
    deficient (lme4 would drop the column); its row is NaN, with a warning naming the level."""
    d = ml.datasets.load("sleepstudy")
    d["x"] = np.where(d["Subject"].astype(str) == "308", d["Days"], 0.0)
    fit = ml.lmer("Reaction ~ Days + x + (1 | Subject)", d)
    with pytest.warns(ml.MultilevelWarning, match="without Subject '308' failed"):
        frame = fit.influence("Subject")
    assert frame.loc["308", ["cooksd", "rvc.sigma2"]].isna().all()
    assert not frame.loc["308", "converged"] and frame.drop(index="308")["cooksd"].notna().all()
