"""Plugin ``ve``: the variance-exploding SDE of Song et al. (2021)."""

import sdeflow

from .process import VEProcess


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``ve``."""
    registry.add("ve", VEProcess)


__all__ = ["VEProcess"]
