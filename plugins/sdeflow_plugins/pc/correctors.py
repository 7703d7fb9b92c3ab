"""Built-in correctors of the ``pc`` sampler (Song et al. 2021, Alg. 4-5)."""

from __future__ import annotations

import torch
from torch import Tensor

import sdeflow
from sdeflow.errors import OptionError
from sdeflow.solvers import Corrector, PCContext

NORMS = ("batch", "sample")


class LangevinCorrector(Corrector):
    """One Langevin MCMC step at time ``t`` with the step size set by a signal-to-noise ratio
    (Song et al. 2021, Alg. 4 for VE, Alg. 5 for VP):

        g = score(x, t),  z ~ N(0, I),  eps = 2 alpha_i (snr ||z|| / ||g||)^2,
        x_mean = x + eps g,  x = x_mean + sqrt(2 eps) z,

    with ``alpha_i = alpha_{t|s}^2`` for the grid step from ``s = t_next`` to ``t`` (VP: DDPM's
    ``1 - beta_i``; VE: 1).

    Args:
        snr: the signal-to-noise ratio ``r`` (0.16 in Song et al.'s CIFAR-10 VE setting).
        norm: ``"batch"``: one step size from the batch means of ``||z||`` and ``||g||`` (Song et
            al.'s code; the batch's samples are then coupled); ``"sample"``: one per sample
            (Alg. 4-5 as written).
    """

    name = "langevin"
    requires_gaussian_marginals = True

    def __init__(self, snr: float = 0.16, norm: str = "batch") -> None:
        if isinstance(snr, bool) or not float(snr) > 0:
            raise OptionError(f"snr must be positive, got {snr!r}")
        if norm not in NORMS:
            raise OptionError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.snr, self.norm = float(snr), norm

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """One Langevin step at ``t``."""
        a_ts = ctx.transition(t, t_next).alpha_ts
        grad = ctx.score(x, t)
        z = ctx.noise()
        gn = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1)
        zn = torch.linalg.vector_norm(z.reshape(z.shape[0], -1), dim=1)
        if self.norm == "batch":
            gn, zn = gn.mean(), zn.mean()
        ratio = self.snr * zn / gn
        eps = 2.0 * a_ts * a_ts * sdeflow.append_dims(ratio * ratio, x.ndim) if self.norm == "sample" \
            else 2.0 * a_ts * a_ts * ratio * ratio
        x_mean = x + eps * grad
        return x_mean + torch.sqrt(2.0 * eps) * z, x_mean


class NoneCorrector(Corrector):
    """No corrector (the predictor alone: Song et al.'s "P" samplers)."""

    name = "none"
    stochastic = False

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x, x)``."""
        return x, x


BUILTIN_CORRECTORS: dict[str, type[Corrector]] = {cls.name: cls for cls in (LangevinCorrector, NoneCorrector)}
