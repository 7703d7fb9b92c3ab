"""The sub-VP SDE (Song et al. 2021, Eq. 17 and Appendix B, Eq. 34)."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow import ForwardProcess, append_dims
from sdeflow_plugins.vp.process import check_beta


class SubVPProcess(ForwardProcess):
    """``dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dw``, ``B(t) = int_0^t beta``.

    Marginal (Song et al. 2021, Eq. 34): ``alpha_t = exp(-B(t)/2)``,
    ``sigma_t = 1 - exp(-B(t))`` (the standard deviation, not the variance), always below the
    VP SDE's ``sqrt(1 - exp(-B(t)))``.

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        t_min: smallest time.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        super().__init__()
        check_beta(beta_min, beta_max, t_min)
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t: Tensor) -> Tensor:
        """``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2``."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -1/2 beta(t) x`` (Song et al. 2021, Eq. 17)."""
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t) (1 - exp(-2 B(t))))`` (Song et al. 2021, Eq. 17)."""
        return torch.sqrt(self.beta(t) * -torch.expm1(-2.0 * self.integral(t)))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = exp(-B/2)``, ``sigma_t = 1 - exp(-B)`` (Song et al. 2021, Eq. 34)."""
        b = self.integral(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)

    def extra_repr(self) -> str:
        return f"beta_min={self.beta_min:g}, beta_max={self.beta_max:g}, " + super().extra_repr()
