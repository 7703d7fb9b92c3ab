"""The ``langevin`` sampler: annealed Langevin dynamics over decreasing noise levels."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.integrators.common import check_positive_int
from sdeflow.integrators.grid_sampler import GridRun, GridSampler
from sdeflow.integrators.grids import reverse_grid


class AnnealedLangevinSampler(GridSampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For noise levels ``sigma_1 > ... > sigma_L`` (the marginal std at the level times), with
    step ``alpha_i = eps sigma_i^2 / sigma_L^2``, run ``T`` steps of

        x <- x + alpha_i / 2 score(x, t_i) + sqrt(alpha_i) z,   z ~ N(0, I)

    per level, then optionally denoise once (``x + sigma_L^2 score``, Tweedie's formula;
    Jolicoeur-Martineau et al. 2021). Levels: the process's own (NCSN) or ``num_scales`` times
    uniform in log-SNR (geometric sigmas for VE).

    Args:
        step_size: ``eps`` (2e-5 in the paper).
        n_steps_each: ``T`` (100 in the paper).
        num_scales: number of levels for continuous processes (default 10); for a discrete
            process (NCSN), an evenly strided subset of its own levels.
        denoise: final denoising step.
        t_end: time of the last level (default ``t_min``; must have a finite log-SNR for
            continuous processes, so ``ve`` needs ``t_end > 0``).
        check_finite: raise on NaN/Inf, naming the level.
    """

    name = "langevin"
    stochastic = True
    requires_gaussian_marginals = True

    def __init__(self, step_size: float = 2e-5, n_steps_each: int = 100, num_scales: int | None = None,
                 denoise: bool = True, t_end: float | None = None, check_finite: bool = True) -> None:
        if not step_size > 0:
            raise OptionError(f"step_size must be positive, got {step_size!r}")
        check_positive_int("n_steps_each", n_steps_each)
        if num_scales is not None and (int(num_scales) != num_scales or num_scales < 2):
            raise OptionError(f"num_scales must be an integer >= 2, got {num_scales!r}")
        self.step_size, self.n_steps_each, self.num_scales = float(step_size), int(n_steps_each), num_scales
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def _plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The levels, each repeated ``T`` times (step ``k`` runs at level ``k // T``: the grid point
        after it), and the step sizes ``alpha_i`` with their square roots."""
        process = run.process
        steps = None if self.num_scales is None else self.num_scales - 1
        if process.discrete_times() is None and steps is None:
            steps = 9
        levels = reverse_grid(process, t_start, t_end, steps, default_steps=9, spacing="log_snr")
        sig = process.marginal(levels.to(device=run.device, dtype=run.dtype))[1]
        alphas = self.step_size * sig * sig / (sig[-1] * sig[-1])
        grid = torch.cat([levels[:1], levels.repeat_interleave(self.n_steps_each)])
        return grid, (levels.numel(), alphas, alphas.sqrt())

    def _step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``x + alpha_i / 2 score(x, t_i) + sqrt(alpha_i) z`` at level ``i = k // T``."""
        _, alphas, roots = run.plan
        i = k // self.n_steps_each
        return x + 0.5 * alphas[i] * run.evaluator(x, run.at(k + 1)) + roots[i] * run.noise()

    def _describe(self, run: GridRun) -> str:
        return f"{run.plan[0]} levels x {self.n_steps_each} steps"

    def _step_label(self, run: GridRun, step: int) -> str:
        return f"noise level {(step - 1) // self.n_steps_each + 1} of {run.plan[0]}"
