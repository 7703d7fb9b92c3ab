"""The options of a component: the keyword arguments of its constructor or factory, with defaults."""

from __future__ import annotations

import inspect
from typing import Any, Callable


def constructor_options(factory: Callable[..., Any]) -> dict[str, Any]:
    """Keyword options of a class's ``__init__`` (or of a factory function) and their defaults,
    ``inspect.Parameter.empty`` for a required one; ``self``, ``*args`` and ``**kwargs`` are left out.

    The one listing behind :meth:`sdeflow.Sampler.options`, the predictors' and correctors'
    ``options()`` and :func:`sdeflow.component_options`. A factory whose signature cannot be read
    gives ``{}``.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


__all__ = ["constructor_options"]
