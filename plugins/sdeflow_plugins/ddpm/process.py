"""Discrete DDPM (Ho et al. 2020) embedded exactly in continuous time."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from sdeflow import ForwardProcess, append_dims, rand

from .schedules import make_betas
from .spline import (
    clamped_spline_moments,
    max_slope,
    monotone_coefficients,
    spline_coefficients,
    spline_value,
    spline_value_and_slope,
)

#: Ho et al. 2020's number of steps
DEFAULT_STEPS = 1000


class DDPMProcess(ForwardProcess):
    """DDPM's Markov chain ``q(x_i | x_{i-1}) = N(sqrt(1 - beta_i) x_{i-1}, beta_i I)``, ``i = 1..N``,
    as a variance-preserving SDE whose marginals equal the chain's exactly at ``t_i = i / N``.

    ``log abar(t)`` is the clamped cubic spline through ``log abar_i = sum_{j<=i} log(1 - beta_j)``
    at ``t_i = i/N``, and the SDE is the VP SDE (Song et al. 2021, Eq. 11) with
    ``beta(t) = -d log abar/dt``: on step ``i``'s interval ``beta(t)`` averages exactly
    ``-N log(1 - beta_i) = N beta_i + O(beta_i^2)``, the continuous limit
    ``beta(t) = N beta_{tN+1}`` of Song et al. 2021 (App. B) made exact at the grid, and it is
    continuous (a piecewise-constant ``beta`` has 1000 jumps, which adaptive ODE solvers crawl through). The generic
    ``sde``/``ode`` samplers therefore run on a DDPM model, and the ``ancestral`` sampler
    reproduces Ho et al.'s Algorithm 2. Where that spline would overshoot (``beta(t) <= 0``
    somewhere: a zero-terminal-SNR linear schedule, whose ``log abar`` plunges in the last step),
    the monotone piecewise-cubic Hermite interpolant through the same values takes its place
    (:func:`~sdeflow_plugins.ddpm.spline.monotone_coefficients`; C^1, so ``beta(t)`` stays continuous
    and positive; :attr:`interpolation` says which).

    Args:
        num_steps: ``N`` (with ``betas``: left at its default or equal to their number).
        beta_start: the first beta of the linear, scaled-linear and sigmoid schedules (Ho et al.
            2020: 1e-4).
        beta_end: their last beta (Ho et al. 2020: 0.02).
        schedule: ``"linear"`` (Ho et al. 2020), ``"cosine"`` (Nichol & Dhariwal 2021, Eq. 17),
            ``"scaled_linear"`` (linear in ``sqrt(beta)``, Rombach et al. 2022) or ``"sigmoid"``
            (Xu et al. 2022); diffusers calls the cosine one ``squaredcos_cap_v2``.
        cosine_s: the cosine schedule's offset.
        betas: the chain's betas themselves (``N`` values in ``(0, 1)``, e.g. a checkpoint's
            ``trained_betas``), instead of a named schedule.
        zero_terminal_snr: rescale the schedule so that the chain ends at (almost) zero signal
            (Lin et al. 2024, Algorithm 1; ``abar_N = 2^-24`` instead of 0, see
            :func:`~sdeflow_plugins.ddpm.schedules.rescale_zero_terminal_snr`).
    """

    def __init__(self, num_steps: int = DEFAULT_STEPS, beta_start: float = 1e-4, beta_end: float = 0.02,
                 schedule: str = "linear", cosine_s: float = 0.008, betas: Sequence[float] | Tensor | None = None,
                 zero_terminal_snr: bool = False) -> None:
        super().__init__()
        given = betas is not None
        betas = make_betas(schedule, None if given and num_steps == DEFAULT_STEPS else num_steps, beta_start,
                           beta_end, cosine_s, betas, bool(zero_terminal_snr))
        num_steps = betas.numel()
        self.zero_terminal_snr = bool(zero_terminal_snr)
        self.num_steps, self.schedule = int(num_steps), "given" if given else schedule
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-betas), 0)])
        rates = -self.num_steps * torch.log1p(-betas)  # per-step rates, the slopes at the ends
        spline_m = clamped_spline_moments(log_abar, -float(rates[0]), -float(rates[-1]))
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("log_abar", log_abar, persistent=False)  # index i = time i/N
        # polynomial pieces of the spline, float64 whatever dtype the module is cast to (a plain
        # attribute, copied to other devices on demand)
        self._coef = spline_coefficients(log_abar, spline_m)
        #: ``"spline"`` (C^2) or ``"monotone"``: the C^1 monotone Hermite cubic that replaces a spline
        #: which overshoots (``beta(t) <= 0`` somewhere; a zero-terminal-SNR linear schedule's last steps)
        self.interpolation = "spline"
        if not max_slope(self._coef) < 0:
            self._coef = monotone_coefficients(log_abar, -float(rates[0]), -float(rates[-1]))
            self.interpolation = "monotone"
        self._coef_by_device: dict[torch.device, Tensor] = {}
        self.t_min = 1.0 / self.num_steps

    # --- smooth log abar(t) through the chain's values ------------------------------------
    def _coefficients(self, device: torch.device) -> Tensor:
        if device == self._coef.device:
            return self._coef
        if device not in self._coef_by_device:
            self._coef_by_device[device] = self._coef.to(device)
        return self._coef_by_device[device]

    def log_alpha_bar_and_beta(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``log abar(t)`` and ``beta(t) = -d log abar / dt`` from the clamped cubic spline."""
        val, slope = spline_value_and_slope(t, self._coefficients(t.device))
        return val, -slope

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """``log abar(t)``: exactly ``sum_{j<=i} log(1 - beta_j)`` at ``t = i/N``, C^2 in between."""
        return spline_value(t, self._coefficients(t.device))

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = -d log abar / dt``, close to ``N beta_{tN+1}`` (Song et al. 2021, App. B)."""
        return self.log_alpha_bar_and_beta(t)[1]

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -1/2 beta(t) x`` (Song et al. 2021, Eq. 11)."""
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t))``."""
        return torch.sqrt(self.beta(t))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = sqrt(abar(t))``, ``sigma_t = sqrt(1 - abar(t))`` (Ho et al. 2020, Eq. 4)."""
        la = self.log_alpha_bar(t)
        return torch.exp(0.5 * la), torch.sqrt(-torch.expm1(la))

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = log(abar / (1 - abar))``."""
        la = self.log_alpha_bar(t)
        return la - torch.log(-torch.expm1(la))

    # --- discrete structure --------------------------------------------------------------
    def discrete_times(self) -> Tensor:
        """The chain's times ``t_i = i / N``, ``i = N..1`` (descending), float64."""
        return torch.arange(self.num_steps, 0, -1, dtype=torch.float64) / self.num_steps

    def sample_training_time(self, n: int, generator: torch.Generator | None = None,
                             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``t = i / N`` with ``i ~ Uniform{1, ..., N}`` (Ho et al. 2020, Algorithm 1)."""
        u = rand((n,), generator, device, torch.float64)
        i = torch.floor(u * self.num_steps).clamp(max=self.num_steps - 1) + 1
        return (i / self.num_steps).to(dtype)

    def extra_repr(self) -> str:
        zero = ", zero_terminal_snr=True" if self.zero_terminal_snr else ""
        ends = ("" if self.schedule in ("given", "cosine")
                else f", beta_start={self.beta_start:g}, beta_end={self.beta_end:g}")
        return f"num_steps={self.num_steps}, schedule={self.schedule!r}{ends}{zero}, " + super().extra_repr()
