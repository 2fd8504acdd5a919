"""Hostile inputs, the command line: every bad input ends with one line naming the problem
(no traceback, no private class name) and exit status 2 (input) or 1 (fit); good unusual
inputs fit."""

from __future__ import annotations

import numpy as np
import pytest

from _hostile import small
from multilevel.cli import main


@pytest.fixture
def files(tmp_path):
    d = small()
    d.to_csv(tmp_path / "ok.csv", index=False)
    d.rename(columns={"y": "my.y", "x": "my.x", "g": "my.g"}).to_csv(
        tmp_path / "dots.csv", index=False
    )
    d.assign(y=np.where(d.index == 3, np.nan, d.y)).to_csv(tmp_path / "na.csv", index=False)
    d.assign(y=2.0).to_csv(tmp_path / "const.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    d.to_parquet(tmp_path / "ok.parquet")
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# fmt: off
ERRORS = [  # argv (DIR is the fixture's folder), exit status, the one line on stderr
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "nosuch"], 2, r"multilevel: error: --data 'nosuch' is neither a bundled dataset", id="unknown-dataset"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/missing.csv"], 2, r"is neither a bundled dataset .* nor an existing file", id="missing-file"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/data.xlsx"], 2, r"cannot read .*data.xlsx: expected a .csv, .csv.gz, .parquet or .pq file", id="excel-file"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/empty.csv"], 2, r"cannot read .*empty.csv: No columns to parse from file", id="empty-csv"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/binary.csv"], 2, r"multilevel: error: (cannot read|MissingColumnError)", id="binary-csv"),
    pytest.param(["fit", "y ~ x + (1 | g", "--data", "DIR/ok.csv"], 2, r"FormulaError: unbalanced parentheses: '\(' is never closed \(at character 9 of the formula\)", id="formula-error"),
    pytest.param(["fit", "y ~ xx + (1 | g)", "--data", "DIR/ok.csv"], 2, r"MissingColumnError: column 'xx' is not in the data; did you mean 'x'\?", id="missing-column"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/ok.csv", "--weights", "wt"], 2, r"MissingColumnError: column 'wt' is not in the data", id="missing-weights-column"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/ok.csv", "--offset", "f"], 2, r"DataError: offset column 'f' must be numeric", id="text-offset-column"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/const.csv"], 2, r"DataError: the response 'y' is constant", id="constant-response"),
    pytest.param(["fit", "y ~ x + (0 | g)", "--data", "DIR/ok.csv"], 2, r"FormulaError: random-effects term \(0 \| g\) has no columns", id="zero-bar"),
    pytest.param(["fit", "f ~ x + (1 | g)", "--data", "DIR/ok.csv"], 2, r"DataError: response 'f' must be numeric", id="text-response"),
]
# fmt: on


@pytest.mark.parametrize("argv, code, line", ERRORS)
def test_error(capsys, files, argv, code, line):
    got, out, err = run(capsys, *[a.replace("DIR", str(files)) for a in argv])
    assert got == code and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "_UserError" not in err
    import re

    assert re.search(line, lines[0]), lines[0]


# fmt: off
FITS = [
    pytest.param(["fit", "my.y ~ my.x + (1 | my.g)", "--data", "DIR/dots.csv"], "Formula: my.y ~ my.x + (1 | my.g)", "", id="dotted-csv"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/na.csv"], "Number of obs: 59", "warning: dropped 1 row with missing values (in 'y')", id="missing-value-warned"),
    pytest.param(["fit", "y ~ scale(x) + offset(log(t)) + (1 | g)", "--data", "DIR/ok.csv", "--ml"], "Linear mixed model fit by maximum likelihood", "", id="scale-offset-ml"),
    pytest.param(["fit", "y ~ x + (1 | g)", "--data", "DIR/ok.parquet"], "Number of obs: 60", "", id="parquet"),
]
# fmt: on


@pytest.mark.parametrize("argv, in_out, in_err", FITS)
def test_fit(capsys, files, argv, in_out, in_err):
    got, out, err = run(capsys, *[a.replace("DIR", str(files)) for a in argv])
    assert got == 0 and in_out in out and in_err in err


def test_usage_errors(capsys):
    assert run(capsys, "fit", "y ~ x")[0] == 2
    assert run(capsys, "nosuch")[0] == 2
    assert run(capsys)[0] == 2
