"""The variance-preserving SDE (Song et al. 2021, Eq. 11 and Appendix B, Eq. 32-33)."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow import ForwardProcess, LinearBeta

__all__ = ["VPProcess"]


class VPProcess(LinearBeta, ForwardProcess):
    """``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`` with ``beta(t) = beta_min + t (beta_max - beta_min)``.

    Marginal (Song et al. 2021, Eq. 33): ``alpha_t = exp(-1/2 int_0^t beta)``,
    ``sigma_t^2 = 1 - alpha_t^2``. With ``beta_min = 0.1``, ``beta_max = 20`` it is the
    continuous limit of DDPM with ``N = 1000`` linear betas from 1e-4 to 0.02
    (``beta(t) = N beta_{tN+1}``, Song et al. 2021, App. B).

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        t_min: smallest time (sampling ends and training draws start here).
    """

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t))`` (Song et al. 2021, Eq. 11)."""
        return torch.sqrt(self.beta(t))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = exp(-1/2 B(t))``, ``sigma_t = sqrt(1 - exp(-B(t)))`` (Song et al. 2021, Eq. 33)."""
        b = self.integral(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = -log(exp(B(t)) - 1)`` in closed form."""
        b = self.integral(t)
        return -torch.log(torch.expm1(b))

    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        """Closed-form inverse of :meth:`log_snr`: solve ``B(t) = log(1 + e^{-lambda})`` for ``t``."""
        c = torch.nn.functional.softplus(-lam)
        d = self.beta_max - self.beta_min
        return 2.0 * c / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * d * c))
