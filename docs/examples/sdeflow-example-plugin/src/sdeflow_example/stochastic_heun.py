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
evaluations per step, plus one for the optional final denoising. With ``brownian="interval"`` the
increments come from one Brownian path per seed, the same at every step count (a dyadic torchsde
``BrownianInterval``), so its strong error can be measured against a finer run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers import GridRun, GridSampler, ScaledBrownian, check_positive_int


@dataclass(frozen=True)
class HeunPlan:
    """The step ``h``, ``g(t)`` at the grid's times (on the model's device) and, with
    ``brownian="interval"``, the run's Brownian path, computed before the loop."""

    h: float
    g: Tensor
    path: ScaledBrownian | None = None


class StochasticHeunSampler(GridSampler):
    """Stochastic Heun steps on the reverse SDE (Kloeden & Platen 1992, Eq. 11.1.13; Song et al.
    2021, Eq. 6), uniform in time from ``t_max`` to ``t_end``.

    Args:
        steps: number of equal steps.
        brownian: ``"fast"`` draws each increment from the generator; ``"interval"`` takes them from
            one Brownian path per generator seed, the same at every step count (strong-error studies).
        denoise: finish with ``E[x_0 | x_{t_end}]`` (Tweedie's formula, one evaluation; it needs
            ``alpha_t`` and ``sigma_t``, so it requires a process with Gaussian marginals).
        t_end: final time (default: the process's ``t_min``).
        check_finite: raise :class:`sdeflow.errors.NonFiniteError` naming the step and time
            where the score first became NaN/Inf.
    """

    name = "stochastic_heun"
    stochastic = True
    order = 1.0  # strong order for the reverse SDE's additive noise
    scores_at_end = True  # the corrector evaluates the score at the end of each step

    def __init__(self, steps: int = 100, brownian: str = "fast", denoise: bool = True, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if brownian not in ("fast", "interval"):
            raise OptionError(f"brownian must be 'fast' or 'interval', got {brownian!r}")
        self.steps, self.brownian, self.denoise = int(steps), brownian, bool(denoise)
        self.t_end, self.check_finite = t_end, bool(check_finite)

    @property
    def requires_gaussian_marginals(self) -> bool:  # type: ignore[override]
        """Only with ``denoise``: the steps use drift, diffusion and score alone."""
        return self.denoise

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, HeunPlan]:
        """Equal steps from ``t_start`` to ``t_end``, ``g(t)`` on them, and the Brownian path."""
        grid = torch.linspace(t_start, t_end, self.steps + 1, dtype=torch.float64)
        g = run.process.diffusion(grid.to(device=run.device, dtype=run.dtype))
        path = None
        if self.brownian == "interval":
            seed = int(torch.randint(0, 2**62, (1,), generator=run.generator))
            path = ScaledBrownian(t_start - t_end, self.steps, (run.batch, math.prod(run.shape[1:])), seed, run.dtype,
                                  run.device)
        return grid, HeunPlan((t_start - t_end) / self.steps, g, path)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """The predictor and the trapezoidal corrector from ``grid[k]`` to ``grid[k + 1]``."""
        h, g = run.plan.h, run.plan.g
        rsde = run.process.reverse_sde(run.score)  # every drift evaluation is one counted score evaluation

        def drift(y: Tensor, i: int) -> Tensor:  # F = -(f - g^2 score), the drift in reverse time
            return -rsde.drift(y, run.at(i))

        z = run.noise() if run.plan.path is None else run.plan.path(k, k + 1).reshape(run.shape)
        dw = math.sqrt(h) * z
        f_k = drift(x, k)
        x_pred = x + h * f_k + g[k] * dw
        return x + (0.5 * h) * (f_k + drift(x_pred, k + 1)) + (0.5 * (g[k] + g[k + 1])) * dw


__all__ = ["StochasticHeunSampler"]
