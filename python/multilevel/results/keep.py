"""``fit.save(path)`` and :func:`load`: fits kept in a file that loading cannot run code from.

The file is a zip archive (format ``multilevel-fit``, version 1):

* ``fit.json`` -- the manifest: format, version, the library's version and the fit as a tree
  of JSON nodes (``{"t": "series", ...}``, ``{"t": "obj", "cls": "Design", ...}``);
* ``arrays/<k>.npy`` -- every numeric array, written by NumPy's own format and read back with
  ``allow_pickle=False``.

Nothing is unpickled and only the classes named in :data:`CLASSES` are ever made, from their
fields, so a file from an untrusted source can at worst fail to load (with
:class:`FitFileError`). Floats are written exactly (JSON numbers by ``repr``, arrays as
binary), so estimates come back identical to the bit.

An :class:`~multilevel.results.lmer.LmerFit` is stored as its design (y, X, each term's codes
and Z, weights, offset and the names and levels), the core's result (theta, beta, u, b, sigma,
the optimiser's summary, the convergence check) and the used columns of the data at the rows
used. The formula specifications that evaluate new data (formulaic's, with the means of
``cvar``/``dvar``) are not serialised: loading rebuilds them from the formula and those
columns, and the Rust problem is rebuilt on first use, as after unpickling.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import MultilevelError

__all__ = ["FORMAT", "VERSION", "FitFileError", "KeepMixin", "load", "save"]

FORMAT = "multilevel-fit"
VERSION = 1
MANIFEST = "fit.json"


class FitFileError(MultilevelError, ValueError):
    """A file that is not a fit saved by ``fit.save`` (or one this version cannot read)."""


def _classes() -> dict[str, type]:
    """The only classes a file may name: fits and the plain records they hold."""
    from multilevel.design.fixed import FixedSpec
    from multilevel.design.random import Design, ReTerm, TermSpec
    from multilevel.formula import ParsedFormula, RandomTermSpec
    from multilevel.inference.lmer_robust import RobustVcov
    from multilevel.models.lmlist import LmListFit
    from multilevel.models.ols import OlsFit
    from multilevel.models.panel import PanelFit
    from multilevel.results.glmer import GlmerFit, StoredGlmmFit
    from multilevel.results.lmer import LmerFit
    from multilevel.results.stored import StoredCheck, StoredOptimizer, StoredResult

    return {
        c.__name__: c
        for c in (
            LmerFit,
            OlsFit,
            PanelFit,
            LmListFit,
            Design,
            ReTerm,
            TermSpec,
            FixedSpec,
            ParsedFormula,
            RandomTermSpec,
            RobustVcov,
            StoredResult,
            StoredOptimizer,
            StoredCheck,
            GlmerFit,
            StoredGlmmFit,
        )
    }


FITS = ("LmerFit", "OlsFit", "PanelFit", "LmListFit", "GlmerFit")


# ------------------------------------------------------------------------------ writing
class _Writer:
    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def array(self, a: np.ndarray) -> dict:
        if a.dtype.kind in "biufc":
            self.arrays.append(a)
            return {"t": "array", "k": len(self.arrays) - 1}
        if a.dtype.kind in "OUST":
            return {
                "t": "objarray",
                "v": [self.node(x) for x in a.reshape(-1).tolist()],
                "shape": list(a.shape),
            }
        raise FitFileError(f"cannot save an array of dtype {a.dtype}")

    def index(self, ix: pd.Index) -> dict:
        if isinstance(ix, pd.MultiIndex):  # e.g. the input's index that fitted is aligned with
            levels = [self.index(ix.get_level_values(k)) for k in range(ix.nlevels)]
            return {"t": "multiindex", "levels": levels}
        return {"t": "index", "v": self.values(ix), "name": self.node(ix.name)}

    def values(self, v: Any) -> dict:
        """The values of an Index or Series column: categorical, numeric or labels."""
        if isinstance(v.dtype, pd.CategoricalDtype):
            cat = pd.Categorical(v)
            return {
                "t": "categorical",
                "codes": self.array(np.asarray(cat.codes)),
                "categories": self.index(cat.categories),
                "ordered": bool(cat.ordered),
            }
        if v.dtype.kind in "biufc":
            return self.array(np.asarray(v))
        dtype = str(v.dtype)
        if dtype not in ("object", "str", "string", "bool", "boolean"):
            raise FitFileError(f"cannot save values of dtype {dtype}")
        return {"t": "labels", "v": [self.node(x) for x in list(v)], "dtype": dtype}

    def node(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
            return int(obj)
        if isinstance(obj, (float, np.floating)):
            return {"t": "float", "v": repr(float(obj))}
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.str_):
            return str(obj)
        if obj is pd.NA:
            return {"t": "na"}
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if isinstance(obj, list):
            return [self.node(x) for x in obj]
        if isinstance(obj, tuple):
            return {"t": "tuple", "v": [self.node(x) for x in obj]}
        if isinstance(obj, dict):
            return {"t": "dict", "v": [[self.node(k), self.node(v)] for k, v in obj.items()]}
        if isinstance(obj, pd.Index):
            return self.index(obj)
        if isinstance(obj, pd.Series):
            return {
                "t": "series",
                "v": self.values(obj),
                "index": self.index(obj.index),
                "name": self.node(obj.name),
            }
        if isinstance(obj, pd.DataFrame):
            cols = [self.values(obj.iloc[:, j]) for j in range(obj.shape[1])]
            return {
                "t": "frame",
                "cols": cols,
                "columns": self.index(obj.columns),
                "index": self.index(obj.index),
            }
        name = type(obj).__name__
        if dataclasses.is_dataclass(obj) and name in _classes():
            f = {x.name: getattr(obj, x.name) for x in dataclasses.fields(obj)}
            if name in ("TermSpec", "FixedSpec"):
                f["model_spec"] = None  # rebuilt from the formula and the columns on load
            return {"t": "obj", "cls": name, "fields": self.node(f)}
        raise FitFileError(f"cannot save a value of type {type(obj).__name__}")


def _fit_state(fit: Any) -> dict[str, Any]:
    """What a fit needs to come back: its attributes, without the Rust objects and caches."""
    from multilevel.results.lmer import LmerFit
    from multilevel.results.stored import snapshot

    if type(fit).__name__ == "GlmerFit":
        return _glmer_state(fit)
    if not isinstance(fit, LmerFit):
        return dict(fit.__dict__)
    keys = ("design", "reml", "data_name", "weights_name", "offset_name", "robust")
    state: dict[str, Any] = {k: getattr(fit, k) for k in keys}
    state["_result"] = snapshot(fit._result)
    state["_input_index"] = fit.input_index  # what fitted and resid are aligned with
    state["frame"] = _used_columns(fit)
    return state


def _glmer_state(fit: Any) -> dict[str, Any]:
    """A glmer fit without its core objects and data: the core's result as a
    ``StoredGlmmFit``, the family by name, link and theta, and the kept columns."""
    from multilevel.results.glmer import StoredGlmmFit

    state = {k: v for k, v in fit.__dict__.items() if k not in ("_problem", "_data")}
    state["_res"] = StoredGlmmFit.of(fit._res)
    fam = fit.family
    state["family"] = {
        "name": fam.name,
        "link": fam.link.name,
        "theta": getattr(fam, "theta", None),
    }
    return state


def model_columns(design: Any) -> list[str]:
    """Names of the data columns a design's formula reads (response, fixed, random, groups)."""
    from multilevel.formula import expr_variables

    p = design.parsed
    names = expr_variables(p.response, response=True) + expr_variables(p.fixed)
    for t in p.random:
        names += expr_variables(t.expr) + list(t.group_factors)
    return list(dict.fromkeys(names))


