"""Ctrl-C during the Rust core: SIGINT raises KeyboardInterrupt within half a second, and the
next fit in the same process gives lme4's numbers (issue 15).

The signal comes from a timer thread (``os.kill`` to the process) while the main thread is
inside the core with the GIL released: in the optimiser (a fit with many scalar terms, each
evaluation short), in the numeric factor of a large crossed model (one evaluation takes
seconds) and in the cross-product pass over two million rows. The other hang of the issue, a
formula of 1,000 random-effects terms, is refused up front.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

import multilevel as ml
from multilevel import _core
from multilevel.design import build
from multilevel.models.lmm import make_problem

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGINT through os.kill")

# lme4 1.1-31: REMLcrit(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)).
SLEEPSTUDY_REML = 1743.6282719599471
LIMIT = 0.5  # seconds from the signal to KeyboardInterrupt


def interrupt_after(delay, call):
    """Runs ``call`` in the main thread with SIGINT sent ``delay`` seconds after it starts;
    returns the seconds from the signal to KeyboardInterrupt (fails if ``call`` ends first)."""
    sent = []

    def fire():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, fire)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
            time.sleep(5)  # a call that ended before the signal must not pass
        return time.perf_counter() - sent[0]
    finally:
        timer.cancel()
        timer.join()


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


def test_too_many_terms_are_refused_up_front():
    # 1,000 scalar terms would take hours (issue 15); the refusal comes before any data work.
    from multilevel.exceptions import FormulaError
    from multilevel.models.lmm import MAX_TERMS

    formula = "y ~ 1 + " + " + ".join(f"(1 | g{i})" for i in range(1000))
    with pytest.raises(FormulaError, match="the formula has 1000 random-effects terms"):
        ml.lmer(formula, {"y": [1.0]})
    assert MAX_TERMS == 200
