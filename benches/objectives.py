"""Prints the objective (and its hex), the evaluations and theta of the acceptance fits.

A refactoring must leave these to the last bit: run it before and after (and with a thread
count, e.g. ``python benches/objectives.py 1``) and diff the outputs. The cases are those of
issue 10: sleepstudy REML and ML, penicillin (crossed), pastes (nested), HSB (one vector
term) and InstEval ML (three crossed terms).
"""

from __future__ import annotations

import sys
import warnings

import multilevel as ml

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", False),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
    ("pastes", "strength ~ 1 + (1 | batch/cask)", True),
    ("hsb", "mathach ~ ses * sector + (1 + ses | school)", True),
    ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)", False),
]


def main() -> None:
    kw = {"threads": int(sys.argv[1])} if len(sys.argv) > 1 else {}
    for name, formula, reml in CASES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ml.lmer(formula, ml.datasets.load(name), reml=reml, **kw)
        obj = float(fit.objective)
        theta = [float(t).hex() for t in fit.theta]
        print(
            f"{name:11s} reml={reml!s:5s} obj={obj!r:24} hex={obj.hex()} "
            f"n_eval={fit.optimizer['n_eval']} theta={theta}"
        )


if __name__ == "__main__":
    main()
