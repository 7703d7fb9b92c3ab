"""The import graph of the ``sdeflow`` package by layer, read from the source with :mod:`ast`.

Run it on any checkout (this one, or an older commit extracted with ``git archive``)::

    python tests/import_graph.py                 # layer-to-layer edges of this checkout
    python tests/import_graph.py --root DIR      # of another checkout
    python tests/import_graph.py --modules       # module-to-module edges that cross layers

It prints one line per pair of layers ``from -> to`` with the number of import statements, and
the imports that break the layer rule (``tests/test_layers.py`` asserts there are none). Every
import counts, at module level or inside a function, under ``TYPE_CHECKING`` or not.

The layers (``docs/concepts.md``, Architecture), each importing only the layers before it:
``utils`` (with ``errors``) -> ``core`` -> ``solvers`` -> ``plugins`` -> ``data``, ``training`` ->
``cli``, ``bench``. ``testing`` (the conformance kit) may import every layer; ``sdeflow/__init__.py``
(the public names) imports from all of them. The flat modules of the layout before the folders
existed (``sdeflow/process.py``, ``sdeflow/integrators/``, ...) are mapped onto the same layers
(:data:`FLAT_LAYOUT`), so an old commit's graph can be compared with today's.
"""

from __future__ import annotations

import argparse
import ast
import collections
from dataclasses import dataclass
from pathlib import Path

#: the layers in order; a module may import its own layer and the ones before it
LAYERS: tuple[tuple[str, ...], ...] = (("utils",), ("core",), ("solvers",), ("plugins",),
                                       ("data", "training", "interop"), ("cli", "bench"))
#: may import any layer (but no built-in plugin)
ANY_LAYER = ("testing", "__init__")
#: the first component below ``sdeflow`` of the flat layout (before the layer folders) -> its layer today
FLAT_LAYOUT: dict[str, str] = {
    "errors": "utils", "shapes": "utils", "sharding": "utils", "atomic": "utils",
    "process": "core", "marginal_process": "core", "dynamics": "core", "parametrization": "core",
    "score_model": "core", "losses": "core", "likelihood": "core", "sampler": "core", "embeddings": "core",
    "integrators": "solvers",
    "hookspecs": "plugins", "registry": "plugins", "plugin_manager": "plugins", "api": "plugins",
    "datasets": "data", "gaussian_mixture": "data", "targets": "data", "images": "data", "metrics": "data",
    "calibration": "training", "demo": "cli", "image_demo": "cli",
}


@dataclass(frozen=True)
class Import:
    """One imported ``sdeflow`` module (``target``) of a module of the package (``source``)."""

    source: str
    target: str
    line: int
    in_function: bool


def module_name(path: Path, root: Path) -> str:
    """``sdeflow.core.process`` for ``root/sdeflow/core/process.py`` (``sdeflow.x`` for ``x/__init__.py``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool, root: Path) -> list[str]:
    """Absolute names of the modules an ``ImportFrom`` imports: ``pkg.mod`` for ``from .mod import x``,
    ``pkg.a`` for ``from . import a`` when ``a`` is a submodule, else ``pkg``."""
    if node.level:
        base = module.split(".")
        base = base if is_package else base[:-1]
        prefix = ".".join(base[: len(base) - (node.level - 1)])
        if node.module:
            prefix = f"{prefix}.{node.module}"
    else:
        prefix = node.module or ""
    if node.module:
        return [prefix]
    out = []
    for a in node.names:
        path = root.joinpath(*prefix.split("."), a.name)
        out.append(f"{prefix}.{a.name}" if path.with_suffix(".py").exists() or path.is_dir() else prefix)
    return out


def imports_of(root: Path, package: str = "sdeflow") -> list[Import]:
    """Every import of an ``sdeflow`` module by a module under ``root/package``."""
    found: list[Import] = []
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inner = {id(n) for f in functions for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(node, module, path.name == "__init__.py", root)
            else:
                continue
            for target in targets:
                if target == package or target.startswith(package + "."):
                    found.append(Import(module, target, node.lineno, id(node) in inner))
    return found


def layer_of(module: str) -> str:
    """The layer of an ``sdeflow`` module: ``core`` for ``sdeflow.core.process`` (and for the flat
    ``sdeflow.process``), ``__init__`` for the package root."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    head = parts[1]
    return FLAT_LAYOUT.get(head, head)


