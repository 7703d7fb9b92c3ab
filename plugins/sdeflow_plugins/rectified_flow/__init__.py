"""Plugin ``rectified_flow``: rectified flow / flow matching (Liu et al. 2022; Lipman et al. 2023) as a
forward process, so every sampler, the likelihood, the benchmark and training serve flows and
diffusions alike. See ``docs/plugins/rectified_flow.md``."""

import sdeflow

from .interpolants import INTERPOLANTS
from .process import DEFAULT_T_MAX, TIME_SAMPLINGS, RectifiedFlowProcess


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``rectified_flow``."""
    registry.add("rectified_flow", RectifiedFlowProcess)


__all__ = ["DEFAULT_T_MAX", "INTERPOLANTS", "RectifiedFlowProcess", "TIME_SAMPLINGS"]
