"""Hook specifications of the ``sdeflow`` plugin system (pluggy project name ``"sdeflow"``).

A plugin is a module named in the ``sdeflow`` entry-point group. It implements any of these
hooks with :data:`sdeflow.hookimpl`; each receives a :class:`sdeflow.registry.Registry` view
and adds components to it. Hooks run once, when plugins are loaded, never per solver step.
"""

from __future__ import annotations

import pluggy

PROJECT = "sdeflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def sdeflow_register_processes(registry) -> None:  # type: ignore[no-untyped-def]
    """Register forward processes: ``registry.add(name, factory)`` where ``factory(**options)``
    returns a :class:`sdeflow.ForwardProcess`."""


@hookspec
def sdeflow_register_models(registry) -> None:  # type: ignore[no-untyped-def]
    """Register network architectures: ``registry.add(name, factory)`` where ``factory(**options)``
    returns a ``torch.nn.Module`` called as ``net(x, t_cond)``."""


@hookspec
def sdeflow_register_samplers(registry) -> None:  # type: ignore[no-untyped-def]
    """Register samplers: ``registry.add(name, factory)`` where ``factory(**options)`` returns a
    :class:`sdeflow.Sampler`."""


@hookspec
def sdeflow_register_predictors(registry) -> None:  # type: ignore[no-untyped-def]
    """Register predictor steps for the ``pc`` sampler (Song et al. 2021, Alg. 1-2):
    ``registry.add(name, factory)``."""


@hookspec
def sdeflow_register_correctors(registry) -> None:  # type: ignore[no-untyped-def]
    """Register corrector steps for the ``pc`` sampler (Song et al. 2021, Alg. 1-2):
    ``registry.add(name, factory)``."""


@hookspec
def sdeflow_register_targets(registry) -> None:  # type: ignore[no-untyped-def]
    """Register benchmark targets for ``sdeflow bench``: ``registry.add(name, factory)`` where
    ``factory()`` returns a distribution with a known density and an exact score under any
    process (``dim``, ``sample(n, generator)``, ``log_prob(x)``, ``score_model(process)``; a
    :class:`sdeflow.GaussianMixture` qualifies; see :mod:`sdeflow.bench.targets`)."""


@hookspec
def sdeflow_register_metrics(registry) -> None:  # type: ignore[no-untyped-def]
    """Register sample-quality metrics for ``sdeflow bench``: ``registry.add(name, factory)`` where
    ``factory()`` returns a callable ``metric(samples, reference, target) -> float`` (see
    :class:`sdeflow.bench.metrics.Metric`)."""
