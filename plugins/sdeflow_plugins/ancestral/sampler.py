"""The ``ancestral`` sampler: the reverse Gaussian chain ``p(x_s | x_t)`` for any Gaussian-marginal process."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers import (
    ANCESTRAL_VARIANCES,
    GridRun,
    GridSampler,
    ancestral_step,
    check_clip_x0,
    check_positive_int,
    reverse_grid,
)


@dataclass(frozen=True)
class AncestralPlan:
    """``alpha_t`` and ``sigma_t`` at the grid's times, on the model's device."""

    alpha: Tensor
    sigma: Tensor


class AncestralSampler(GridSampler):
    """Ancestral sampling ``x_s ~ q(x_s | x_t, x_0 = x0_theta(x_t, t))`` (Ho et al. 2020, Algorithm 2;
    Kingma et al. 2021, Eq. 26-27): :func:`sdeflow.solvers.ancestral_step` at every grid step.

    Written through ``alpha_t`` and ``sigma_t`` only, it runs on every process with Gaussian
    marginals. On DDPM's own grid it is exactly Ho et al.'s sampler: ``N - 1`` transitions then
    ``x_0 = x0_theta(x_1)``: ``N`` evaluations.

    Args:
        steps: transitions; default: the process's own chain (DDPM), or 1000 uniform in time.
            Fewer steps than the chain stride it evenly (respacing).
        variance: ``"posterior"`` (DDPM's beta-tilde) or ``"forward"`` (DDPM's beta).
        clip_x0: clip the predicted ``x_0`` to ``[-clip_x0, clip_x0]`` (images in [-1, 1]: 1.0).
        denoise: finish with ``x0_theta(x_{t_end})`` (DDPM's noiseless last step).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "ancestral"
    stochastic = True
    requires_gaussian_marginals = True
    order = 1.0

    def __init__(self, steps: int | None = None, variance: str = "posterior", clip_x0: float | None = None,
                 denoise: bool = True, t_end: float | None = None, check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if variance not in ANCESTRAL_VARIANCES:
            raise OptionError(f"variance must be one of {', '.join(ANCESTRAL_VARIANCES)}, got {variance!r}")
        check_clip_x0(clip_x0)
        self.steps, self.variance, self.clip_x0 = steps, variance, clip_x0
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, AncestralPlan]:
        """The process's chain (or ``steps`` uniform times) and the marginal at it."""
        grid = reverse_grid(run.process, t_start, t_end, self.steps, default_steps=1000)
        alpha, sigma = run.process.marginal(grid.to(device=run.device, dtype=run.dtype))
        return grid, AncestralPlan(alpha, sigma)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``x_s ~ q(x_s | x_t, x0_theta(x_t))`` from ``t = grid[k]`` to ``s = grid[k + 1]``."""
        a, s = run.plan.alpha, run.plan.sigma
        x0 = run.x0(x, run.at(k))
        x_s, _ = ancestral_step(x, x0, a[k], s[k], a[k + 1], s[k + 1], run.noise(), self.variance)
        return x_s
