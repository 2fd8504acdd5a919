"""``multilevel._core.Accumulator``: a linear mixed model's cross-products built from batches of
rows, merged in any order and across processes (bytes, pickle), give the problem of all the rows
at once: the objective to 1e-10 relative, the same lme4 start, the same fit.
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from multilevel import exceptions

_core = pytest.importorskip("multilevel._core", reason="multilevel._core is not built")

REL = 1e-10


def _data(n: int = 3000, seed: int = 11, slope: bool = True, weights: bool = False):
    """A crossed design: term 0 on g (60 levels, intercept and slope on x1 when ``slope``),
    term 1 on h (25 levels, intercept); X = [1, x1, x2]."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 60, n).astype(np.int32)
    h = rng.integers(0, 25, n).astype(np.int32)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    b = rng.normal(size=(60, 2)) * [1.0, 0.4]
    c = rng.normal(size=25) * 0.7
    y = 5.0 + 0.5 * x1 - x2 + b[g, 0] + (b[g, 1] * x1 if slope else 0) + c[h]
    y = y + rng.normal(size=n)
    X = np.asfortranarray(np.column_stack([np.ones(n), x1, x2]))
    Zg = np.asfortranarray(np.column_stack([np.ones(n), x1]) if slope else np.ones((n, 1)))
    Zh = np.ones((n, 1), order="F")
    w = rng.uniform(0.5, 2.0, n) if weights else None
    if w is not None:
        w[::41] = 0.0
    return y, X, [(g, 60, Zg), (h, 25, Zh)], w


def _one_shot(y, X, terms, w=None, threads=0):
    return _core.LmmProblem(
        y, X, [(c, n, z, False) for c, n, z in terms], weights=w, threads=threads
    )


def _accumulator(terms, p, threads=0):
    return _core.Accumulator(
        [n for _, n, _ in terms], [z.shape[1] for _, _, z in terms], p, threads=threads
    )


def _batches(y, X, terms, w, cuts, threads=0):
    """One accumulator per batch rows cuts[i]..cuts[i+1]."""
    out = []
    for a, b in itertools.pairwise(cuts):
        acc = _accumulator(terms, X.shape[1], threads)
        acc.add(
            y[a:b],
            np.asfortranarray(X[a:b]),
            [(c[a:b], np.asfortranarray(z[a:b])) for c, _, z in terms],
            weights=None if w is None else w[a:b],
        )
        out.append(acc)
    return out


def _objectives(problem, n_theta):
    rng = np.random.default_rng(5)
    thetas = [problem.theta0, *(rng.uniform(0.1, 1.5, n_theta) for _ in range(3))]
    return np.array(
        [
            problem.objective(np.asarray(t, dtype=float), reml)
            for t in thetas
            for reml in (False, True)
        ]
    )


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize(
    "cuts", [[0, 3000], [0, 1, 700, 701, 2999, 3000], list(range(0, 3001, 137)) + [3000]]
)
def test_batches_in_any_merge_order_give_the_one_shot_objective(cuts, weights):
    y, X, terms, w = _data(weights=weights)
    whole = _one_shot(y, X, terms, w)
    reference = _objectives(whole, whole.n_theta)
    parts = _batches(y, X, terms, w, sorted(set(cuts)))
    # Sequential, reversed, and a balanced tree of merges.
    orders = []
    seq = _accumulator(terms, 3)
    for a in parts:
        seq.merge(a)
    orders.append(seq)
    rev = _accumulator(terms, 3)
    for a in parts[::-1]:
        rev.merge(a)
    orders.append(rev)
    level = [_core.Accumulator.from_bytes(a.to_bytes()) for a in parts]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            if i + 1 < len(level):
                level[i].merge(level[i + 1])
            nxt.append(level[i])
        level = nxt
    orders.append(level[0])
    for acc in orders:
        assert acc.nrows == len(y)
        assert acc.nobs == whole.nobs
        problem = acc.problem()
        got = _objectives(problem, problem.n_theta)
        np.testing.assert_allclose(got, reference, rtol=REL, atol=0)


def test_one_add_per_row_batch_sizes_and_threads():
    y, X, terms, _ = _data(n=400)
    whole = _one_shot(y, X, terms)
    reference = _objectives(whole, whole.n_theta)
    acc = _accumulator(terms, 3)
    # Batches added to one accumulator: of 1 row, of 3, then the rest.
    for a, b in [(0, 1), (1, 4), (4, 400)]:
        acc.add(
            y[a:b],
            np.asfortranarray(X[a:b]),
            [(c[a:b], np.asfortranarray(z[a:b])) for c, _, z in terms],
        )
    np.testing.assert_allclose(_objectives(acc.problem(), whole.n_theta), reference, rtol=REL)


