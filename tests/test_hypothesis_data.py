"""Property: random data never crash the process. Whatever the columns hold (NaN, inf,
None, text, booleans, huge or tiny numbers, one row, one group), ml.lmer, ml.ols and
ml.glmer either fit or raise one of the library's own exceptions (MultilevelError); a fit
has a finite objective and as many fitted values as rows used."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

import _hypothesis_profiles  # noqa: F401  (settings profile)
import multilevel as ml
from multilevel.exceptions import MultilevelError

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-1e3, 1e3),
    st.floats(-1e3, 1e3),
    st.integers(-5, 5),
    st.none(),
)


@st.composite
def column(draw, n: int):
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.lists(VALUES, min_size=n, max_size=n))
    if kind == 1:
        return draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n))
    if kind == 2:
        return draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    if kind == 3:
        return draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if kind == 4:
        return draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return draw(
        st.lists(st.sampled_from([1.0, 1e-300, 1e300, -1e300, 0.0]), min_size=n, max_size=n)
    )


@st.composite
def frame(draw):
    n = draw(st.integers(0, 20))
    return pd.DataFrame(
        {c: draw(column(n)) for c in ("y", "x", "g", "h")}, dtype=object
    ).infer_objects()


FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ x + (x | g)",
    "y ~ 1 + (1 | g) + (1 | h)",
    "y ~ x * h + (1 | g)",
    "y ~ scale(x) + (1 | g/h)",
    "np.log(y) ~ x + (x || g)",
]


def _run(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call()
        except MultilevelError:
            return None


@given(d=frame(), formula=st.sampled_from(FORMULAS), reml=st.booleans())
def test_lmer_fits_or_raises_own_error(d, formula, reml):
    fit = _run(lambda: ml.lmer(formula, d, reml=reml, threads=1))
    if fit is not None:
        assert np.isfinite(fit.objective)
        # fitted is on the input's index (NaN at dropped rows)
        assert len(fit.fitted) == len(d) and fit.nobs == len(d) - fit.n_dropped
        assert int(np.isfinite(np.asarray(fit.fitted, float)).sum()) == fit.nobs


@given(d=frame(), w=st.lists(st.floats(0, 10), min_size=20, max_size=20))
def test_weighted_lmer_and_ols(d, w):
    w = np.asarray(w[: len(d)])
    fit = _run(lambda: ml.lmer("y ~ x + (1 | g)", d, weights=w, threads=1))
    if fit is not None:
        assert np.isfinite(fit.objective)
    fit = _run(lambda: ml.ols("y ~ x", d, weights=w, vcov={"CR1": "g"}))
    if fit is not None:
        assert fit.nobs + fit.n_dropped + fit.n_zero_weight == len(d)


@given(d=frame())
def test_glmer_fits_or_raises_own_error(d):
    fit = _run(lambda: ml.glmer("y ~ x + (1 | g)", d, family="poisson", threads=1))
    if fit is not None:
        assert np.isfinite(fit.loglik)
