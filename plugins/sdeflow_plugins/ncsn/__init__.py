"""Plugin ``ncsn``: noise-conditional score networks' geometric noise levels (Song & Ermon 2019)."""

import sdeflow

from .process import NCSNProcess


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``ncsn``."""
    registry.add("ncsn", NCSNProcess)


__all__ = ["NCSNProcess"]
