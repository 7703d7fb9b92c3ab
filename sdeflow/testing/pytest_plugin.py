"""pytest plugin running the conformance kit on the components a plugin author names.

It is opt-in (there is deliberately no ``pytest11`` entry point: auto-loading would import
sdeflow and torch into every pytest run of every environment where sdeflow is installed).
Load it with ``-p sdeflow.testing.pytest_plugin`` (command line or ``addopts``) or with
``pytest_plugins = ["sdeflow.testing.pytest_plugin"]`` in a top-level ``conftest.py``, then
select components:

* ``--sdeflow-plugin NAME`` (repeatable) or the ini option ``sdeflow_plugins`` (one name a
  line): every process, sampler and model registered by the plugin whose entry-point name is
  ``NAME``, with default options; ``KIND:NAME`` there selects one component (of any plugin). A
  component name given where a plugin name is expected is a usage error naming its plugin;
* the ini option ``sdeflow_components``, one component a line:
  ``KIND:NAME [OPTIONS] [SETTINGS]``, with ``OPTIONS`` a JSON object of the component's
  options and ``SETTINGS`` a JSON object for the kit: ``shape`` (models: the input shape, e.g.
  ``[8, 3]``; inferred from a ``dim`` or ``in_channels`` + ``image_size`` option otherwise),
  ``tol`` (samplers: the bias allowed in the distribution checks, default 0.05), ``process``
  (samplers: a registered process to sample under instead of the kit's reference OU process).
  Several lines may name one component (each is a configuration of its own); lines for a
  component also selected through its plugin replace its default configuration;
* ``--sdeflow-every-process`` (or the ini option ``sdeflow_every_process = true``): every sampler
  configuration without a ``process`` setting also runs its process-dependent checks under each
  registered process with Gaussian marginals (ids ``sampler:NAME{...}{"process":"vp"}::check``).

The order check, :func:`~sdeflow.testing.check_sampler_without_gaussian_marginals` and
:func:`~sdeflow.testing.check_sampler_refuses_incompatible` run on the kit's own processes whatever
the ``process`` setting.

Every selected component gets one test per check of :data:`~sdeflow.testing.PROCESS_CHECKS`,
:data:`~sdeflow.testing.SAMPLER_CHECKS` or :data:`~sdeflow.testing.MODEL_CHECKS`, through the
``sdeflow_case`` fixture. The test itself is :func:`sdeflow.testing.suite.test_sdeflow_conformance`:
import it into a test module, or run the kit with no test file at all::

    pytest -p sdeflow.testing.pytest_plugin --sdeflow-plugin NAME --pyargs sdeflow.testing.suite
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

KINDS = ("process", "sampler", "model")


@dataclass(frozen=True)
class ComponentSpec:
    """A component selected for the kit: its kind, name, options and kit settings."""

    kind: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    #: the checks to run (``None``: every check of its kind)
    checks: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        """``kind:name``."""
        return f"{self.kind}:{self.name}"

    @property
    def id(self) -> str:
        """``kind:name``, followed by the options and settings (compact JSON) when there are any."""
        extra = "".join(json.dumps(d, separators=(",", ":"), sort_keys=True) for d in (self.options, self.settings)
                        if d)
        return self.label + extra


@dataclass(frozen=True)
class Case:
    """One check on one component: what ``sdeflow_case`` holds; :meth:`run` runs it."""

    spec: ComponentSpec
    check: str

    @property
    def id(self) -> str:
        """Test id ``kind:name[options][settings]::check``."""
        return f"{self.spec.id}::{self.check}"

    def run(self) -> None:
        """Build the component from the registry and run the check (a check that does not
        apply to it is skipped with its reason)."""
        from .common import CheckNotApplicable

        try:
            self._run()
        except CheckNotApplicable as exc:
            pytest.skip(str(exc))

    def _run(self) -> None:
        import sdeflow

        from . import MODEL_CHECKS, PROCESS_CHECKS, SAMPLER_CHECKS

        spec = self.spec
        if spec.kind == "process":
            PROCESS_CHECKS[self.check](sdeflow.create_process(spec.name, **spec.options))
        elif spec.kind == "sampler":
            from .samplers import PROCESS_CHECKS_OF_SAMPLERS

            check = SAMPLER_CHECKS[self.check]
            kwargs: dict[str, Any] = {}
            params = inspect.signature(check).parameters
            if "tol" in params and "tol" in spec.settings:
                kwargs["tol"] = float(spec.settings["tol"])
            if self.check in PROCESS_CHECKS_OF_SAMPLERS and "process" in spec.settings:
                kwargs["process"] = sdeflow.create_process(spec.settings["process"])
            check(functools.partial(sdeflow.create_sampler, spec.name, **spec.options), **kwargs)
        else:
            MODEL_CHECKS[self.check](functools.partial(sdeflow.create_model, spec.name, **spec.options),
                                     model_shape(spec))


def model_shape(spec: ComponentSpec) -> tuple[int, ...]:
    """The input shape for a model's checks: the ``shape`` setting, else ``(4, dim)`` from a
    ``dim`` option, else ``(2, in_channels, image_size, image_size)``."""
    if "shape" in spec.settings:
        return tuple(int(s) for s in spec.settings["shape"])
    opts = spec.options
    if "dim" in opts:
        return (4, int(opts["dim"]))
    if "in_channels" in opts and "image_size" in opts:
        s = int(opts["image_size"])
        return (2, int(opts["in_channels"]), s, s)
    raise pytest.UsageError(
        f"sdeflow kit: cannot tell the input shape of {spec.label}; give it in the sdeflow_components ini option, "
        f'e.g. {spec.label} {{"dim": 3}} or {spec.label} {{...}} {{"shape": [8, 3]}}')


def parse_component_line(line: str) -> ComponentSpec:
    """Parse ``KIND:NAME [OPTIONS-JSON] [SETTINGS-JSON]`` (see the module docstring).

    Raises:
        pytest.UsageError: a malformed line, naming what is wrong and the valid form.
    """
    form = 'KIND:NAME [{"option": value, ...}] [{"shape": [...], "tol": 0.05, "process": "vp"}]'
    head, _, rest = line.strip().partition(" ")
    kind, sep, name = head.partition(":")
    if not sep or kind not in KINDS or not name:
        raise pytest.UsageError(f"sdeflow_components: {line!r} is not {form}; KIND is one of {', '.join(KINDS)}")
    objs: list[dict[str, Any]] = []
    decoder, rest = json.JSONDecoder(), rest.strip()
    while rest:
        try:
            obj, end = decoder.raw_decode(rest)
        except json.JSONDecodeError as exc:
            raise pytest.UsageError(f"sdeflow_components: {line!r}: bad JSON ({exc}); the form is {form}") from exc
        if not isinstance(obj, dict):
            raise pytest.UsageError(f"sdeflow_components: {line!r}: expected JSON objects; the form is {form}")
        objs.append(obj)
        rest = rest[end:].strip()
    if len(objs) > 2:
        raise pytest.UsageError(f"sdeflow_components: {line!r}: at most two JSON objects; the form is {form}")
    objs += [{}] * (2 - len(objs))
    unknown = sorted(set(objs[1]) - {"shape", "tol", "process"})
    if unknown:
        raise pytest.UsageError(f"sdeflow_components: {line!r}: unknown kit setting(s) {', '.join(unknown)}; "
                                "valid: shape, tol, process")
    return ComponentSpec(kind, name, objs[0], objs[1])


def _component_hint(name: str) -> str:
    """Where ``name`` is registered as a component, as advice on what to pass instead."""
    from ..plugins.manager import get_manager

    mgr = get_manager()
    owners = [(kind, info.name) for info in mgr.plugins.values()
              for kind, names in info.components.items() if name in names]
    hints = []
    for kind, owner in owners:
        if kind in KINDS:
            hints.append(f"{name!r} is a {kind} registered by the plugin {owner!r}: pass --sdeflow-plugin {owner} "
                         f"(all its components) or --sdeflow-plugin {kind}:{name} (this one)")
        else:
            hints.append(f"{name!r} is a {kind} registered by the plugin {owner!r}; the kit checks processes, "
                         f"samplers and models: pass --sdeflow-plugin {owner}")
    if not hints:
        close = difflib.get_close_matches(name, list(mgr.plugins), n=3)
        if close:
            hints.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
    return ("; " + "; ".join(hints)) if hints else ""


def plugin_components(plugin: str) -> list[ComponentSpec]:
    """Every process, sampler and model registered by the plugin with entry-point name ``plugin``,
    or the one component ``KIND:NAME`` (any plugin's).

    Raises:
        pytest.UsageError: no such plugin or component (naming the plugin a component name belongs
            to), or the plugin failed to load (with its error).
    """
    from ..plugins.manager import get_manager

    mgr = get_manager()
    kind, sep, name = plugin.partition(":")
    if sep:
        if kind not in KINDS:
            raise pytest.UsageError(f"--sdeflow-plugin {plugin}: {kind!r} is not a kind the kit checks; "
                                    f"use {' / '.join(k + ':NAME' for k in KINDS)} or a plugin name")
        known = mgr.registry.names(kind)
        if name not in known:
            raise pytest.UsageError(f"--sdeflow-plugin {plugin}: no {kind} {name!r} is registered; registered "
                                    f"{kind}s: {', '.join(known)}{_component_hint(name)}")
        return [ComponentSpec(kind, name)]
    info = mgr.plugins.get(plugin)
    if info is None:
        raise pytest.UsageError(f"--sdeflow-plugin {plugin}: no sdeflow plugin of that name is installed"
                                f"{_component_hint(plugin)}; installed plugins: " + ", ".join(sorted(mgr.plugins)))
    if not info.ok:
        raise pytest.UsageError(f"--sdeflow-plugin {plugin}: the plugin did not load: "
                                f"{info.error or 'disabled by SDEFLOW_DISABLE_PLUGINS'}")
    specs = [ComponentSpec(kind, name) for kind in KINDS for name in info.components.get(kind, [])]
    if not specs:
        raise pytest.UsageError(f"--sdeflow-plugin {plugin}: it registers no process, sampler or model")
    return specs


def gaussian_process_names() -> list[str]:
    """The registered processes that declare Gaussian marginals (built with default options)."""
    import sdeflow

    return [name for name in sdeflow.list_plugins()["process"]
            if getattr(sdeflow.create_process(name), "gaussian_marginals", False)]


def every_process(specs: list[ComponentSpec]) -> list[ComponentSpec]:
    """``specs`` plus, for every sampler configuration without a ``process`` setting, one configuration
    per registered Gaussian-marginal process that runs the checks depending on the process
    (:data:`~sdeflow.testing.samplers.PROCESS_CHECKS_OF_SAMPLERS`)."""
    from .samplers import PROCESS_CHECKS_OF_SAMPLERS

    names = gaussian_process_names()
    out = list(specs)
    for spec in specs:
        if spec.kind == "sampler" and "process" not in spec.settings:
            out += [ComponentSpec("sampler", spec.name, spec.options, {**spec.settings, "process": name},
                                  checks=PROCESS_CHECKS_OF_SAMPLERS) for name in names]
    return out


def selected_components(config: pytest.Config) -> list[ComponentSpec]:
    """The components selected by ``--sdeflow-plugin``, ``sdeflow_plugins`` and ``sdeflow_components``
    (and, with ``--sdeflow-every-process``, their sampler configurations under every process)."""
    specs: dict[str, list[ComponentSpec]] = {}
    plugins = list(config.getini("sdeflow_plugins")) + list(config.getoption("sdeflow_plugin") or [])
    for plugin in dict.fromkeys(p.strip() for p in plugins if p.strip()):
        for spec in plugin_components(plugin):
            specs[spec.label] = [spec]
    configured: dict[str, list[ComponentSpec]] = {}
    for line in config.getini("sdeflow_components"):
        if line.strip() and not line.strip().startswith("#"):
            spec = parse_component_line(line)
            configured.setdefault(spec.label, []).append(spec)
    specs.update(configured)
    out = [spec for group in specs.values() for spec in group]
    if config.getoption("sdeflow_every_process") or config.getini("sdeflow_every_process"):
        out = every_process(out)
    return out


def cases(specs: list[ComponentSpec]) -> list[Case]:
    """One :class:`Case` per component and check (the checks its configuration selects)."""
    from . import MODEL_CHECKS, PROCESS_CHECKS, SAMPLER_CHECKS

    table: dict[str, dict[str, Any]] = {"process": PROCESS_CHECKS, "sampler": SAMPLER_CHECKS, "model": MODEL_CHECKS}
    return [Case(spec, check) for spec in specs for check in table[spec.kind]
            if spec.checks is None or check in spec.checks]


# ---------------------------------------------------------------------------------- pytest hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    """``--sdeflow-plugin`` and the ini options ``sdeflow_plugins`` / ``sdeflow_components``."""
    group = parser.getgroup("sdeflow", "sdeflow conformance kit")
    group.addoption("--sdeflow-plugin", action="append", default=[], metavar="NAME",
                    help="run the sdeflow conformance kit on every component of the plugin NAME (entry-point name), "
                         "or on the one component KIND:NAME (e.g. sampler:my_sampler)")
    group.addoption("--sdeflow-every-process", action="store_true", default=False,
                    help="also run every sampler's process-dependent checks under every registered process with "
                         "Gaussian marginals")
    parser.addini("sdeflow_plugins", "sdeflow plugins (entry-point names, or KIND:NAME) whose components the kit "
                  "checks", type="linelist", default=[])
    parser.addini("sdeflow_every_process", "as --sdeflow-every-process", type="bool", default=False)
    parser.addini("sdeflow_components", "components for the sdeflow kit: KIND:NAME [OPTIONS-JSON] [SETTINGS-JSON]",
                  type="linelist", default=[])


def pytest_configure(config: pytest.Config) -> None:
    """Select the components once per session (a model whose input shape is unknown is a usage error)."""
    specs = selected_components(config)
    for spec in specs:
        if spec.kind == "model":
            model_shape(spec)
    config.stash[_SPECS] = specs


def pytest_report_header(config: pytest.Config) -> str | None:
    """Name the components the kit checks."""
    specs = config.stash.get(_SPECS, [])
    return "sdeflow kit: " + ", ".join(s.id for s in specs) if specs else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sdeflow_case`` over every selected component and check."""
    if "sdeflow_case" not in metafunc.fixturenames:
        return
    found = cases(metafunc.config.stash.get(_SPECS, []))
    if not found:
        metafunc.parametrize("sdeflow_case", [pytest.param(None, marks=pytest.mark.skip(
            reason="no sdeflow components selected: pass --sdeflow-plugin NAME or set sdeflow_plugins / "
                   "sdeflow_components in the pytest configuration"))], ids=["no-components"])
        return
    metafunc.parametrize("sdeflow_case", found, ids=[c.id for c in found])


_SPECS = pytest.StashKey[list[ComponentSpec]]()
