"""``vcov=`` (cluster-robust) with streamed data: CR0, CR1, CR1p, CR1S, CR3 and CR4 from
per-cluster sums in one more pass equal the in-memory covariances and Satterthwaite df; CR2
(which needs each cluster's rows) is refused with the list of the types that stream."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.exceptions import DataError

pa = pytest.importorskip("pyarrow")
pytest.importorskip("multilevel._core", reason="multilevel._core is not built")


def _frame(n=900, groups=30, seed=11):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x1 = rng.normal(size=n)
    b = rng.normal(size=(groups, 2)) * [1.0, 0.4]
    df = pd.DataFrame({"g": g, "x1": x1, "x2": rng.normal(size=n)})
    df["y"] = 1 + 0.5 * x1 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=n) * (1 + (g % 3))
    df.loc[[4, 77], "x2"] = np.nan
    return df


@pytest.mark.parametrize(
    "formula", ["y ~ x1 + x2 + (1 + x1 | g)", "y ~ x1 + x2 + (1 | g) + (0 + x1 | g)"]
)
@pytest.mark.parametrize("kind", ["CR0", "CR1", "CR1p", "CR1S", "CR3", "CR4"])
def test_streamed_vcov_equals_in_memory(formula, kind):
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.lmer(formula, df, vcov={kind: "g"})
        fit = ml.lmer(formula, pa.Table.from_pandas(df), vcov=kind, batch_rows=128)
    assert fit.robust.type == kind and fit.robust.cluster == "g"
    assert fit.robust.n_clusters == ref.robust.n_clusters == 30
    # the same estimates to the optimiser's tolerance, so the covariances to about that
    np.testing.assert_allclose(fit.robust.vcov, ref.robust.vcov, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(fit.robust.df, ref.robust.df, rtol=1e-5)
    np.testing.assert_allclose(fit.se, ref.se, rtol=1e-5)


def test_streamed_vcov_at_the_same_estimates():
    """At the same beta and theta the per-cluster sums give the in-memory result to 1e-10."""
    from multilevel.design import stream
    from multilevel.distributed.robust import streamed_vcov
    from multilevel.inference.lmer_robust import vcov_robust

    df = _frame()
    formula = "y ~ x1 + x2 + (1 + x1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.lmer(formula, df)
    source = stream.batches_of(
        pa.Table.from_pandas(df), stream.columns_of(ml.formula.parse(formula), None, None), 100
    )
    p = stream.plan(formula, source)
    stream.accumulate(p, source)
    frames = ((label, b.to_pandas()) for label, b in source.batches())
    for kind in ("CR1S", "CR3"):
        got = streamed_vcov(ref, p, frames, kind)
        want = vcov_robust(ref, kind, "g")
        np.testing.assert_allclose(got.vcov, want.vcov, rtol=1e-10)
        np.testing.assert_allclose(got.df, want.df, rtol=1e-10)
        frames = ((label, b.to_pandas()) for label, b in source.batches())


def test_streamed_vcov_refusals():
    df = _frame()
    table = pa.Table.from_pandas(df)
    with pytest.raises(NotImplementedError, match=r"'CR2'.*CR0, CR1, CR1p, CR1S, CR3, CR4"):
        ml.lmer("y ~ x1 + (1 | g)", table, vcov="CR2")
    with pytest.raises(DataError, match="clusters on the grouping factor 'g', not 'x2'"):
        ml.lmer("y ~ x1 + (1 | g)", table.drop_null(), vcov={"CR1": "x2"})
    df["h"] = df.g % 5
    with (
        warnings.catch_warnings(),
        pytest.raises(DataError, match="every random-effects term on one grouping factor"),
    ):
        warnings.simplefilter("ignore")
        ml.lmer("y ~ x1 + (1 | g) + (1 | h)", pa.Table.from_pandas(df), vcov="CR1")
