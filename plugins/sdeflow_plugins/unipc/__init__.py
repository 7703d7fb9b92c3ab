"""Plugin ``unipc``: UniPC (UniP-p predictor + UniC corrector, data prediction) for any Gaussian-marginal process."""

import sdeflow

from .sampler import UniPCSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry):  # type: ignore[no-untyped-def]
    """Register ``unipc``."""
    registry.add("unipc", UniPCSampler)


__all__ = ["UniPCSampler"]
