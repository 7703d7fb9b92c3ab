"""Hook specifications of the ``sdeflow`` plugin system (pluggy project name ``"sdeflow"``).

A plugin is a module named in the ``sdeflow`` entry-point group. It implements any of these
hooks with :data:`sdeflow.hookimpl`; each receives a :class:`sdeflow.plugins.registry.Registry` view
and adds components to it. Hooks run once, when plugins are loaded, never per solver step.
"""

from __future__ import annotations

import pluggy

from .registry import RegistryView

PROJECT = "sdeflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def sdeflow_register_processes(registry: RegistryView) -> None:
    """Register forward processes: ``registry.add(name, factory)`` where ``factory(**options)``
    returns a :class:`sdeflow.ForwardProcess`."""


@hookspec
def sdeflow_register_models(registry: RegistryView) -> None:
    """Register network architectures: ``registry.add(name, factory)`` where ``factory(**options)``
    returns a ``torch.nn.Module`` called as ``net(x, t_cond)``."""


@hookspec
def sdeflow_register_samplers(registry: RegistryView) -> None:
    """Register samplers: ``registry.add(name, factory)`` where ``factory(**options)`` returns a
    :class:`sdeflow.Sampler`."""


@hookspec
def sdeflow_register_predictors(registry: RegistryView) -> None:
    """Register predictor steps for the ``pc`` sampler (Song et al. 2021, Alg. 1-2):
    ``registry.add(name, factory)``."""


@hookspec
def sdeflow_register_correctors(registry: RegistryView) -> None:
    """Register corrector steps for the ``pc`` sampler (Song et al. 2021, Alg. 1-2):
    ``registry.add(name, factory)``."""


@hookspec
def sdeflow_register_targets(registry: RegistryView) -> None:
    """Register benchmark targets for ``sdeflow bench``: ``registry.add(name, factory)`` where
    ``factory()`` returns a distribution with a known density and an exact score under any
    process (``dim``, ``sample(n, generator)``, ``log_prob(x)``, ``score_model(process)``; a
    :class:`sdeflow.GaussianMixture` qualifies; see :mod:`sdeflow.bench.targets`)."""


@hookspec
def sdeflow_register_metrics(registry: RegistryView) -> None:
    """Register sample-quality metrics for ``sdeflow bench``: ``registry.add(name, factory)`` where
    ``factory()`` returns a callable ``metric(samples, reference, target) -> float`` (see
    :class:`sdeflow.bench.metrics.Metric`)."""
