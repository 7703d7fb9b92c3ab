"""Exceptions raised by sdeflow.

Every error says what was wrong and what would have been valid. They subclass the builtin
exception a caller would naturally catch (``ValueError`` for bad input, ``KeyError``-free
lookups, ``FloatingPointError`` for non-finite numbers) so generic handlers keep working.
"""

from __future__ import annotations

from typing import Iterable


class SdeflowError(Exception):
    """Base class of every sdeflow-specific exception."""


class PluginError(SdeflowError, RuntimeError):
    """A plugin failed to import or to register, or two plugins clash."""


class PluginConflictError(PluginError):
    """Two plugins registered the same component name."""


class UnknownComponentError(SdeflowError, ValueError):
    """A process, model or sampler name that no plugin registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        valid = sorted(valid)
        self.kind, self.name, self.valid = kind, name, valid
        listing = ", ".join(repr(v) for v in valid) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; valid {kind} names: {listing}")


class OptionError(SdeflowError, ValueError):
    """An option (keyword argument) that a component does not accept, or a bad value."""


class ShapeError(SdeflowError, ValueError):
    """A tensor whose shape does not fit what the function needs."""


class TimeRangeError(SdeflowError, ValueError):
    """A diffusion time outside ``[t_min, t_max]`` of the process."""


class IncompatibleError(SdeflowError, ValueError):
    """A sampler used with a process or score model it does not support."""


class NonFiniteError(SdeflowError, FloatingPointError):
    """NaN or Inf appeared during sampling, training or likelihood computation."""


class CheckpointError(SdeflowError, ValueError):
    """A checkpoint (sdeflow's, or a model folder of another library) that is missing, truncated,
    corrupted or of another format."""


class MissingDependencyError(SdeflowError, ImportError):
    """An optional dependency that a function needs is not installed; the message says how to install it."""
