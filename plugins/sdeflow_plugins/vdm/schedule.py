"""VDM noise schedules ``gamma(t)``: the negative log-SNR, strictly increasing on ``[0, 1]``.

Kingma et al. 2021 ("Variational Diffusion Models"), the noise schedule of their model and
Appendix H (the monotone network): ``sigma_t^2 = sigmoid(gamma(t))``, ``alpha_t^2 = sigmoid(-gamma(t))``,
``SNR(t) = exp(-gamma(t))``, with ``gamma(0) = gamma_min`` and ``gamma(1) = gamma_max``.

Two schedules, both written as ``gamma(t) = gamma_min + (gamma_max - gamma_min) r(t)`` with an
increasing ``r : [0, 1] -> [0, 1]``, ``r(0) = 0``, ``r(1) = 1``:

* :class:`LinearGamma`: ``r(t) = t`` (the paper's fixed schedule; endpoints optionally learned,
  the official code's "learnable scalar" schedule);
* :class:`LearnedGamma`: ``r`` from the paper's monotone network, normalised at both ends.

The endpoints are ``gamma_min`` (any real) and ``gamma_max = gamma_min + softplus(rho)`` (plus the
dtype's smallest normal number), so ``gamma_max > gamma_min`` for every parameter value. Both schedules
return ``gamma'(t)`` in closed form (:meth:`GammaSchedule.gamma_and_derivative`): exact, one pass, differentiable in the
parameters, and valid under ``torch.no_grad`` (samplers call it there); tests compare it with
autograd.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from sdeflow.errors import OptionError, ShapeError

from .monotone_net import BLOCK_ELEMENTS, block_sums, monotone_sums


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = y`` for ``y > 0``: ``x = y + log(-expm1(-y))``."""
    if not y > 0:
        raise OptionError(f"inverse_softplus needs a positive value, got {y}")
    return y + math.log(-math.expm1(-y))


def _flat_unique_time(t: Tensor) -> tuple[Tensor, bool]:
    """``t`` flattened; when it is one value expanded (stride 0, what samplers pass), just that value."""
    flat = t.reshape(-1)
    if flat.numel() > 1 and flat.stride(0) == 0:
        return flat[:1], True
    return flat, False


class GradientScale:
    """Per-sample factors that multiply the gradient reaching ``r(t_i)`` and ``r'(t_i)``.

    Set :attr:`scale` (shape ``(batch,)``) after the forward pass and before ``backward``;
    used by :func:`sdeflow_plugins.vdm.loss.vdm_loss` to turn the interior parameters' gradient of
    the VLB into the gradient of the squared diffusion loss: Kingma et al. 2021's variance
    minimisation of the VLB estimator (see ``docs/plugins/vdm.md``).
    """

    def __init__(self, batch: int) -> None:
        self.batch = int(batch)
        self.scale: Tensor | None = None

    def hook(self, grad: Tensor) -> Tensor:
        """Multiply ``grad`` (shape ``(batch,)``) by :attr:`scale`."""
        if self.scale is None:
            raise RuntimeError("GradientScale.scale was not set before backward()")
        return grad * self.scale.to(grad.dtype)


class Endpoints(nn.Module):
    """``gamma_min`` and ``gamma_max = gamma_min + softplus(rho)`` (learned), or two constants.

    Args:
        gamma_min: initial (or fixed) ``gamma(0)``.
        gamma_max: initial (or fixed) ``gamma(1)``, larger than ``gamma_min``.
        learn: make them trainable parameters.
    """

    def __init__(self, gamma_min: float, gamma_max: float, learn: bool) -> None:
        super().__init__()
        gamma_min, gamma_max = float(gamma_min), float(gamma_max)
        if not (math.isfinite(gamma_min) and math.isfinite(gamma_max) and gamma_min < gamma_max):
            raise OptionError(f"need finite gamma_min < gamma_max, got gamma_min={gamma_min}, gamma_max={gamma_max}")
        self.learn = bool(learn)
        if self.learn:
            self.gamma_min = nn.Parameter(torch.tensor(gamma_min))
            self.raw_range = nn.Parameter(torch.tensor(inverse_softplus(gamma_max - gamma_min)))
        else:
            self._g0, self._range = gamma_min, gamma_max - gamma_min

    def values(self, like: Tensor) -> tuple[Tensor | float, Tensor | float]:
        """``(gamma_min, gamma_max - gamma_min)`` in ``like``'s dtype and device (floats when fixed)."""
        if not self.learn:
            return self._g0, self._range
        span = softplus(self.raw_range).to(like) + torch.finfo(like.dtype).tiny  # > 0 where softplus underflows
        return self.gamma_min.to(like), span

    def extra_repr(self) -> str:
        return f"learn={self.learn}"


