"""Discrete DDPM (Ho et al. 2020) embedded exactly in continuous time."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow import ForwardProcess, append_dims, rand

from .schedules import make_betas
from .spline import clamped_spline_moments, spline_coefficients, spline_value, spline_value_and_slope


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
    reproduces Ho et al.'s Algorithm 2.

    Args:
        num_steps: ``N``.
        beta_start: the linear schedule's first beta (Ho et al. 2020: 1e-4).
        beta_end: the linear schedule's last beta (Ho et al. 2020: 0.02).
        schedule: ``"linear"`` or ``"cosine"`` (Nichol & Dhariwal 2021).
        cosine_s: the cosine schedule's offset.
    """

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 schedule: str = "linear", cosine_s: float = 0.008) -> None:
        super().__init__()
        betas = make_betas(schedule, num_steps, beta_start, beta_end, cosine_s)
        self.num_steps, self.schedule = int(num_steps), schedule
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-betas), 0)])
        rates = -self.num_steps * torch.log1p(-betas)  # per-step rates, the slopes at the ends
        spline_m = clamped_spline_moments(log_abar, -float(rates[0]), -float(rates[-1]))
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("log_abar", log_abar, persistent=False)  # index i = time i/N
        # polynomial pieces of the spline, float64 whatever dtype the module is cast to (a plain
        # attribute, copied to other devices on demand)
        self._coef = spline_coefficients(log_abar, spline_m)
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
        return (f"num_steps={self.num_steps}, schedule={self.schedule!r}, beta_start={self.beta_start:g}, "
                f"beta_end={self.beta_end:g}, " + super().extra_repr())
