"""Plugin ``unipc``: UniPC (UniP-p predictor + UniC corrector, data prediction) for any Gaussian-marginal process."""

import sdeflow

from .sampler import UniPCSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``unipc``."""
    registry.add("unipc", UniPCSampler)


__all__ = ["UniPCSampler"]
