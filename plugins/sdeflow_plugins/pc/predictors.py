"""Built-in predictors of the ``pc`` sampler (Song et al. 2021, Sec. 4.2 and Alg. 1-2, App. F-G)."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers.predictor_corrector import PCContext, Predictor
from sdeflow.utils.shapes import append_dims

ANCESTRAL_VARIANCES = ("posterior", "forward")


class EulerMaruyamaPredictor(Predictor):
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021, Eq. 6), ``dt = t - t_next > 0``:

        x_mean = x - [f(x, t) - g(t)^2 score(x, t)] dt,   x = x_mean + g(t) sqrt(dt) z.

    Uses only ``drift`` and ``diffusion``, so it also runs on processes without Gaussian marginals.
    """

    name = "euler_maruyama"
    order = 1.0

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """One Euler-Maruyama step of the reverse SDE from ``t`` to ``t_next``."""
        dt = t - t_next
        tv = t.expand(x.shape[0])
        g = append_dims(ctx.process.diffusion(tv), x.ndim)
        drift = ctx.process.drift(x, tv) - g * g * ctx.score(x, t)
        x_mean = x - drift * dt
        return x_mean + g * torch.sqrt(dt) * ctx.noise(), x_mean


class ReverseDiffusionPredictor(Predictor):
    """The reverse diffusion predictor (Song et al. 2021, Eq. 46-47): discretize the forward SDE as
    its exact transition from ``s = t_next`` to ``t``, ``x_t = x_s + f_i(x_s) + G_i z`` with
    ``f_i(x) = (alpha_{t|s} - 1) x`` and ``G_i^2 = sigma_{t|s}^2`` (DDPM's ``sqrt(1 - beta_i)`` and
    ``beta_i`` for VP, ``f_i = 0`` and ``G_i^2 = sigma_t^2 - sigma_s^2`` for VE), and step

        x_mean = x - f_i(x) + G_i^2 score(x, t),   x = x_mean + G_i z.
    """

    name = "reverse_diffusion"
    order = 1.0
    requires_gaussian_marginals = True

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """One reverse-diffusion step from ``t`` to ``t_next``."""
        _, _, _, _, a_ts, var = ctx.transition(t, t_next)
        x_mean = x - (a_ts - 1.0) * x + var * ctx.score(x, t)
        return x_mean + torch.sqrt(var) * ctx.noise(), x_mean


class AncestralSamplingPredictor(Predictor):
    """Ancestral sampling (Song et al. 2021, App. F, Eq. 47 for VE; Ho et al. 2020, Alg. 2 for VP):
    draw from ``q(x_s | x_t, x_0 = x0_theta(x_t))`` with ``x0_theta = (x_t + sigma_t^2 score) / alpha_t``:

        mean = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0_theta,
        var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 ("posterior") or sigma_{t|s}^2 ("forward").

    For VE the posterior form is Song et al.'s ``x + (sigma_t^2 - sigma_s^2) score`` with variance
    ``sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2``; for VP the mean is DDPM's
    ``(x + beta_i score) / sqrt(1 - beta_i)`` and ``"forward"`` gives their variance ``beta_i``.

    Args:
        variance: ``"posterior"`` (default) or ``"forward"``.
    """

    name = "ancestral"
    order = 1.0
    requires_gaussian_marginals = True

    def __init__(self, variance: str = "posterior") -> None:
        if variance not in ANCESTRAL_VARIANCES:
            raise OptionError(f"variance must be one of {', '.join(ANCESTRAL_VARIANCES)}, got {variance!r}")
        self.variance = variance

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """One ancestral step from ``t`` to ``t_next``."""
        a_t, s_t, a_s, s_s, a_ts, var_ts = ctx.transition(t, t_next)
        s2t = s_t * s_t
        x0 = (x + s2t * ctx.score(x, t)) / a_t
        x_mean = (a_ts * s_s * s_s / s2t) * x + (a_s * var_ts / s2t) * x0
        var = var_ts * s_s * s_s / s2t if self.variance == "posterior" else var_ts
        return x_mean + torch.sqrt(var) * ctx.noise(), x_mean


class NonePredictor(Predictor):
    """No predictor: the state is left as it is (corrector-only sampling, e.g. annealed Langevin
    dynamics over the grid's noise levels, Song et al. 2021, Sec. 4.2)."""

    name = "none"
    stochastic = False

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x, x)``."""
        return x, x


BUILTIN_PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls for cls in (EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralSamplingPredictor,
                              NonePredictor)
}
