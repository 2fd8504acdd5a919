"""The centring of the streamed pass (issue 13, scope 7; the in-memory centring of issue 15):
``_core.Accumulator`` shifts y and X's non-intercept columns by the first batch's means (and
scales columns far from size 1 by powers of two) before summing, converts a partial of other
shifts to its own when merging (A' = M'AM), keeps the shifts in its bytes, and restores the
estimates of the original rows. So a streamed fit equals the in-memory fit of the same rows to
1e-12 relative in the objective whatever the batch size, partitioning or source, also on data
far from zero, where the uncentred stream lost digits (sleepstudy with y + 1e8: objective
1745.376 against 1743.628; lme4's numbers are in tests/reference/robust/, written by
tests/reference/cases_robust.R).
"""

from __future__ import annotations

import itertools
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import exceptions

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
_core = pytest.importorskip("multilevel._core", reason="multilevel._core is not built")

from test_stream_fit import FORMULA, _frame  # noqa: E402

REL = 1e-12  # streamed against in-memory objective: the same rows, sums in another order
REF = Path(__file__).parent / "reference" / "robust"
RI = "Reaction ~ Days + (1 | Subject)"
RS = "Reaction ~ Days + (Days | Subject)"
RX = "Reaction ~ x + (1 | Subject)"


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _same(fit, ref, tight=False):
    """The objective to 1e-12 relative, at the optimum and at the in-memory theta; the
    estimates to the optimiser's tolerance (``tight``: the same path, 1e-7)."""
    assert abs(fit.objective / ref.objective - 1) < REL
    at = fit.problem.objective(ref.theta, ref.reml)
    assert abs(at / ref.problem.objective(ref.theta, ref.reml) - 1) < REL
    rtol, atol = (1e-7, 1e-8) if tight else (1e-3, 1e-4)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=rtol, atol=atol)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=rtol, atol=atol)
    assert fit.sigma == pytest.approx(ref.sigma, rel=rtol)


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


# -- the stream tests' models, to 1e-12 ------------------------------------------------------
@pytest.fixture(scope="module")
def frame():
    df = _frame()
    return df.assign(o=0.1 * df.x1)


@pytest.mark.parametrize("batch_rows", [13, 97, 500, 1999, 1 << 20])
@pytest.mark.parametrize("kw", [{}, {"reml": False, "weights": "w", "offset": "o"}])
def test_table_any_batch_size_to_1e_12(frame, batch_rows, kw):
    ref = _quiet(ml.lmer, FORMULA, frame, **kw)
    fit = _quiet(ml.lmer, FORMULA, pa.Table.from_pandas(frame), batch_rows=batch_rows, **kw)
    _same(fit, ref)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x1 + x3 + x2 + (1 | g)",  # x3 = 2 x1: dropped, a third and a fourth pass
        "y ~ x1 + (1 | g/k)",
        "y ~ x1 + (1 | g:k) + (0 + x1 | h)",
        "log(y + 10) ~ I(x1**2) + C(f) + (x1 || g)",
        "y ~ 0 + f + x1 + (1 | g)",  # no intercept: nothing shifted, scales only
    ],
)
def test_formulas_to_1e_12(formula):
    df = _frame()
    df["x3"], df["k"] = 2 * df.x1, np.arange(len(df)) % 3
    ref = _quiet(ml.lmer, formula, df)
    fit = _quiet(ml.lmer, formula, pa.Table.from_pandas(df), batch_rows=333)
    _same(fit, ref)


