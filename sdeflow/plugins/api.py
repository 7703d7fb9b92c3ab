"""The public factory functions: ``list_plugins`` and ``create_process/model/sampler``."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..core.process import ForwardProcess
from ..core.sampler import Sampler
from ..errors import OptionError, PluginError, UnknownComponentError
from .manager import PluginInfo, get_manager
from .registry import CONTRACT_KINDS


def list_plugins() -> dict[str, list[str]]:
    """Names of every registered component by kind: ``{"process": [...], "model": [...], "sampler": [...]}``."""
    reg = get_manager().registry
    return {kind: reg.names(kind) for kind in CONTRACT_KINDS}


def list_components() -> dict[str, list[str]]:
    """Like :func:`list_plugins`, with every component kind (also ``predictor``, ``corrector``, ``target``
    and ``metric``)."""
    reg = get_manager().registry
    return {kind: reg.names(kind) for kind in reg.components}


def plugin_info(name: str) -> PluginInfo:
    """What ``sdeflow plugins`` shows for the plugin ``name`` (its entry-point name): what the entry point
    names, the distribution and version declaring it, the components it registered, its load error.

    Raises:
        UnknownComponentError: no plugin of that name (the message lists the loaded ones).
    """
    plugins = get_manager().plugins
    if name not in plugins:
        raise UnknownComponentError("plugin", name, plugins)
    return plugins[name]


def create_component(kind: str, name: str, **options: Any) -> Any:
    """Build any registered component (e.g. ``create_component("corrector", "langevin", snr=0.16)``)."""
    return _create(kind, name, options)[0]


def component_options(kind: str, name: str) -> dict[str, Any]:
    """Options of component ``name`` of ``kind`` with their defaults (``inspect.Parameter.empty`` = required)."""
    return get_manager().registry.get(kind, name).options()


def _create(kind: str, name: str, options: dict[str, Any]) -> Any:
    mgr = get_manager()
    comp = mgr.registry.get(kind, name)
    mgr.check_usable(kind, name)
    known = comp.options()
    listing = ", ".join(f"{k}" + ("" if v is inspect.Parameter.empty else f"={v!r}") for k, v in known.items())
    if not comp.accepts_any_option():
        bad = sorted(set(options) - set(known))
        if bad:
            raise OptionError(
                f"{kind} {name!r} (plugin {comp.source!r}) got unknown option(s) {', '.join(bad)}; "
                f"valid options: {listing or '(none)'}"
            )
    missing = [k for k, v in known.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        raise OptionError(
            f"{kind} {name!r} (plugin {comp.source!r}) needs option(s) {', '.join(missing)}, e.g. "
            f"create_{kind}({name!r}, {missing[0]}=...); valid options: {listing}"
        )
    obj = comp.factory(**options)
    remember_component(obj, kind, name, options)
    return obj, comp


#: attribute under which :func:`create_process` / :func:`create_model` / ... record how an object was built
SPEC_ATTR = "_sdeflow_component"


def remember_component(obj: Any, kind: str, name: str, options: dict[str, Any]) -> None:
    """Record ``{"kind", "name", "options"}`` on ``obj`` (read by checkpoints to rebuild it by name;
    objects that take no attributes are left alone)."""
    try:
        obj.__dict__[SPEC_ATTR] = {"kind": kind, "name": name, "options": dict(options)}
    except (AttributeError, TypeError):
        pass


def component_spec(obj: Any) -> dict[str, Any] | None:
    """``{"kind", "name", "options"}`` of an object built by a ``create_*`` function, else ``None``."""
    spec = getattr(obj, "__dict__", {}).get(SPEC_ATTR)
    return dict(spec) if isinstance(spec, dict) else None


def create_process(name: str, **options: Any) -> ForwardProcess:
    """Build the forward process registered as ``name`` (e.g. ``"vp"``, ``"ve"``, ``"subvp"``).

    Raises:
        UnknownComponentError: no plugin registered ``name`` (the message lists valid names).
        OptionError: an option the process does not take (the message lists valid ones).
    """
    obj, comp = _create("process", name, options)
    if not isinstance(obj, ForwardProcess):
        raise PluginError(f"process {name!r} from plugin {comp.source!r} returned {type(obj).__name__}, "
                          "not a sdeflow.ForwardProcess")
    return obj


def create_model(name: str, **options: Any) -> nn.Module:
    """Build the network registered as ``name`` (e.g. ``create_model("mlp", dim=2)``), called as ``net(x, t_cond)``."""
    obj, comp = _create("model", name, options)
    if not isinstance(obj, nn.Module):
        raise PluginError(f"model {name!r} from plugin {comp.source!r} returned {type(obj).__name__}, "
                          "not a torch.nn.Module")
    return obj


def create_sampler(name: str, **options: Any) -> Sampler:
    """Build the sampler registered as ``name`` (e.g. ``create_sampler("ode", method="dopri5")``)."""
    obj, comp = _create("sampler", name, options)
    if not isinstance(obj, Sampler):
        raise PluginError(f"sampler {name!r} from plugin {comp.source!r} returned {type(obj).__name__}, "
                          "not a sdeflow.Sampler")
    return obj
