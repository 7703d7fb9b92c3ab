"""The sub-VP SDE (Song et al. 2021, Eq. 17 and Appendix B, Eq. 34)."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow import ForwardProcess, LinearBeta


class SubVPProcess(LinearBeta, ForwardProcess):
    """``dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dw``, ``B(t) = int_0^t beta``.

    Marginal (Song et al. 2021, Eq. 34): ``alpha_t = exp(-B(t)/2)``,
    ``sigma_t = 1 - exp(-B(t))`` (the standard deviation, not the variance), always below the
    VP SDE's ``sqrt(1 - exp(-B(t)))``.

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        t_min: smallest time.
    """

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t) (1 - exp(-2 B(t))))`` (Song et al. 2021, Eq. 17)."""
        return torch.sqrt(self.beta(t) * -torch.expm1(-2.0 * self.integral(t)))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = exp(-B/2)``, ``sigma_t = 1 - exp(-B)`` (Song et al. 2021, Eq. 34)."""
        b = self.integral(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)
