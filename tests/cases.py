"""One table of dataset x formula x options, shared by the tests and the benchmarks.

As MixedModels.jl's ``test/modelcache.jl``: every linear mixed model that the golden tests
compare with lme4 (``LMM``, one reference per entry in tests/reference/lmm/<name>.json, made
by tests/reference/cases_lmm.R), that the inference tests compare with lmerTest and pbkrtest
(``INFERENCE``, tests/reference/inference/<name>.json) and that ``benches/bench_lmm.py`` times
(``BENCH``) is defined here, once. Tests import it as ``cases`` (tests/ is on the path under
pytest); benches load this file by its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    """One model: data, formula and options.

    ``data`` is a bundled dataset's name (``multilevel.datasets.load``), a data file relative
    to the repository root (``tests/reference/data/*.csv``), or ``"simulated"`` (the benchmark
    simulates it). ``what`` describes a benchmark case for its report.
    """

    data: str
    formula: str
    reml: bool = True
    weights: str | None = None
    offset: str | None = None
    what: str = ""

    @property
    def data_file(self) -> Path | None:
        """The data file, for a case fitted on one; None for a bundled or simulated dataset."""
        return ROOT / self.data if self.data.startswith("tests/") else None


SLEEPSTUDY = "Reaction ~ Days + (Days | Subject)"
HSB = "mathach ~ ses * sector + (1 + ses | school)"
PENICILLIN = "diameter ~ 1 + (1 | plate) + (1 | sample)"
PASTES = "strength ~ 1 + (1 | batch/cask)"
DYESTUFF = "Yield ~ 1 + (1 | Batch)"
INSTEVAL = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"

LMM: dict[str, Case] = {
    "dyestuff_ml": Case("dyestuff", DYESTUFF, reml=False),
    "dyestuff_reml": Case("dyestuff", DYESTUFF),
    "hsb_reml": Case("hsb", HSB),
    "pastes_reml": Case("pastes", PASTES),
    "penicillin_reml": Case("penicillin", PENICILLIN),
    "sleepstudy_na_ml": Case("tests/reference/data/sleepstudy_na.csv", SLEEPSTUDY, reml=False),
    "sleepstudy_offset_reml": Case(
        "tests/reference/data/sleepstudy_offset.csv",
        "Reaction ~ Days + (1 | Subject)",
        offset="off",
    ),
    "sleepstudy_slopes_ml": Case("sleepstudy", SLEEPSTUDY, reml=False),
    "sleepstudy_slopes_reml": Case("sleepstudy", SLEEPSTUDY),
    "sleepstudy_uncorr_ml": Case("sleepstudy", "Reaction ~ Days + (Days || Subject)", reml=False),
    "sleepstudy_uncorr_reml": Case("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    "sleepstudy_weights_reml": Case(
        "tests/reference/data/sleepstudy_weights.csv", SLEEPSTUDY, weights="w"
    ),
}

INFERENCE: dict[str, Case] = {
    "sleepstudy_slopes_reml": LMM["sleepstudy_slopes_reml"],
    "sleepstudy_slopes_ml": LMM["sleepstudy_slopes_ml"],
    "sleepstudy_intercept_ml": Case("sleepstudy", "Reaction ~ Days + (1 | Subject)", reml=False),
    "hsb_reml": LMM["hsb_reml"],
    "penicillin_reml": LMM["penicillin_reml"],
    "pastes_reml": LMM["pastes_reml"],
    "sleepstudy_na_reml": Case("tests/reference/data/sleepstudy_na.csv", SLEEPSTUDY),
}

BENCH: dict[str, Case] = {
    "insteval": Case(
        "insteval",
        INSTEVAL,
        what="InstEval, 73,421 rows, 3 crossed factors (2,972 / 1,128 / 28 levels), REML",
    ),
    "sleepstudy": Case(
        "sleepstudy",
        SLEEPSTUDY,
        what="sleepstudy, 180 rows, 18 subjects, correlated intercept and slope, REML, per fit",
    ),
    "panel1m": Case(
        "simulated",
        "y ~ x1 + x2 + x3 + (1 + x1 | g)",
        reml=False,
        what="simulated panel, {rows:,} rows, {groups:,} groups, random intercept and slope, ML",
    ),
}
