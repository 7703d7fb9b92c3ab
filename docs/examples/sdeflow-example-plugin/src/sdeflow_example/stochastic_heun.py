"""A stochastic Heun sampler for the reverse-time SDE, written on sdeflow's public toolkit.

The reverse SDE ``dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar`` (Song et al. 2021,
Eq. 6) has additive noise (``g`` depends on time only). Written in the reverse time
``u = t_max - t`` with the drift ``F(x, t) = -(f - g^2 score)``, one step from ``t`` to
``t' = t - h`` with one Brownian increment ``dW ~ N(0, h I)`` is

    predictor  x* = x + h F(x, t) + g(t) dW
    corrector  x' = x + h/2 [F(x, t) + F(x*, t')] + 1/2 [g(t) + g(t')] dW,

the stochastic Heun (trapezoidal predictor-corrector) scheme for Stratonovich SDEs, which for
additive noise equal their Ito form (Kloeden & Platen 1992, Sec. 11.1, Eq. 11.1.13; Rumelin 1982).
Strong order 1 for additive noise; with ``g = 0`` it is Heun's second-order method. Two score
evaluations per step, plus one for the optional final denoising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sdeflow.solvers import GridRun, GridSampler, check_positive_int


@dataclass(frozen=True)
class HeunPlan:
    """The step ``h`` and ``g(t)`` at the grid's times (on the model's device), computed before the loop."""

    h: float
    g: Tensor


class StochasticHeunSampler(GridSampler):
    """Stochastic Heun steps on the reverse SDE (Kloeden & Platen 1992, Eq. 11.1.13; Song et al.
    2021, Eq. 6), uniform in time from ``t_max`` to ``t_end``.

    Args:
        steps: number of equal steps.
        denoise: finish with ``E[x_0 | x_{t_end}]`` (Tweedie's formula, one evaluation).
        t_end: final time (default: the process's ``t_min``).
        check_finite: raise :class:`sdeflow.errors.NonFiniteError` naming the step and time
            where the score first became NaN/Inf.
    """

    name = "stochastic_heun"
    stochastic = True
    order = 1.0  # strong order for the reverse SDE's additive noise
    scores_at_end = True  # the corrector evaluates the score at the end of each step

    def __init__(self, steps: int = 100, denoise: bool = True, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        self.steps, self.denoise, self.t_end, self.check_finite = int(steps), bool(denoise), t_end, bool(check_finite)

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, HeunPlan]:
        """Equal steps from ``t_start`` to ``t_end`` and ``g(t)`` on them."""
        grid = torch.linspace(t_start, t_end, self.steps + 1, dtype=torch.float64)
        g = run.process.diffusion(grid.to(device=run.device, dtype=run.dtype))
        return grid, HeunPlan((t_start - t_end) / self.steps, g)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """The predictor and the trapezoidal corrector from ``grid[k]`` to ``grid[k + 1]``."""
        h, g = run.plan.h, run.plan.g
        rsde = run.process.reverse_sde(run.score)  # every drift evaluation is one counted score evaluation

        def drift(y: Tensor, i: int) -> Tensor:  # F = -(f - g^2 score), the drift in reverse time
            return -rsde.drift(y, run.at(i))

        dw = math.sqrt(h) * run.noise()
        f_k = drift(x, k)
        x_pred = x + h * f_k + g[k] * dw
        return x + (0.5 * h) * (f_k + drift(x_pred, k + 1)) + (0.5 * (g[k] + g[k + 1])) * dw


__all__ = ["StochasticHeunSampler"]
