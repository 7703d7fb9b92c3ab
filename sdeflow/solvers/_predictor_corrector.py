"""The ``pc`` sampler's components: predictors and correctors (Song et al. 2021, Alg. 1-2), and the
ancestral step shared by the ``ancestral`` sampler and the ``ancestral`` predictor.

A plugin adds a component by subclassing :class:`Predictor` or :class:`Corrector` and registering
the class through the hooks ``sdeflow_register_predictors`` / ``sdeflow_register_correctors``. A
component declares its capabilities as class attributes (``stochastic``,
``requires_gaussian_marginals``, ``order``) and implements ``step(ctx, x, t, t_next) -> (x, x_mean)``:
the new state and its noise-free part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..utils.options import constructor_options
from ..utils.shapes import append_dims, randn

#: variances of the ancestral step: the posterior's (DDPM's beta-tilde) or the forward transition's (beta)
ANCESTRAL_VARIANCES: tuple[str, ...] = ("posterior", "forward")


def ancestral_step(x: Tensor, x0: Tensor, alpha_t: Tensor, sigma_t: Tensor, alpha_s: Tensor, sigma_s: Tensor,
                   noise: Tensor, variance: str = "posterior") -> tuple[Tensor, Tensor]:
    """One draw ``x_s ~ q(x_s | x_t, x_0 = x0)`` for ``s < t`` (Ho et al. 2020, Eq. 6-7 and Alg. 2;
    Kingma et al. 2021, Eq. 26-27), written through the marginals only: with
    ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``,

        mean = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0
        var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2   ("posterior")  or  sigma_{t|s}^2  ("forward").

    Args:
        x: the state ``x_t``.
        x0: the data prediction at ``(x_t, t)``.
        alpha_t: ``alpha`` at ``t``, broadcastable against ``x``.
        sigma_t: ``sigma`` at ``t``.
        alpha_s: ``alpha`` at ``s``.
        sigma_s: ``sigma`` at ``s``.
        noise: standard normal noise shaped like ``x``.
        variance: ``"posterior"`` or ``"forward"``.

    Returns:
        ``(x_s, mean)``.
    """
    a_ts = alpha_t / alpha_s
    var_ts = (sigma_t * sigma_t - a_ts * a_ts * sigma_s * sigma_s).clamp_min(0)
    s2t = sigma_t * sigma_t
    mean = (a_ts * sigma_s * sigma_s / s2t) * x + (alpha_s * var_ts / s2t) * x0
    var = var_ts * sigma_s * sigma_s / s2t if variance == "posterior" else var_ts
    return mean + torch.sqrt(var) * noise, mean


class Transition(NamedTuple):
    """The forward transition ``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)`` from ``s`` to ``t > s``
    with the marginals at both ends (Kingma et al. 2021, Eq. 19-20); each broadcastable against the samples."""

    alpha_t: Tensor
    sigma_t: Tensor
    alpha_s: Tensor
    sigma_s: Tensor
    #: ``alpha_t / alpha_s``
    alpha_ts: Tensor
    #: ``sigma_t^2 - alpha_{t|s}^2 sigma_s^2`` (clamped at 0)
    var_ts: Tensor


@dataclass(frozen=True)
class PCContext:
    """What a predictor or corrector step may use.

    Attributes:
        process: the forward process.
        score_fn: the counted, watched score ``score_fn(x, t)`` with ``t`` of shape ``(batch,)``.
        shape: the sample shape ``(batch, *dims)``.
        generator: the random source of the run.
        device, dtype: of the samples.
    """

    process: ForwardProcess
    score_fn: Callable[[Tensor, Tensor], Tensor]
    shape: tuple[int, ...]
    generator: torch.Generator | None
    device: torch.device
    dtype: torch.dtype

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """Score at ``x`` and the 0-d time ``t`` (expanded to the batch without a copy)."""
        return self.score_fn(x, t.expand(self.shape[0]))

    def noise(self) -> Tensor:
        """Standard normal noise of the sample shape from the run's generator."""
        return randn(self.shape, self.generator, self.device, self.dtype)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` at the 0-d time ``t``, broadcastable against the samples."""
        a, s = self.process.marginal(t.reshape(1))
        nd = len(self.shape)
        return append_dims(a, nd), append_dims(s, nd)

    def transition(self, t: Tensor, t_next: Tensor) -> Transition:
        """The forward transition from ``s = t_next`` to ``t`` (:class:`Transition`)."""
        a_t, s_t = self.marginal(t)
        a_s, s_s = self.marginal(t_next)
        a_ts = a_t / a_s
        var_ts = (s_t * s_t - a_ts * a_ts * s_s * s_s).clamp_min(0)
        return Transition(a_t, s_t, a_s, s_s, a_ts, var_ts)


class _Component:
    """Shared by predictors and correctors: capabilities and the options listing."""

    #: the registered name (set by the plugin; used in messages)
    name: ClassVar[str] = ""
    #: the step injects noise
    stochastic: ClassVar[bool] = True
    #: the step uses ``alpha_t``, ``sigma_t`` of the process
    requires_gaussian_marginals: ClassVar[bool] = False

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """One step at time ``t`` (0-d tensor); ``t_next < t`` is the next time of the grid.

        Returns:
            ``(x, x_mean)``: the new state and its noise-free part.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement step(ctx, x, t, t_next)")

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Constructor options and their defaults."""
        return constructor_options(cls)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.options() if hasattr(self, k))
        return f"{type(self).__name__}({opts})"


class Predictor(_Component):
    """A predictor: one step of a reverse-time solver from ``t`` to ``t_next`` (Song et al. 2021,
    Alg. 1-2); ``order`` is its nominal order of convergence (``None`` if not meaningful)."""

    order: ClassVar[float | None] = None


class Corrector(_Component):
    """A corrector: one MCMC step at fixed time ``t`` that leaves ``p_t`` invariant (Song et al. 2021,
    Alg. 1-2, 4-5); ``t_next`` is given for step sizes that depend on the grid (Alg. 5)."""
