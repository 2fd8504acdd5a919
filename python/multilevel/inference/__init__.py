"""Inference on fitted models: degrees of freedom, tests, intervals, profiles, the bootstrap.

The methods of :class:`multilevel.inference.methods.InferenceMixin` (``coef_table``, ``wald``,
``confint``, ``profile``, ``varcomp``, ...) reach these modules; each module holds one method.
"""
