"""``sdeflow plugins``: in-process through click's CliRunner, and once as a real subprocess with
third-party distributions on ``PYTHONPATH``."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import sdeflow
from sdeflow.cli import main
from sdeflow.errors import PluginError
from sdeflow.plugins import manager as plugin_manager

BUILTIN_PLUGINS = {"vp": ("process", "vp"), "subvp": ("process", "subvp"), "ve": ("process", "ve"),
                   "mlp": ("model", "mlp"), "sde": ("sampler", "sde"), "ode": ("sampler", "ode")}

GOOD = '''
import sdeflow
from sdeflow_plugins.vp import VPProcess
from sdeflow_plugins.mlp import TimeMLP

@sdeflow.hookimpl
def sdeflow_register_processes(registry):
    registry.add("cli-vp", VPProcess)

@sdeflow.hookimpl
def sdeflow_register_models(registry):
    registry.add("cli-mlp", TimeMLP)
'''

BROKEN = '''
import sdeflow
raise ImportError("cli_broken needs libfoo >= 2")
'''

CLASH = '''
import sdeflow
from sdeflow_plugins.vp import VPProcess

@sdeflow.hookimpl
def sdeflow_register_processes(registry):
    registry.add("cli-vp", VPProcess)
'''

EAGER = '''
import sdeflow
NAMES = sdeflow.list_plugins()  # used while plugins are loading: must be reported, not hang

@sdeflow.hookimpl
def sdeflow_register_models(registry):
    pass
'''


def install(root: Path, dist: str, entry_name: str, module: str, source: str, version: str = "0.1") -> None:
    """A distribution laid out as pip would: the module plus ``<dist>-<version>.dist-info``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[sdeflow]\n{entry_name} = {module}\n")


@pytest.fixture
def sandbox(tmp_path: Path):
    """``tmp_path`` with a good and a broken plugin, on ``sys.path``; everything undone afterwards."""
    install(tmp_path, "cli-good", "cli-good", "cli_good", GOOD, version="1.2")
    install(tmp_path, "cli-broken", "cli-broken", "cli_broken", BROKEN)
    mp = pytest.MonkeyPatch()
    mp.delenv(plugin_manager.STRICT_ENV, raising=False)
    mp.delenv(plugin_manager.DISABLE_ENV, raising=False)
    mp.syspath_prepend(str(tmp_path))
    try:
        yield tmp_path, mp
    finally:
        mp.undo()
        for name in ("cli_good", "cli_broken", "cli_clash"):
            sys.modules.pop(name, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sdeflow.reload_plugins()


def invoke(*args: str):
    result = CliRunner().invoke(main, ["plugins", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_lists_every_builtin_with_distribution_version_and_components():
    version = importlib.metadata.version("sdeflow")
    result = invoke()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, (kind, comp) in BUILTIN_PLUGINS.items():
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
        assert "ok" in lines[row] and f"sdeflow {version}" in lines[row] and f"sdeflow_plugins.{name}" in lines[row]
        assert lines[row + 1].strip() == f"{kind}: {comp}"


def test_json_output_parses_and_matches_the_registry():
    result = invoke("--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    rows = {r["name"]: r for r in data["plugins"]}
    assert set(BUILTIN_PLUGINS) <= set(rows)
    version = importlib.metadata.version("sdeflow")
    for name, (kind, comp) in BUILTIN_PLUGINS.items():
        r = rows[name]
        assert (r["distribution"], r["version"], r["error"], r["disabled"]) == ("sdeflow", version, None, False)
        assert r["components"] == {kind: [comp]}
    # every registered component is attributed to a plugin
    listed = {k: sorted(n for r in rows.values() for n in r["components"].get(k, [])) for k in ("process", "model", "sampler")}
    assert listed == sdeflow.list_plugins()
    assert data["conflicts"] == []


def test_shows_load_errors_disabled_plugins_and_conflicts(sandbox):
    root, mp = sandbox
    with pytest.warns(RuntimeWarning, match="cli-broken"):
        sdeflow.reload_plugins()
    result = invoke()
    assert result.exit_code == 0
    out = result.output
    assert "cli-good" in out and "cli-good 1.2" in out and "process: cli-vp" in out and "model: cli-mlp" in out
    broken = out[out.index("cli-broken"):]
    assert broken.splitlines()[0].split()[1] == "ERROR"
    assert "error: import of 'cli_broken' failed: ImportError: cli_broken needs libfoo >= 2" in broken
    assert invoke("--check").exit_code == 1  # for CI: a plugin failed

    data = json.loads(invoke("--json").stdout)
    rows = {r["name"]: r for r in data["plugins"]}
    assert "libfoo" in rows["cli-broken"]["error"] and rows["cli-broken"]["distribution"] == "cli-broken"
    assert rows["cli-good"]["components"] == {"process": ["cli-vp"], "model": ["cli-mlp"]}

    # disabled plugins and a clash
    install(root, "cli-clash", "cli-clash", "cli_clash", CLASH)
    mp.setenv("SDEFLOW_DISABLE_PLUGINS", "cli-broken,ve")
    with pytest.warns(RuntimeWarning, match="cli-vp"):
        sdeflow.reload_plugins()
    result = invoke()
    lines = result.output.splitlines()
    assert next(line for line in lines if line.startswith("ve ")).split()[1] == "disabled"
    assert next(line for line in lines if line.startswith("cli-broken ")).split()[1] == "disabled"
    assert any(line.startswith("conflict: process 'cli-vp' registered by cli-clash, cli-good") for line in lines)
    data = json.loads(invoke("--json").stdout)
    assert data["conflicts"] == [{"kind": "process", "name": "cli-vp", "plugins": ["cli-clash", "cli-good"]}]
    assert invoke("--check").exit_code == 1


def test_strict_mode_exits_with_the_error(sandbox):
    _, mp = sandbox
    mp.setenv("SDEFLOW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        sdeflow.reload_plugins()
    result = invoke()
    assert result.exit_code == 1
    assert "cli-broken" in result.output and "libfoo" in result.output and "SDEFLOW_STRICT_PLUGINS" in result.output


def test_real_subprocess_with_third_party_distributions(sandbox):
    root, _ = sandbox
    install(root, "cli-eager", "cli-eager", "cli_eager", EAGER)
    exe = shutil.which("sdeflow", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-c", "from sdeflow.cli import main; main()"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDEFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([*cmd, "plugins", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["plugins"]}
    assert set(BUILTIN_PLUGINS) <= set(rows) and all(rows[n]["error"] is None for n in BUILTIN_PLUGINS)
    assert rows["cli-good"]["distribution"] == "cli-good" and rows["cli-good"]["version"] == "1.2"
    assert rows["cli-good"]["components"] == {"process": ["cli-vp"], "model": ["cli-mlp"]}
    assert "libfoo" in rows["cli-broken"]["error"]
    assert "still loading" in rows["cli-eager"]["error"]
