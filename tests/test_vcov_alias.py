"""pyfixest's vcov spellings ("iid", "hetero", "HC1"-"HC3", {"CRV1": g}, {"CRV3": g}) where
ml.ols, ml.panel and ml.lmer take vcov=: the same numbers as the canonical spellings (to the
bit), and against the committed R goldens (sandwich's vcovHC/vcovCL, clubSandwich's CR1S)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.inference.sandwich import vcov_alias

ROOT = Path(__file__).resolve().parents[1]
ECON = ROOT / "tests" / "reference" / "econ"
SE_RTOL = 1e-6  # covariances against R, as tests/test_robust.py


def _ref(name: str) -> dict:
    return json.loads((ECON / f"{name}.json").read_text())


def _mat(d: dict, names: list[str]) -> np.ndarray:
    frame = pd.DataFrame(d["values"], index=d["rownames"], columns=d["colnames"])
    return frame.loc[names, names].to_numpy()


@pytest.fixture(scope="module")
def hsb():
    return ml.datasets.load("hsb")


@pytest.fixture(scope="module")
def hetero():
    return pd.read_csv(ROOT / "tests" / "reference" / "data" / "hetero.csv")


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("iid", "iid"),
        ("IID", "iid"),
        ("hetero", "HC1"),
        ("HC1", "hc1"),
        ("HC2", "hc2"),
        ("HC3", "hc3"),
        ({"CRV1": "school"}, {"CR1": "school"}),
        ({"crv1": "school"}, {"CR1": "school"}),
    ],
)
def test_ols_alias_is_the_canonical_estimator(hsb, alias, canonical):
    a = ml.ols("mathach ~ ses", hsb, vcov=alias)
    b = ml.ols("mathach ~ ses", hsb, vcov=canonical)
    np.testing.assert_array_equal(a.vcov.to_numpy(), b.vcov.to_numpy())
    np.testing.assert_array_equal(a.df.to_numpy(), b.df.to_numpy())
    assert a.vcov_type == b.vcov_type


@pytest.mark.parametrize(
    ("alias", "key"), [("hetero", "vcov_HC1"), ({"CRV1": "school"}, "vcov_CR1")]
)
def test_ols_alias_against_sandwich(hsb, alias, key):
    ref = _ref("ols_hsb")
    fit = ml.ols(ref["formula"], hsb, vcov=alias)
    names = list(ref["coef"])
    # 1e-6 relative to sandwich::vcovHC(type = "HC1") and sandwich::vcovCL(cluster = ~school)
    np.testing.assert_allclose(fit.vcov.to_numpy(), _mat(ref[key], names), rtol=SE_RTOL)


def test_two_way_crv1_as_pyfixest_writes_it(hetero):
    ref = _ref("ols_hetero")
    g, h = ref["cluster"], ref["cluster2"]
    fit = ml.ols(ref["formula"], hetero, vcov={"CRV1": f"{g} + {h}"})
    same = ml.ols(ref["formula"], hetero, vcov={"CR1": [g, h]})
    np.testing.assert_array_equal(fit.vcov.to_numpy(), same.vcov.to_numpy())
    names = list(ref["coef"])
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), _mat(ref["vcov_CR1_twoway"], names), rtol=SE_RTOL
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_crv3_is_the_leave_one_cluster_out_jackknife(hsb, weighted):
    """pyfixest's CRV3: G/(G-1) (n-1)/(n-k) sum_g (b_(g) - b)(b_(g) - b)', each b_(g) here
    an actual least-squares fit without cluster g."""
    d = hsb.iloc[:1500].assign(w=1.0 + (np.arange(1500) % 4) / 3.0)
    weights = "w" if weighted else None
    fit = ml.ols("mathach ~ ses + meanses", d, weights=weights, vcov={"CRV3": "school"})
    b = fit.coef.to_numpy()
    schools = d["school"].astype(str).unique()
    dev = np.zeros((3, 3))
    for s in schools:
        sub = d[d["school"].astype(str) != s]
        bg = ml.ols("mathach ~ ses + meanses", sub, weights=weights).coef.to_numpy()
        dev += np.outer(bg - b, bg - b)
    G, n, k = len(schools), len(d), 3
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), G / (G - 1) * (n - 1) / (n - k) * dev, rtol=1e-9
    )
    assert fit.df.iloc[0] == G - 1 and fit.vcov_type == "CRV3 (school)"
    with pytest.raises(ValueError, match="CRV3 supports one cluster column"):
        ml.ols("mathach ~ ses", d, vcov={"CRV3": ["school", "sector"]})


def test_panel_aliases():
    gr = ml.datasets.load("grunfeld")
    a = ml.panel("inv ~ value + capital", gr, entity="firm", vcov={"CRV1": "firm"})
    b = ml.panel("inv ~ value + capital", gr, entity="firm", vcov={"CR1": "firm"})
    np.testing.assert_array_equal(a.vcov.to_numpy(), b.vcov.to_numpy())
    iid = ml.panel("inv ~ value + capital", gr, entity="firm", vcov="iid")
    np.testing.assert_array_equal(
        iid.vcov.to_numpy(), ml.panel("inv ~ value + capital", gr, entity="firm").vcov.to_numpy()
    )
    with pytest.raises(ValueError, match="panel supports"):
        ml.panel("inv ~ value + capital", gr, entity="firm", vcov="hetero")
    with pytest.raises(ValueError, match="CRV3 is not available for panel"):
        ml.panel("inv ~ value + capital", gr, entity="firm", vcov={"CRV3": "firm"})


def test_lmer_aliases_against_clubsandwich(hsb):
    ref = _ref("lmer_robust_hsb")
    a = ml.lmer(ref["formula"], hsb, vcov={"CRV1": ref["cluster"]})
    b = ml.lmer(ref["formula"], hsb, vcov={"CR1S": ref["cluster"]})
    np.testing.assert_array_equal(a.vcov.to_numpy(), b.vcov.to_numpy())
    assert a.robust.type == "CR1S"
    # clubSandwich's CR1S (G (n-1) / ((G-1) (n-p)) on CR0, pyfixest's CRV1 factor): 1e-6
    want = np.sqrt(np.diag(np.asarray(ref["types"]["CR1S"]["vcov"])))
    np.testing.assert_allclose(a.se.to_numpy(), want, rtol=SE_RTOL)
    iid = ml.lmer(ref["formula"], hsb, vcov="iid")
    assert iid.robust is None
    np.testing.assert_array_equal(iid.vcov.to_numpy(), iid.vcov_model.to_numpy())
    with pytest.raises(ValueError, match="not defined for lmer"):
        ml.lmer(ref["formula"], hsb, vcov="hetero")
    with pytest.raises(ValueError, match="least-squares jackknife"):
        ml.lmer(ref["formula"], hsb, vcov={"CRV3": "school"})


def test_vcov_alias_passes_everything_else_through():
    for v in ("HC0", "CR2", {"CR2": "g"}, {"CR1": ["a", "b"]}, None, {"a": 1, "b": 2}):
        assert vcov_alias(v) == v
