"""Discrete data levels and the discretised Gaussian decoder ``p(x | z_0)`` of VDM.

Data take ``bins`` levels mapped onto ``data_range = (lo, hi)``: level ``k`` is
``x_k = lo + k Delta`` with ``Delta = (hi - lo) / (bins - 1)`` (8-bit images: ``bins = 256``,
``x in {-1, -1 + 2/255, ..., 1}`` as in Kingma et al. 2021; sklearn's 8x8 digits: ``bins = 17``). The
map between levels and values is the core's, :func:`sdeflow.levels_to_signed` (with
``max_level = bins - 1`` and ``value_range = data_range``).

The decoder (Kingma et al. 2021, the generative model's ``p(x | z_0)``, App. C)
factorises over dimensions; each value's probability is the mass that the Gaussian
``N(z_0 / alpha_0, sigma_0^2 / alpha_0^2)`` puts on the value's bin,

    p(x_k | z_0) = Phi((x_k + Delta/2 - m) / s) - Phi((x_k - Delta/2 - m) / s),
    m = z_0 / alpha_0,  s = sigma_0 / alpha_0 = exp(gamma_0 / 2),

with the end bins open: ``(-inf, lo + Delta/2]`` and ``[hi - Delta/2, inf)``. The bins tile the
real line, so the probabilities sum to one exactly. (``q(z_0 | x) = N(alpha_0 x, sigma_0^2)`` read
as a function of ``x`` is the Gaussian above; the authors' code uses ``m = z_0`` and
``s = sigma_0``, which differ from it by ``alpha_0 = 1 - O(e^{gamma_0})``.)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch.special import log_ndtr

from sdeflow import levels_to_signed, rand
from sdeflow.errors import OptionError, ShapeError


def check_bins(bins: int, data_range: Sequence[float]) -> tuple[int, tuple[float, float]]:
    """Validate the number of levels and the data range; returns ``(bins, (lo, hi))``."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise OptionError(f"bins (number of discrete data levels) must be an int >= 2, got {bins!r}")
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise OptionError(f"data_range must be a pair (lo, hi), got {data_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise OptionError(f"data_range must be finite with lo < hi, got {data_range!r}")
    return bins, (lo, hi)


def bin_width(bins: int, data_range: tuple[float, float]) -> float:
    """Spacing ``Delta = (hi - lo) / (bins - 1)`` of the levels."""
    return (data_range[1] - data_range[0]) / (bins - 1)


def check_on_levels(x: Tensor, bins: int, data_range: tuple[float, float], tol: float = 1e-3) -> None:
    """Raise :class:`OptionError` unless every value of ``x`` is a level (to ``tol`` of a bin width)."""
    delta = bin_width(bins, data_range)
    k = (x.detach() - data_range[0]) / delta
    off = (k - k.round()).abs()
    if x.numel() and (bool((off > tol).any()) or float(k.min()) < -tol or float(k.max()) > bins - 1 + tol):
        raise OptionError(
            f"VDM data must lie on the {bins} levels lo + k (hi - lo)/{bins - 1} of data_range={data_range} "
            f"(got values in [{float(x.min()):g}, {float(x.max()):g}], largest offset from a level "
            f"{float(off.max()) * delta:g}); map integer data with sdeflow.levels_to_signed(k, bins - 1, "
            "value_range=data_range), or create the process with the matching bins=/data_range= (or check_data=False)"
        )


#: below this bin width (in units of the scale) the bin mass is taken by the midpoint rule
_NARROW = 1e-5


def _log_mass(a: Tensor, b: Tensor) -> Tensor:
    """``log(Phi(b) - Phi(a))`` for ``a < b`` without cancellation: reflect to the lower tail
    (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``) and use ``log(Phi(b)) + log(-expm1(log Phi(a) - log Phi(b)))``.
    Bins narrower than ``_NARROW`` use the midpoint rule ``(b - a) phi((a + b)/2)`` (relative error
    below ``(b - a)^2 (1 + mid^2) / 24``), where the difference of the two CDFs would round to 0."""
    width = b - a
    narrow = width < _NARROW
    mid = 0.5 * (a + b)
    a = torch.where(narrow, a - 1.0, a)  # keep the unused exact branch finite (and its gradient)
    flip = (a + b) > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = log_ndtr(hi)
    exact = log_hi + torch.log(-torch.expm1(log_ndtr(lo) - log_hi))
    log_width = torch.log(torch.where(narrow, width, torch.ones_like(width)))
    midpoint = log_width - 0.5 * mid * mid - 0.5 * math.log(2 * math.pi)
    return torch.where(narrow, midpoint, exact)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, scale: Tensor | float, bins: int,
                                  data_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Elementwise ``log p(x | mean, scale)`` of the discretised Gaussian with open end bins.

    ``p(x_k) = Phi((x_k + Delta/2 - mean)/scale) - Phi((x_k - Delta/2 - mean)/scale)`` for interior
    levels, ``Phi((lo + Delta/2 - mean)/scale)`` for ``k = 0`` and
    ``1 - Phi((hi - Delta/2 - mean)/scale)`` for ``k = bins - 1`` (Kingma et al. 2021's
    ``p(x | z_0)``). Stable in the tails (``log_ndtr``, no ``log(0)`` for finite inputs).

    Args:
        x: data on the level grid, any shape.
        mean: Gaussian means, broadcastable to ``x``.
        scale: Gaussian standard deviations (positive), broadcastable to ``x``.
        bins: number of levels.
        data_range: ``(lo, hi)``.

    Returns:
        Log-probabilities (nats), shaped like ``x``.
    """
    bins, data_range = check_bins(bins, data_range)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    try:
        torch.broadcast_shapes(x.shape, mean.shape, scale.shape)
    except RuntimeError:
        raise ShapeError(f"mean {tuple(mean.shape)} and scale {tuple(scale.shape)} must broadcast to x "
                         f"{tuple(x.shape)}") from None
    half = 0.5 * bin_width(bins, data_range)
    upper = (x + half - mean) / scale
    lower = (x - half - mean) / scale
    first, last = x - data_range[0] < half, data_range[1] - x < half  # the open end bins
    interior = _log_mass(torch.where(first | last, lower - 1.0, lower), upper)  # dummy a < b at the ends
    return torch.where(first, log_ndtr(upper), torch.where(last, log_ndtr(-lower), interior))


def level_values(bins: int, data_range: tuple[float, float] = (-1.0, 1.0), dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """The ``bins`` data levels ``lo + k Delta``, ``k = 0..bins-1`` (:func:`sdeflow.levels_to_signed`)."""
    bins, data_range = check_bins(bins, data_range)
    return levels_to_signed(torch.arange(bins, device=device), bins - 1, dtype, data_range, check=False)


def decoder_log_probs(mean: Tensor, scale: Tensor | float, bins: int,
                      data_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """``log p(x_k | mean, scale)`` of the discretised Gaussian for every level ``k``: the categorical
    distribution of each value (it sums to one over the last axis).

    Args:
        mean: Gaussian means, any shape.
        scale: Gaussian standard deviation (a scalar or a 0-d tensor).
        bins: number of levels.
        data_range: ``(lo, hi)``.

    Returns:
        Log-probabilities (nats), shape ``(*mean.shape, bins)``.
    """
    values = level_values(bins, data_range, mean.dtype, mean.device)
    grid = values.expand(*mean.shape, values.numel())
    return discretized_gaussian_log_prob(grid, mean[..., None], scale, bins, data_range)


#: values decoded per block in :func:`decode_levels` (bounds the ``(block, bins)`` table)
DECODE_BLOCK = 1 << 16


def decode_levels(mean: Tensor, scale: Tensor | float, bins: int, data_range: tuple[float, float] = (-1.0, 1.0),
                  generator: torch.Generator | None = None, sample: bool = False) -> Tensor:
    """Levels decoded from the discretised Gaussian ``p(x | mean, scale)``, value by value.

    ``sample=False``: the most likely level ``argmax_k p(x_k)`` (the level nearest ``mean``, except
    that the open end bins win a little beyond their half-width); ``sample=True``: a draw from the
    categorical distribution (Gumbel-max with uniforms from ``generator``), as Kingma et al.'s
    ``generate_x`` draws ``x ~ p(x | z_0)``.

    Args:
        mean: Gaussian means, any shape.
        scale: Gaussian standard deviation (a scalar or a 0-d tensor).
        bins: number of levels.
        data_range: ``(lo, hi)``.
        generator: random source when ``sample``.
        sample: draw instead of taking the mode.

    Returns:
        ``int64`` levels ``0..bins-1``, shaped like ``mean``.
    """
    bins, data_range = check_bins(bins, data_range)
    flat = mean.reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.long, device=mean.device)
    for i in range(0, flat.numel(), DECODE_BLOCK):
        logp = decoder_log_probs(flat[i:i + DECODE_BLOCK], scale, bins, data_range)
        if sample:
            u = rand(logp.shape, generator, logp.device, logp.dtype)
            tiny = torch.finfo(logp.dtype).tiny
            logp = logp - torch.log(-torch.log(u.clamp_min(tiny)))  # + Gumbel(0, 1) noise
        out[i:i + DECODE_BLOCK] = logp.argmax(-1)
    return out.reshape(mean.shape)
