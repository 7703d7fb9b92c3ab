"""Plugin ``ddpm``: discrete DDPM (Ho et al. 2020) with linear and cosine schedules."""

import sdeflow

from .process import DDPMProcess


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``ddpm``."""
    registry.add("ddpm", DDPMProcess)


__all__ = ["DDPMProcess"]
