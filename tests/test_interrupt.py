"""Ctrl-C during the Rust core: SIGINT raises KeyboardInterrupt within half a second, and the
next fit in the same process gives lme4's numbers (issue 15).

The signal comes from a timer thread (``os.kill`` to the process) while the main thread is
inside the core with the GIL released: in the optimiser (a fit with many scalar terms, each
evaluation short), in the numeric factor of a large crossed model (one evaluation takes
seconds), in the cross-product pass over two million rows, and in glmer's two BOBYQA stages
and finite-difference Hessian (a binary panel of 100,000 rows). An interpreter that holds the
core's cached thread team exits normally, interrupted or not. The other hang of the issue, a
formula of 1,000 random-effects terms, is refused up front.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from conftest import load_reference
from multilevel import _core
from multilevel.design import build
from multilevel.models.lmm import make_problem

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGINT through os.kill")

# lme4 1.1-31: REMLcrit(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)).
SLEEPSTUDY_REML = 1743.6282719599471
LIMIT = 0.5  # seconds from the signal to KeyboardInterrupt


@pytest.fixture(autouse=True, scope="module")
def _sigint_handled():
    """A test run started in the background by a shell without job control inherits SIGINT
    ignored (POSIX), and an ignored ctrl-C is rightly ignored by the fits too: these tests
    install Python's own handler for their duration."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class EndedFirst(Exception):
    """The call returned before the signal was sent."""


def interrupt_after(delay, call):
    """Runs ``call`` in the main thread with SIGINT sent ``delay`` seconds after it starts;
    returns the seconds from the signal to KeyboardInterrupt. Raises ``EndedFirst`` if the call
    returns first (the signal is then cancelled, or absorbed by a sleep if already on its way)."""
    sent = []

    def fire():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, fire)
    timer.start()
    try:
        call()
    except KeyboardInterrupt:
        assert sent, "KeyboardInterrupt before the signal was sent"
        return time.perf_counter() - sent[0]
    finally:
        timer.cancel()
        timer.join()
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(1.0)  # a signal sent just as the call returned lands here
    raise EndedFirst(f"the call returned before the signal due after {delay:.2f} s")


def check_next_fit():
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
    assert fit.objective == pytest.approx(SLEEPSTUDY_REML, rel=1e-8)


def many_terms(k=60, n=2000, seed=1):
    rng = np.random.default_rng(seed)
    data = {f"g{i}": rng.integers(0, 4, n) for i in range(k)}
    data["y"] = rng.normal(size=n) + sum(rng.normal(0, 0.3, 4)[data[f"g{i}"]] for i in range(3))
    formula = "y ~ 1 + " + " + ".join(f"(1 | g{i})" for i in range(k))
    return build(formula, data)


def test_sigint_stops_the_optimiser():
    problem = make_problem(many_terms())
    elapsed = interrupt_after(1.0, lambda: problem.fit(True))
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_fit()
    # The interrupted problem can still be fitted: nothing of the interrupt is left over.
    assert np.isfinite(problem.objective(list(problem.theta0), True))


@pytest.fixture(scope="module")
def crossed():
    """Two million rows, two crossed factors (20,000 and 3,000 levels): one evaluation
    factors a dense 3,000-column block and takes seconds."""
    rng = np.random.default_rng(0)
    n = 2_000_000
    a = rng.integers(0, 20_000, n).astype(np.int32)
    b = rng.integers(0, 3_000, n).astype(np.int32)
    y = rng.normal(size=n)
    X = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=n)]))
    Z = np.ones((n, 1), order="F")
    return y, X, [(a, 20_000, Z, False), (b, 3_000, Z, False)]


def test_sigint_stops_the_cross_product_pass():
    # Four million rows and few levels: the pass is most of the construction (about 1 s on an
    # idle 2-core machine; the symbolic step of so few columns is short).
    rng = np.random.default_rng(0)
    n = 4_000_000
    a = rng.integers(0, 2_000, n).astype(np.int32)
    b = rng.integers(0, 300, n).astype(np.int32)
    y = rng.normal(size=n)
    X = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=n)]))
    Z = np.ones((n, 1), order="F")
    terms = [(a, 2_000, Z, False), (b, 300, Z, False)]
    elapsed = interrupt_after(0.2, lambda: _core.LmmProblem(y, X, terms))
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_fit()


def test_sigint_stops_a_long_evaluation(crossed):
    y, X, terms = crossed
    problem = _core.LmmProblem(y, X, terms)
    elapsed = interrupt_after(0.5, lambda: problem.fit(True))
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_fit()


# lme4 1.1-31 on cbpp, Laplace (tests/reference/glmm/cbpp_laplace.json).
CBPP = load_reference("cbpp_laplace", "glmm")


def fit_cbpp():
    return ml.glmer(CBPP["formula"], ml.datasets.load("cbpp"), family="binomial")


# The same fit before any interrupt in this process.
CBPP_FIT = fit_cbpp()


def check_next_glmer():
    fit = fit_cbpp()
    # -2 logLik no worse than lme4's by 1e-6 relative, beta within 1% of lme4's standard errors
    assert fit.objective <= CBPP["minus2loglik"] * (1 + 1e-6)
    se = np.asarray(CBPP["se"])
    np.testing.assert_array_less(np.abs(fit.fixef.to_numpy() - CBPP["beta"]) / se, 0.01)
    # and nothing of the interrupt is left over: the uninterrupted fit to the last bit
    assert fit.objective == CBPP_FIT.objective
    np.testing.assert_array_equal(fit.fixef.to_numpy(), CBPP_FIT.fixef.to_numpy())
    np.testing.assert_array_equal(fit.theta, CBPP_FIT.theta)