def rank(layer: str) -> int | None:
    """Position of ``layer`` in :data:`LAYERS` (``None`` for ``testing`` and the root)."""
    for i, names in enumerate(LAYERS):
        if layer in names:
            return i
    return None


def breaks_rule(imp: Import) -> bool:
    """Whether ``imp`` imports a later layer (the root counts as the last)."""
    src, dst = layer_of(imp.source), layer_of(imp.target)
    if src in ANY_LAYER:
        return False
    if dst == "__init__":
        return rank(src) != len(LAYERS) - 1
    r_src, r_dst = rank(src), rank(dst)
    if r_src is None or r_dst is None:
        return dst == "testing" or r_src is None
    return r_dst > r_src


def layer_edges(imports: list[Import]) -> dict[tuple[str, str], int]:
    """Import statements per ``(from layer, to layer)``, within-layer imports left out."""
    edges: collections.Counter[tuple[str, str]] = collections.Counter()
    for imp in imports:
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src != dst:
            edges[(src, dst)] += 1
    return dict(edges)


#: what a plugin (built-in or third-party) may import of sdeflow; its tests may import the kit too
PLUGIN_PUBLIC: tuple[str, ...] = ("sdeflow", "sdeflow.errors", "sdeflow.solvers")
PLUGIN_TESTS_PUBLIC: tuple[str, ...] = PLUGIN_PUBLIC + ("sdeflow.testing",)


def plugin_violations(files: list[Path], allowed: tuple[str, ...], own_package: str | None = None) -> list[str]:
    """Imports of ``files`` (a plugin's modules) that reach a non-public ``sdeflow`` module (anything but
    ``allowed``; ``sdeflow.testing``'s submodules count as the kit) or another built-in plugin
    (``sdeflow_plugins.<other>``; ``own_package`` is the plugin's own)."""
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                kit = "sdeflow.testing" in allowed and name.startswith("sdeflow.testing.")
                if top == "sdeflow" and name not in allowed and not kit:
                    bad.append(f"{path}:{node.lineno} imports {name}")
                elif top == "sdeflow_plugins" and (own_package is None or not name.startswith(own_package)):
                    bad.append(f"{path}:{node.lineno} imports another plugin, {name}")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout (the folder holding sdeflow/)")
    parser.add_argument("--modules", action="store_true", help="also list the module-to-module edges across layers")
    args = parser.parse_args()
    imports = imports_of(args.root)
    order = [name for names in LAYERS for name in names] + list(ANY_LAYER)
    edges = layer_edges(imports)
    print(f"layer-to-layer imports of {args.root}/sdeflow ({len(imports)} imports of sdeflow modules):")
    for (src, dst), count in sorted(edges.items(), key=lambda e: (order.index(e[0][0]), order.index(e[0][1]))):
        mark = "  BREAKS THE RULE" if any(breaks_rule(i) for i in imports
                                          if (layer_of(i.source), layer_of(i.target)) == (src, dst)) else ""
        print(f"  {src:>9} -> {dst:<9} {count:4d}{mark}")
    bad = [i for i in imports if breaks_rule(i)]
    in_function = [i for i in imports if i.in_function]
    print(f"imports against the layer rule: {len(bad)}; imports inside functions: {len(in_function)}")
    for imp in bad:
        print(f"  {imp.source}:{imp.line} imports {imp.target}" + (" (inside a function)" if imp.in_function else ""))
    if args.modules:
        print("module-to-module edges across layers:")
        for pair in sorted({(i.source, i.target) for i in imports if layer_of(i.source) != layer_of(i.target)}):
            print(f"  {pair[0]} -> {pair[1]}")


if __name__ == "__main__":
    main()
