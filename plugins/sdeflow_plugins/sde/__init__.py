"""Plugin ``sde``: reverse-time SDE sampling through torchsde."""

import sdeflow

from .sampler import SDESampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``sde``."""
    registry.add("sde", SDESampler)


__all__ = ["SDESampler"]
