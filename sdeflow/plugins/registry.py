"""The component registry filled by plugins' hooks."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import PluginConflictError, UnknownComponentError
from ..utils.options import constructor_options

#: component kinds and the hook that registers each
KINDS: dict[str, str] = {
    "process": "sdeflow_register_processes",
    "model": "sdeflow_register_models",
    "sampler": "sdeflow_register_samplers",
    "predictor": "sdeflow_register_predictors",
    "corrector": "sdeflow_register_correctors",
    "target": "sdeflow_register_targets",
    "metric": "sdeflow_register_metrics",
}
#: the kinds listed by :func:`sdeflow.list_plugins` (the public contract)
CONTRACT_KINDS: tuple[str, ...] = ("process", "model", "sampler")


@dataclass(frozen=True)
class Component:
    """One registered component: its kind, name, factory and the plugin that registered it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    source: str
    description: str = ""

    def options(self) -> dict[str, Any]:
        """Keyword options of the factory with their defaults (``inspect.Parameter.empty`` if required)."""
        return constructor_options(self.factory)

    def accepts_any_option(self) -> bool:
        """True when the factory takes ``**kwargs`` (options cannot be checked up front)."""
        target = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())
        except (TypeError, ValueError):
            return True


@dataclass
class Registry:
    """Components by kind and name. Plugins see it through :class:`RegistryView`."""

    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def add(self, kind: str, name: str, factory: Callable[..., Any], source: str, description: str = "") -> None:
        """Add a component; a name already taken raises :class:`PluginConflictError` naming both sources."""
        if kind not in self.components:
            raise ValueError(f"unknown component kind {kind!r}; valid: {', '.join(self.components)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugin {source!r}: a {kind} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(f"plugin {source!r}: the factory for {kind} {name!r} is not callable")
        have = self.components[kind].get(name)
        if have is not None:
            raise PluginConflictError(
                f"{kind} name {name!r} is registered twice: by plugin {have.source!r} and by plugin {source!r}; "
                f"disable one with SDEFLOW_DISABLE_PLUGINS={source}"
            )
        self.components[kind][name] = Component(kind, name, factory, source, description or _doc_line(factory))

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; :class:`UnknownComponentError` lists the valid names."""
        try:
            return self.components[kind][name]
        except KeyError:
            raise UnknownComponentError(kind, name, self.components.get(kind, {})) from None

    def names(self, kind: str) -> list[str]:
        """Sorted names of the registered components of ``kind``."""
        return sorted(self.components[kind])


def _doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class RegistryView:
    """What a plugin's hook receives: ``registry.add(name, factory, description="")``.

    It fixes the component kind (by hook) and the source (the plugin's name), so a plugin can
    only add components under its own name.
    """

    def __init__(self, registry: Registry, kind: str, source: str) -> None:
        self._registry, self.kind, self.source = registry, kind, source
        self.added: list[str] = []

    def add(self, name: str, factory: Callable[..., Any], description: str = "") -> None:
        """Register ``factory`` under ``name`` for this hook's component kind."""
        self._registry.add(self.kind, name, factory, self.source, description)
        self.added.append(name)
