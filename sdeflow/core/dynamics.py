"""The reverse-time SDE and the probability-flow ODE derived from any forward process.

Both are plain, solver-agnostic objects in the forward time ``t``; the adapters in
:mod:`sdeflow.solvers` hand them to torchsde and torchdiffeq.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from torch import Tensor

from ..utils.shapes import append_dims

if TYPE_CHECKING:  # pragma: no cover
    from .process import ForwardProcess

ScoreFn = Callable[[Tensor, Tensor], Tensor]


class _ScoreDynamics:
    """What the reverse SDE and the probability-flow ODE share: the forward process, the score
    and the drift ``f(x, t) - w g(t)^2 score(x, t)`` of the family of reverse processes with the
    marginals ``p_t`` (Song et al. 2021, Eq. 46 with ``w = (1 + lambda^2) / 2``: ``w = 1`` is the
    reverse SDE, ``w = 1/2`` the probability-flow ODE).

    Args:
        process: the forward process giving ``f`` and ``g``.
        score_fn: ``score_fn(x, t) -> grad_x log p_t(x)`` with ``t`` of shape ``(batch,)``.
    """

    def __init__(self, process: "ForwardProcess", score_fn: ScoreFn) -> None:
        self.process = process
        self.score_fn = score_fn

    def _score_drift(self, x: Tensor, t: Tensor, w: float) -> Tensor:
        """``f(x, t) - w g(t)^2 score(x, t)`` (Song et al. 2021, Eq. 46)."""
        g2 = append_dims(self.process.g2(t), x.ndim)
        return self.process.drift(x, t) - w * g2 * self.score_fn(x, t)


class ReverseSDE(_ScoreDynamics):
    """Reverse-time SDE ``dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar``.

    Anderson (1982); Song et al. (2021), Eq. 6. Time runs from ``t_max`` down to ``t_min``.

    Args:
        process: the forward process giving ``f`` and ``g``.
        score_fn: ``score_fn(x, t) -> grad_x log p_t(x)`` with ``t`` of shape ``(batch,)``.
    """

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Reverse drift ``f(x, t) - g(t)^2 score(x, t)`` (Song et al. 2021, Eq. 6), in forward time."""
        return self._score_drift(x, t, 1.0)

    def diffusion(self, t: Tensor) -> Tensor:
        """Diffusion ``g(t)`` of the reverse SDE, shape ``(batch,)`` (equal to the forward one)."""
        return self.process.diffusion(t)


class ProbabilityFlowODE(_ScoreDynamics):
    """Probability-flow ODE ``dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t)`` (Song et al. 2021, Eq. 13).

    Its solution shares the marginals ``p_t`` of the forward SDE, so integrating it from
    ``t_max`` to ``t_min`` maps prior samples to data samples deterministically.

    Args:
        process: the forward process giving ``f`` and ``g``.
        score_fn: ``score_fn(x, t) -> grad_x log p_t(x)`` with ``t`` of shape ``(batch,)``.
    """

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Vector field ``f(x, t) - 1/2 g(t)^2 score(x, t)`` (Song et al. 2021, Eq. 13)."""
        return self._score_drift(x, t, 0.5)
