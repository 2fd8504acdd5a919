"""New data for prediction: ``X`` and, for the terms ``re_form`` selects, codes and Z against the
training levels (a level not seen in training: code -1, or an error naming it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilevel.data import as_pandas, check_columns, drop_missing
from multilevel.design.fixed import fixed_matrix
from multilevel.design.matrix import as_float_matrix, reraise_own, spec_frame
from multilevel.design.random import Design, ReTerm
from multilevel.exceptions import DataError, FormulaError
from multilevel.factors import label, lookup, mixed_key
from multilevel.formula import parse

__all__ = ["NewMatrices", "new_matrices"]


@dataclass
class NewMatrices:
    """Matrices for new data: ``X``, per selected term ``(codes, Z)``, and the rows used.

    ``terms`` lists one entry per term of the design, in the design's order; a term left out
    by ``re_form`` is ``None``.
    """

    X: np.ndarray
    terms: list[tuple[np.ndarray, np.ndarray] | None]
    rows: np.ndarray


def _select_terms(design: Design, re_form) -> list[bool]:
    k = len(design.terms)
    if re_form is None:
        return [True] * k
    if re_form is pd.NA or (isinstance(re_form, float) and np.isnan(re_form)):
        return [False] * k
    if not isinstance(re_form, str):
        raise FormulaError(f"re_form must be None, NA, '~0' or a formula, not {re_form!r}")
    text = re_form.strip()
    if text in ("~0", "~ 0", "0", "~ -1", "~-1", "NA"):
        return [False] * k
    if "~" not in text:
        text = "~" + text
    parsed = parse(".re_form " + text)
    wanted = {(t.expr, t.group) for t in parsed.random}
    keys = [(_compact(t.spec.term.expr), t.group) for t in design.terms]
    chosen = [False] * k
    for expr, group in wanted:
        hits = [i for i, key in enumerate(keys) if key == (_compact(expr), group)]
        if not hits:
            raise FormulaError(
                f"re_form term ({expr} | {group}) is not a random-effects term of the model "
                f"({', '.join(t.spec.term.text for t in design.terms)})",
                re_form,
            )
        for i in hits:
            chosen[i] = True
    return chosen


def _compact(s: str) -> str:
    return "".join(s.split())


def new_matrices(
    design: Design, newdata, re_form=None, allow_new_levels: bool = False
) -> NewMatrices:
    """X and, for the selected terms, (codes, Z) for new data, using the training levels.

    Parameters
    ----------
    design : Design
    newdata : pandas or polars DataFrame, or dict of arrays
        Needs the fixed and random variables and grouping factors, not the response.
    re_form : None, NA, "~0" or a formula string
        None: all terms; ``np.nan``, ``pd.NA``, ``"~0"``, ``"0"``: none; ``"~(1 | g)"``: the
        terms named (matched on expression and group).
    allow_new_levels : bool
        Unseen levels get code -1 (b = 0); otherwise a ``DataError`` names them.

    Rows with missing values in the needed columns are dropped (``rows`` lists those kept).
    """
    chosen = _select_terms(design, re_form)
    df = as_pandas(newdata)
    parsed = design.parsed
    used = list(parsed.fixed_variables())
    for t, c in zip(design.terms, chosen):
        if c:
            for v in parse("y ~ " + t.spec.term.expr).fixed_variables() + list(
                t.spec.group_factors
            ):
                if v not in used:
                    used.append(v)
    check_columns(df, used)
    if len(df) == 0:
        return NewMatrices(
            np.zeros((0, design.X.shape[1]), order="F"),
            [
                None if not c else (np.zeros(0, np.int32), np.zeros((0, t.q), order="F"))
                for t, c in zip(design.terms, chosen)
            ],
            np.zeros(0, np.intp),
        )
    from multilevel.contextual import formula_context  # imports formulaic

    frame, rows, _, _ = drop_missing(df, used, {}, warn=True)
    X = fixed_matrix(design.fixed_spec, frame, allow_new_levels)
    out_terms: list[tuple[np.ndarray, np.ndarray] | None] = []
    for t, c in zip(design.terms, chosen):
        if not c:
            out_terms.append(None)
            continue
        try:
            mm = t.spec.model_spec.get_model_matrix(
                spec_frame(t.spec.model_spec, frame),
                na_action="ignore",
                context=formula_context(allow_new_levels),
            )
        except Exception as exc:
            reraise_own(exc)
            raise DataError(f"cannot build Z of {t.spec.term.text} for new data: {exc}") from None
        Z = as_float_matrix(mm, f"random-effects term {t.spec.term.text}")
        codes = _map_codes(t, frame)
        unseen = codes < 0
        if unseen.any() and not allow_new_levels:
            new = _new_level_labels(t, frame, unseen)
            raise DataError(
                f"new levels of grouping factor {t.group!r} in newdata: "
                + ", ".join(new[:10])
                + (", ..." if len(new) > 10 else "")
                + " (use allow_new_levels=True to predict them with random effects 0)"
            )
        out_terms.append((codes, Z))
    return NewMatrices(X=X, terms=out_terms, rows=rows)


def _map_codes(t: ReTerm, frame: pd.DataFrame) -> np.ndarray:
    per = []
    for f, levels in zip(t.spec.group_factors, t.spec.factor_levels):
        per.append(lookup(levels, frame[f]))
    if len(per) == 1:
        return per[0].astype(np.int32)
    known = np.all([p >= 0 for p in per], axis=0)
    sizes = [len(lv) for lv in t.spec.factor_levels]
    key = mixed_key([np.where(known, p, 0) for p in per], sizes)
    keys = t.spec.level_keys
    pos = np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)
    found = known & (keys[pos] == key)
    return np.where(found, pos, -1).astype(np.int32)


def _new_level_labels(t: ReTerm, frame: pd.DataFrame, unseen: np.ndarray) -> list[str]:
    labs = []
    for i in np.flatnonzero(unseen):
        lab = ":".join(label(frame[f].iloc[i]) for f in t.spec.group_factors)
        if lab not in labs:
            labs.append(lab)
    return labs
