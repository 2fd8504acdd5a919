"""Reports of a fit in the layouts of other packages: Stata's ``mixed`` and nlme's ``lme``."""
