"""The ``heun`` sampler: EDM's second-order sampler (Karras et al. 2022) for any Gaussian-marginal process."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers import GridCoefficients, GridRun, GridSampler, check_positive_int, edm_times, t_from_scaled_sigma


@dataclass(frozen=True)
class HeunPlan:
    """EDM's levels and their churned versions, computed before the loop.

    Attributes:
        sigma: the levels ``sigma_i = sigma_{t_i} / alpha_{t_i}`` (Eq. 5; host floats).
        sigma_hat: the churned levels ``sigma_hat_i = sigma_i (1 + gamma_i)`` (Alg. 2; host floats).
        alpha: ``alpha_{t_i}`` at the grid's times.
        alpha_hat: ``alpha`` at the churned levels' times.
        t_hat: the churned levels' times on the model's device and dtype.
    """

    sigma: list[float]
    sigma_hat: list[float]
    alpha: list[float]
    alpha_hat: list[float]
    t_hat: Tensor


class EDMHeunSampler(GridSampler):
    """EDM's sampler (Karras et al. 2022, Alg. 1, deterministic; Alg. 2 with churn), generalised
    to every process with Gaussian marginals through the scaled variable ``y = x / alpha_t``, whose
    noise level is ``sigma(t) = sigma_t / alpha_t = exp(-log_snr / 2)`` and whose probability-flow
    ODE is ``dy / dsigma = (y - D(y; sigma)) / sigma`` with ``D(y; sigma) = x0_theta(alpha_t y, t)``
    (Karras et al. 2022, Eq. 4 with ``s(t) = alpha_t``).

    Noise levels: ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    (Eq. 5), mapped to times with ``t_i = t_from_log_snr(-2 log sigma_i)``; ``sigma_max`` is the
    level at ``t_max``. Each step: optional churn ``sigma_hat = sigma_i (1 + gamma_i)``,
    ``y_hat = y + sqrt(sigma_hat^2 - sigma_i^2) S_noise z`` with
    ``gamma_i = min(S_churn / N, sqrt(2) - 1)`` for ``sigma_i`` in ``[S_tmin, S_tmax]``; an Euler
    step to ``sigma_{i+1}`` and, unless ``sigma_{i+1} = 0``, Heun's correction.

    The final step: with ``sigma(t_end) = 0`` (VE at ``t = 0``) the levels stop at ``sigma_min``
    (default EDM's 0.002) and the last step is EDM's Euler step to ``sigma = 0``, which returns
    ``D(y; sigma_min)``; ``steps`` steps then cost ``2 steps - 1`` evaluations. Otherwise the
    levels end at ``sigma(t_end)`` and every step is a Heun step: ``2 steps`` evaluations.

    Args:
        steps: number of steps ``N`` (default 18, EDM's CIFAR-10 setting).
        rho: the schedule's exponent (default 7).
        sigma_min: smallest nonzero noise level ``sigma/alpha`` (default: the level at ``t_end``,
            or 0.002 where that is 0); must lie within the process's levels.
        S_churn: EDM's total churn (Alg. 2; ``S_churn = 0``: the deterministic Alg. 1);
            ``sigma_hat`` is capped at the level of ``t_max``.
        S_tmin: churn only at levels ``sigma >= S_tmin``.
        S_tmax: churn only at levels ``sigma <= S_tmax``.
        S_noise: scale of the churn noise.
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "heun"
    requires_gaussian_marginals = True
    order = 2.0

    def __init__(self, steps: int = 18, rho: float = 7.0, sigma_min: float | None = None, S_churn: float = 0.0,
                 S_tmin: float = 0.0, S_tmax: float = math.inf, S_noise: float = 1.0, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if not float(rho) > 0:
            raise OptionError(f"rho must be positive, got {rho!r}")
        if sigma_min is not None and not float(sigma_min) > 0:
            raise OptionError(f"sigma_min must be positive or None, got {sigma_min!r}")
        if not float(S_churn) >= 0 or not float(S_noise) >= 0:
            raise OptionError(f"S_churn and S_noise must be >= 0, got S_churn={S_churn!r}, S_noise={S_noise!r}")
        if not 0 <= float(S_tmin) <= float(S_tmax):
            raise OptionError(f"need 0 <= S_tmin <= S_tmax, got S_tmin={S_tmin!r}, S_tmax={S_tmax!r}")
        self.steps, self.rho, self.sigma_min = int(steps), float(rho), sigma_min
        self.S_churn, self.S_tmin = float(S_churn), float(S_tmin)
        self.S_tmax, self.S_noise = float(S_tmax), float(S_noise)
        self.t_end, self.check_finite = t_end, bool(check_finite)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        """True with churn (``S_churn > 0``)."""
        return self.S_churn > 0

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, HeunPlan]:
        """EDM's times and levels, and the churned levels ``sigma_hat_i`` with their times and ``alpha``."""
        process = run.process
        grid, sig = edm_times(process, t_start, t_end, self.steps, self.rho, self.sigma_min)
        n = grid.numel() - 1
        sigma = sig.tolist()
        top = sigma[0]
        gamma = [min(self.S_churn / n, math.sqrt(2.0) - 1.0) if self.S_tmin <= sigma[i] <= self.S_tmax else 0.0
                 for i in range(n)] if self.S_churn > 0 else [0.0] * n
        sigma_hat = [min(sigma[i] * (1.0 + gamma[i]), top) for i in range(n)]
        churned = [i for i in range(n) if sigma_hat[i] > sigma[i]]
        t_hat = grid[:n].clone()
        if churned:
            t_hat[churned] = t_from_scaled_sigma(process, torch.tensor([sigma_hat[i] for i in churned],
                                                                       dtype=torch.float64))
        alpha = GridCoefficients.of(process, grid).alpha
        alpha_hat = GridCoefficients.of(process, t_hat).alpha if churned else alpha[:n]
        return grid, HeunPlan(sigma, sigma_hat, alpha, alpha_hat, t_hat.to(device=run.device, dtype=run.dtype))

    def start(self, run: GridRun, x: Tensor) -> Tensor:
        """EDM's variable ``y = x / alpha_{t_max}``."""
        return x / run.plan.alpha[0]

    def output(self, run: GridRun, k: int, y: Tensor) -> Tensor:
        """``x = alpha_{t_k} y``."""
        return run.plan.alpha[k] * y

    def step(self, run: GridRun, i: int, y: Tensor) -> Tensor:
        """Churn, an Euler step in ``sigma`` and, unless ``sigma_{i+1} = 0``, Heun's correction (Alg. 2)."""
        plan = run.plan
        s_i, s_hat, s_next = plan.sigma[i], plan.sigma_hat[i], plan.sigma[i + 1]
        if s_hat > s_i:
            y = y + math.sqrt(s_hat * s_hat - s_i * s_i) * self.S_noise * run.noise()
        d = (y - run.x0(plan.alpha_hat[i] * y, plan.t_hat[i].expand(run.batch))) / s_hat
        y_next = y + (s_next - s_hat) * d
        if s_next > 0:
            d2 = (y_next - run.x0(plan.alpha[i + 1] * y_next, run.at(i + 1))) / s_next
            y_next = y + (s_next - s_hat) * (0.5 * d + 0.5 * d2)
        return y_next

    def describe(self, run: GridRun) -> str:
        return f"steps={run.n}, rho={self.rho:g}, S_churn={self.S_churn:g}"