def binary_panel(n_groups=1000, per=100, seed=3):
    """A simulated binary panel with a correlated random intercept and slope."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.8 * x + rng.normal(0, 1.0, n_groups)[g] + rng.normal(0, 0.5, n_groups)[g] * x
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": g})


PANEL = "y ~ x + (1 + x | g)"


@pytest.fixture(scope="module")
def panel_problem():
    """The binary panel as the core's problem, its GLM start, and the seconds of one whole fit
    (stage 1, stage 2 and the Hessian) on this machine now."""
    from multilevel.models.glmm import make_problem

    data = binary_panel()
    fam = ml.families.family("binomial")
    d = build(PANEL, data)
    y = np.asarray(d.y, float)
    problem = make_problem(d, fam, y, np.ones_like(y), np.zeros_like(y))
    beta0 = [-0.3, 0.8]
    start = time.perf_counter()
    fit = problem.fit(1, beta0)
    seconds = time.perf_counter() - start
    assert fit.stage2 is not None
    return problem, beta0, seconds


def test_sigint_stops_glmer():
    # Half a second in: building the design or stage 1 (theta, beta in PIRLS).
    data = binary_panel()
    elapsed = interrupt_after(0.5, lambda: ml.glmer(PANEL, data, family="binomial"))
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_glmer()
    check_next_fit()


def test_sigint_stops_streamed_glmer():
    # A streamed fit runs its passes from Python (the objective handed to _core.bobyqa): the
    # KeyboardInterrupt raised in a pass stops the optimiser and comes back out of ml.glmer.
    import pyarrow as pa

    table = pa.Table.from_pandas(binary_panel(), preserve_index=False)
    ended = []
    for delay in (1.0, 0.5, 0.25):  # one CI run saw the first signal missed (not reproduced)
        start = time.perf_counter()
        try:
            elapsed = interrupt_after(
                delay, lambda: ml.glmer(PANEL, table, family="binomial", batch_rows=20_000)
            )
            break
        except EndedFirst:
            ended.append(f"{delay} s: the fit ran {time.perf_counter() - start:.2f} s")
    else:
        raise AssertionError("a streamed glmer was never interrupted: " + "; ".join(ended))
    assert len(ended) < 3
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_glmer()
    check_next_fit()


def test_streamed_glmer_stops_even_when_python_swallows_sigint():
    # As the in-memory fit: the core's chained handler sets its flag, which _core.bobyqa and
    # glmm_working check, whatever Python's handler does (here: nothing).
    import pyarrow as pa

    table = pa.Table.from_pandas(binary_panel(), preserve_index=False)
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        elapsed = interrupt_after(
            1.0, lambda: ml.glmer(PANEL, table, family="binomial", batch_rows=20_000)
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_glmer()


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_sigint_stops_every_stage_of_glmer(panel_problem, fraction):
    # At 30%, 60% and 90% of a whole fit: stage 1 (about the first half), stage 2 and the
    # Hessian's 2n^2 + 1 = 51 evaluations (about the last sixth). Should the fit end first (a
    # machine less loaded than when it was timed), again earlier.
    problem, beta0, seconds = panel_problem
    for f in (fraction, fraction * 0.8, fraction * 0.6):
        try:
            elapsed = interrupt_after(f * seconds, lambda: problem.fit(1, beta0))
            break
        except EndedFirst:
            continue
    else:
        pytest.fail(f"the glmer fit ended before {fraction * 0.6:.2f} of its measured time")
    assert elapsed < LIMIT, f"KeyboardInterrupt {elapsed:.3f} s after SIGINT"
    check_next_glmer()


EXIT_SCRIPT = """
import os, signal, threading
import multilevel as ml
data = ml.datasets.load("sleepstudy")
fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data, threads=2)  # caches a team
{extra}
print("done", flush=True)
"""

INTERRUPTED = """
import numpy as np
from multilevel.design import build
from multilevel.models.lmm import make_problem
rng = np.random.default_rng(1)
d = {f"g{i}": rng.integers(0, 4, 2000) for i in range(60)}
d["y"] = rng.normal(size=2000)
formula = "y ~ 1 + " + " + ".join(f"(1 | g{i})" for i in range(60))
problem = make_problem(build(formula, d), threads=2)
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    problem.fit(True)
    raise SystemExit("not interrupted")
except KeyboardInterrupt:
    pass
"""


@pytest.mark.parametrize("extra", ["", INTERRUPTED], ids=["plain", "interrupted"])
def test_the_interpreter_exits_with_a_cached_team(extra):
    # The cached team's helpers (parked, or spinning just after a fit) must not hold up exit.
    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT.format(extra=extra)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"


def test_too_many_terms_are_refused_up_front():
    # 1,000 scalar terms would take hours (issue 15); the refusal comes before any data work.
    from multilevel.exceptions import FormulaError
    from multilevel.models.lmm import MAX_TERMS

    formula = "y ~ 1 + " + " + ".join(f"(1 | g{i})" for i in range(1000))
    with pytest.raises(FormulaError, match="the formula has 1000 random-effects terms"):
        ml.lmer(formula, {"y": [1.0]})
    assert MAX_TERMS == 200
