"""Plugin ``dpm_solver``: DPM-Solver++ (2M/3M multistep, data prediction) for any Gaussian-marginal process."""

import sdeflow

from .sampler import DPMSolverSampler


@sdeflow.hookimpl
def sdeflow_register_samplers(registry: sdeflow.RegistryView) -> None:
    """Register ``dpm_solver``."""
    registry.add("dpm_solver", DPMSolverSampler)


__all__ = ["DPMSolverSampler"]
