"""The two interpolation paths of the ``rectified_flow`` process, in closed form.

A path ``x_t = alpha_t x_0 + sigma_t eps`` with ``alpha_0 = 1``, ``sigma_0 = 0`` and ``alpha_1 = 0``,
``sigma_1 = 1`` (Lipman et al. 2023, Sec. 4.1; Albergo & Vanden-Eijnden 2023, Sec. 2), and the linear
SDE with its marginals (Song et al. 2021, Appendix B; Kingma et al. 2021, Appendix A.4):
``f(t) = alpha_t' / alpha_t`` and ``g(t)^2 = 2 sigma_t sigma_t' - 2 f(t) sigma_t^2``.

* ``linear`` (rectified flow, Liu et al. 2022, Eq. 1; the optimal-transport path of Lipman et al. 2023
  with ``sigma_min = 0``; SD3's forward process, Esser et al. 2024): ``alpha = 1 - t``, ``sigma = t``,
  ``f = -1 / (1 - t)``, ``g^2 = 2 t / (1 - t)``, ``lambda = 2 log((1 - t) / t)``.
* ``cosine`` (the trigonometric interpolant, Albergo & Vanden-Eijnden 2023; Nichol & Dhariwal's cosine
  schedule without offset): ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``,
  ``f = -(pi / 2) tan(pi t / 2)``, ``g^2 = pi tan(pi t / 2)``, ``lambda = -2 log tan(pi t / 2)``.

Both have ``f`` and ``g^2`` infinite at ``t = 1`` (``alpha_1 = 0``), while the velocity
``u = alpha' x_0 + sigma' eps`` stays finite.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: the interpolation paths
INTERPOLANTS: tuple[str, ...] = ("linear", "cosine")
_HALF_PI = 0.5 * math.pi


def marginal(kind: str, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha_t, sigma_t)`` of the path ``kind``."""
    if kind == "linear":
        return 1.0 - t, t
    return torch.cos(_HALF_PI * t), torch.sin(_HALF_PI * t)


def derivatives(kind: str, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(d alpha_t/dt, d sigma_t/dt)`` of the path ``kind``."""
    if kind == "linear":
        return -torch.ones_like(t), torch.ones_like(t)
    return -_HALF_PI * torch.sin(_HALF_PI * t), _HALF_PI * torch.cos(_HALF_PI * t)


def drift_coefficient(kind: str, t: Tensor) -> Tensor:
    """``f(t) = alpha_t' / alpha_t``: ``-1 / (1 - t)`` (linear), ``-(pi / 2) tan(pi t / 2)`` (cosine)."""
    if kind == "linear":
        return -1.0 / (1.0 - t)
    return -_HALF_PI * torch.tan(_HALF_PI * t)


def g2(kind: str, t: Tensor) -> Tensor:
    """``g(t)^2 = 2 sigma sigma' - 2 f sigma^2``: ``2 t / (1 - t)`` (linear), ``pi tan(pi t / 2)`` (cosine)."""
    if kind == "linear":
        return 2.0 * t / (1.0 - t)
    return math.pi * torch.tan(_HALF_PI * t)


def log_snr(kind: str, t: Tensor) -> Tensor:
    """``lambda_t = log(alpha_t^2 / sigma_t^2)``: ``2 log((1 - t) / t)`` (linear), ``-2 log tan(pi t / 2)``
    (cosine); ``+inf`` at ``t = 0``."""
    if kind == "linear":
        return 2.0 * (torch.log1p(-t) - torch.log(t))
    return -2.0 * torch.log(torch.tan(_HALF_PI * t))


def t_from_log_snr(kind: str, lam: Tensor) -> Tensor:
    """Inverse of :func:`log_snr`: ``sigmoid(-lambda / 2)`` (linear), ``(2 / pi) atan(exp(-lambda / 2))`` (cosine)."""
    if kind == "linear":
        return torch.sigmoid(-0.5 * lam)
    return torch.atan(torch.exp(-0.5 * lam)) / _HALF_PI