def test_parquet_folder_and_panel(tmp_path, frame):
    ref = _quiet(ml.lmer, FORMULA, frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k in range(3):
        pq.write_table(table.slice(700 * k, 700), folder / f"part{k}.parquet")
    for batch_rows in (64, 4096):
        _same(_quiet(ml.lmer, FORMULA, folder, batch_rows=batch_rows), ref)


# -- data far from zero: the stream now gives the in-memory fit, which is lme4's ---------------
CASES = {
    "y_plus_1e8": (RI, True, lambda d: d.assign(Reaction=d.Reaction + 1e8)),
    "y_plus_1e8_ml": (RI, False, lambda d: d.assign(Reaction=d.Reaction + 1e8)),
    "y_plus_1e8_slopes": (RS, True, lambda d: d.assign(Reaction=d.Reaction + 1e8)),
    "x_plus_1e6_sd": (RX, True, lambda d: d.assign(x=d.Days + 1e6 * d.Days.std())),
    "x_times_1e100": (RX, True, lambda d: d.assign(x=d.Days * 1e100)),
    "y_times_1e-100": (RI, True, lambda d: d.assign(Reaction=d.Reaction * 1e-100)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch_rows", [1, 7, 50, 180])
def test_far_from_zero_streams_as_in_memory(sleep, case, batch_rows):
    formula, reml, change = CASES[case]
    data = change(sleep)
    ref = ml.lmer(formula, data, reml=reml)
    fit = ml.lmer(formula, pa.Table.from_pandas(data), reml=reml, batch_rows=batch_rows)
    _same(fit, ref, tight=True)
    # and the untransformed fit's numbers, which are lme4's (tests/test_invariance.py)
    plain = ml.lmer(formula.replace("~ x", "~ Days"), sleep, reml=reml)
    np.testing.assert_allclose(fit.theta, plain.theta, rtol=1e-6)


@pytest.mark.parametrize("case", ["y_plus_1e8", "y_plus_1e8_ml", "y_plus_1e8_slopes"])
def test_y_plus_1e8_against_lme4(sleep, case):
    # lme4 1.1-31 keeps the objective to its printed digits but loses theta's 6th (1.1978817
    # against 1.19788153): objective to 1e-10, theta to 2e-5 (as tests/test_invariance.py).
    formula, reml, change = CASES[case]
    r = json.loads((REF / f"{case}.json").read_text())
    fit = ml.lmer(formula, pa.Table.from_pandas(change(sleep)), reml=reml, batch_rows=40)
    assert fit.objective == pytest.approx(r["objective"], rel=1e-10)
    np.testing.assert_allclose(fit.theta, r["theta"], rtol=2e-5)
    np.testing.assert_allclose(fit.fixef, r["beta"], rtol=1e-8)
    # before the centring the stream gave 1745.376 (slopes) and sigma 30.75 (intercepts)
    assert fit.sigma == pytest.approx(r["sigma"], rel=1e-6)


def test_x_plus_1e6_sd_against_lme4(sleep):
    # lme4's sigma is 30.98894 against 30.99123 (it loses digits in X'X): ours, streamed,
    # is the plain fit's, and lme4's objective is 2.1e-6 relative above it (worse).
    formula, _, change = CASES["x_plus_1e6_sd"]
    r = json.loads((REF / "x_plus_1e6_sd.json").read_text())
    fit = ml.lmer(formula, pa.Table.from_pandas(change(sleep)), batch_rows=30)
    plain = ml.lmer(RI, sleep)
    assert fit.objective == pytest.approx(plain.objective, rel=1e-10)
    assert fit.sigma == pytest.approx(plain.sigma, rel=1e-8)
    assert r["objective"] > fit.objective and r["objective"] / fit.objective - 1 < 3e-6


# -- partial accumulators of other shifts ----------------------------------------------------
def _arrays(df, formula=RI):
    d = ml.lmer(formula, df).design
    terms = [(t.codes.astype(np.int32), np.asfortranarray(t.Z)) for t in d.terms]
    return d.y, np.asfortranarray(d.X), terms, [len(t.levels) for t in d.terms]


def _part(y, X, terms, levels, rows, centre=True):
    acc = _core.Accumulator(levels, [Z.shape[1] for _, Z in terms], X.shape[1], centre=centre)
    acc.add(
        y[rows],
        np.asfortranarray(X[rows]),
        [(c[rows], np.asfortranarray(Z[rows])) for c, Z in terms],
    )
    return acc


def test_partials_with_their_own_shifts_merge_in_any_order(sleep):
    # rows sorted by Days: each partial's first rows have other means than the next's
    data = sleep.assign(Reaction=sleep.Reaction + 1e8).sort_values("Days", kind="stable")
    y, X, terms, levels = _arrays(data, RS)
    whole = _core.LmmProblem(y, X, [(c, n, Z, False) for (c, Z), n in zip(terms, levels)])
    theta = np.array([0.9667, 0.0152, 0.2309])
    want = whole.objective(theta, True)
    cuts = [0, 18, 60, 61, 130, 180]
    parts = [range(a, b) for a, b in itertools.pairwise(cuts)]
    shifts = {tuple(_part(y, X, terms, levels, np.r_[r]).transform[1]) for r in parts}
    assert len(shifts) == len(parts), "every partial centres on its own first rows"
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        accs = [_part(y, X, terms, levels, np.r_[parts[k]]) for k in order]
        acc = _core.Accumulator.from_bytes(accs[0].to_bytes())
        for a in accs[1:]:
            acc.merge(pickle.loads(pickle.dumps(a)))
        assert acc.transform == accs[0].transform, "the receiver keeps its shifts"
        assert acc.problem().objective(theta, True) == pytest.approx(want, rel=REL)
    # an accumulator without rows takes the other's shifts; a raw one converts too
    empty = _core.Accumulator(levels, [2], 2)
    empty.merge(accs[1])
    assert empty.transform == accs[1].transform
    raw = _part(y, X, terms, levels, np.arange(180), centre=False)
    assert raw.transform == (None, [], []) and not raw.centre
    centred = _part(y, X, terms, levels, np.arange(180))
    assert centred.problem().objective(theta, True) == pytest.approx(want, rel=REL)
    # the raw sums lost digits that no conversion gives back (2e-4 relative here)
    assert abs(raw.problem().objective(theta, True) / want - 1) > 1e-6


def test_transform_is_the_first_batch_means_and_travels_in_the_bytes(sleep):
    y, X, terms, levels = _arrays(sleep.assign(Reaction=sleep.Reaction * 1e200))
    acc = _core.Accumulator(levels, [1], 2)
    assert acc.centre and acc.transform == (None, [], [])
    acc.add(y[:10], np.asfortranarray(X[:10]), [(terms[0][0][:10], np.ones((10, 1), order="F"))])
    pivot, shift, scale = acc.transform
    assert pivot == 0 and shift[0] == 0.0
    assert shift[1] == pytest.approx(X[:10, 1].mean(), rel=1e-15)
    assert shift[2] == pytest.approx(y[:10].mean(), rel=1e-15)
    # y of size 1e200 scaled by a power of two to size 1 (about 2^-670)
    assert scale[:2] == [1.0, 1.0] and np.log2(scale[2]) == round(np.log2(scale[2]))
    assert 0.5 < np.sqrt(np.mean(((y[:10] - shift[2]) * scale[2]) ** 2)) < 2
    data = acc.to_bytes()
    again = _core.Accumulator.from_bytes(data)
    assert again.transform == acc.transform and again.centre
    assert again.to_bytes() == data
    # a version-1 buffer (raw sums, no shifts) is refused by name
    old = data[:8] + (1).to_bytes(8, "little") + data[16:]
    with pytest.raises(exceptions.ShapeError, match="version 1 holds the raw rows"):
        _core.Accumulator.from_bytes(old)


def test_dask_partitions_sorted_by_x(sleep):
    dd = pytest.importorskip("dask.dataframe")
    data = sleep.assign(Reaction=sleep.Reaction + 1e8).sort_values("Days", kind="stable")
    # Subject as strings: a pandas categorical in a Dask frame fails in pass 1 with this
    # dask (dask_fit reads ``_meta[c].cat.known``), whatever the centring
    data = data.reset_index(drop=True).assign(Subject=lambda d: d.Subject.astype(str))
    ref = ml.lmer(RS, data)
    fit = _quiet(ml.lmer, RS, dd.from_pandas(data, npartitions=4))
    _same(fit, ref, tight=True)


def test_in_memory_numbers_do_not_depend_on_the_accumulator(sleep):
    # the in-memory pass keeps its own centring (all rows' means): the plain fit is lme4's
    fit = ml.lmer(RS, sleep)
    r = json.loads((REF / "base_slopes.json").read_text())
    assert fit.objective == pytest.approx(r["objective"], rel=1e-10)
    assert isinstance(fit.fixef, pd.Series)
