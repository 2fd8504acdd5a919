"""The models: each turns a formula and data into a fit through design/ and the core.

``lmm`` (:func:`multilevel.lmer`), ``ols`` (:func:`multilevel.ols`), ``panel``
(:func:`multilevel.panel`, :func:`multilevel.hausman`) and ``lmlist``
(:func:`multilevel.lmlist`).
"""
