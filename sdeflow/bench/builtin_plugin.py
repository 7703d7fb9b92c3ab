"""Plugin ``bench_suite``: the benchmark suite's built-in targets and metrics.

The harness registers them through the same hooks a third-party plugin uses
(``sdeflow_register_targets``, ``sdeflow_register_metrics``) and the same entry-point group
(``bench_suite = "sdeflow.bench.builtin_plugin"``), so ``sdeflow bench`` finds them by name like any
other component. The module lives in the harness (an application of the core), not among the
built-in plugins, because its components are the harness's own.
"""

from ..plugins.hookspecs import hookimpl
from ..plugins.registry import RegistryView
from .metrics import BUILTIN_METRICS
from .targets import BUILTIN_TARGETS


@hookimpl
def sdeflow_register_targets(registry: RegistryView) -> None:
    """Register ``gauss1d``, ``nine_gaussians``, ``aniso16``, ``aniso64``, ``nine_gaussians_class4``."""
    for name, (factory, description) in BUILTIN_TARGETS.items():
        registry.add(name, factory, description=description)


@hookimpl
def sdeflow_register_metrics(registry: RegistryView) -> None:
    """Register ``sw2``, ``mmd``, ``mean_err``, ``cov_err``, ``logp_gap``."""
    for name, (factory, description) in BUILTIN_METRICS.items():
        registry.add(name, factory, description=description)
