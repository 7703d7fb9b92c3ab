"""Discovery and loading of plugins through the ``sdeflow`` entry-point group.

Built-in plugins are found exactly like third-party ones: by their entry points. One plugin
that fails to import or to register is reported (a warning, and ``sdeflow plugins`` shows the
error) and the others still load; ``SDEFLOW_STRICT_PLUGINS=1`` turns the failure into an
exception. ``SDEFLOW_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name. Two plugins
registering one name make that name unusable until one of them is disabled: using it raises
:class:`sdeflow.errors.PluginConflictError` naming both.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginConflictError, PluginError
from .registry import KINDS, Registry, RegistryView

ENTRY_POINT_GROUP = "sdeflow"
STRICT_ENV = "SDEFLOW_STRICT_PLUGINS"
DISABLE_ENV = "SDEFLOW_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    """What ``sdeflow plugins`` shows for one plugin."""

    name: str
    target: str
    distribution: str | None = None
    version: str | None = None
    components: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    error: str | None = None
    disabled: bool = False

    @property
    def ok(self) -> bool:
        """True when the plugin loaded and registered without error."""
        return self.error is None and not self.disabled


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _disabled() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


class PluginManager:
    """Loads plugins and holds the component :class:`~sdeflow.registry.Registry`."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        self.conflicts: dict[tuple[str, str], list[str]] = {}

    # ------------------------------------------------------------------ discovery
    def load_entry_points(self) -> None:
        """Load every plugin of the ``sdeflow`` entry-point group (sorted by name)."""
        disabled = _disabled()
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        seen: set[str] = set()
        for ep in eps:
            if ep.name in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ep.name)
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                target=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            self.plugins[ep.name] = info
            if ep.name in disabled:
                info.disabled = True
                continue
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: BLE001 - any import failure is reported, not fatal
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self._fail(info, f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}", exc)
                continue
            self._register(module, info)

    def register(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a plugin object (module or instance with hook implementations) directly.

        Errors raise at once: this is user code calling, not discovery.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.plugins and self.plugins[name].ok:
            raise PluginError(f"a plugin named {name!r} is already registered")
        info = PluginInfo(name=name, target=repr(plugin))
        self.plugins[name] = info
        self._register(plugin, info, strict=True)
        return info

    # ------------------------------------------------------------------ internals
    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None, strict: bool | None = None) -> None:
        info.error = message
        if strict if strict is not None else _strict():
            raise PluginError(f"sdeflow plugin {info.name!r}: {message}") from exc
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip() if exc else ""
        warnings.warn(
            f"sdeflow plugin {info.name!r} was not loaded: {message}"
            + (f" ({detail})" if detail and detail not in message else "")
            + f"; the other plugins are unaffected (set {STRICT_ENV}=1 to make this an error)",
            RuntimeWarning,
            stacklevel=3,
        )

    def _register(self, plugin: Any, info: PluginInfo, strict: bool | None = None) -> None:
        try:
            self.pm.register(plugin, name=info.name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(info, f"invalid hook implementations: {exc}", exc, strict)
            return
        added: list[tuple[str, str]] = []
        try:
            for kind, hook_name in KINDS.items():
                caller = getattr(self.pm.hook, hook_name)
                for impl in caller.get_hookimpls():
                    if impl.plugin_name != info.name:
                        continue
                    view = _ConflictRecordingView(self, kind, info.name)
                    impl.function(**{arg: view for arg in impl.argnames})
                    added.extend((kind, n) for n in view.added)
        except Exception as exc:  # noqa: BLE001 - a broken hook must not take the others down
            for kind, n in added:
                self.registry.components[kind].pop(n, None)
            self.pm.unregister(plugin)
            self._fail(info, f"registration hook raised {type(exc).__name__}: {exc}", exc, strict)
            return
        for kind, n in added:
            info.components[kind].append(n)

    def check_usable(self, kind: str, name: str) -> None:
        """Raise :class:`PluginConflictError` if two plugins registered ``name``."""
        sources = self.conflicts.get((kind, name))
        if sources:
            raise PluginConflictError(
                f"{kind} name {name!r} is registered by more than one plugin: "
                + " and ".join(repr(s) for s in sources)
                + f"; disable all but one with {DISABLE_ENV}=<plugin>"
            )


class _ConflictRecordingView(RegistryView):
    """A registry view that records name clashes instead of aborting the plugin's hook."""

    def __init__(self, manager: PluginManager, kind: str, source: str) -> None:
        super().__init__(manager.registry, kind, source)
        self._manager = manager

    def add(self, name: str, factory: Any, description: str = "") -> None:
        try:
            super().add(name, factory, description)
        except PluginConflictError as exc:
            first = self._registry.components[self.kind][name].source
            sources = self._manager.conflicts.setdefault((self.kind, name), [first])
            sources.append(self.source)
            if _strict():
                raise PluginError(str(exc)) from exc
            warnings.warn(f"sdeflow: {exc}", RuntimeWarning, stacklevel=2)


_lock = threading.Lock()
_manager: PluginManager | None = None
_direct: list[tuple[Any, str | None]] = []


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    global _manager
    with _lock:
        if _manager is None:
            mgr = PluginManager()
            mgr.load_entry_points()
            for plugin, name in _direct:
                mgr.register(plugin, name)
            _manager = mgr
        return _manager


def reload_plugins() -> PluginManager:
    """Forget loaded plugins and discover them again (e.g. after installing one at run time).

    Plugins registered with :func:`register_plugin` are registered again.
    """
    global _manager
    importlib.invalidate_caches()
    with _lock:
        _manager = None
    return get_manager()


def register_plugin(plugin: Any, name: str | None = None) -> PluginInfo:
    """Register a plugin object (a module or an object with ``@sdeflow.hookimpl`` methods) at run time.

    Use this for plugins that are not installed as a distribution; installed plugins are found
    through the ``sdeflow`` entry-point group without it.
    """
    mgr = get_manager()
    info = mgr.register(plugin, name)
    _direct.append((plugin, info.name))
    return info


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (and its components)."""
    global _direct
    _direct = [(p, n) for p, n in _direct if n != name]
    reload_plugins()