def test_threads_change_no_byte():
    y, X, terms, w = _data(n=200_000, weights=True)
    outs = []
    for threads in (1, 2):
        acc = _accumulator(terms, 3, threads=threads)
        acc.add(y, X, [(c, z) for c, _, z in terms], weights=w)
        assert acc.threads == threads
        outs.append(acc.to_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("slope", [True, False])
def test_bytes_and_pickle_round_trip_exactly(slope):
    # Without a slope every term is scalar: the bytes carry lme4's start moments too.
    y, X, terms, w = _data(weights=True, slope=slope)
    acc = _batches(y, X, terms, w, [0, 1234, 3000])
    acc[0].merge(acc[1])
    data = acc[0].to_bytes()
    again = _core.Accumulator.from_bytes(data)
    assert again.to_bytes() == data
    assert _core.Accumulator.from_bytes(bytearray(data)).to_bytes() == data
    assert pickle.loads(pickle.dumps(acc[0])).to_bytes() == data
    np.testing.assert_array_equal(again.problem().theta0, acc[0].problem().theta0)
    assert (again.nrows, again.nobs, again.p, again.n_levels, again.q, again.diagonal) == (
        3000,
        acc[0].nobs,
        3,
        [60, 25],
        [2 if slope else 1, 1],
        [False, False],
    )
    assert data[:8] == b"MLVLACC\0"
    assert int.from_bytes(data[8:16], "little") == 2  # version 2: with the centring


def test_streamed_start_is_the_in_memory_start():
    # Scalar intercepts on two crossed factors: lme4's moment-based start applies.
    y, X, terms, _ = _data(slope=False)
    whole = _one_shot(y, X, terms)
    parts = _batches(y, X, terms, None, [0, 17, 1500, 2999, 3000])
    acc = parts[0]
    for a in parts[1:]:
        acc.merge(a)
    streamed = acc.problem()
    identity = np.ones(2)
    assert not np.allclose(whole.theta0, identity), "the data-based start applies"
    np.testing.assert_allclose(streamed.theta0, whole.theta0, rtol=1e-13)
    # The fits agree.
    f1 = whole.fit(False)
    f2 = streamed.fit(False)
    assert f2.objective == pytest.approx(f1.objective, rel=REL)
    np.testing.assert_allclose(f2.theta, f1.theta, rtol=1e-6)


def test_self_merge_doubles_the_rows():
    y, X, terms, _ = _data(n=300)
    acc = _batches(y, X, terms, None, [0, 300])[0]
    acc.merge(acc)
    assert acc.nrows == 600


def test_problem_with_reset_moves_the_sums_and_leaves_it_empty():
    """``problem(reset=True)``: the same problem as ``problem()`` (bit for bit: the sums are
    moved, not recomputed), and the accumulator empty and usable again afterwards."""
    y, X, terms, w = _data(n=900, weights=True)
    kept, moved = (_batches(y, X, terms, w, [0, 400, 900])[1] for _ in range(2))
    ref = kept.problem()
    assert kept.nrows == 500
    got = moved.problem(reset=True)
    assert moved.nrows == 0 and moved.nobs == 0
    n_theta = len(ref.theta0)
    np.testing.assert_array_equal(_objectives(got, n_theta), _objectives(ref, n_theta))
    np.testing.assert_array_equal(got.theta0, ref.theta0)
    again = _batches(y, X, terms, w, [0, 400, 900])[1]
    moved.merge(again)
    assert moved.to_bytes() == again.to_bytes()


def test_bad_batches_name_the_term_and_row():
    y, X, terms, _ = _data(n=50)
    acc = _accumulator(terms, 3)
    good = [(c, z) for c, _, z in terms]
    bad_code = terms[1][0].copy()
    bad_code[17] = 25
    with pytest.raises(exceptions.CodeError, match=r"term 1: code 25 at row 17"):
        acc.add(y, X, [good[0], (bad_code, good[1][1])])
    with pytest.raises(exceptions.ShapeError, match=r"terms\[0\] codes must be a 1-D int32"):
        acc.add(y, X, [(good[0][0].astype(np.int64), good[0][1]), good[1]])
    with pytest.raises(exceptions.ShapeError, match="Fortran"):
        acc.add(y, np.ascontiguousarray(X), good)
    with pytest.raises(exceptions.ShapeError, match=r"terms\[1\]"):
        acc.add(y, X, [good[0], (good[1][0][:49], good[1][1])])
    with pytest.raises(exceptions.ShapeError, match="X is"):
        acc.add(y[:49], X, good)
    with pytest.raises(exceptions.ShapeError, match=r"2 terms given|1 terms given"):
        acc.add(y, X, good[:1])
    assert acc.nrows == 0, "a bad batch adds nothing"


def test_bad_bytes_and_other_models_are_errors():
    y, X, terms, _ = _data(n=100)
    acc = _batches(y, X, terms, None, [0, 100])[0]
    data = acc.to_bytes()
    for broken, what in [
        (b"NOTMAGIC" + data[8:], "magic"),
        (data[:-8], "checksum|whole number|ends"),
        (data[:40], "checksum|ends"),
        (data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum"),
        (data[:8] + (1).to_bytes(8, "little") + data[16:], "version 1 holds the raw rows"),
        (data[:8] + (3).to_bytes(8, "little") + data[16:], "version 3"),
    ]:
        with pytest.raises(exceptions.ShapeError, match=what):
            _core.Accumulator.from_bytes(broken)
    other = _core.Accumulator([60, 25], [1, 1], 3)
    with pytest.raises(exceptions.ShapeError, match="different models"):
        acc.merge(other)
    with pytest.raises(exceptions.ShapeError, match="3 terms"):
        _core.Accumulator([1, 2, 3], [1, 1], 2)
