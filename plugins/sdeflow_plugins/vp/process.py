"""The variance-preserving SDE (Song et al. 2021, Eq. 11 and Appendix B, Eq. 32-33)."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow import ForwardProcess, append_dims
from sdeflow.errors import OptionError


def check_beta(beta_min: float, beta_max: float, t_min: float) -> None:
    """Validate a linear beta schedule and ``t_min``."""
    if not (beta_min >= 0 and beta_max > beta_min):
        raise OptionError(f"need 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
    if not 0 < t_min < 1:
        raise OptionError(f"t_min must lie in (0, 1), got {t_min}")


class VPProcess(ForwardProcess):
    """``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`` with ``beta(t) = beta_min + t (beta_max - beta_min)``.

    Marginal (Song et al. 2021, Eq. 33): ``alpha_t = exp(-1/2 int_0^t beta)``,
    ``sigma_t^2 = 1 - alpha_t^2``. With ``beta_min = 0.1``, ``beta_max = 20`` it is the
    continuous limit of DDPM with ``N = 1000`` linear betas from 1e-4 to 0.02
    (``beta(t) = N beta_{tN+1}``, reference text 001).

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        t_min: smallest time (sampling ends and training draws start here).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        super().__init__()
        check_beta(beta_min, beta_max, t_min)
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t)`` (Song et al. 2021, Eq. 11)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t: Tensor) -> Tensor:
        """``int_0^t beta(s) ds = beta_min t + (beta_max - beta_min) t^2 / 2``."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -1/2 beta(t) x`` (Song et al. 2021, Eq. 11)."""
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

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

    def extra_repr(self) -> str:
        return f"beta_min={self.beta_min:g}, beta_max={self.beta_max:g}, " + super().extra_repr()
