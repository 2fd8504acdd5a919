"""Stub of ``multilevel._core``, the Rust core (rust/src/py/), written by hand.

Checked against the compiled module by ``python -m mypy.stubtest multilevel._core``
(tests/test_core_stub.py). Arrays are float64 unless stated; every attribute of the result
classes is read-only.
"""

from collections.abc import Callable
from typing import TypeAlias, final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__all__ = [
    "Accumulator",
    "ConvergenceCheck",
    "FitResult",
    "GlmmFit",
    "GlmmProblem",
    "InternalError",
    "LmmProblem",
    "OptimizerSummary",
    "Solution",
    "__version__",
    "_panic_for_tests",
    "bobyqa",
    "glmm_working",
]

__version__: str

_F64: TypeAlias = npt.NDArray[np.float64]

class InternalError(Exception):
    """A bug of the Rust core (a panic caught at the boundary); please report it."""

@final
class LmmProblem:
    """A linear mixed model's cross-products, ready to evaluate and fit.

    ``terms`` is a list of ``(codes, n_levels, Z, diagonal)``: codes (n,) int32 0-based levels,
    Z (n, q) float64 in Fortran order. X is (n, p) in Fortran order. The arrays are held by
    reference, not copied. ``threads``: 0 for all cores.
    """

    def __new__(
        cls,
        y: _F64,
        x: _F64,
        terms: list[tuple[npt.NDArray[np.int32], int, _F64, bool]],
        weights: _F64 | None = None,
        offset: _F64 | None = None,
        threads: int = 0,
    ) -> LmmProblem: ...
    @property
    def n_theta(self) -> int: ...
    @property
    def nobs(self) -> int: ...
    @property
    def p(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def lower(self) -> _F64: ...
    @property
    def theta0(self) -> _F64: ...
    @property
    def sum_log_weights(self) -> float: ...
    def objective(self, theta: _F64 | list[float], reml: bool) -> float: ...
    def solution(self, theta: _F64 | list[float], reml: bool) -> Solution: ...
    def fit(
        self,
        reml: bool,
        theta0: _F64 | list[float] | None = None,
        max_fun: int | None = None,
        check: bool = True,
        xtol_rel: float = 1e-4,
        ftol_abs: float = 1e-8,
    ) -> FitResult: ...
    def condvar(self, theta: _F64 | list[float]) -> list[_F64]: ...

@final
class Accumulator:
    """The cross-product of a linear mixed model, accumulated from batches of rows.

    One random-effects term per entry of ``n_levels`` (its number of levels) and ``q`` (its
    number of columns of Z); ``p`` fixed-effect columns; ``threads`` for each ``add`` (0: all
    cores; the sums do not depend on it); ``diagonal`` marks uncorrelated terms; ``centre``
    shifts y and X's non-intercept columns by the first batch's means (and scales columns far
    from size 1 by powers of two) before summing, as the in-memory pass does. Partial
    accumulators (a Dask partition, a Spark task) merge in any order, up to rounding (one
    centred on other shifts is converted to the receiver's), and travel as bytes
    (``to_bytes`` / ``from_bytes``, also used by pickle). ``problem()`` gives the
    ``LmmProblem`` of all the rows added, with lme4's start, its estimates those of the
    original rows.

    >>> import numpy as np
    >>> acc = Accumulator([3], [1], 1)
    >>> ones = np.ones((4, 1), order="F")
    >>> acc.add(np.array([1.0, 2.0, 4.0, 3.0]), ones, [(np.array([0, 1, 2, 1], np.int32), ones)])
    >>> acc.nrows
    4
    """

    def __new__(
        cls,
        n_levels: list[int],
        q: list[int],
        p: int,
        threads: int = 0,
        diagonal: list[bool] | None = None,
        centre: bool = True,
    ) -> Accumulator: ...
    def add(
        self,
        y: _F64,
        x: _F64,
        terms: list[tuple[npt.NDArray[np.int32], _F64]],
        weights: _F64 | None = None,
        offset: _F64 | None = None,
    ) -> None:
        """Adds one batch: ``y`` (n,), ``X`` (n, p) in Fortran order, per term ``(codes, Z)``
        with ``codes`` (n,) int32 0-based levels and ``Z`` (n, q) in Fortran order, optional
        ``weights`` and ``offset`` (n,). Read in place with the GIL released; a bad batch
        raises (``ShapeError``, ``CodeError`` naming the term and the batch's row) and adds
        nothing."""
    def merge(self, other: Accumulator) -> None:
        """Adds the rows of another accumulator of the same model."""
    def to_bytes(self) -> bytes:
        """The versioned little-endian layout of ``rust/src/model/wire.rs``."""
    @staticmethod
    def from_bytes(data: bytes | bytearray, threads: int = 0) -> Accumulator:
        """Reads ``to_bytes``'s output; a corrupt buffer raises ``ShapeError``."""
    def __reduce__(self) -> tuple[object, tuple[bytes]]: ...
    def problem(self, reset: bool = False) -> LmmProblem:
        """The ``LmmProblem`` of the rows added (the accumulator stays usable; ``reset=True``
        moves its sums into the problem, no copy, and leaves it empty)."""
    @property
    def nrows(self) -> int:
        """Rows added, whatever their weights."""
    @property
    def centre(self) -> bool:
        """Whether the first batch's means centre the rows."""
    @property
    def transform(self) -> tuple[int | None, list[float], list[float]]:
        """(intercept column or None, shift and power-of-two scale per column of [X, y])."""
    @property
    def nobs(self) -> int:
        """Rows added with a non-zero weight."""
    @property
    def p(self) -> int: ...
    @property
    def n_levels(self) -> list[int]: ...
    @property
    def q(self) -> list[int]: ...
    @property
    def diagonal(self) -> list[bool]: ...
    @property
    def threads(self) -> int: ...

@disjoint_base
class Solution:
    """The linear mixed model at one theta."""

    @property
    def theta(self) -> _F64: ...
    @property
    def beta(self) -> _F64: ...
    @property
    def u(self) -> list[_F64]: ...
    @property
    def b(self) -> list[_F64]: ...
    @property
    def sigma(self) -> float: ...
    @property
    def objective(self) -> float: ...
    @property
    def pwrss(self) -> float: ...
    @property
    def ld_l2(self) -> float: ...
    @property
    def ld_rx2(self) -> float: ...
    @property
    def vcov_unscaled(self) -> _F64: ...
    @property
    def lambda_(self) -> list[_F64]: ...
    @property
    def nobs(self) -> int: ...

@final
class FitResult(Solution):
    """The solution at the optimum, with the optimiser's summary and the post-fit check."""

    @property
    def optimizer(self) -> OptimizerSummary: ...
    @property
    def check(self) -> ConvergenceCheck | None: ...

@final
class OptimizerSummary:
    """What the optimiser did."""

    @property
    def theta0(self) -> _F64: ...
    @property
    def theta(self) -> _F64: ...
    @property
    def f0(self) -> float: ...
    @property
    def f(self) -> float: ...
    @property
    def n_eval(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def message(self) -> str: ...

@final
class ConvergenceCheck:
    """lme4's checks after a fit."""

    @property
    def gradient(self) -> _F64: ...
    @property
    def hessian(self) -> _F64: ...
    @property
    def scaled_gradient(self) -> _F64: ...
    @property
    def converged(self) -> bool: ...
    @property
    def singular(self) -> bool: ...
    @property
    def message(self) -> str: ...

def _panic_for_tests() -> None: ...

@final
class GlmmFit:
    """Result of ``GlmmProblem.fit``."""

    @property
    def nagq(self) -> int: ...
    @property
    def theta(self) -> npt.NDArray[np.float64]: ...
    @property
    def beta(self) -> npt.NDArray[np.float64]: ...
    @property
    def u(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def b(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def objective(self) -> float: ...
    @property
    def vcov(self) -> npt.NDArray[np.float64]: ...
    @property
    def hessian(self) -> npt.NDArray[np.float64]: ...
    @property
    def gradient(self) -> npt.NDArray[np.float64]: ...
    @property
    def eta(self) -> npt.NDArray[np.float64]: ...
    @property
    def mu(self) -> npt.NDArray[np.float64]: ...
    @property
    def weights(self) -> npt.NDArray[np.float64]: ...
    @property
    def condvar(self) -> list[npt.NDArray[np.float64]]: ...
    @property
    def stage1(self) -> tuple[list[float], list[float], float, float, int, str]: ...
    @property
    def stage2(self) -> tuple[list[float], list[float], float, float, int, str] | None: ...

@final
class GlmmProblem:
    """A generalized linear mixed model over y, X, the terms and a family."""

    def __new__(
        cls,
        y: npt.NDArray[np.float64],
        x: npt.NDArray[np.float64],
        terms: list[tuple[npt.NDArray[np.int32], int, npt.NDArray[np.float64], bool]],
        family: str,
        link: str,
        weights: npt.NDArray[np.float64] | None = None,
        offset: npt.NDArray[np.float64] | None = None,
        threads: int = 0,
        nb_theta: float | None = None,
    ) -> GlmmProblem: ...
    def objective(
        self, theta: list[float], beta: list[float] | None = None, nagq: int = 1
    ) -> float: ...
    def fit(self, nagq: int, beta0: list[float], theta0: list[float] | None = None) -> GlmmFit: ...

def bobyqa(
    f: Callable[[list[float]], float],
    x0: list[float],
    lower: list[float],
    steps: list[float] | None = None,
    xtol_rel: float = 1e-4,
    xtol_abs: float = 1e-8,
    ftol_abs: float = 1e-8,
    max_eval: int = 100_000,
) -> tuple[list[float], float, int, str]: ...
def glmm_working(
    y: _F64,
    pw: _F64,
    offset: _F64,
    x: npt.NDArray[np.float64],
    beta: list[float],
    terms: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    family: str,
    link: str,
    nb_theta: float | None,
    mode: int,
    threads: int = 0,
) -> tuple[tuple[_F64, _F64] | None, float, list[float]]: ...
