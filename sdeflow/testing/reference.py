"""Reference components the sampler checks run on: a process with a closed-form marginal, a
process without Gaussian marginals, and an exact score model that records its evaluations."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..data.gaussian_mixture import ExactMixtureScoreModel


class ReferenceOUProcess(ForwardProcess):
    """The Ornstein-Uhlenbeck process ``dx = -theta x dt + sqrt(2 theta) dw`` (stationary law N(0, I)).

    Solving the linear SDE (Sarkka & Solin 2019, Eq. 6.6), ``x_t = e^{-theta t} x_0 +
    int_0^t e^{-theta (t - u)} sqrt(2 theta) dw_u``, so ``alpha_t = e^{-theta t}`` and
    ``sigma_t^2 = 1 - e^{-2 theta t}``. It is part of no plugin: the sampler checks run on it so
    they depend on nothing but the core.

    Args:
        theta: mean-reversion rate.
        t_min: smallest time.
    """

    def __init__(self, theta: float = 5.0, t_min: float = 1e-3) -> None:
        super().__init__()
        self.theta, self.t_min = float(theta), float(t_min)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -theta x``."""
        return -self.theta * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(2 theta)``."""
        return torch.full_like(t, math.sqrt(2.0 * self.theta))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = e^{-theta t}``, ``sigma_t = sqrt(1 - e^{-2 theta t})``."""
        return torch.exp(-self.theta * t), torch.sqrt(-torch.expm1(-2.0 * self.theta * t))


class NonGaussianProcess(ForwardProcess):
    """``dx = -x^3 dt + sqrt(2) dw``: a nonlinear drift, so ``q(x_t | x_0)`` is not Gaussian and
    the process declares ``gaussian_marginals = False``. Samplers that need ``alpha_t`` and
    ``sigma_t`` must refuse it. ``marginal`` is the Gaussian of the linearised SDE at ``x = 0``
    (Brownian motion), only so that a prior and a score model can be built on it."""

    gaussian_marginals = False
    t_min = 1e-3

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -x^3``."""
        return -x * x * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(2)``."""
        return torch.full_like(t, math.sqrt(2.0))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(1, sqrt(2 t))``: the linearisation's marginal, not the process's."""
        return torch.ones_like(t), torch.sqrt(2.0 * t)


class RecordingScoreModel(ExactMixtureScoreModel):
    """An exact mixture score model that counts its network evaluations and records the
    smallest and largest time it was evaluated at, so a check can compare a sampler's reported
    ``nfe`` with the truth and see whether it stayed inside ``[t_end, t_max]``.

    Every score, ``eps``, ``x0`` and ``v`` of a :class:`sdeflow.ScoreModel` goes through one
    :meth:`network_output` call, so ``calls`` is the number of network evaluations.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.t_lo = math.inf
        self.t_hi = -math.inf

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact score, after recording the call."""
        self.calls += 1
        self.t_lo = min(self.t_lo, float(t.min()))
        self.t_hi = max(self.t_hi, float(t.max()))
        return super().network_output(x, t)


__all__ = ["NonGaussianProcess", "RecordingScoreModel", "ReferenceOUProcess"]
