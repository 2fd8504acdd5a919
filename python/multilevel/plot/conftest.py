"""The examples in this package draw with matplotlib, an optional extra: without it they are
not collected (tests/test_plot.py says so when it skips)."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("matplotlib") else ["*.py"]
