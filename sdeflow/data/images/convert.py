"""Pixel-value conversions: integer levels ``{0, ..., L}`` <-> ``[-1, 1]``, and image-batch checks.

Diffusion models on images train on values scaled to ``[-1, 1]`` (Ho et al. 2020, Sec. 4:
"data scaled linearly to [-1, 1]"; Song et al. 2021): level ``k`` of ``L + 1`` levels maps to
``2 k / L - 1``, so ``0 -> -1`` and ``L -> 1``. For 8-bit images ``L = 255``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import OptionError, ShapeError


def levels_to_signed(k: Tensor, max_level: int, dtype: torch.dtype = torch.float32,
                     value_range: tuple[float, float] = (-1.0, 1.0), check: bool = True) -> Tensor:
    """``lo + (hi - lo) k / max_level``: integer levels ``0..max_level`` onto ``value_range``
    (``2 k / max_level - 1`` for the default ``[-1, 1]``).

    The one level-to-value map of sdeflow: the image loaders, the digits, the image demo and the
    ``vdm`` plugin's discrete data (``bins = max_level + 1`` levels, Kingma et al. 2021) use it.

    Args:
        k: levels (any integer or floating dtype holding integers), any shape.
        max_level: the top level ``L`` (255 for 8-bit, 16 for scikit-learn's digits).
        dtype: floating dtype of the result.
        value_range: ``(lo, hi)``: level ``0 -> lo``, level ``L -> hi``.
        check: raise unless every value of ``k`` is an integer in ``0..max_level`` (one host sync;
            ``False`` skips it).

    Returns:
        Values in ``value_range``, shaped like ``k``.

    Raises:
        OptionError: a bad ``max_level`` or ``value_range``, or (with ``check``) levels that are not
            integers in ``0..max_level``.
    """
    if isinstance(max_level, bool) or int(max_level) != max_level or max_level < 1:
        raise OptionError(f"max_level must be a positive integer, got {max_level!r}")
    lo, hi = _check_range(value_range)
    kf = k.to(dtype)
    if check and kf.numel() and (bool((kf < 0).any()) or bool((kf > max_level).any())
                                 or bool((kf != kf.round()).any())):
        raise OptionError(f"levels must be integers in 0..{int(max_level)}, got values in "
                          f"[{float(kf.min()):g}, {float(kf.max()):g}]")
    if (lo, hi) == (-1.0, 1.0):
        return kf * (2.0 / int(max_level)) - 1.0
    return lo + kf * ((hi - lo) / int(max_level))


def signed_to_levels(x: Tensor, max_level: int, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Nearest integer level of ``x`` (the inverse of :func:`levels_to_signed`), clamped to ``0..max_level``.

    Args:
        x: values, nominally in ``value_range`` (values outside are clamped).
        max_level: the top level ``L``.
        value_range: ``(lo, hi)``: ``lo -> 0`` and ``hi -> L``.

    Returns:
        ``int64`` levels shaped like ``x``. NaN raises :class:`OptionError`.
    """
    lo, hi = _check_range(value_range)
    if isinstance(max_level, bool) or int(max_level) != max_level or max_level < 1:
        raise OptionError(f"max_level must be a positive integer, got {max_level!r}")
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise OptionError("cannot convert NaN values to pixel levels")
    u = (x.detach().to(torch.float64) - lo) / (hi - lo)
    return torch.round(u.clamp(0.0, 1.0) * int(max_level)).to(torch.int64)


def from_uint8(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """8-bit pixels ``0..255`` -> ``[-1, 1]`` (``2 k / 255 - 1``)."""
    if images.dtype != torch.uint8:
        raise OptionError(f"from_uint8 expects a uint8 tensor, got {images.dtype}")
    return levels_to_signed(images, 255, dtype, check=False)  # every uint8 is a level


def to_uint8(images: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """``[-1, 1]`` (or ``value_range``) -> 8-bit pixels, rounded to the nearest level and clamped."""
    return signed_to_levels(images, 255, value_range).to(torch.uint8)


def check_images(images: Tensor, what: str = "images") -> Tensor:
    """Validate an image batch ``(N, C, H, W)`` (``N, C, H, W >= 1``) and return it.

    Raises:
        ShapeError: not a 4-D tensor with positive sizes.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or min(images.shape) < 1:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ShapeError(f"{what} must be a tensor of shape (N, C, H, W) with all sizes >= 1, got {got}")
    return images


def _check_range(value_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"value_range must be a pair (lo, hi), got {value_range!r}") from exc
    if not hi > lo:
        raise OptionError(f"value_range must be (lo, hi) with hi > lo, got {value_range!r}")
    return lo, hi
