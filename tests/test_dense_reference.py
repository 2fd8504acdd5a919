"""The dense oracle (tests/_dense_reference.py) on its own: small problems, no compiled core."""

from __future__ import annotations

import numpy as np

from _dense_reference import DenseLmmProblem, dense_objective


def test_dense_problem_fits_and_reports_its_objective():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(5), 4).astype(np.int32)
    y = rng.normal(size=20) + rng.normal(size=5)[g]
    prob = DenseLmmProblem(y, np.ones((20, 1)), [(g, 5, np.ones((20, 1)), False)])
    assert (prob.n_theta, prob.theta0.tolist()) == (1, [1.0])
    fit = prob.fit(reml=True)
    assert abs(fit.objective - prob.objective(fit.theta, True)) < 1e-12


def test_dense_objective_of_a_tiny_problem():
    y = np.array([1.0, 2.0, 2.5, 4.0, 3.0, 5.0])
    g = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
    terms = [(g, 3, np.ones((6, 1)), False)]
    assert round(dense_objective(y, np.ones((6, 1)), terms, [0.0], False), 6) == 20.215932
