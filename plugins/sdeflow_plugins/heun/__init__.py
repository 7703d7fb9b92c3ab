"""Plugin ``heun``: EDM's second-order sampler (Karras et al. 2022) for any Gaussian-marginal process."""

import sdeflow

from .sampler import EDMHeunSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``heun``."""
    registry.add("heun", EDMHeunSampler)


__all__ = ["EDMHeunSampler"]
