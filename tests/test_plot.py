"""multilevel.plot: each plot drawn headless on the bundled data, and what it drew checked
against the fit's numbers (points, intervals, arrows, ellipse, bands, labels)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "matplotlib", reason="multilevel.plot needs matplotlib (pip install multilevel[plot])"
)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Ellipse
from matplotlib.quiver import Quiver
from scipy import stats

import multilevel as ml
import multilevel.plot as mlp
from multilevel.plot import _common

Z95 = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def hsb():
    return ml.datasets.load("hsb")


@pytest.fixture(scope="module")
def fit_sleep(sleep):
    return ml.lmer("Reaction ~ Days + (Days | Subject)", data=sleep)


@pytest.fixture(scope="module")
def fit_hsb(hsb):
    return ml.lmer("mathach ~ ses + sector + (ses | school)", data=hsb)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# -- caterpillar ------------------------------------------------------------------------------
def test_caterpillar_points_sorted_and_intervals(fit_sleep):
    ax = mlp.caterpillar(fit_sleep, term="Days")
    modes = fit_sleep.ranef["Subject"]["Days"]
    pts = ax.collections[0].get_offsets()
    assert len(pts) == 18
    np.testing.assert_array_equal(pts[:, 0], np.sort(modes.to_numpy()))  # sorted, bottom up
    np.testing.assert_array_equal(pts[:, 1], np.arange(18))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == list(modes.sort_values(kind="stable").index.astype(str))
    # intervals: mode +/- z sqrt(condvar), to rounding (1e-10 relative)
    segs = ax.collections[1].get_segments()
    assert len(segs) == 18
    cv = fit_sleep.ranef_condvar["Subject"][:, 1, 1]
    for level in ["308", "335", "350"]:
        k = list(modes.index).index(level)
        row = labels.index(level)
        (x0, y0), (x1, y1) = segs[row]
        assert y0 == y1 == row
        half = Z95 * np.sqrt(cv[k])
        np.testing.assert_allclose(
            [x0, x1], [modes.iloc[k] - half, modes.iloc[k] + half], rtol=1e-10
        )
    assert ax.get_xlabel() == "Conditional mode of Days"
    assert ax.get_ylabel() == "Subject"
    assert ax.get_title() == "Subject: Days (95% intervals)"
    assert len(ax.lines) == 1 and ax.lines[0].get_xdata()[0] == 0.0  # the line at 0


def test_caterpillar_level_and_many_levels(fit_hsb):
    ax = mlp.caterpillar(fit_hsb, group="school", level=0.5)
    assert len(ax.collections[0].get_offsets()) == 160
    assert ax.get_yticklabels() == []  # 160 labels would not be readable
    cv = fit_hsb.ranef_condvar["school"][:, 0, 0]
    widths = np.array([s[1][0] - s[0][0] for s in ax.collections[1].get_segments()])
    order = np.argsort(fit_hsb.ranef["school"]["(Intercept)"].to_numpy(), kind="stable")
    np.testing.assert_allclose(widths, 2 * stats.norm.ppf(0.75) * np.sqrt(cv[order]), rtol=1e-10)


def test_caterpillar_bad_term_and_group(fit_sleep):
    with pytest.raises(KeyError, match="no random-effect term 'days'"):
        mlp.caterpillar(fit_sleep, term="days")
    with pytest.raises(KeyError, match="no grouping factor 'school'"):
        mlp.caterpillar(fit_sleep, group="school")
    with pytest.raises(TypeError, match="group must be the name of a grouping factor"):
        mlp.shrinkage(fit_sleep, pd.DataFrame({"a": [1]}))  # data is not needed


def test_draws_on_given_axes_and_passes_style(fit_sleep):
    _, (a1, a2) = plt.subplots(1, 2)
    out = mlp.caterpillar(fit_sleep, ax=a2, color="C2", marker="s")
    assert out is a2 and len(a1.collections) == 0
    np.testing.assert_allclose(
        out.collections[0].get_facecolor()[0], matplotlib.colors.to_rgba("C2")
    )


# -- residuals --------------------------------------------------------------------------------
def test_resid_fitted(fit_sleep):
    ax = mlp.resid_fitted(fit_sleep)
    pts = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(pts[:, 0], fit_sleep.fitted)
    np.testing.assert_array_equal(pts[:, 1], fit_sleep.resid)
    assert len(ax.lines) == 2  # the line at 0 and the smooth
    assert list(ax.lines[0].get_ydata()) == [0.0, 0.0]
    sx, sy = ax.lines[1].get_data()
    assert len(sx) == 18  # one point per 10 rows
    order = np.argsort(fit_sleep.fitted, kind="stable")
    np.testing.assert_allclose(sy[0], fit_sleep.resid[order[:10]].mean(), rtol=1e-12)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Fitted values", "Residuals")
    assert len(mlp.resid_fitted(fit_sleep, smooth=False).lines) == 1


def test_resid_by_group(fit_sleep):
    ax = mlp.resid_by_group(fit_sleep, sort=True)
    assert len(ax.patches) == 18  # one box per subject
    labels = [t.get_text() for t in ax.get_xticklabels()]
    codes = _common.group_codes(fit_sleep, "Subject")
    levels = list(fit_sleep.ranef["Subject"].index)
    med = pd.Series({lv: np.median(fit_sleep.resid[codes == k]) for k, lv in enumerate(levels)})
    assert labels == list(med.sort_values(kind="stable").index)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Subject", "Residuals")
    assert ax.get_title() == "Residuals by Subject"


def test_resid_by_group_hsb(fit_hsb):
    ax = mlp.resid_by_group(fit_hsb, group="school")
    assert len(ax.patches) == 160
    assert ax.get_xticklabels() == []


def test_qq_resid(fit_sleep):
    ax = mlp.qq_resid(fit_sleep)
    pts = ax.collections[0].get_offsets()
    n = 180
    assert len(pts) == n
    p = (np.arange(1, n + 1) - 0.5) / n  # R's ppoints for n > 10
    np.testing.assert_allclose(pts[:, 0], stats.norm.ppf(p), rtol=1e-12)
    r = np.sort(fit_sleep.resid / fit_sleep.sigma)
    np.testing.assert_allclose(pts[:, 1], r, rtol=1e-12)
    line = ax.lines[0]  # qqline: through the quartiles
    q1, q3 = np.quantile(r, [0.25, 0.75])
    np.testing.assert_allclose(line.get_slope(), (q3 - q1) / (2 * stats.norm.ppf(0.75)), rtol=1e-12)
    assert ax.get_ylabel() == "Scaled residuals"
    assert ax.get_xlabel() == "Standard normal quantiles"


def test_qq_ranef(fit_hsb, fit_sleep):
    ax = mlp.qq_ranef(fit_hsb, term="ses")
    pts = ax.collections[0].get_offsets()
    assert len(pts) == 160 and len(ax.lines) == 1
    np.testing.assert_array_equal(pts[:, 1], np.sort(fit_hsb.ranef["school"]["ses"]))
    assert ax.get_title() == "Normal QQ plot: school, ses"
    small = mlp.qq_ranef(fit_sleep).collections[0].get_offsets()  # n <= 10 uses a = 3/8 ...
    assert len(small) == 18  # ... but 18 > 10, so a = 1/2
    np.testing.assert_allclose(small[0, 0], stats.norm.ppf(0.5 / 18), rtol=1e-12)


# -- shrinkage --------------------------------------------------------------------------------
def _quiver(ax):
    (q,) = [c for c in ax.collections if isinstance(c, Quiver)]
    return q


def test_shrinkage_sleepstudy(fit_sleep, sleep):
    ax = mlp.shrinkage(fit_sleep)
    q = _quiver(ax)
    assert len(q.U) == 18  # one arrow per subject
    own = ml.lmlist("Reaction ~ Days", sleep, group="Subject").coef
    start = q.get_offsets()
    np.testing.assert_allclose(start, own.to_numpy(), rtol=1e-10)  # nlme's lmList
    np.testing.assert_allclose(ax.collections[0].get_offsets(), own.to_numpy(), rtol=1e-10)
    end = start + np.column_stack([q.U, q.V])
    coef = fit_sleep.coef["Subject"][["(Intercept)", "Days"]].to_numpy()
    np.testing.assert_allclose(end, coef, rtol=1e-8)  # the model's end is lme4's coef()
    np.testing.assert_allclose(ax.collections[1].get_offsets(), coef, rtol=1e-8)
    (pop,) = [ln for ln in ax.lines if ln.get_label() == "population"]
    np.testing.assert_allclose([pop.get_xdata()[0], pop.get_ydata()[0]], fit_sleep.fixef)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("(Intercept)", "Days")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "own least squares",
        "mixed model",
        "population",
    ]


def test_shrinkage_sizes_and_group_level_predictor(fit_hsb, hsb):
    ax = mlp.shrinkage(fit_hsb)
    q = _quiver(ax)
    assert len(q.U) == 160
    n = hsb.groupby("school", observed=True).size()
    sizes = ax.collections[0].get_sizes()
    levels = fit_hsb.ranef["school"].index
    assert sizes[np.argmax(n[levels].to_numpy())] == sizes.max()
    assert sizes[np.argmin(n[levels].to_numpy())] == sizes.min()
    # sector is constant within a school: the model's intercept for a Catholic school
    # includes sectorCatholic (fit.coef's "(Intercept)" column does not)
    end = q.get_offsets() + np.column_stack([q.U, q.V])
    coef = fit_hsb.coef["school"]
    catholic = hsb.groupby("school", observed=True)["sector"].first()[levels] == "Catholic"
    expect = coef["(Intercept)"].to_numpy() + catholic.to_numpy() * fit_hsb.fixef["sectorCatholic"]
    np.testing.assert_allclose(end[:, 0], expect, rtol=1e-8)
    np.testing.assert_allclose(end[:, 1], coef["ses"].to_numpy(), rtol=1e-8)


def test_shrinkage_one_term(fit_hsb):
    ax = mlp.shrinkage(fit_hsb, term="ses")
    q = _quiver(ax)
    assert len(q.U) == 160
    np.testing.assert_array_equal(q.V, 0.0)  # horizontal arrows
    start = q.get_offsets()
    assert np.all(np.diff(start[:, 0]) >= 0)  # sorted by own estimate
    (pop,) = [ln for ln in ax.lines if ln.get_label() == "population"]
    assert pop.get_xdata()[0] == fit_hsb.fixef["ses"]
    assert ax.get_xlabel() == "ses"


# -- random-coefficient scatter ---------------------------------------------------------------
def _ellipse_points(ax):
    """Points of the drawn ellipse on its curve (the path's cubic Bezier segments end on it;
    the other vertices are control points)."""
    (e,) = [p for p in ax.patches if isinstance(p, Ellipse)]
    return e.get_patch_transform().transform(e.get_path().vertices[::3])


def test_ranef_scatter_ellipse(fit_sleep):
    ax = mlp.ranef_scatter(fit_sleep, level=0.9)
    pts = ax.collections[0].get_offsets()
    assert len(pts) == 18
    np.testing.assert_array_equal(pts, fit_sleep.ranef["Subject"].to_numpy())
    vc = fit_sleep.varcorr
    S = np.array([[vc.vcov[0], vc.vcov[2]], [vc.vcov[2], vc.vcov[1]]])
    xy = _ellipse_points(ax)
    quad = np.einsum("ij,jk,ik->i", xy, np.linalg.inv(S), xy)
    np.testing.assert_allclose(quad, stats.chi2.ppf(0.9, 2), rtol=1e-6)  # on the 90% contour
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("(Intercept)", "Days")


def test_ranef_scatter_uncorrelated_and_errors(sleep):
    fit = ml.lmer("Reaction ~ Days + (Days || Subject)", data=sleep)
    ax = mlp.ranef_scatter(fit, terms=("Days", "(Intercept)"))
    xy = _ellipse_points(ax)
    vc = fit.varcorr
    S = np.diag([vc.vcov[1], vc.vcov[0]])  # Days on x; no covariance across || blocks
    quad = np.einsum("ij,jk,ik->i", xy, np.linalg.inv(S), xy)
    np.testing.assert_allclose(quad, stats.chi2.ppf(0.95, 2), rtol=1e-6)
    one = ml.lmer("Reaction ~ Days + (1 | Subject)", data=sleep)
    with pytest.raises(ValueError, match="one random-effect term"):
        mlp.ranef_scatter(one)


# -- effect -----------------------------------------------------------------------------------
def test_effect_by_factor(hsb):
    fit = ml.lmer("mathach ~ ses * sector + (1 | school)", data=hsb)
    ax = mlp.effect(fit, "ses", data=hsb, by="sector", n=30)
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # one line and band per sector
    V = fit.vcov.to_numpy()
    b = fit.fixef
    for line, band, cath in zip(ax.lines, ax.collections, [0.0, 1.0]):
        x, y = line.get_data()
        assert len(x) == 30 and x[0] == hsb.ses.min() and x[-1] == hsb.ses.max()
        X = np.column_stack([np.ones_like(x), x, np.full_like(x, cath), cath * x])
        np.testing.assert_allclose(y, X @ b.to_numpy(), rtol=1e-10)
        half = Z95 * np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
        verts = band.get_paths()[0].vertices
        at0 = verts[np.isclose(verts[:, 0], x[0])][:, 1]
        np.testing.assert_allclose(
            [at0.min(), at0.max()], [y[0] - half[0], y[0] + half[0]], rtol=1e-10
        )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "sector = Public",
        "sector = Catholic",
    ]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("ses", "mathach")


def test_effect_other_predictors_at_mean_and_reference(fit_hsb, hsb):
    ax = mlp.effect(fit_hsb, "ses", data=hsb, level=0.8, n=5)
    assert len(ax.lines) == 1 and len(ax.collections) == 1 and ax.get_legend() is None
    x, y = ax.lines[0].get_data()
    new = pd.DataFrame(
        {"ses": x, "sector": pd.Categorical(["Public"] * 5, categories=hsb.sector.cat.categories)}
    )
    np.testing.assert_allclose(y, fit_hsb.predict(new, re_form=np.nan), rtol=1e-10)
    assert ax.get_title() == "Effect of ses (80% band, population level)"


def test_effect_errors(fit_hsb, hsb):
    with pytest.raises(ValueError, match="needs the data"):
        mlp.effect(fit_hsb, "ses")
    with pytest.raises(TypeError, match="numeric predictor"):
        mlp.effect(fit_hsb, "sector", data=hsb)
    with pytest.raises(ValueError, match="at most 12 lines"):
        mlp.effect(fit_hsb, "ses", data=hsb, by="school")


# -- profile ----------------------------------------------------------------------------------
def _traces():
    v = np.linspace(0.0, 4.0, 21)
    return {"a": (v, v - 2.0), "b": (v[::-1], 0.5 * (v[::-1] - 2.0))}  # b given unsorted


def test_profile_panels_lines_and_interval_ends():
    fig = mlp.profile(_traces())
    assert len(fig.axes) == 2
    for ax, name, ends in zip(fig.axes, "ab", [(2.0 - Z95, 2.0 + Z95), None]):
        assert (ax.get_xlabel(), ax.get_ylabel()) == (name, "zeta")
        trace, lo, hi = ax.lines[:3]
        assert len(trace.get_xdata()) == 21 and np.all(np.diff(trace.get_xdata()) > 0)
        np.testing.assert_allclose([lo.get_ydata()[0], hi.get_ydata()[0]], [-Z95, Z95])
        if name == "a":  # crosses +-1.96 inside its range: both ends marked
            assert len(ax.lines) == 5
            got = [ln.get_xdata()[0] for ln in ax.lines[3:]]
            np.testing.assert_allclose(got, ends, rtol=1e-12)
        else:  # zeta only reaches +-1: no end marked
            assert len(ax.lines) == 3
    assert fig.get_suptitle() == "Profile zeta (95% interval marked)"


def test_profile_dataframe_same_as_dict():
    rows = [(k, x, z) for k, (v, zt) in _traces().items() for x, z in zip(v, zt)]
    df = pd.DataFrame(rows, columns=["parameter", "value", "zeta"])
    f1, f2 = mlp.profile(df), mlp.profile(_traces())
    for a1, a2 in zip(f1.axes, f2.axes):
        np.testing.assert_array_equal(a1.lines[0].get_xydata(), a2.lines[0].get_xydata())


def test_profile_given_axes_and_errors():
    fig, ax = plt.subplots()
    assert mlp.profile(_traces(), parameters=["a"], ax=ax) is fig
    assert len(ax.lines) == 5
    with pytest.raises(ValueError, match="2 parameters to draw but 1 Axes"):
        mlp.profile(_traces(), ax=ax)
    with pytest.raises(KeyError, match="no profile for"):
        mlp.profile(_traces(), parameters=["c"])
    with pytest.raises(KeyError, match="missing"):
        mlp.profile(pd.DataFrame({"parameter": ["a"], "value": [1.0]}))


# -- optional dependency ----------------------------------------------------------------------
def test_missing_matplotlib_says_how_to_install(monkeypatch, fit_sleep):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install multilevel\[plot\]"):
        mlp.caterpillar(fit_sleep)
