"""Base classes of the ``pc`` sampler's components: predictors and correctors (Song et al. 2021, Alg. 1-2).

A plugin adds one by subclassing :class:`Predictor` or :class:`Corrector` and registering the
class through the hooks ``sdeflow_register_predictors`` / ``sdeflow_register_correctors``::

    @sdeflow.hookimpl
    def sdeflow_register_correctors(registry):
        registry.add("my_corrector", MyCorrector)

The ``pc`` sampler builds them with :func:`sdeflow.create_component`. A component declares its
capabilities as class attributes (``stochastic``, ``requires_gaussian_marginals``, ``order``)
and implements ``step(ctx, x, t, t_next) -> (x, x_mean)``: the new state and its noise-free
part (what the sampler returns after the last step when asked to skip the final noise).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..utils.shapes import append_dims, randn


@dataclass
class PCContext:
    """What a predictor or corrector step may use.

    Attributes:
        process: the forward process.
        score_fn: counted, watched score ``score_fn(x, t)`` with ``t`` of shape ``(batch,)``.
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

    def transition(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Coefficients of the forward transition ``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)``
        from ``s = t_next`` to ``t`` (Kingma et al. 2021, Eq. 19-20): returns
        ``(alpha_t, sigma_t, alpha_s, sigma_s, alpha_{t|s}, sigma_{t|s}^2)`` with
        ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``."""
        a_t, s_t = self.marginal(t)
        a_s, s_s = self.marginal(t_next)
        a_ts = a_t / a_s
        var_ts = (s_t * s_t - a_ts * a_ts * s_s * s_s).clamp_min(0)
        return a_t, s_t, a_s, s_s, a_ts, var_ts


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
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.options() if hasattr(self, k))
        return f"{type(self).__name__}({opts})"


class Predictor(_Component):
    """A predictor: one step of a reverse-time solver from ``t`` to ``t_next`` (Song et al. 2021, Alg. 1-2).

    ``order`` is its nominal order of convergence (``None`` if not meaningful).
    """

    order: ClassVar[float | None] = None


class Corrector(_Component):
    """A corrector: one MCMC step at fixed time ``t`` that leaves ``p_t`` invariant (Song et al. 2021,
    Alg. 1-2, 4-5); ``t_next`` is given for step sizes that depend on the grid (Alg. 5)."""
