"""Validation and defaults of the UNet's options (kept apart from the network's wiring)."""

from __future__ import annotations

from typing import Sequence

from sdeflow.errors import OptionError
from sdeflow.solvers import check_positive_int

#: default channel multipliers by number of resolution levels (the "auto" choice)
AUTO_MULTS: tuple[tuple[int, ...], ...] = ((1,), (1, 2), (1, 2, 2))


def positive_int(name: str, value: object) -> int:
    """``value`` as an int, or :class:`OptionError` when it is not a positive integer."""
    try:
        check_positive_int(f"unet: {name}", value if value is not None else 0)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"unet: {name} must be a positive integer, got {value!r}") from exc
    return int(value)  # type: ignore[call-overload]  # checked above


def auto_channel_mult(image_size: int) -> tuple[int, ...]:
    """Default multipliers for ``image_size``: halve while the size stays even and at least 4, at most
    twice, so 8x8 -> ``(1, 2)`` (8, 4), 16x16 and larger -> ``(1, 2, 2)``, odd sizes -> ``(1,)``."""
    levels, s = 1, image_size
    while levels < len(AUTO_MULTS) and s % 2 == 0 and s // 2 >= 4:
        s //= 2
        levels += 1
    return AUTO_MULTS[levels - 1]


def resolve_channel_mult(channel_mult: Sequence[int] | None, image_size: int) -> tuple[int, ...]:
    """Validated multipliers; ``None`` picks :func:`auto_channel_mult`.

    Raises:
        OptionError: empty or non-positive multipliers, or ``image_size`` not divisible by the total
            downsampling ``2^(levels - 1)``.
    """
    if channel_mult is None:
        return auto_channel_mult(image_size)
    if isinstance(channel_mult, (str, bytes)) or not isinstance(channel_mult, Sequence) or not channel_mult:
        raise OptionError(f"unet: channel_mult must be a non-empty sequence of positive integers (one per "
                          f"resolution level), e.g. (1, 2, 2); got {channel_mult!r}")
    mult = tuple(positive_int("channel_mult entry", m) for m in channel_mult)
    factor = 2 ** (len(mult) - 1)
    if image_size % factor:
        raise OptionError(
            f"unet: image_size={image_size} is not divisible by {factor}, the total downsampling of "
            f"channel_mult={mult} ({len(mult)} levels, one halving between levels); use an image size that "
            f"is a multiple of {factor} or fewer levels")
    return mult


def resolve_attention(attention_resolutions: Sequence[int] | None, resolutions: Sequence[int]) -> tuple[int, ...]:
    """Validated attention resolutions; ``None`` means the lowest resolution only.

    Raises:
        OptionError: a resolution the UNet does not have (the message lists those it has).
    """
    if attention_resolutions is None:
        return (resolutions[-1],)
    if isinstance(attention_resolutions, (str, bytes, int)) or not isinstance(attention_resolutions, Sequence):
        raise OptionError(f"unet: attention_resolutions must be a sequence of resolutions (e.g. (8,) or () for "
                          f"none), got {attention_resolutions!r}")
    out = tuple(positive_int("attention resolution", r) for r in attention_resolutions)
    bad = [r for r in out if r not in resolutions]
    if bad:
        raise OptionError(f"unet: attention resolution(s) {bad} not present; this UNet's feature maps are "
                          f"{', '.join(f'{r}x{r}' for r in resolutions)} (valid attention_resolutions entries: "
                          f"{', '.join(map(str, resolutions))})")
    return out


def heads_for(channels: int, num_heads: int, head_channels: int | None) -> int:
    """Number of attention heads at a level with ``channels`` channels: ``channels // head_channels``
    when ``head_channels`` is given (Dhariwal & Nichol 2021 use 64), else ``num_heads``.

    Raises:
        OptionError: the head size does not divide ``channels``.
    """
    if head_channels is None:
        if channels % num_heads:
            raise OptionError(f"unet: num_heads={num_heads} does not divide the {channels} channels of an "
                              "attention level; choose num_heads dividing every attention level's channels")
        return num_heads
    if channels % head_channels:
        raise OptionError(f"unet: head_channels={head_channels} does not divide the {channels} channels of an "
                          "attention level; choose head_channels dividing every attention level's channels")
    return channels // head_channels


def check_unit_float(name: str, value: float) -> float:
    """``value`` in ``[0, 1)`` as a float, else :class:`OptionError`."""
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise OptionError(f"unet: {name} must lie in [0, 1), got {value!r}")
    return v


def check_cond_range(cond_range: Sequence[float]) -> tuple[float, float]:
    """``(lo, hi)`` with ``lo < hi`` (both finite), else :class:`OptionError`."""
    try:
        lo, hi = (float(v) for v in cond_range)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"unet: cond_range must be a pair (lo, hi), got {cond_range!r}") from exc
    if not (lo < hi) or hi - lo == float("inf"):
        raise OptionError(f"unet: cond_range must be (lo, hi) with finite lo < hi, got {cond_range!r}")
    return lo, hi
