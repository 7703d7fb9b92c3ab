"""The ``ancestral`` sampler: the reverse Gaussian chain ``p(x_s | x_t)`` for any Gaussian-marginal process."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers.common import check_clip_x0, check_positive_int
from sdeflow.solvers.grid_sampler import GridRun, GridSampler
from sdeflow.solvers.grids import reverse_grid
from sdeflow.solvers.transitions import VARIANCES, ancestral_mean_var


class AncestralSampler(GridSampler):
    """Ancestral sampling ``x_s ~ q(x_s | x_t, x_0 = x0_theta(x_t, t))`` (Ho et al. 2020, Algorithm 2;
    Kingma et al. 2021, Eq. 26-27).

    With ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``:

        mean = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0_theta
        var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2   ("posterior": DDPM's beta-tilde)
             = sigma_{t|s}^2                         ("forward": DDPM's beta)

    Written through ``alpha_t`` and ``sigma_t`` only, it runs on every process with Gaussian
    marginals (DDPM, VP, sub-VP, VE, VDM, third-party). On DDPM's own grid it is exactly Ho et
    al.'s sampler: ``N - 1`` transitions then ``x_0 = x0_theta(x_1)``: ``N`` evaluations.

    Args:
        steps: transitions; default: the process's own chain (DDPM), or 1000 uniform in time.
            Fewer steps than the chain stride it evenly (respacing).
        variance: ``"posterior"`` or ``"forward"``.
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
        if variance not in VARIANCES:
            raise OptionError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
        check_clip_x0(clip_x0)
        self.steps, self.variance, self.clip_x0 = steps, variance, clip_x0
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def _plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The process's chain (or ``steps`` uniform times) and ``(alpha, sigma)`` at them, on the model's device."""
        grid = reverse_grid(run.process, t_start, t_end, self.steps, default_steps=1000)
        return grid, run.process.marginal(grid.to(device=run.device, dtype=run.dtype))

    def _step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``x_s ~ q(x_s | x_t, x0_theta(x_t))`` from ``t = grid[k]`` to ``s = grid[k + 1]``."""
        a_all, s_all = run.plan
        a_t, s_t, a_s, s_s = a_all[k], s_all[k], a_all[k + 1], s_all[k + 1]
        mean, var = ancestral_mean_var(x, run.x0(x, run.at(k)), a_t, s_t, a_s, s_s, self.variance)
        return mean + var.clamp_min(0).sqrt() * run.noise()
