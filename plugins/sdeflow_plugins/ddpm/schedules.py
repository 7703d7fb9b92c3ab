"""DDPM beta schedules (Ho et al. 2020; Nichol & Dhariwal 2021)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sdeflow.errors import OptionError

SCHEDULES = ("linear", "cosine")


def linear_betas(num_steps: int, beta_start: float, beta_end: float) -> Tensor:
    """``beta_i`` linearly spaced from ``beta_start`` to ``beta_end``, ``i = 1..N`` (Ho et al. 2020, Sec. 4)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """``beta_i = min(1 - abar_i / abar_{i-1}, max_beta)`` with
    ``abar(t) = cos^2(((t + s) / (1 + s)) pi/2) / cos^2((s / (1 + s)) pi/2)`` (Nichol & Dhariwal 2021, Eq. 17)."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, num_steps: int, beta_start: float, beta_end: float, cosine_s: float) -> Tensor:
    """The schedule's betas, validated."""
    if int(num_steps) != num_steps or num_steps < 2:
        raise OptionError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if schedule == "linear":
        if not 0 < beta_start < beta_end < 1:
            raise OptionError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        return linear_betas(int(num_steps), beta_start, beta_end)
    if schedule == "cosine":
        if not cosine_s > 0:
            raise OptionError(f"cosine_s must be positive, got {cosine_s}")
        return cosine_betas(int(num_steps), cosine_s)
    raise OptionError(f"unknown beta schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
