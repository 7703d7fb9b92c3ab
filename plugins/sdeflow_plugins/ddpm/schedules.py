"""DDPM beta schedules (Ho et al. 2020; Nichol & Dhariwal 2021; Rombach et al. 2022; Xu et al. 2022),
given betas, and the zero-terminal-SNR rescaling (Lin et al. 2024)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from sdeflow.errors import OptionError

SCHEDULES = ("linear", "cosine", "scaled_linear", "sigmoid")
#: ``abar_N`` a zero-terminal-SNR schedule keeps (the value diffusers' Euler and DPM-Solver schedulers
#: put in place of 0): ``alpha_1 = 2^-12 > 0``, so ``x0 = (x - sigma eps) / alpha`` stays finite at ``t = 1``
ZERO_SNR_FLOOR = 2.0 ** -24


def linear_betas(num_steps: int, beta_start: float, beta_end: float) -> Tensor:
    """``beta_i`` linearly spaced from ``beta_start`` to ``beta_end``, ``i = 1..N`` (Ho et al. 2020, Sec. 4)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def scaled_linear_betas(num_steps: int, beta_start: float, beta_end: float) -> Tensor:
    """``sqrt(beta_i)`` linearly spaced from ``sqrt(beta_start)`` to ``sqrt(beta_end)`` (the latent
    diffusion schedule, Rombach et al. 2022; 0.00085..0.012 in Stable Diffusion)."""
    return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_steps, dtype=torch.float64) ** 2


def sigmoid_betas(num_steps: int, beta_start: float, beta_end: float) -> Tensor:
    """``beta_i = beta_start + (beta_end - beta_start) sigmoid(u_i)``, ``u_i`` linearly spaced in
    ``[-6, 6]`` (the sigmoid schedule of GeoDiff, Xu et al. 2022)."""
    u = torch.linspace(-6.0, 6.0, num_steps, dtype=torch.float64)
    return torch.sigmoid(u) * (beta_end - beta_start) + beta_start


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """``beta_i = min(1 - abar_i / abar_{i-1}, max_beta)`` with
    ``abar(t) = cos^2(((t + s) / (1 + s)) pi/2) / cos^2((s / (1 + s)) pi/2)`` (Nichol & Dhariwal 2021, Eq. 17)."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def rescale_zero_terminal_snr(betas: Tensor, floor: float = ZERO_SNR_FLOOR) -> Tensor:
    """Betas whose chain ends at zero signal (Lin et al. 2024, "Common Diffusion Noise Schedules and
    Sample Steps are Flawed", Algorithm 1): ``sqrt(abar_i)`` is shifted so that its last value is 0
    and scaled so that its first is unchanged, then ``abar_N`` is raised from 0 to ``floor``
    (``2^-24``, as diffusers' Euler and DPM-Solver schedulers do), which keeps the log-SNR finite.
    Where ``abar_{N-1}`` itself lies below that (a rescaled linear schedule: ``4e-9``), the last step
    repeats the ratio of the one before, ``abar_N = abar_{N-1}^2 / abar_{N-2}``, so the chain keeps
    losing signal (``beta_N = beta_{N-1}``).

    Args:
        betas: the schedule's betas ``(N,)``, at least 3.
        floor: the largest terminal ``abar_N`` kept.

    Returns:
        The rescaled betas, float64, all in ``(0, 1)``.
    """
    abar_sqrt = torch.exp(0.5 * torch.cumsum(torch.log1p(-betas.to(torch.float64)), 0))
    first, last = abar_sqrt[0].clone(), abar_sqrt[-1].clone()
    abar = ((abar_sqrt - last) * (first / (first - last))) ** 2
    abar[-1] = min(floor, float(abar[-2] ** 2 / abar[-3]))
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return 1.0 - abar / prev


def given_betas(betas: Sequence[float] | Tensor) -> Tensor:
    """A user's betas (e.g. a checkpoint's ``trained_betas``) as a float64 tensor, validated."""
    try:
        out = torch.as_tensor(betas, dtype=torch.float64).reshape(-1).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise OptionError(f"betas must be a sequence of numbers in (0, 1), got {type(betas).__name__}: {exc}") from exc
    if out.numel() < 2 or not bool(torch.isfinite(out).all()) or not bool(((out > 0) & (out < 1)).all()):
        raise OptionError(f"betas must hold at least two finite values in (0, 1) (one per step of the chain); got "
                          f"{out.numel()} values in [{float(out.min()) if out.numel() else 'nan'}, "
                          f"{float(out.max()) if out.numel() else 'nan'}]")
    return out


def make_betas(schedule: str, num_steps: int | None, beta_start: float, beta_end: float, cosine_s: float,
               betas: Sequence[float] | Tensor | None = None, zero_terminal_snr: bool = False) -> Tensor:
    """The schedule's betas (or the given ``betas``), validated, optionally rescaled to zero terminal SNR."""
    if betas is not None:
        out = given_betas(betas)
        if num_steps is not None and int(num_steps) != out.numel():
            raise OptionError(f"num_steps={num_steps} disagrees with the {out.numel()} given betas; "
                              "leave num_steps out")
    else:
        if num_steps is None or isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 2:
            raise OptionError(f"num_steps must be an integer >= 2, got {num_steps!r}")
        n = int(num_steps)
        if schedule in ("linear", "scaled_linear", "sigmoid"):
            if not 0 < beta_start < beta_end < 1:
                raise OptionError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
            fn = {"linear": linear_betas, "scaled_linear": scaled_linear_betas, "sigmoid": sigmoid_betas}[schedule]
            out = fn(n, float(beta_start), float(beta_end))
        elif schedule == "cosine":
            if not cosine_s > 0:
                raise OptionError(f"cosine_s must be positive, got {cosine_s}")
            out = cosine_betas(n, cosine_s)
        else:
            raise OptionError(f"unknown beta schedule {schedule!r}; valid: {', '.join(SCHEDULES)} (or betas=[...])")
    if zero_terminal_snr and out.numel() < 3:
        raise OptionError(f"zero_terminal_snr needs at least 3 steps, got {out.numel()}")
    return rescale_zero_terminal_snr(out) if zero_terminal_snr else out
