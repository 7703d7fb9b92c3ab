"""Plugin ``bench_suite``: the benchmark suite's built-in targets and metrics (issue 6).

Registered through the same hooks a third-party plugin uses (``sdeflow_register_targets``,
``sdeflow_register_metrics``); ``sdeflow bench`` finds them by name like any other component.
"""

import sdeflow
from sdeflow.plugins.registry import RegistryView
from sdeflow.bench.metrics import BUILTIN_METRICS
from sdeflow.bench.targets import BUILTIN_TARGETS


@sdeflow.hookimpl
def sdeflow_register_targets(registry: RegistryView) -> None:
    """Register ``gauss1d``, ``nine_gaussians``, ``aniso16``, ``aniso64``, ``nine_gaussians_class4``."""
    for name, (factory, description) in BUILTIN_TARGETS.items():
        registry.add(name, factory, description=description)


@sdeflow.hookimpl
def sdeflow_register_metrics(registry: RegistryView) -> None:
    """Register ``sw2``, ``mmd``, ``mean_err``, ``cov_err``, ``logp_gap``."""
    for name, (factory, description) in BUILTIN_METRICS.items():
        registry.add(name, factory, description=description)
