"""Processes defined by their marginal alone: drift and diffusion follow from ``(alpha_t, sigma_t)``.

For a linear SDE ``dx = f(t) x dt + g(t) dw`` with ``x_t = alpha_t x_0 + sigma_t eps``
(Kingma et al. 2021, Appendix A.4; Song et al. 2021, Eq. 5 and Appendix B):

    f(t)   = d log(alpha_t) / dt
    g(t)^2 = d sigma_t^2 / dt - 2 f(t) sigma_t^2  =  -sigma_t^2 d lambda_t / dt,

with ``lambda_t = log(alpha_t^2 / sigma_t^2)`` the log-SNR. So a schedule given only as
``marginal(t)`` (a cosine DDPM schedule, a learned VDM log-SNR, a user's own) gets the reverse
SDE, the probability-flow ODE and every sampler from the base class. Derivatives come from
:meth:`sdeflow.ForwardProcess.marginal_and_derivatives` (forward-mode automatic differentiation,
``torch.func.jvp``: exact, one extra pass, no finite differences, and it works inside
``torch.no_grad``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..utils.shapes import append_dims
from .process import ForwardProcess


class MarginalDefinedProcess(ForwardProcess):
    """A :class:`ForwardProcess` whose subclass implements only :meth:`marginal`.

    Subclasses may override :meth:`marginal_and_derivatives` with closed forms.
    """

    def drift_coefficient(self, t: Tensor) -> Tensor:
        """``f(t) = d log alpha_t / dt`` (shape ``(batch,)``)."""
        a, _, da, _ = self.marginal_and_derivatives(t)
        return da / a

    def g2(self, t: Tensor) -> Tensor:
        """``g(t)^2 = 2 sigma_t (d sigma_t/dt) - 2 f(t) sigma_t^2`` (Kingma et al. 2021, Eq. 33)."""
        a, s, da, ds = self.marginal_and_derivatives(t)
        return (2.0 * s * ds - 2.0 * (da / a) * s * s).clamp_min(0.0)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = (d log alpha_t / dt) x``."""
        return append_dims(self.drift_coefficient(t), x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(d sigma_t^2/dt - 2 f(t) sigma_t^2)``."""
        return torch.sqrt(self.g2(t))
