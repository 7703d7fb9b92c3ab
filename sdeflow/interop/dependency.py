"""The optional dependency of :mod:`sdeflow.interop`: diffusers, imported only when a function needs it."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from ..errors import MissingDependencyError

#: the oldest diffusers whose models and schedulers were tried with this module
MIN_DIFFUSERS = "0.30"
INSTALL_HINT = 'pip install "sdeflow[diffusers]"  (or: pip install "diffusers>=0.30")'


def diffusers_available() -> bool:
    """True when diffusers can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("diffusers") is not None


def require_diffusers(what: str = "this function") -> ModuleType:
    """Import and return diffusers.

    Raises:
        MissingDependencyError: diffusers is not installed; the message says how to install it.
    """
    if not diffusers_available():
        raise MissingDependencyError(f"{what} needs the diffusers library, which is not installed: {INSTALL_HINT}")
    import diffusers

    return diffusers
