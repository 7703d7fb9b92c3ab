"""Plugin ``repaint``: imputation by the replacement method with RePaint's resampling (Lugmayr et al. 2022)."""

import sdeflow

from .sampler import RePaintSampler, repaint_schedule


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``repaint``."""
    registry.add("repaint", RePaintSampler)


__all__ = ["RePaintSampler", "repaint_schedule"]
