"""Plugin ``subvp``: the sub-variance-preserving SDE of Song et al. (2021)."""

import sdeflow

from .process import SubVPProcess


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``subvp``."""
    registry.add("subvp", SubVPProcess)


__all__ = ["SubVPProcess"]
