"""Plugin ``vp``: the variance-preserving SDE of Song et al. (2021)."""

import sdeflow

from .process import VPProcess


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``vp``."""
    registry.add("vp", VPProcess)


__all__ = ["VPProcess"]
