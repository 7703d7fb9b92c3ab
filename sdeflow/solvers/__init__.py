"""The integration loops and step-loop building blocks the samplers share.

:mod:`~sdeflow.solvers.sde` drives torchsde on the reverse SDE in step time,
:mod:`~sdeflow.solvers.ode` torchdiffeq on the probability-flow ODE; the other modules are
the pieces every sampler loop uses (time interval and observers, counted and NaN-watched score
evaluations, denoising, time grids and solver schedules, Brownian sources, predictor and
corrector bases). Sampler plugins import them directly.
"""
