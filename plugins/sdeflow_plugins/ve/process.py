"""The variance-exploding SDE (Song et al. 2021, Eq. 9 and Appendix B, Eq. 30-31)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sdeflow import ForwardProcess
from sdeflow.errors import OptionError


class VEProcess(ForwardProcess):
    """``dx = sqrt(d sigma^2(t) / dt) dw`` with ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``.

    ``g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))``, no drift. The marginal from
    ``x_0`` at ``t = 0`` is exact: ``alpha_t = 1``,
    ``sigma_t^2 = sigma(t)^2 - sigma_min^2`` (Song et al. 2021, App. B; for ``p_0 = N(5, 2^2)``,
    ``p_t = N(5, 4 + sigma_t^2)``), so ``t_min = 0`` is
    the data itself. A network predicting ``eps``, ``x0`` or ``v`` has no finite score at
    ``sigma_t = 0``; :attr:`sdeflow.ScoreModel.score_t_min` is where the samplers and the
    likelihood stop for it (``sigma_t = 0.002``), finishing with one data-prediction step.

    Args:
        sigma_min: ``sigma(0)``.
        sigma_max: ``sigma(1)``.
        t_min: smallest time (default 0).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 0.0) -> None:
        super().__init__()
        if not (0 < sigma_min < sigma_max):
            raise OptionError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if not 0 <= t_min < 1:
            raise OptionError(f"t_min must lie in [0, 1), got {t_min}")
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), float(t_min)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` (Song et al. 2021, Eq. 30)."""
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = 0`` (Song et al. 2021, Eq. 9)."""
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))`` (Song et al. 2021, Eq. 30)."""
        return self.sigma(t) * math.sqrt(2.0 * self.log_ratio)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = 1``, ``sigma_t = sigma_min sqrt((sigma_max/sigma_min)^{2t} - 1)`` (Eq. 31, exact form)."""
        s = self.sigma_min * torch.sqrt(torch.expm1(2.0 * t * self.log_ratio))
        return torch.ones_like(t), s

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = -2 log sigma_t``."""
        return -2.0 * torch.log(self.marginal(t)[1])

    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        """Closed-form inverse: ``t = log1p(e^{-lambda} / sigma_min^2) / (2 log(sigma_max/sigma_min))``."""
        return torch.log1p(torch.exp(-lam) / self.sigma_min**2) / (2.0 * self.log_ratio)

    def extra_repr(self) -> str:
        return f"sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g}, " + super().extra_repr()
