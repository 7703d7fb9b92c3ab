"""Plugin ``pc``: predictor-corrector sampling (Song et al. 2021) and its built-in predictors and correctors."""

import sdeflow

from .correctors import BUILTIN_CORRECTORS, LangevinCorrector, NoneCorrector
from .predictors import (
    BUILTIN_PREDICTORS,
    AncestralSamplingPredictor,
    EulerMaruyamaPredictor,
    NonePredictor,
    ReverseDiffusionPredictor,
)
from .sampler import PCSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``pc``."""
    registry.add("pc", PCSampler)


@sdeflow.hookimpl
def sdeflow_register_predictors(registry: sdeflow.RegistryView) -> None:
    """Register ``euler_maruyama``, ``reverse_diffusion``, ``ancestral`` and ``none``."""
    for name, cls in BUILTIN_PREDICTORS.items():
        registry.add(name, cls)


@sdeflow.hookimpl
def sdeflow_register_correctors(registry: sdeflow.RegistryView) -> None:
    """Register ``langevin`` and ``none``."""
    for name, cls in BUILTIN_CORRECTORS.items():
        registry.add(name, cls)


__all__ = ["AncestralSamplingPredictor", "EulerMaruyamaPredictor", "LangevinCorrector", "NoneCorrector",
           "NonePredictor", "PCSampler", "ReverseDiffusionPredictor"]
