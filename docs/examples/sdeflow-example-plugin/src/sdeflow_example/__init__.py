"""sdeflow-example-plugin: a third-party sdeflow plugin with a process and a sampler.

Installed, it is found through its entry point in the ``sdeflow`` group (``example =
"sdeflow_example"`` in its pyproject.toml); these two hooks then register its components:

* process ``cosine_vp``: :class:`~sdeflow_example.cosine_vp.CosineVPProcess`;
* sampler ``stochastic_heun``: :class:`~sdeflow_example.stochastic_heun.StochasticHeunSampler`.
"""

from __future__ import annotations

import sdeflow

from .cosine_vp import CosineVPProcess
from .stochastic_heun import StochasticHeunSampler

__version__ = "0.1.0"


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register the process ``cosine_vp``."""
    registry.add("cosine_vp", CosineVPProcess)


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register the sampler ``stochastic_heun``."""
    registry.add("stochastic_heun", StochasticHeunSampler)


__all__ = ["CosineVPProcess", "StochasticHeunSampler"]
