"""Plugin ``ode``: probability-flow ODE sampling through torchdiffeq."""

import sdeflow

from .sampler import ODESampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry):  # type: ignore[no-untyped-def]
    """Register ``ode``."""
    registry.add("ode", ODESampler)


__all__ = ["ODESampler"]
