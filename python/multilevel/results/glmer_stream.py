"""The result of ``ml.glmer`` on streamed data: a :class:`GlmerFit` without the rows.

The estimates, their covariance (the Hessian of the objective, as in memory), the
conditional modes and variances, the summary, ``tidy``/``glance``, Wald intervals and
``predict(newdata)`` are all there. What needs the rows again (fitted values, residuals,
profile and bootstrap intervals, the likelihood-ratio test against the GLM) raises
:class:`multilevel.design.stream.StreamedDataError` naming the reason. ``rows`` counts the
rows read, dropped for missing values and used; ``passes`` the passes over the batches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from multilevel.design.stream import StreamedDataError
from multilevel.results.glmer import GlmerFit

__all__ = ["StreamedGlmerFit"]

REASON = (
    "the data were streamed: the fit keeps the estimates and the cross-products, not the "
    "rows; predict(newdata) on the rows of interest gives fitted values"
)


class StreamedGlmerFit(GlmerFit):
    """A glmer fit whose data were streamed (``streamed`` is True)."""

    streamed = True
    rows: dict[str, int]
    passes: int
    _streamed_sums: dict[str, float]
    _glm_objective: float

    @property
    def nobs(self) -> int:
        return int(self.rows["used"])

    @property
    def deviance(self) -> float:
        """The sum of the squared deviance residuals at the estimates (from the last pass)."""
        return float(self._streamed_sums["dev"])

    @property
    def sigma(self) -> float:
        if not self.family.has_dispersion:
            return 1.0
        sqr_u = sum(float(np.sum(np.asarray(u) ** 2)) for u in self._res.u)
        return math.sqrt((self._streamed_sums["pearson"] + sqr_u) / self.nobs)

    @property
    def problem(self) -> Any:
        raise StreamedDataError(f"this needs the rows again: {REASON}")

    @property
    def linear_predictor(self) -> np.ndarray:
        raise StreamedDataError(f"the linear predictor is not available: {REASON}")

    @property
    def fitted_values(self) -> np.ndarray:
        raise StreamedDataError(f"fitted values are not available: {REASON}")

    @property
    def fitted(self) -> np.ndarray:  # type: ignore[override]
        raise StreamedDataError(f"fitted values are not available: {REASON}")

    def resid(self, type: str = "deviance") -> np.ndarray:  # type: ignore[override]
        raise StreamedDataError(f"residuals are not available: {REASON}")

    def resid_values(self, type: str = "deviance") -> np.ndarray:
        raise StreamedDataError(f"residuals are not available: {REASON}")

    def predict(self, newdata: Any = None, *args: Any, **kwargs: Any) -> np.ndarray:
        if newdata is None:
            raise StreamedDataError(f"predict() needs newdata for this fit: {REASON}")
        return super().predict(newdata, *args, **kwargs)

    def confint(self, method: str = "wald", *args: Any, **kwargs: Any):
        if str(method).lower() in ("profile", "boot"):
            raise StreamedDataError(
                f"{method} intervals refit the model many times over the rows: {REASON}; "
                f"method='wald' works"
            )
        return super().confint(method, *args, **kwargs)

    def lr_test_vs_glm(self) -> tuple[float, int, float] | None:
        """As :meth:`GlmerFit.lr_test_vs_glm`, from the GLM's objective found in a pass during
        the fit."""
        if self.nagq == 0 or self.family.has_dispersion:
            return None
        from scipy import stats

        nt = len(self.theta)
        chi2 = max(0.0, self._glm_objective - self.objective)
        p = stats.chi2.sf(chi2, nt)
        return chi2, nt, float(0.5 * p if nt == 1 else p)

    def __repr__(self) -> str:
        return (
            f"StreamedGlmerFit({self.formula!r}, family={self.family!r}, nagq={self.nagq}, "
            f"loglik={self.loglik:.4f}, rows={self.rows['used']}, passes={self.passes})"
        )
