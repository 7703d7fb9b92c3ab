"""Plugin ``sde``: reverse-time SDE sampling through torchsde."""

import sdeflow
from sdeflow.plugins.registry import RegistryView

from .sampler import SDESampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: RegistryView) -> None:
    """Register ``sde``."""
    registry.add("sde", SDESampler)


__all__ = ["SDESampler"]
