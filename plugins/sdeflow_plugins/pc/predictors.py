"""Built-in predictors of the ``pc`` sampler (Song et al. 2021, Sec. 4.2 and Alg. 1-2, App. F-G)."""

from __future__ import annotations

import torch
from torch import Tensor

import sdeflow
from sdeflow.errors import OptionError
from sdeflow.solvers import ANCESTRAL_VARIANCES, PCContext, Predictor, ancestral_step


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
        g = sdeflow.append_dims(ctx.process.diffusion(tv), x.ndim)
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
        tr = ctx.transition(t, t_next)
        x_mean = x - (tr.alpha_ts - 1.0) * x + tr.var_ts * ctx.score(x, t)
        return x_mean + torch.sqrt(tr.var_ts) * ctx.noise(), x_mean


class AncestralSamplingPredictor(Predictor):
    """Ancestral sampling (Song et al. 2021, App. F, Eq. 47 for VE; Ho et al. 2020, Alg. 2 for VP):
    draw from ``q(x_s | x_t, x_0 = x0_theta(x_t))`` with ``x0_theta = (x_t + sigma_t^2 score) / alpha_t``
    (:func:`sdeflow.solvers.ancestral_step`, the ``ancestral`` sampler's step).

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
        a_t, s_t = ctx.marginal(t)
        a_s, s_s = ctx.marginal(t_next)
        x0 = (x + s_t * s_t * ctx.score(x, t)) / a_t
        return ancestral_step(x, x0, a_t, s_t, a_s, s_s, ctx.noise(), self.variance)


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
