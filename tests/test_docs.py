"""The documentation is complete and builds.

Rules (each test names what is missing and where to add it):

* every hook specification in :mod:`sdeflow.plugins.hookspecs` (found programmatically, so hooks added
  later are covered) is named in ``docs/writing-a-plugin.md``;
* every component of every kind registered by sdeflow's own distribution (the built-in
  plugins) is documented on ``docs/plugins/<plugin>.md``, ``<plugin>`` being the entry-point
  name of the plugin that registered it (the registry's ``source``), in a Markdown heading
  that names the kind and the component in backticks, e.g. ``# Process `vp`: ...`` or
  ``## Corrector `langevin` ``;
* every Markdown page under ``docs/`` is in the ``nav`` of ``mkdocs.yml``, every ``nav`` entry
  exists, and every top-level page is linked from ``docs/index.md``;
* every ``::: object`` of the API pages can be imported;
* and, when MkDocs is installed, ``mkdocs build --strict`` succeeds.

Only the last test needs MkDocs; the others read files and the registry and take well under a
second.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sdeflow
from sdeflow.plugins import hookspecs
from sdeflow.plugins.manager import get_manager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"


def hook_names() -> list[str]:
    """Every hook specification of the ``sdeflow`` project (functions pluggy marked as specs)."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(obj, marker))


def nav_pages() -> list[str]:
    """The ``.md`` paths listed in the ``nav`` of mkdocs.yml (read without a YAML library)."""
    text = MKDOCS_YML.read_text()
    nav = text[text.index("\nnav:"):]
    return re.findall(r"^\s*-\s+(?:[^\n:]+:\s+)?([\w./-]+\.md)\s*$", nav, flags=re.M)


def doc_pages() -> list[str]:
    """Every Markdown page under docs/, relative to it (not in hidden folders or build output,
    which MkDocs skips too: e.g. a .pytest_cache/README.md left by running the example's tests)."""
    pages = (p.relative_to(DOCS) for p in DOCS.rglob("*.md"))
    return sorted(p.as_posix() for p in pages
                  if not any(part.startswith(".") or part == "build" or part.endswith(".egg-info") for part in p.parts))


def headings(page: Path) -> list[str]:
    """Markdown heading lines of ``page`` (outside fenced code blocks)."""
    out, fenced = [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6}\s", line):
            out.append(line)
    return out


def builtin_components() -> list[tuple[str, str, str]]:
    """``(kind, name, plugin)`` of every component registered by the sdeflow distribution."""
    mgr = get_manager()
    found = []
    for kind, names in sdeflow.list_components().items():
        for name in names:
            source = mgr.registry.get(kind, name).source
            info = mgr.plugins.get(source)
            if info is not None and info.distribution == "sdeflow":
                found.append((kind, name, source))
    return found


def test_every_hook_spec_is_documented() -> None:
    hooks = hook_names()
    assert {"sdeflow_register_processes", "sdeflow_register_models", "sdeflow_register_samplers"} <= set(hooks)
    text = (DOCS / "writing-a-plugin.md").read_text()
    missing = [h for h in hooks if f"`{h}" not in text]
    assert not missing, f"hook specs not named (in backticks) in docs/writing-a-plugin.md: {missing}"


def test_every_builtin_component_has_a_page_with_a_heading() -> None:
    components = builtin_components()
    names = {(k, n) for k, n, _ in components}
    assert {("process", "vp"), ("model", "mlp"), ("sampler", "ode"), ("corrector", "langevin")} <= names
    problems = []
    for kind, name, plugin in components:
        page = DOCS / "plugins" / f"{plugin}.md"
        if not page.exists():
            problems.append(f"{kind} {name!r} (plugin {plugin!r}): no page docs/plugins/{plugin}.md")
            continue
        pattern = re.compile(rf"\b{kind}\b.*`{re.escape(name)}`", re.IGNORECASE)
        if not any(pattern.search(h) for h in headings(page)):
            problems.append(f"{kind} {name!r}: docs/plugins/{plugin}.md has no heading naming it, "
                            f"e.g. '## {kind.capitalize()} `{name}`'")
    assert not problems, "\n".join(problems)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav, pages = nav_pages(), doc_pages()
    assert "index.md" in nav and "writing-a-plugin.md" in nav
    assert len(nav) == len(set(nav)), f"pages listed twice in mkdocs.yml nav: {[p for p in nav if nav.count(p) > 1]}"
    missing = sorted(set(pages) - set(nav))
    assert not missing, f"pages under docs/ that are not in the nav of mkdocs.yml: {missing}"
    dangling = sorted(set(nav) - set(pages))
    assert not dangling, f"nav entries of mkdocs.yml without a page under docs/: {dangling}"


def test_index_links_every_top_level_page() -> None:
    index = (DOCS / "index.md").read_text()
    top = [p for p in doc_pages() if "/" not in p and p != "index.md"]
    missing = [p for p in top if f"({p})" not in index]
    assert not missing, f"docs/index.md does not link: {missing} (add a line for each page)"


def test_api_references_import() -> None:
    refs = []
    for page in sorted(DOCS.rglob("*.md")):
        refs += [(page, m) for m in re.findall(r"^:::\s+([\w.]+)\s*$", page.read_text(), flags=re.M)]
    assert len(refs) > 30
    bad = []
    for page, ref in refs:
        parts = ref.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                bad.append(f"{page.relative_to(ROOT)}: ::: {ref}")
            break
        else:
            bad.append(f"{page.relative_to(ROOT)}: ::: {ref} (no importable module)")
    assert not bad, "API references that do not resolve:\n" + "\n".join(bad)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    exe = shutil.which("mkdocs", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "mkdocs"]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([*cmd, "build", "--strict", "-f", str(MKDOCS_YML), "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "writing-a-plugin" / "index.html").exists()
