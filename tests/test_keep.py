"""Keeping fits: pickle round trips (also into a fresh process) and fit.save / ml.load."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fits(sleep):
    return {
        "lmer": ml.lmer("Reaction ~ Days + (Days | Subject)", sleep),
        "ols": ml.ols("Reaction ~ Days", sleep, vcov={"CR1": "Subject"}),
        "panel": ml.panel("Reaction ~ Days", sleep, entity="Subject", model="within"),
        "lmlist": ml.lmlist("Reaction ~ Days", sleep, group="Subject"),
    }


def _same(a, b) -> None:
    """Equal to the bit: Series, DataFrames, arrays and scalars."""
    if isinstance(a, pd.Series | pd.DataFrame):
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b), check_exact=True)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


ESTIMATES = {
    "lmer": ("theta", "beta", "sigma", "objective", "vcov", "fitted"),
    "ols": ("coef", "vcov", "se", "df", "fitted", "r2"),
    "panel": ("coef", "vcov", "se", "fixef", "r2_within"),
    "lmlist": ("coef", "se", "coef_cov", "sigma", "nobs"),
}


@pytest.mark.parametrize("kind", list(ESTIMATES))
def test_pickle_round_trip(fits, kind):
    fit = fits[kind]
    back = pickle.loads(pickle.dumps(fit))
    assert type(back) is type(fit)
    for name in ESTIMATES[kind]:
        _same(getattr(fit, name), getattr(back, name))
    assert str(back.summary()) == str(fit.summary())


def test_pickled_lmer_rebuilds_its_problem(fits):
    fit = fits["lmer"]
    back = pickle.loads(pickle.dumps(fit))
    assert back.__dict__["_problem"] is None
    # a new problem forms A afresh: equal to rounding (the sums may run in another order)
    assert back.objective_at(fit.theta) == pytest.approx(fit.objective_at(fit.theta), rel=1e-12)
    assert back.refit_ml().loglik == pytest.approx(fit.refit_ml().loglik, rel=1e-9)


def test_unpickle_in_fresh_process(fits, tmp_path):
    path = tmp_path / "fit.pkl"
    path.write_bytes(pickle.dumps(fits["lmer"]))
    code = textwrap.dedent(
        f"""
        import pickle
        fit = pickle.loads(open({str(path)!r}, "rb").read())
        print(fit.summary())
        print(fit.predict({{"Days": [0.0, 1.0], "Subject": ["308", "999"]}},
                          allow_new_levels=True).round(2).tolist())
        print(fit.confint(method="wald").round(3).iloc[-2:].to_numpy().tolist())
        print(fit.coef_table().shape)
        print(round(fit.refit_ml().loglik, 4))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "Linear mixed model fit by REML" in out
    assert "[253.66, 261.87]" in out
    assert "-875.9697" in out
    wald = fits["lmer"].confint(method="wald").round(3).iloc[-2:].to_numpy().tolist()
    assert str(wald) in out


# ------------------------------------------------------------------ fit.save / ml.load
@pytest.mark.parametrize("kind", list(ESTIMATES))
def test_save_load_round_trip(fits, kind, tmp_path):
    fit = fits[kind]
    path = tmp_path / f"{kind}.mlfit"
    fit.save(path)
    back = ml.load(path)
    assert type(back) is type(fit)
    for name in ESTIMATES[kind]:
        _same(getattr(fit, name), getattr(back, name))
    assert str(back.summary()) == str(fit.summary())


def test_saved_lmer_answers(fits, tmp_path):
    fit = fits["lmer"]
    fit.save(tmp_path / "f.mlfit")
    back = ml.load(tmp_path / "f.mlfit")
    for name in ("u", "b", "lambda_"):
        for x, y in zip(getattr(fit, name), getattr(back, name)):
            _same(x, y)
    for key, value in fit.optimizer.items():
        _same(back.optimizer[key], value)
    for key, value in fit.check.items():
        _same(back.check[key], value)
    _same(back.ranef["Subject"], fit.ranef["Subject"])
    new = {"Days": [0.0, 1.0], "Subject": ["308", "999"]}
    _same(back.predict(new, allow_new_levels=True), fit.predict(new, allow_new_levels=True))
    _same(back.confint(method="wald"), fit.confint(method="wald"))
    _same(back.coef_table(), fit.coef_table())
    assert back.refit_ml().loglik == pytest.approx(fit.refit_ml().loglik, rel=1e-9)