def _used_columns(fit: Any) -> pd.DataFrame | None:
    """The data columns the formula reads, at the rows used (to rebuild formula specs)."""
    from multilevel.data import as_pandas

    if fit._data is None:
        return getattr(fit, "_kept_frame", None)
    data = as_pandas(fit._data)
    cols = [c for c in model_columns(fit.design) if c in data.columns]
    return data[cols].iloc[np.asarray(fit.design.rows)].reset_index(drop=True)


def save(fit: Any, path: str | Path) -> None:
    """Write ``fit`` to ``path`` (see the module documentation for the format)."""
    name = type(fit).__name__
    if name not in FITS:
        raise FitFileError(f"cannot save a {name}; fits of lmer, glmer, ols, panel and lmlist can")
    from multilevel import __version__

    w = _Writer()
    tree = {"t": "fit", "cls": name, "state": w.node(_fit_state(fit))}
    manifest = {"format": FORMAT, "version": VERSION, "multilevel": __version__, "fit": tree}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest))
        for k, a in enumerate(w.arrays):
            buf = io.BytesIO()
            np.save(buf, np.asarray(a), allow_pickle=False)
            z.writestr(f"arrays/{k}.npy", buf.getvalue())


# ------------------------------------------------------------------------------ reading
class _Reader:
    def __init__(self, z: zipfile.ZipFile) -> None:
        self.z = z
        self.classes = _classes()

    def array(self, k: int) -> np.ndarray:
        try:
            with self.z.open(f"arrays/{int(k)}.npy") as f:
                a = np.load(io.BytesIO(f.read()), allow_pickle=False)
        except KeyError as e:
            raise FitFileError(f"array {k} is missing from the file") from e
        return np.asfortranarray(a) if a.ndim == 2 else a

    def values(self, n: dict) -> Any:
        t = n.get("t")
        if t == "array":
            return self.array(n["k"])
        if t == "categorical":
            cats = self.index(n["categories"])
            codes = self.node(n["codes"])
            return pd.Categorical.from_codes(codes, categories=cats, ordered=n["ordered"])
        if t == "labels":
            return pd.array([self.node(x) for x in n["v"]], dtype=n["dtype"])
        raise FitFileError(f"unexpected node {t!r} for values")

    def index(self, n: dict) -> pd.Index:
        if n.get("t") == "multiindex":
            return pd.MultiIndex.from_arrays([self.index(x) for x in n["levels"]])
        return pd.Index(self.values(n["v"]), name=self.node(n["name"]))

    def node(self, n: Any) -> Any:
        if n is None or isinstance(n, (bool, int, str)):
            return n
        if isinstance(n, list):
            return [self.node(x) for x in n]
        if not isinstance(n, dict):
            raise FitFileError(f"unexpected value {n!r}")
        t = n.get("t")
        if t == "float":
            return float(n["v"])
        if t == "na":
            return pd.NA
        if t == "array":
            return self.array(n["k"])
        if t == "objarray":
            return np.array([self.node(x) for x in n["v"]], dtype=object).reshape(n["shape"])
        if t == "tuple":
            return tuple(self.node(x) for x in n["v"])
        if t == "dict":
            return {_key(self.node(k)): self.node(v) for k, v in n["v"]}
        if t in ("index", "multiindex"):
            return self.index(n)
        if t == "series":
            return pd.Series(
                self.values(n["v"]), index=self.index(n["index"]), name=self.node(n["name"])
            )
        if t == "frame":
            cols = self.index(n["columns"])
            data = {j: self.values(c) for j, c in enumerate(n["cols"])}
            df = pd.DataFrame(data, index=self.index(n["index"]))
            df.columns = cols
            return df
        if t == "obj":
            cls = self.classes.get(n.get("cls"))
            if cls is None or n["cls"] in FITS:
                raise FitFileError(f"the file names an unknown class {n.get('cls')!r}")
            return cls(**self.node(n["fields"]))
        raise FitFileError(f"unexpected node {t!r}")


