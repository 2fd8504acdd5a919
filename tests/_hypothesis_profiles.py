"""Settings profiles of the property-based suites (tests/test_hypothesis_*.py).

- ``ci``: 2,000 examples per property, derandomized (the same examples every run, so CI is
  reproducible); chosen when the environment has ``CI`` set (as .ci/run does).
- ``dev``: 200 examples, for editing.
- ``nightly``: 20,000 random examples per property (``make nightly``).

``HYPOTHESIS_PROFILE=<name>`` overrides the choice. Examples are small data (tens of rows),
so that the suites stay within a few seconds each at the ``ci`` size.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("ci", max_examples=2000, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=200, **_COMMON)
settings.register_profile("nightly", max_examples=20000, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(PROFILE)
