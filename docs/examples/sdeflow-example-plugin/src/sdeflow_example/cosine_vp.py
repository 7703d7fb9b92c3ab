"""A continuous-time VP process with the cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

``alpha_bar(tau) = f(tau) / f(0)`` with ``f(tau) = cos^2(pi/2 (tau + s) / (1 + s))``, run in
continuous time ``tau = tau_max t``, so ``alpha_t = sqrt(alpha_bar)`` is

    alpha_t = cos(phi(t)) / cos(phi(0)),   phi(t) = pi/2 (tau_max t + s) / (1 + s),

and the process is variance preserving, ``sigma_t^2 = 1 - alpha_t^2``. For the VP SDE
``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`` (Song et al. 2021, Eq. 11) the marginal fixes
``beta(t) = -2 d log alpha_t / dt = pi tau_max / (1 + s) tan(phi(t))``. ``tau_max < 1`` keeps
``alpha_1 > 0`` and ``beta`` finite: ``alpha_bar(1) = 0`` exactly (the singularity of the
tangent), and DPM-Solver's cosine schedule stops at ``tau_max = 0.9946`` for the same reason
(Lu et al. 2022, Appendix D.1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import sdeflow
from sdeflow.errors import OptionError


class CosineVPProcess(sdeflow.ForwardProcess):
    """The VP SDE with the cosine schedule in continuous time (Nichol & Dhariwal 2021, Eq. 17;
    Song et al. 2021, Eq. 11).

    It defines only ``drift``, ``diffusion`` and ``marginal``, plus the closed-form inverse of
    the log-SNR; the prior, the reverse SDE, the probability-flow ODE, the training loss and
    every sampler come from sdeflow.

    Args:
        s: offset of the schedule (Nichol & Dhariwal's 0.008 keeps ``beta`` small near ``t = 0``).
        tau_max: the fraction of the cosine schedule reached at ``t = 1`` (below 1).
        t_min: smallest time (sampling ends and training draws start here).
    """

    def __init__(self, s: float = 0.008, tau_max: float = 0.9946, t_min: float = 1e-3) -> None:
        super().__init__()
        if not s > 0:
            raise OptionError(f"s must be positive, got {s!r}")
        if not 0 < tau_max < 1:
            raise OptionError(f"tau_max must lie in (0, 1): alpha_bar vanishes at tau = 1; got {tau_max!r}")
        if not 0 < t_min < 1:
            raise OptionError(f"t_min must lie in (0, 1), got {t_min!r}")
        self.s, self.tau_max, self.t_min = float(s), float(tau_max), float(t_min)
        self._rate = 0.5 * math.pi * self.tau_max / (1.0 + self.s)  # d phi / dt
        self._phi0 = 0.5 * math.pi * self.s / (1.0 + self.s)

    def phi(self, t: Tensor) -> Tensor:
        """The angle ``phi(t) = pi/2 (tau_max t + s) / (1 + s)``."""
        return self._phi0 + self._rate * t

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = -2 d log alpha_t / dt = 2 (d phi/dt) tan(phi(t))``."""
        return 2.0 * self._rate * torch.tan(self.phi(t))

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -1/2 beta(t) x`` (Song et al. 2021, Eq. 11)."""
        return -0.5 * sdeflow.append_dims(self.beta(t), x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t))`` (Song et al. 2021, Eq. 11)."""
        return torch.sqrt(self.beta(t))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = cos(phi(t)) / cos(phi(0))`` and ``sigma_t = sqrt(1 - alpha_t^2)``.

        ``1 - alpha_t^2`` is computed as ``(cos^2 phi_0 - cos^2 phi) / cos^2 phi_0 =
        sin(phi - phi_0) sin(phi + phi_0) / cos^2 phi_0``, exact to rounding also for
        ``t -> 0`` where the plain difference would cancel.
        """
        phi = self.phi(t)
        c0 = math.cos(self._phi0)
        alpha = torch.cos(phi) / c0
        var = torch.sin(phi - self._phi0) * torch.sin(phi + self._phi0) / (c0 * c0)
        return alpha, torch.sqrt(var.clamp_min(0.0))

    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        """Closed-form inverse of the log-SNR ``lambda = log(alpha^2 / (1 - alpha^2))``:
        ``alpha^2 = sigmoid(lambda)``, ``phi = arccos(alpha cos phi_0)``, ``t = (phi - phi_0) / (d phi/dt)``,
        clipped to ``[t_min, t_max]``."""
        alpha = torch.sqrt(torch.sigmoid(lam))
        phi = torch.arccos((alpha * math.cos(self._phi0)).clamp(-1.0, 1.0))
        return ((phi - self._phi0) / self._rate).clamp(float(self.t_min), float(self.t_max))

    def extra_repr(self) -> str:
        return f"s={self.s:g}, tau_max={self.tau_max:g}, " + super().extra_repr()