def _key(k: Any) -> Any:
    return k if not isinstance(k, list) else tuple(k)


def load(path: str | Path) -> Any:
    """Read a fit written by ``fit.save(path)``.

    Raises
    ------
    FitFileError
        When ``path`` is not a saved fit, or was written by a newer format version.

    Examples
    --------
    >>> import multilevel as ml, tempfile, os
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> path = os.path.join(tempfile.mkdtemp(), "sleep.mlfit")
    >>> fit.save(path)
    >>> back = ml.load(path)
    >>> bool((back.beta == fit.beta).all()), back.summary().__class__.__name__
    (True, 'LmerSummary')
    """
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise FitFileError(f"{path} is not a saved multilevel fit ({e})") from e
    with z:
        try:
            manifest = json.loads(z.read(MANIFEST))
        except (KeyError, ValueError) as e:
            raise FitFileError(f"{path} is not a saved multilevel fit (no {MANIFEST})") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise FitFileError(f"{path} is not a saved multilevel fit (format is not {FORMAT})")
        if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
            raise FitFileError(
                f"{path} was written in format version {manifest.get('version')}; this "
                f"version of multilevel reads up to {VERSION}"
            )
        tree = manifest.get("fit")
        if not isinstance(tree, dict) or tree.get("t") != "fit" or tree.get("cls") not in FITS:
            raise FitFileError(f"{path} holds no fit")
        r = _Reader(z)
        try:
            state = r.node(tree["state"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, FitFileError):
                raise
            raise FitFileError(f"{path} is damaged: {type(e).__name__}: {e}") from e
    return _make(r.classes[tree["cls"]], state)


def _make(cls: type, state: dict[str, Any]) -> Any:
    fit = cls.__new__(cls)
    if cls.__name__ == "LmerFit":
        frame = state.pop("frame")
        fit.__dict__.update(state)
        fit._problem = None
        fit._data = None
        if frame is not None:
            _rebuild_specs(fit.design, frame)
            frame.index = pd.Index(np.asarray(fit.design.rows))
        fit._kept_frame = frame  # the used columns, for augment() and a later save()
    elif cls.__name__ == "GlmerFit":
        _make_glmer(fit, state)
    else:
        fit.__dict__.update(state)
    return fit


def _make_glmer(fit: Any, state: dict[str, Any]) -> None:
    from multilevel import families as fm

    f = state.pop("family")
    if not isinstance(f, dict) or not isinstance(f.get("name"), str):
        raise FitFileError("the file's glmer fit has no family")
    extra = {"theta": f["theta"]} if f.get("theta") is not None else {}
    try:
        family = fm.family(f["name"], link=f.get("link"), **extra)
    except (ValueError, TypeError) as e:
        raise FitFileError(f"the file's glmer fit has an unknown family: {e}") from e
    fit.__dict__.update(state)
    fit.family = family
    fit._problem = None
    fit._data = None
    frame = fit.__dict__.get("_kept_frame")
    if frame is not None:
        rows = pd.Index(np.asarray(fit.design.rows))
        _rebuild_specs(fit.design, frame.set_axis(rows))


def _rebuild_specs(design: Any, frame: pd.DataFrame) -> None:
    """Formula specifications (for new data) from the formula and the saved columns."""
    import warnings

    from multilevel import design as _design

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = _design.build(
            design.formula, frame, weights=design.weights, offset=design.offset, allow_n=True
        )
    if design.fixed_spec is not None and new.fixed_spec is not None:
        design.fixed_spec.model_spec = new.fixed_spec.model_spec
    for t in design.terms:
        match = [s for s in new.terms if s.spec.term == t.spec.term]
        if match:
            t.spec.model_spec = match[0].spec.model_spec


class KeepMixin:
    """``save`` for the fit classes."""

    def save(self, path: str | Path) -> None:
        """Write this fit to ``path`` without pickle; read it back with ``ml.load(path)``."""
        save(self, path)
