"""The `multilevel` command, run in-process through cli.main()."""

from __future__ import annotations

import pytest

import multilevel as ml
from multilevel.cli import main

pytestmark = pytest.mark.usefixtures("lmm_core")


def test_fit_bundled_dataset(capsys):
    rc = main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert out.startswith("Linear mixed model fit by REML ['lmerMod']")
    assert "   Data: sleepstudy" in out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Number of obs: 180, groups:  Subject, 18" in out


def test_fit_ml_csv_with_weights(tmp_path, capsys):
    df = ml.datasets.load("sleepstudy")
    df["w"] = 1 + (df["Days"] % 3) / 2
    path = tmp_path / "ss.csv"
    df.to_csv(path, index=False)
    rc = main(
        ["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(path), "--ml", "--weights", "w"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "fit by maximum likelihood" in out
    assert "Weights: w" in out
    assert "df.resid" in out


def test_fit_parquet(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    df = ml.datasets.load("dyestuff")
    path = tmp_path / "d.parquet"
    df.to_parquet(path)
    rc = main(["fit", "Yield ~ 1 + (1 | Batch)", "--data", str(path)])
    out, _ = capsys.readouterr()
    assert rc == 0 and "Batch" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["fit", "Reaction ~ Dayz + (1 | Subject)", "--data", "sleepstudy"], "Dayz"),
        (["fit", "Reaction ~ Days + (1 | Subject", "--data", "sleepstudy"], "FormulaError"),
        (["fit", "Reaction ~ Days + (1 | Subject)", "--data", "no_such_thing"], "no_such_thing"),
        (
            ["fit", "Reaction ~ Days + (1 | Subject)", "--data", "sleepstudy", "--weights", "ww"],
            "ww",
        ),
    ],
)
def test_user_errors_exit_2_one_line(argv, needle, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("multilevel: error:")
    assert needle in err
    assert "Traceback" not in err


def test_usage_errors(capsys):
    assert main([]) == 2
    assert main(["fit", "y ~ 1 + (1|g)"]) == 2  # --data missing
    capsys.readouterr()


def test_singular_warning_on_stderr(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    pd.DataFrame({"y": rng.normal(size=50), "g": np.repeat(np.arange(10), 5)}).to_csv(
        tmp_path / "s.csv", index=False
    )
    rc = main(["fit", "y ~ 1 + (1 | g)", "--data", str(tmp_path / "s.csv")])
    _, err = capsys.readouterr()
    assert rc == 0
    assert "warning: boundary (singular) fit" in err


def test_usage_errors_do_not_name_private_classes(capsys):
    from multilevel import cli

    assert cli.main(["fit", "y ~ x + (1 | g)", "--data", "nonexistent.csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multilevel: error: --data 'nonexistent.csv' is neither")
    assert "_UserError" not in err
