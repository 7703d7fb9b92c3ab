"""The package's layers and the plugins' public surface, read from the imports of the source
(``tests/import_graph.py``; ``python tests/import_graph.py`` prints the layer-to-layer graph).

* Each layer of ``sdeflow`` imports only itself and the layers before it: utils -> core -> solvers
  -> plugins -> data/training/interop -> cli/bench (``docs/concepts.md``, Architecture); the kit
  (``sdeflow.testing``) may import every layer, and no module of the core imports a built-in plugin.
* The layers below the applications import nothing inside functions (no hidden cycles).
* Every built-in plugin and the example third-party plugin import only ``sdeflow``,
  ``sdeflow.errors`` and ``sdeflow.solvers`` (their tests also ``sdeflow.testing``), and no plugin
  imports another.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import (
    PLUGIN_PUBLIC,
    PLUGIN_TESTS_PUBLIC,
    breaks_rule,
    imports_of,
    layer_edges,
    layer_of,
    plugin_violations,
)

import sdeflow
import sdeflow.solvers

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins" / "sdeflow_plugins"
EXAMPLE = ROOT / "docs" / "examples" / "sdeflow-example-plugin"


def test_each_layer_imports_only_the_layers_before_it() -> None:
    imports = imports_of(ROOT)
    assert len(imports) > 200
    bad = [f"{i.source}:{i.line} imports {i.target} ({layer_of(i.source)} -> {layer_of(i.target)})"
           for i in imports if breaks_rule(i)]
    assert not bad, "imports against the layer order utils -> core -> solvers -> plugins -> data/training -> " \
                    "cli/bench:\n" + "\n".join(bad)
    edges = layer_edges(imports)
    assert ("solvers", "core") in edges and ("core", "solvers") not in edges


def test_the_layer_rule_catches_a_backward_import(tmp_path: Path) -> None:
    """The check itself: a core module importing the toolkit is reported."""
    (tmp_path / "sdeflow" / "core").mkdir(parents=True)
    (tmp_path / "sdeflow" / "solvers").mkdir()
    for f in ("__init__.py", "core/__init__.py", "solvers/__init__.py", "solvers/x.py"):
        (tmp_path / "sdeflow" / f).write_text("")
    (tmp_path / "sdeflow" / "core" / "y.py").write_text("from ..solvers import x\n")
    assert [breaks_rule(i) for i in imports_of(tmp_path)] == [True]


def test_no_imports_inside_functions_below_the_applications() -> None:
    inner = [f"{i.source}:{i.line} imports {i.target}" for i in imports_of(ROOT)
             if i.in_function and layer_of(i.source) in ("utils", "core", "solvers", "plugins")]
    assert not inner, "imports inside functions (a hidden cycle, or a missing dependency):\n" + "\n".join(inner)


def test_the_core_never_imports_a_plugin() -> None:
    hits = [str(p) for p in (ROOT / "sdeflow").rglob("*.py") if "sdeflow_plugins" in p.read_text()
            and any(line.lstrip().startswith(("import sdeflow_plugins", "from sdeflow_plugins"))
                    for line in p.read_text().splitlines())]
    assert not hits


@pytest.mark.parametrize("plugin", sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists()))
def test_builtin_plugins_import_only_public_names(plugin: str) -> None:
    files = sorted((PLUGINS / plugin).rglob("*.py"))
    assert files
    bad = plugin_violations(files, PLUGIN_PUBLIC, own_package=f"sdeflow_plugins.{plugin}")
    assert not bad, f"plugin {plugin!r} reaches past {', '.join(PLUGIN_PUBLIC)}:\n" + "\n".join(bad)


def test_the_example_plugin_imports_only_public_names() -> None:
    bad = plugin_violations(sorted((EXAMPLE / "src").rglob("*.py")), PLUGIN_PUBLIC)
    bad += plugin_violations(sorted((EXAMPLE / "tests").rglob("*.py")), PLUGIN_TESTS_PUBLIC)
    assert not bad, "\n".join(bad)


def test_the_plugin_check_catches_an_internal_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import sdeflow\nfrom sdeflow.solvers import GridSampler\nfrom sdeflow.core.process import x\n"
                 "from sdeflow_plugins.vp import VPProcess\n")
    assert len(plugin_violations([f], PLUGIN_PUBLIC, own_package="sdeflow_plugins.subvp")) == 2


@pytest.mark.parametrize("module", [sdeflow, sdeflow.solvers])
def test_public_names_are_documented(module: object) -> None:
    """Every name in ``__all__`` exists and has a docstring (constants excepted)."""
    names = module.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing
    undocumented = [n for n in names if callable(getattr(module, n)) and not (getattr(module, n).__doc__ or "").strip()]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_the_api_reference_shows_public_names_only() -> None:
    """``docs/api`` documents names through their public paths: ``sdeflow.<name>``, ``sdeflow.errors``,
    ``sdeflow.solvers.<name>`` and the application packages (training, data, testing), never a module of
    the core's inner layers; and every public class and function of the toolkit has its entry."""
    import re

    refs = {ref for page in (ROOT / "docs" / "api").glob("*.md")
            for ref in re.findall(r"^:::\s+([\w.]+)\s*$", page.read_text(), flags=re.M)}
    internal = ("sdeflow.core", "sdeflow.utils", "sdeflow.cli", "sdeflow.plugins.registry", "sdeflow.plugins.manager",
                "sdeflow.plugins.api")
    bad = sorted(r for r in refs if r.startswith(internal) or any(part.startswith("_") for part in r.split(".")))
    bad += sorted(r for r in refs if r.startswith("sdeflow.solvers.") and r.split(".")[2] not in sdeflow.solvers.__all__)
    bad += sorted(r for r in refs if r.count(".") == 1 and r.split(".")[1] not in sdeflow.__all__
                  and r.split(".")[1] not in ("errors", "solvers", "testing", "training", "data", "bench"))
    assert not bad, f"API pages naming non-public paths: {bad}"
    toolkit = [n for n in sdeflow.solvers.__all__ if callable(getattr(sdeflow.solvers, n))]
    missing = [n for n in toolkit if f"sdeflow.solvers.{n}" not in refs]
    assert not missing, f"public toolkit names without an entry in docs/api/samplers.md: {missing}"
