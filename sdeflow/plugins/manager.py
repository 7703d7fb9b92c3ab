"""Discovery and loading of plugins through the ``sdeflow`` entry-point group.

Built-in plugins are found exactly like third-party ones: by their entry points. One plugin
that fails to import or to register is reported (a warning, and ``sdeflow plugins`` shows the
error) and the others still load; ``SDEFLOW_STRICT_PLUGINS=1`` turns the failure into an
exception. ``SDEFLOW_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name. Two plugins
registering one name make that name unusable until one of them is disabled: using it raises
:class:`sdeflow.errors.PluginConflictError` naming both.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ..errors import PluginConflictError, PluginError
from . import hookspecs
from .registry import KINDS, Registry, RegistryView

ENTRY_POINT_GROUP = "sdeflow"
STRICT_ENV = "SDEFLOW_STRICT_PLUGINS"
DISABLE_ENV = "SDEFLOW_DISABLE_PLUGINS"


HOOK_PREFIX = "sdeflow_register"


@dataclass
class PluginInfo:
    """What ``sdeflow plugins`` shows for one plugin.

    Attributes:
        name: the entry-point name (or the name given to :func:`register_plugin`).
        target: what the entry point points at (``module`` or ``module:object``).
        distribution, version: the installed distribution that declares the entry point.
        components: names the plugin registered, by kind.
        error: why the plugin is not loaded (``None`` when it is).
        disabled: skipped because of ``SDEFLOW_DISABLE_PLUGINS``.
        conflicts: ``"kind 'name' (also registered by 'other')"`` for every name it shares.
    """

    name: str
    target: str
    distribution: str | None = None
    version: str | None = None
    components: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    error: str | None = None
    disabled: bool = False
    conflicts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the plugin loaded and registered without error."""
        return self.error is None and not self.disabled


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _disabled() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _dist_name(dist: Any) -> str | None:
    if dist is None:
        return None
    name = getattr(dist, "name", None)
    if name is None:
        try:
            name = dist.metadata["Name"]
        except KeyError:
            name = None
    return name