def test_saved_lmer_with_formulaic_terms_predicts(tmp_path):
    """Transforms, factors and cvar: the formula specs are rebuilt from the saved columns."""
    hsb = ml.datasets.load("hsb")
    fit = ml.lmer(
        "mathach ~ np.log1p(meanses + 2) + C(sector) + cvar(ses, school) + (1 | school)", hsb
    )
    fit.save(tmp_path / "h.mlfit")
    back = ml.load(tmp_path / "h.mlfit")
    _same(back.beta, fit.beta)
    new = hsb.iloc[:50]
    _same(back.predict(new), fit.predict(new))
    _same(back.predict(new, re_form="~0"), fit.predict(new, re_form="~0"))


def test_saved_crossed_lmer(tmp_path):
    pen = ml.datasets.load("penicillin")
    fit = ml.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    fit.save(tmp_path / "p.mlfit")
    back = ml.load(tmp_path / "p.mlfit")
    _same(back.theta, fit.theta)
    _same(back.varcorr, fit.varcorr)
    assert back.objective_at(fit.theta) == pytest.approx(fit.objective, rel=1e-12)


def _zip(path, files):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)


def test_load_rejects_what_is_not_a_saved_fit(fits, tmp_path):
    import json

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ml.FitFileError, match="not a saved multilevel fit"):
        ml.load(text)
    pkl = tmp_path / "fit.pkl"
    pkl.write_bytes(pickle.dumps(fits["ols"]))
    with pytest.raises(ml.FitFileError, match="not a saved multilevel fit"):
        ml.load(pkl)
    _zip(tmp_path / "other.zip", {"readme.txt": "x"})
    with pytest.raises(ml.FitFileError, match=r"no fit\.json"):
        ml.load(tmp_path / "other.zip")
    _zip(tmp_path / "fmt.zip", {"fit.json": json.dumps({"format": "other"})})
    with pytest.raises(ml.FitFileError, match="format is not multilevel-fit"):
        ml.load(tmp_path / "fmt.zip")
    newer = {"format": "multilevel-fit", "version": 99, "fit": {}}
    _zip(tmp_path / "newer.zip", {"fit.json": json.dumps(newer)})
    with pytest.raises(ml.FitFileError, match="version 99"):
        ml.load(tmp_path / "newer.zip")
    with pytest.raises(ml.FitFileError):
        ml.load(tmp_path / "missing.mlfit")
    assert issubclass(ml.FitFileError, ml.MultilevelError)


def test_load_makes_only_known_classes(tmp_path):
    import json

    evil = {"t": "obj", "cls": "Popen", "fields": {"t": "dict", "v": [["args", "ls"]]}}
    tree = {"t": "fit", "cls": "OlsFit", "state": {"t": "dict", "v": [["x", evil]]}}
    manifest = {"format": "multilevel-fit", "version": 1, "fit": tree}
    _zip(tmp_path / "evil.zip", {"fit.json": json.dumps(manifest)})
    with pytest.raises(ml.FitFileError, match="unknown class 'Popen'"):
        ml.load(tmp_path / "evil.zip")
    bad = {"format": "multilevel-fit", "version": 1, "fit": {"t": "fit", "cls": "Popen"}}
    _zip(tmp_path / "bad.zip", {"fit.json": json.dumps(bad)})
    with pytest.raises(ml.FitFileError, match="holds no fit"):
        ml.load(tmp_path / "bad.zip")


def test_loaded_fit_saves_and_pickles_again(fits, sleep, tmp_path):
    fit = fits["lmer"]
    fit.save(tmp_path / "a.mlfit")
    once = ml.load(tmp_path / "a.mlfit")
    again = pickle.loads(pickle.dumps(once))
    again.save(tmp_path / "b.mlfit")
    twice = ml.load(tmp_path / "b.mlfit")
    _same(twice.beta, fit.beta)
    _same(twice.predict(sleep.iloc[:5]), fit.predict(sleep.iloc[:5]))
    _same(twice.augment(), fit.augment())
