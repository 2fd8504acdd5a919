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
