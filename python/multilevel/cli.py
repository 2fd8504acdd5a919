"""The ``multilevel`` command: fit a model from a shell and print its summary.

    multilevel fit "Reaction ~ Days + (Days | Subject)" --data sleepstudy
    multilevel fit "y ~ x + (1 | g)" --data mydata.csv --ml --weights w

``--data`` takes the name of a bundled dataset (``multilevel.datasets.names()``) or a path to a
CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file. Problems with the input
print one line on stderr and exit with status 2; warnings (singular fit, dropped rows) are
printed on stderr as ``warning: ...``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from multilevel.exceptions import FitError, MultilevelError

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FIT = 1


class _UserError(Exception):
    """An input problem reported as one line, without a traceback."""


def _load(spec: str) -> Any:
    from multilevel import datasets

    if spec in datasets.names():
        return datasets.load(spec)
    path = Path(spec)
    if not path.exists():
        raise _UserError(
            f"--data {spec!r} is neither a bundled dataset ({', '.join(datasets.names())}) "
            "nor an existing file"
        )
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".txt")):
            import pandas as pd

            return pd.read_csv(path)
        if name.endswith((".parquet", ".pq")):
            try:
                import pandas as pd

                return pd.read_parquet(path)
            except ImportError:
                import polars as pl

                return pl.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise _UserError(f"cannot read {spec}: {exc}") from None
    raise _UserError(f"cannot read {spec}: expected a .csv, .csv.gz, .parquet or .pq file")


def _parser() -> argparse.ArgumentParser:
    from multilevel import __version__

    p = argparse.ArgumentParser(
        prog="multilevel", description="Multilevel (mixed-effects) models, lme4's numbers."
    )
    p.add_argument("--version", action="version", version=f"multilevel {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a linear mixed model and print its summary")
    f.add_argument("formula", help='lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    f.add_argument(
        "--data", required=True, help="bundled dataset name or path to a CSV/Parquet file"
    )
    f.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    f.add_argument("--weights", metavar="COL", help="column of prior weights")
    f.add_argument("--offset", metavar="COL", help="column of offsets")
    return p


def _one_line(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    first = str(msg).strip().splitlines()[0] if str(msg).strip() else type(exc).__name__
    pos = getattr(exc, "position", None)
    if pos is not None:
        first += f" (at character {pos + 1} of the formula)"
    if isinstance(exc, _UserError):  # the command line's own message says it all
        return first
    return f"{type(exc).__name__}: {first}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input, 1 fit failure).

    Examples
    --------
    >>> main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"])
    ... # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Linear mixed model fit by REML ['lmerMod']
    Formula: Reaction ~ Days + (Days | Subject)
       Data: sleepstudy
    ...
    0
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage / version
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        from multilevel.models.lmm import lmer

        data = _load(args.data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = lmer(
                args.formula,
                data,
                reml=not args.ml,
                weights=args.weights,
                offset=args.offset,
                data_name=args.data,
            )
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        try:
            print(fit.summary())
            sys.stdout.flush()
        except BrokenPipeError:  # output piped into `head` and closed early
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except FitError as exc:  # the numerical core failed: not the user's input
        print(f"multilevel: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FIT
    except (_UserError, MultilevelError, KeyError, ValueError, TypeError) as exc:
        print(f"multilevel: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
