"""Checks of option values shared by samplers, networks and the likelihood (each raises
:class:`~sdeflow.errors.OptionError` naming the option, the value and what is valid)."""

from __future__ import annotations

from typing import Any

from ..errors import OptionError


def check_positive_int(name: str, value: Any) -> None:
    """Raise :class:`OptionError` unless ``value`` is ``None`` or a positive integer."""
    if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
        raise OptionError(f"{name} must be a positive integer, got {value!r}")


def check_clip_x0(clip_x0: Any) -> None:
    """Raise :class:`OptionError` unless the data-prediction bound ``clip_x0`` is ``None`` or positive."""
    if clip_x0 is not None and not clip_x0 > 0:
        raise OptionError(f"clip_x0 must be positive or None, got {clip_x0!r}")


__all__ = ["check_clip_x0", "check_positive_int"]
