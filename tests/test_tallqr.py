"""The blocked QR (python/multilevel/_tallqr.py) against LAPACK's QR of the whole matrix.

The cases cover one block, several blocks with a short last one, and small blocks that make
the stacked partial factors fold into one many times. R is unique up to the signs of its rows,
so |R| is compared, to 1e-12 relative to the largest entry.
"""

from __future__ import annotations

import numpy as np
import pytest

from multilevel._tallqr import BLOCK_ROWS, kept_columns, tall_r


@pytest.mark.parametrize(
    "n, block_rows", [(5, BLOCK_ROWS), (3 * BLOCK_ROWS + 17, BLOCK_ROWS), (1000, 8), (3, 8)]
)
def test_tall_r_equals_lapack_r(n, block_rows):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 4)) * [1.0, 10.0, 1e-3, 5.0]
    want = np.linalg.qr(X, mode="r")
    got = tall_r(X, block_rows=block_rows)
    assert got.shape == want.shape
    assert np.max(np.abs(np.abs(got) - np.abs(want))) <= 1e-12 * np.abs(want).max()


def test_tall_r_of_columns_side_by_side():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(2000, 3)), rng.normal(size=2000)
    np.testing.assert_array_equal(
        tall_r([X, y], block_rows=64), tall_r(np.column_stack([X, y]), block_rows=64)
    )


def test_least_squares_from_r():
    # R of [X y] gives the coefficients (R11 b = r12) and the residual sum of squares (r22^2).
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5000, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=5000)
    R = tall_r([X, y], block_rows=256)
    b = np.linalg.solve(R[:3, :3], R[:3, 3])
    want, res, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(b, want, rtol=1e-12)
    np.testing.assert_allclose(R[3, 3] ** 2, res[0], rtol=1e-12)


def test_kept_columns_follows_r_rule():
    # Column 2 = column 0 + column 1, column 3 is zero, column 4 is nearly (1e-9) column 0:
    # R's qr(X, tol = 1e-7) keeps columns 0, 1 and nothing after them but column 5.
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(3, 3000))
    X = np.column_stack([a, b, a + b, np.zeros(3000), a + 1e-9 * c, c])
    np.testing.assert_array_equal(kept_columns(tall_r(X, block_rows=128), 1e-7), [0, 1, 5])
