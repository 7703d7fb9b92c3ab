"""Plugin ``langevin``: annealed Langevin dynamics (Song & Ermon 2019)."""

import sdeflow

from .sampler import AnnealedLangevinSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``langevin``."""
    registry.add("langevin", AnnealedLangevinSampler)


__all__ = ["AnnealedLangevinSampler"]