class GammaSchedule(nn.Module):
    """Base class: ``gamma(t) = gamma_min + (gamma_max - gamma_min) r(t)`` on ``t in [0, 1]``.

    Subclasses implement :meth:`interior` (``r`` and ``r'``). The schedule evaluates in the
    dtype of ``t`` (parameters are cast to it), so float64 callers get float64 schedules.

    Args:
        gamma_min: ``gamma(0)`` (initial value when learned).
        gamma_max: ``gamma(1)`` (initial value when learned).
        learn_endpoints: train ``gamma_min`` and ``gamma_max``.
    """

    has_interior: bool = False

    def __init__(self, gamma_min: float, gamma_max: float, learn_endpoints: bool) -> None:
        super().__init__()
        self.endpoints_module = Endpoints(gamma_min, gamma_max, learn_endpoints)

    def interior(self, t: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """``(r(t), r'(t))`` for flat ``t``: increasing, ``r(0) = 0``, ``r(1) = 1``."""
        raise NotImplementedError

    def endpoints(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(gamma(0), gamma(1))`` as 0-d tensors of ``like``'s dtype and device."""
        g0, span = self.endpoints_module.values(like)
        g0 = torch.as_tensor(g0, dtype=like.dtype, device=like.device)
        return g0, g0 + span

    def gamma_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(gamma(t), gamma'(t))``, each shaped like ``t``.

        Args:
            t: times in ``[0, 1]``, any shape.

        Returns:
            ``gamma(t)`` and its time derivative (positive).
        """
        flat, expanded = _flat_unique_time(t)
        r, dr = self.interior(flat)
        g0, span = self.endpoints_module.values(flat)
        gamma, dgamma = g0 + span * r, span * dr
        if expanded:
            gamma, dgamma = gamma.expand(t.numel()), dgamma.expand(t.numel())
        return gamma.reshape(t.shape), dgamma.reshape(t.shape)

    def forward(self, t: Tensor) -> Tensor:
        """``gamma(t)``, shaped like ``t``."""
        return self.gamma_and_derivative(t)[0]

    def inverse(self, gamma: Tensor) -> Tensor | None:
        """Closed-form ``t`` with ``gamma(t) = gamma`` where one exists (``None`` otherwise)."""
        return None


class LinearGamma(GammaSchedule):
    """``gamma(t) = gamma_min + (gamma_max - gamma_min) t`` (Kingma et al. 2021, the fixed
    linear log-SNR schedule; with ``learn_endpoints`` the official code's learnable-scalar schedule)."""

    def interior(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``r(t) = t``, ``r'(t) = 1``."""
        return t, torch.ones_like(t)

    def inverse(self, gamma: Tensor) -> Tensor:
        """``t = (gamma - gamma_min) / (gamma_max - gamma_min)``."""
        g0, span = self.endpoints_module.values(gamma)
        return (gamma - g0) / span

    def extra_repr(self) -> str:
        return "linear"


class LearnedGamma(GammaSchedule):
    """The monotone noise-schedule network of Kingma et al. 2021 (Appendix H), normalised so that
    ``gamma(0) = gamma_min`` and ``gamma(1) = gamma_max`` exactly.

    Three linear layers with positive weights (``softplus`` of raw parameters):

        l1(t) = w1 t + b1,           w1 = softplus(rho1) + tiny > 0
        l2(u) = W2 u + b2,           W2 = softplus(rho2) in R^H, entries > 0
        l3(h) = (1/H) W3 . h,        W3 = softplus(rho3) in R^H, entries > 0
        gamma~(t) = l1(t) + l3(sigmoid(l2(l1(t))))
        r(t) = (gamma~(t) - gamma~(0)) / (gamma~(1) - gamma~(0))
        gamma(t) = gamma_min + (gamma_max - gamma_min) r(t),  gamma_max - gamma_min = softplus(rho) + tiny > 0

    (``tiny``: the dtype's smallest normal number, which keeps both positive where ``softplus``
    underflows, e.g. ``rho < -745`` in float64.)

    **Strictly increasing for every parameter value.** With ``u_j(t) = a_j t + d_j``,
    ``a_j = W2_j w1 > 0``, ``d_j = W2_j b1 + b2_j`` (so ``l2(l1(t))_j = u_j(t)``),

        gamma~'(t) = w1 + (1/H) sum_j W3_j a_j sigmoid'(u_j(t)) >= w1 > 0,

    because ``sigmoid' > 0`` and every ``W3_j a_j > 0``. So ``gamma~`` is strictly increasing,
    ``D = gamma~(1) - gamma~(0) > 0``, ``r' = gamma~' / D > 0``, and
    ``gamma' = (gamma_max - gamma_min) r' > 0``. The biases and signs of ``b1, b2`` are free; a bias
    of ``l3`` would cancel in ``r`` and is omitted. ``r(0) = 0`` and ``r(1) = 1`` identically, so
    the endpoints are exactly ``gamma_min`` and ``gamma_max`` (``r(1) = 1`` is enforced bitwise by a
    detached correction of a few ulps, which keeps the derivative).

    Numerics: ``gamma~(t) - gamma~(0) = w1 t + (1/H) sum_j W3_j [sigmoid(u_j(t)) - sigmoid(u_j(0))]``
    is evaluated without cancellation through
    ``sigmoid(x) - sigmoid(y) = -sigmoid(x) sigmoid(-y) expm1(-(x - y))`` with ``x - y = a_j t``
    computed directly; every term is non-negative and exact to relative rounding. The ``(n, H)``
    sums run in blocks with a hand-written backward (:mod:`~sdeflow_plugins.vdm.monotone_net`):
    memory ``O(n + H)`` at any number of times.

    The scaling ``1/H`` and the initialisation follow the official code (``w1 = 1``, the l2/l3 path
    a small perturbation): at initialisation ``r(t)`` is close to, not equal to, ``t``.

    Args:
        gamma_min: ``gamma(0)`` (initial value when learned).
        gamma_max: ``gamma(1)`` (initial value when learned).
        hidden: width ``H`` of ``l2`` (the paper: 1024).
        learn_endpoints: train ``gamma_min`` and ``gamma_max`` too.
    """

    has_interior = True

    def __init__(self, gamma_min: float = -10.0, gamma_max: float = 20.0, hidden: int = 1024,
                 learn_endpoints: bool = True) -> None:
        super().__init__(gamma_min, gamma_max, learn_endpoints)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise OptionError(f"hidden (width of the schedule network) must be a positive int, got {hidden!r}")
        self.hidden = hidden
        self.rho1 = nn.Parameter(torch.tensor(inverse_softplus(1.0)))
        self.b1 = nn.Parameter(torch.tensor(-0.5))
        self.rho2 = nn.Parameter(torch.randn(hidden) + 1.0)
        self.b2 = nn.Parameter(torch.zeros(hidden))
        self.rho3 = nn.Parameter(torch.randn(hidden))
        self._grad_scale: GradientScale | None = None

    def positive_weights(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(w1, W2, W3 / H)`` in ``like``'s dtype: the softplus of the raw weights (``w1`` plus the
        dtype's smallest normal number, so that ``w1 > 0`` even where ``softplus`` underflows)."""
        return (softplus(self.rho1).to(like) + torch.finfo(like.dtype).tiny, softplus(self.rho2).to(like),
                softplus(self.rho3).to(like) / self.hidden)

    def features(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(w1, a, d, c)``: ``a_j = W2_j w1``, ``d_j = W2_j b1 + b2_j``, ``c = W3 / H``, so that
        ``l2(l1(t))_j = a_j t + d_j`` (see the class docstring)."""
        w1, w2, c = self.positive_weights(like)
        return w1, w2 * w1, w2 * self.b1.to(like) + self.b2.to(like), c

    def interior(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(r(t), r'(t))`` for flat ``t`` (see the class docstring for the formulas)."""
        w1, a, d, c = self.features(t)
        tt = torch.cat([t, torch.ones(1, dtype=t.dtype, device=t.device)])  # last entry: t = 1
        if not torch.is_grad_enabled() and tt.shape[0] * self.hidden <= BLOCK_ELEMENTS:
            # samplers: one block, no autograd bookkeeping
            num, slope = block_sums(tt, w1, a, d, c)
            den = num[-1]
            r = torch.where(t == 1, torch.ones_like(t), (num[:-1] / den).clamp_max(1.0))
            return r, slope[:-1] / den
        num, slope = monotone_sums(tt, w1, a, d, c)
        den = num[-1]
        r = num[:-1] / den
        # r(0) = 0 exactly already (every term of num vanishes); make r(1) = 1 and r <= 1 exact too,
        # keeping the gradient (a detached correction of at most a few ulps)
        over = r.detach() - 1.0
        r = r - torch.where(t == 1, over, over.clamp_min(0.0))
        dr = slope[:-1] / den
        scale = self._grad_scale
        if scale is not None and r.requires_grad:
            if r.shape != (scale.batch,):
                raise ShapeError(f"scaled interior gradients expect times of shape ({scale.batch},) (one per sample), "
                                 f"got {tuple(r.shape)}")
            r.register_hook(scale.hook)
            dr.register_hook(scale.hook)
        return r, dr

    @contextlib.contextmanager
    def scale_interior_gradients(self, scale: GradientScale) -> Iterator[GradientScale]:
        """Within the block, every per-sample ``r(t)``, ``r'(t)`` evaluated with gradients gets
        ``scale.hook`` (see :class:`GradientScale`); endpoints are unaffected."""
        previous, self._grad_scale = self._grad_scale, scale
        try:
            yield scale
        finally:
            self._grad_scale = previous

    def gamma_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(gamma(t), gamma'(t))``; per-sample evaluation while gradients are being scaled."""
        if self._grad_scale is not None:
            t = t.contiguous()  # one row per sample: the hooks need per-sample values
        return super().gamma_and_derivative(t)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}"
