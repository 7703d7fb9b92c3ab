"""Plugin ``ddim``: DDIM (deterministic for eta=0, stochastic for eta>0) for any Gaussian-marginal process."""

import sdeflow

from .sampler import DDIMSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``ddim``."""
    registry.add("ddim", DDIMSampler)


__all__ = ["DDIMSampler"]
