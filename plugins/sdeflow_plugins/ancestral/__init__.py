"""Plugin ``ancestral``: DDPM/VDM ancestral sampling for any Gaussian-marginal process."""

import sdeflow

from .sampler import AncestralSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``ancestral``."""
    registry.add("ancestral", AncestralSampler)


__all__ = ["AncestralSampler"]
