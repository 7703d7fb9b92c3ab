"""Plugin ``ode``: probability-flow ODE sampling through torchdiffeq."""

import sdeflow
from sdeflow.plugins.registry import RegistryView

from .sampler import ODESampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: RegistryView) -> None:
    """Register ``ode``."""
    registry.add("ode", ODESampler)


__all__ = ["ODESampler"]
