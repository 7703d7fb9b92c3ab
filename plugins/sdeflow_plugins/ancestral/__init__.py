"""Plugin ``ancestral``: DDPM/VDM ancestral sampling for any Gaussian-marginal process."""

import sdeflow

from .sampler import AncestralSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry):  # type: ignore[no-untyped-def]
    """Register ``ancestral``."""
    registry.add("ancestral", AncestralSampler)


__all__ = ["AncestralSampler"]
