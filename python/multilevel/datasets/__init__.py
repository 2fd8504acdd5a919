"""Example datasets bundled with multilevel, exported once from R.

Each dataset is a CSV file (``<name>.csv``, or ``<name>.csv.gz`` for the large ones) with a
JSON sidecar ``<name>.json`` that records where it came from (R package, object and version), a
description, the type of every column and, for every factor, its levels in R's level order.
:func:`load` rebuilds R's factors as pandas Categoricals with those levels, so level orders --
and with them the order of random effects, contrasts and coefficient names -- match R's.

The numbers are written exactly (the shortest decimal that reads back to R's double), and the
golden references in ``tests/reference/`` were fitted in R on these very files.

Examples
--------
>>> from multilevel import datasets
>>> datasets.names()
['cbpp', 'dyestuff', 'exam', 'grunfeld', 'hsb', 'insteval', 'pastes', 'penicillin', 'sleepstudy']
>>> df = datasets.load("sleepstudy")
>>> df.shape
(180, 3)
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from multilevel.exceptions import DataError

__all__ = ["describe", "load", "names"]

_PACKAGE = __name__


def _sidecars() -> dict[str, Any]:
    """Map of dataset name -> resource of its JSON sidecar."""
    out = {}
    for entry in resources.files(_PACKAGE).iterdir():
        if entry.name.endswith(".json"):
            out[entry.name[: -len(".json")]] = entry
    return out


def names() -> list[str]:
    """Names of the bundled datasets, sorted.

    Returns
    -------
    list of str
        The names accepted by :func:`load` and :func:`describe`.

    Examples
    --------
    >>> from multilevel import datasets
    >>> "sleepstudy" in datasets.names()
    True
    """
    return sorted(_sidecars())


@cache
def _metadata(name: str) -> dict[str, Any]:
    return json.loads(_sidecars()[name].read_text(encoding="utf-8"))


def _resolve(name: str) -> str:
    if not isinstance(name, str):
        raise DataError(f"dataset name must be a string, not {type(name).__name__}")
    key = name.strip().lower()
    available = names()
    if key not in available:
        raise DataError(
            f"no bundled dataset named {name!r}; available datasets: {', '.join(available)}"
        )
    return key


def describe(name: str) -> str:
    """Where a bundled dataset comes from: R package, object and version.

    Parameters
    ----------
    name : str
        Dataset name (case-insensitive), one of :func:`names`.

    Returns
    -------
    str
        One line naming the R package, its version and the data object(s).

    Raises
    ------
    multilevel.exceptions.DataError
        If there is no dataset of that name; the message lists the available names.

    Examples
    --------
    >>> from multilevel import datasets
    >>> datasets.describe("Dyestuff")
    'R package lme4 1.1.31, data object Dyestuff'
    """
    return _metadata(_resolve(name))["source"]


def _frame_from_csv(source: Any, meta: dict[str, Any]) -> pd.DataFrame:
    """Read a CSV written by the R export and rebuild its column types from ``meta``."""
    columns: dict[str, str] = meta["columns"]
    factors: dict[str, list[str]] = meta.get("factors", {})
    ordered = set(meta.get("ordered", []))
    dtypes = {col: ("float64" if kind == "float64" else str) for col, kind in columns.items()}
    df = pd.read_csv(
        source,
        dtype=dtypes,
        keep_default_na=False,
        na_values={col: [""] for col in columns},
        compression="gzip" if meta["file"].endswith(".gz") else None,
    )
    if list(df.columns) != list(columns):
        raise DataError(f"{meta['file']}: columns {list(df.columns)} != sidecar {list(columns)}")
    for col, kind in columns.items():
        if kind == "category":
            levels = factors[col]
            values = df[col]
            cat = pd.Categorical(values, categories=levels, ordered=col in ordered)
            unknown = values.notna() & pd.isna(cat)
            if unknown.any():
                bad = sorted(set(values[unknown]))[:5]
                raise DataError(
                    f"{meta['file']}: column {col!r} has values not in its levels: {bad}"
                )
            df[col] = cat
        elif kind == "int64":
            s = df[col]
            df[col] = s.astype("int64") if s.notna().all() else s.astype("Int64")
    if "nrow" in meta and len(df) != meta["nrow"]:
        raise DataError(f"{meta['file']}: {len(df)} rows, sidecar says {meta['nrow']}")
    return df


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a pandas DataFrame.

    Factor columns come back as :class:`pandas.Categorical` with R's levels in R's order
    (ordered factors as ordered Categoricals); numeric columns have R's exact values
    (``float64`` for R's doubles, ``int64`` for R's integers).

    Parameters
    ----------
    name : str
        Dataset name, case-insensitive: ``"sleepstudy"``, ``"dyestuff"``, ``"penicillin"``,
        ``"pastes"``, ``"hsb"``, ``"insteval"``, ``"cbpp"``, ``"grunfeld"`` or ``"exam"``
        (see :func:`names`; :func:`describe` tells the R source).

    Returns
    -------
    pandas.DataFrame
        A new frame on every call; modifying it does not affect later calls.

    Raises
    ------
    multilevel.exceptions.DataError
        If there is no dataset of that name; the message lists the available names.

    Examples
    --------
    >>> from multilevel import datasets
    >>> sleep = datasets.load("sleepstudy")
    >>> list(sleep.columns)
    ['Reaction', 'Days', 'Subject']
    >>> list(sleep["Subject"].cat.categories[:3])
    ['308', '309', '310']
    >>> float(sleep["Reaction"].iloc[1])
    258.7047
    """
    key = _resolve(name)
    meta = _metadata(key)
    resource = resources.files(_PACKAGE).joinpath(meta["file"])
    with resource.open("rb") as fh:
        return _frame_from_csv(fh, meta)


def _read_with_sidecar(csv_path: str | Path) -> pd.DataFrame:
    """Read a CSV that has a sidecar ``.json`` beside it (same format as the bundled data).

    Used for the extra data files of the golden references (``tests/reference/data/``).
    """
    csv_path = Path(csv_path)
    stem = csv_path.name.split(".csv")[0]
    meta = json.loads((csv_path.parent / f"{stem}.json").read_text(encoding="utf-8"))
    with open(csv_path, "rb") as fh:
        return _frame_from_csv(fh, meta)
