"""The examples in this package draw with matplotlib, an optional extra: without it they are
not collected (tests/test_plot.py says so when it skips)."""

try:
    import matplotlib  # noqa: F401
except ImportError:
    collect_ignore_glob = ["*.py"]
