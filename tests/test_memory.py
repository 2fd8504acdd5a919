"""10,000 consecutive small fits keep the resident memory flat (issue 15): after a warm-up of
500 fits (caches, the thread pools, NumPy's and pandas' own pools), the resident set may grow
by less than 20 MB over the next 9,500. A leak of one 8-byte theta per fit would not show; a
leak of the cross-products or a factor (kilobytes per fit) would, at 10,000 fits."""

import os
import warnings

import numpy as np
import pytest

import multilevel as ml

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux /proc")

WARM_UP, FITS, LIMIT_MB = 500, 10_000, 20.0


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_ten_thousand_fits_keep_memory_flat():
    sleep = ml.datasets.load("sleepstudy")
    rng = np.random.default_rng(0)
    small = {
        "y": rng.normal(size=60),
        "x": rng.normal(size=60),
        "g": np.repeat(np.arange(4), 15),
        "h": np.tile(np.arange(3), 20),
    }
    # One term (the one-term evaluator), crossed (supernodal) and nested (blocked) factors.
    fits = [
        lambda: ml.lmer("Reaction ~ Days + (Days | Subject)", sleep),
        lambda: ml.lmer("y ~ x + (1 | g) + (1 | h)", small),
        lambda: ml.lmer("y ~ x + (1 | h/g)", small),
    ]
    objectives = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits of the noise data
        for i in range(FITS):
            if i == WARM_UP:
                before = rss_mb()
            fit = fits[i % 3]()
            objectives.add((i % 3, fit.objective))
            _ = fit.fixef, fit.ranef, fit.vcov
    growth = rss_mb() - before
    assert growth < LIMIT_MB, f"resident memory grew by {growth:.1f} MB over {FITS - WARM_UP} fits"
    # Every repetition gave the same numbers.
    assert len(objectives) == 3
