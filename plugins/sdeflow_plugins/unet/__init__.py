"""Plugin ``unet``: the diffusion UNet for images (Ho et al. 2020; Nichol & Dhariwal 2021)."""

import sdeflow

from .network import UNet


@sdeflow.hookimpl
def sdeflow_register_models(registry: sdeflow.RegistryView) -> None:
    """Register ``unet``."""
    registry.add("unet", UNet)


__all__ = ["UNet"]
