"""Exceptions and warnings raised by multilevel.

Every problem found in the user's input is raised before the Rust core is called, with the
column, formula position or rows that caused it. Numerical trouble that is a property of the
fit (a singular fit, a convergence doubt) is a warning and a flag on the result, not an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MultilevelError(Exception):
    """Base class of every error raised by multilevel."""


class FormulaError(MultilevelError, ValueError):
    """A formula that cannot be parsed or used; shows a caret under the offending position."""

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.message = message
        self.formula = formula
        self.position = position
        text = message
        if formula is not None:
            text += "\n  " + formula
            if position is not None:
                text += "\n  " + " " * max(position, 0) + "^"
        super().__init__(text)


class MissingColumnError(MultilevelError, KeyError):
    """A variable named in a formula (or argument) is not a column of the data."""

    def __init__(self, column: str, available: Iterable[str] = ()):
        self.column = column
        names = list(map(str, available))
        same_case = [n for n in names if n.lower() == column.lower() and n != column]
        close = difflib.get_close_matches(column, names, n=3)
        self.close_matches = (same_case + [n for n in close if n not in same_case])[:3]
        text = f"column {column!r} is not in the data"
        if self.close_matches:
            text += "; did you mean " + " or ".join(repr(m) for m in self.close_matches) + "?"
        self.message = text
        super().__init__(text)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class DataError(MultilevelError, ValueError):
    """The data cannot support the model: wrong types, non-finite values, too few levels."""


class FitError(MultilevelError, RuntimeError):
    """The numerical core failed (for example a matrix that is not positive definite)."""


class MultilevelWarning(UserWarning):
    """Base class of the warnings of multilevel."""


class FormulaWarning(MultilevelWarning):
    """A formula was read differently from its text, as R would (the response dropped from
    the right-hand side)."""


class RowsDroppedWarning(MultilevelWarning):
    """Rows of the data were left out of a fit for a reason other than a missing value
    (zero weights), counted on the fit."""


class RankDeficiencyWarning(MultilevelWarning):
    """Fixed-effect columns were dropped because the model matrix is rank deficient."""


class MissingValuesWarning(MultilevelWarning):
    """Rows with missing values were dropped (counted in ``fit.n_dropped``)."""


class ConvergenceWarning(MultilevelWarning):
    """The optimiser's result fails the gradient check after the fit."""


class SingularFitWarning(MultilevelWarning):
    """The fit is on the boundary of the parameter space (a variance or correlation is
    degenerate)."""


# Errors of the Rust core, one class per variant of its error enum (rust/src/error.rs).
class ShapeError(DataError):
    """Arrays handed to the core disagree in length or shape."""


class CodeError(DataError):
    """A grouping code handed to the core is outside its number of levels."""


class ThetaError(MultilevelError, ValueError):
    """A covariance parameter vector of the wrong length or with non-finite values."""


class NotPositiveDefiniteError(FitError):
    """A matrix of the fit that must be positive definite is not."""


class OptimizerError(FitError):
    """The optimiser could not run or found no finite objective."""


class HypothesisError(MultilevelError, ValueError):
    """A linear hypothesis that names an unknown coefficient or cannot be tested."""