class _PluggyManager(pluggy.PluginManager):
    """pluggy's manager, also accepting hook functions that lack the ``@sdeflow.hookimpl`` marker.

    An unmarked function named ``sdeflow_register...`` would otherwise be ignored silently (pytest
    accepts unmarked ``pytest_*`` functions for the same reason); a misspelled one is then
    reported as an unknown hook instead of doing nothing.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str):  # type: ignore[no-untyped-def]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or not name.startswith(HOOK_PREFIX):
            return opts
        try:
            attr = inspect.getattr_static(plugin, name)
        except AttributeError:
            return None
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if inspect.isfunction(attr) or inspect.ismethod(attr):
            return {}
        return None


class PluginManager:
    """Loads plugins and holds the component :class:`~sdeflow.plugins.registry.Registry`."""

    def __init__(self) -> None:
        self.pm = _PluggyManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        #: (kind, name) -> every plugin that registered it, first (the one holding it) first
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        #: problems found while loading that concern no single plugin
        self.notes: list[str] = []

    # ------------------------------------------------------------------ discovery
    def load_entry_points(self) -> None:
        """Load every plugin of the ``sdeflow`` entry-point group (sorted by name).

        An entry-point name is the plugin's identity (``SDEFLOW_DISABLE_PLUGINS`` uses it). The
        same entry point seen twice (one distribution visible twice on ``sys.path``) loads once;
        two different entry points with one name are reported as an error naming both, and the
        first on ``sys.path`` is kept.
        """
        disabled = _disabled()
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)  # stable: sys.path order
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = _dist_name(dist)
            have = self.plugins.get(ep.name)
            if have is not None:
                if have.target == ep.value and have.distribution == dist_name:
                    continue  # the same distribution visible twice on sys.path
                key = f"{ep.name}@{dist_name or ep.value}"
                info = PluginInfo(name=key, target=ep.value, distribution=dist_name,
                                  version=dist.version if dist is not None else None)
                self.plugins[key] = info
                self._fail(info, f"entry point {ep.name!r} of the {ENTRY_POINT_GROUP!r} group is declared both by "
                                 f"distribution {have.distribution!r} ({have.target}) and by distribution "
                                 f"{dist_name!r} ({ep.value}); only the first is loaded, uninstall one of them",
                           None)
                continue
            info = PluginInfo(
                name=ep.name,
                target=ep.value,
                distribution=dist_name,
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
        unknown = sorted(disabled - {ep.name for ep in eps})
        if unknown:
            note = (f"{DISABLE_ENV} names no installed plugin: {', '.join(unknown)}; installed plugins: "
                    + (", ".join(sorted({ep.name for ep in eps})) or "(none)"))
            self.notes.append(note)
            warnings.warn(note, RuntimeWarning, stacklevel=3)

    def register(self, plugin: Any, name: str | None = None, strict: bool = True) -> PluginInfo:
        """Register a plugin object (module or instance with hook implementations) directly.

        Args:
            plugin: a module, class or instance with ``sdeflow_register_*`` hook implementations.
            name: the plugin's name (default: the module's ``__name__`` or the type's name).
            strict: raise on any error (user code calling) instead of reporting it.

        Raises:
            PluginError: the name is taken, the object is already registered, a hook is
                invalid or raised (nothing of the plugin stays registered).
            PluginConflictError: it registers a component name another plugin already has.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        have = self.plugins.get(name)
        if have is not None and not have.error:
            raise PluginError(f"a plugin named {name!r} is already registered ({have.target}); pass another name")
        other = self.pm.get_name(plugin)
        if other is not None:
            raise PluginError(f"this plugin object is already registered as {other!r}")
        info = PluginInfo(name=name, target=repr(plugin))
        self.plugins[name] = info
        try:
            self._register(plugin, info, strict=strict)
        except PluginError:
            if have is not None:
                self.plugins[name] = have
            else:
                del self.plugins[name]
            raise
        return info

    # ------------------------------------------------------------------ internals
    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None, strict: bool | None = None) -> None:
        info.error = message
        if strict if strict is not None else _strict():
            cls = PluginConflictError if isinstance(exc, PluginConflictError) else PluginError
            raise cls(f"sdeflow plugin {info.name!r}: {message}") from exc
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip() if exc else ""
        warnings.warn(
            f"sdeflow plugin {info.name!r} was not loaded: {message}"
            + (f" ({detail})" if detail and str(exc) not in message else "")
            + f"; the other plugins are unaffected (set {STRICT_ENV}=1 to make this an error)",
            RuntimeWarning,
            stacklevel=4,
        )

    def _hook_problems(self, plugin: Any) -> list[str]:
        """Problems with the hook implementations of a registered ``plugin``: unknown hook names
        (with the closest valid one) and hook wrappers."""
        valid = list(KINDS.values())
        out: list[str] = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
            if not caller.has_spec():
                if all(i.optionalhook for i in impls):
                    continue
                close = difflib.get_close_matches(caller.name, valid, n=1, cutoff=0.6)
                out.append(f"unknown hook {caller.name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                           + f"; valid hooks: {', '.join(valid)}")
            elif any(i.hookwrapper or getattr(i, "wrapper", False) for i in impls):
                out.append(f"hook {caller.name!r} is declared as a wrapper; sdeflow hooks are plain functions")
        return out

    def _register(self, plugin: Any, info: PluginInfo, strict: bool | None = None) -> None:
        strict_now = _strict() if strict is None else strict
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001 - pluggy's validation errors (e.g. wrong argument names)
            self._fail(info, f"invalid hook implementation: {exc} (every sdeflow hook takes one argument, "
                             "'registry')", exc, strict_now)
            return
        problems = self._hook_problems(plugin)
        impls = [(kind, impl) for kind, hook_name in KINDS.items()
                 for impl in getattr(self.pm.hook, hook_name).get_hookimpls() if impl.plugin is plugin]
        if not problems and not impls:
            problems.append(f"it defines no sdeflow hook implementation (expected any of {', '.join(KINDS.values())}"
                            " decorated with @sdeflow.hookimpl)")
        if problems:
            self.pm.unregister(plugin)
            self._fail(info, "; ".join(problems), None, strict_now)
            return
        views: list[_ConflictRecordingView] = []
        try:
            for kind, impl in impls:
                view = _ConflictRecordingView(self, kind, info.name, strict_now)
                views.append(view)
                impl.function(**{arg: view for arg in impl.argnames})
        except Exception as exc:  # noqa: BLE001 - a broken hook must not take the others down
            for view in views:  # nothing of a failed plugin stays registered
                view.rollback()
            self.pm.unregister(plugin)
            self._fail(info, f"registration hook raised {type(exc).__name__}: {exc}", exc, strict_now)
            return
        for view in views:
            info.components[view.kind].extend(view.added)
            for n in view.clashes:
                info.conflicts.append(f"{view.kind} {n!r} (also registered by {self.conflicts[(view.kind, n)][0]!r})")
                first = self.plugins.get(self.conflicts[(view.kind, n)][0])
                if first is not None:
                    first.conflicts.append(f"{view.kind} {n!r} (also registered by {info.name!r})")

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
    """A registry view that records name clashes instead of aborting the plugin's hook (unless strict)."""

    def __init__(self, manager: PluginManager, kind: str, source: str, strict: bool) -> None:
        super().__init__(manager.registry, kind, source)
        self._manager, self._strict = manager, strict
        self.clashes: list[str] = []

    def add(self, name: str, factory: Any, description: str = "") -> None:
        try:
            super().add(name, factory, description)
        except PluginConflictError as exc:
            if self._strict:
                raise
            first = self._registry.components[self.kind][name].source
            sources = self._manager.conflicts.setdefault((self.kind, name), [first])
            sources.append(self.source)
            self.clashes.append(name)
            warnings.warn(f"sdeflow: {exc}; using it raises an error until one plugin is disabled",
                          RuntimeWarning, stacklevel=2)

    def rollback(self) -> None:
        """Remove everything this view added and the clashes it recorded."""
        for n in self.added:
            self._registry.components[self.kind].pop(n, None)
        for n in self.clashes:
            sources = self._manager.conflicts.get((self.kind, n), [])
            if self.source in sources:
                sources.remove(self.source)
            if len(sources) < 2:
                self._manager.conflicts.pop((self.kind, n), None)
        self.added, self.clashes = [], []


_lock = threading.RLock()
_manager: PluginManager | None = None
_loading = False
_direct: list[tuple[Any, str]] = []


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loading entry points on first use.

    Raises:
        PluginError: a plugin called the sdeflow API while plugins were loading (from its
            import or a hook), or ``SDEFLOW_STRICT_PLUGINS=1`` and a plugin failed.
    """
    global _manager, _loading
    mgr = _manager
    if mgr is not None:
        return mgr
    with _lock:
        if _manager is not None:
            return _manager
        if _loading:  # re-entered from a plugin's import or hook on this thread
            raise PluginError(
                "a plugin used the sdeflow registry (list_plugins / create_process / create_model / "
                "create_sampler) while plugins were still loading, i.e. at import time or inside a "
                "registration hook; look components up when they are used instead"
            )
        _loading = True
        try:
            mgr = PluginManager()
            mgr.load_entry_points()
            for plugin, name in _direct:
                try:
                    mgr.register(plugin, name, strict=_strict())
                except PluginError as exc:
                    if _strict():
                        raise
                    warnings.warn(f"sdeflow: plugin {name!r} given to register_plugin could not be registered "
                                  f"again: {exc}", RuntimeWarning, stacklevel=2)
            _manager = mgr
        finally:
            _loading = False
        return mgr


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
    through the ``sdeflow`` entry-point group without it. It survives :func:`reload_plugins`.

    Raises:
        PluginError: invalid or raising hooks, or a name already taken; nothing is registered then.
        PluginConflictError: a component name another plugin already registered.
    """
    with _lock:
        mgr = get_manager()
        info = mgr.register(plugin, name)
        _direct.append((plugin, info.name))
    return info


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (and its components).

    Raises:
        PluginError: no plugin of that name was registered with :func:`register_plugin`
            (installed plugins are switched off with ``SDEFLOW_DISABLE_PLUGINS``).
    """
    global _direct
    with _lock:
        if not any(n == name for _, n in _direct):
            listing = ", ".join(repr(n) for _, n in _direct) or "(none)"
            raise PluginError(f"no plugin named {name!r} was registered with register_plugin; registered: "
                              f"{listing} (installed plugins are disabled with {DISABLE_ENV})")
        _direct = [(p, n) for p, n in _direct if n != name]
        reload_plugins()
