"""Plugin ``ode``: probability-flow ODE sampling through torchdiffeq."""

import sdeflow

from .sampler import ODESampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``ode``."""
    registry.add("ode", ODESampler)


__all__ = ["ODESampler"]
