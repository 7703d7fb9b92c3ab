"""The ``ddim`` sampler: denoising diffusion implicit models for any Gaussian-marginal process."""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers import (
    GridCoefficients,
    GridRun,
    GridSampler,
    check_clip_x0,
    check_positive_int,
    check_schedule,
    schedule_steps,
    solver_times,
)


def ddim_noise_std(eta: float, sigma_s: float, log_snr_t: float, log_snr_s: float) -> float:
    """DDIM's ``sigma_t(eta)`` (Song, Meng, Ermon 2021, Eq. 16) for a step from ``t`` to ``s < t``, in
    terms of the marginal: ``eta sigma_s sqrt(1 - exp(log_snr_t - log_snr_s))`` (for DDPM,
    ``eta sqrt((1 - abar_s)/(1 - abar_t)) sqrt(1 - abar_t/abar_s)``; ``eta = 1``: the posterior's)."""
    if eta == 0.0 or sigma_s == 0.0:
        return 0.0
    return eta * sigma_s * math.sqrt(-math.expm1(log_snr_t - log_snr_s))


class DDIMSampler(GridSampler):
    """DDIM (Song, Meng, Ermon 2021, Eq. 12), written through ``alpha_t`` and ``sigma_t``:

        x_s = alpha_s x0_theta(x_t) + sqrt(sigma_s^2 - c^2) eps_theta(x_t) + c z,
        c = eta sigma_s sqrt(1 - exp(log_snr_t - log_snr_s)),

    with ``eps_theta = (x_t - alpha_t x0_theta) / sigma_t``. ``eta = 0`` is the deterministic
    sampler (a first-order solver of the probability-flow ODE, equal to DPM-Solver-1, Lu et al.
    2022, Sec. 4.1); ``eta = 1`` is ancestral sampling with the posterior variance. A final step to
    ``sigma_s = 0`` (VE at ``t = 0``) returns ``alpha_s x0_theta``. ``steps`` steps cost ``steps``
    score evaluations.

    Args:
        steps: number of steps = score evaluations (default 50).
        eta: 0 (deterministic, default) to 1 (DDPM-like ancestral).
        schedule: ``"time_uniform"`` (DDIM's "linear" skip, default), ``"time_quadratic"``,
            ``"logSNR"``, ``"logSNR_edm"``, ``"edm"``, ``"chain"`` (the process's own discrete times:
            DDPM's timesteps), or noise levels ``sigma_t / alpha_t`` (``steps`` is then their number less one).
        clip_x0: clamp ``x0_theta`` to ``[-clip_x0, clip_x0]`` (``eps`` is recomputed from it).
        denoise: finish with the posterior mean ``x0_theta(x_{t_end})`` (one more evaluation; diffusers'
            DDIM with ``set_alpha_to_one`` and DPM-Solver++ with ``final_sigmas_type="zero"`` end this way).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "ddim"
    requires_gaussian_marginals = True
    order = 1.0

    def __init__(self, steps: int = 50, eta: float = 0.0, schedule: str | Sequence[float] = "time_uniform",
                 clip_x0: float | None = None, denoise: bool = False, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if isinstance(eta, bool) or not 0.0 <= float(eta) <= 1.0:
            raise OptionError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: ancestral), got {eta!r}")
        schedule = check_schedule(schedule)
        steps = schedule_steps(schedule, steps, 50)
        check_clip_x0(clip_x0)
        self.steps, self.eta, self.schedule, self.clip_x0 = int(steps), float(eta), schedule, clip_x0
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        """True when ``eta > 0``."""
        return self.eta > 0

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, GridCoefficients]:
        """The schedule's grid and the marginal at it (host floats)."""
        grid = solver_times(run.process, t_start, t_end, self.steps, self.schedule)
        return grid, GridCoefficients.of(run.process, grid)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """DDIM's update (Eq. 12) from ``t = grid[k]`` to ``s = grid[k + 1]``."""
        a, s, log_snr = run.plan.alpha, run.plan.sigma, run.plan.log_snr
        x0 = run.x0(x, run.at(k))
        eps = (x - a[k] * x0) / s[k]
        c = ddim_noise_std(self.eta, s[k + 1], log_snr[k], log_snr[k + 1])
        x = a[k + 1] * x0 + math.sqrt(max(s[k + 1] ** 2 - c ** 2, 0.0)) * eps
        if c > 0:
            x = x + c * run.noise()
        return x

    def describe(self, run: GridRun) -> str:
        return f"eta={self.eta:g}, steps={run.n}"
