"""``sdeflow plugins``: every plugin, its distribution, components and load error."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import click

from ..errors import PluginError
from ..plugins.manager import DISABLE_ENV, STRICT_ENV, get_manager
from .main import main


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--check", is_flag=True,
              help="Exit with status 1 when a plugin failed to load or two plugins clash (for CI).")
def plugins_command(as_json: bool, check: bool) -> None:
    """List plugins with their distribution, version, components and any load error."""
    with warnings.catch_warnings():  # the listing below shows every problem itself
        warnings.simplefilter("ignore")
        try:
            mgr = get_manager()
        except PluginError as exc:  # SDEFLOW_STRICT_PLUGINS=1 and a plugin failed
            click.echo(f"error: {exc}", err=True)
            click.echo(f"(unset {STRICT_ENV} to list the plugins that do load)", err=True)
            sys.exit(1)
    rows: list[dict[str, Any]] = []
    for info in sorted(mgr.plugins.values(), key=lambda i: i.name):
        rows.append({
            "name": info.name, "target": info.target, "distribution": info.distribution,
            "version": info.version, "components": {k: v for k, v in info.components.items() if v},
            "error": info.error, "disabled": info.disabled, "conflicts": list(info.conflicts),
        })
    conflicts = [{"kind": k, "name": n, "plugins": s} for (k, n), s in sorted(mgr.conflicts.items())]
    notes = list(mgr.notes)  # problems not tied to one plugin (e.g. a typo in SDEFLOW_DISABLE_PLUGINS)
    if as_json:
        click.echo(json.dumps({"plugins": rows, "conflicts": conflicts, "warnings": notes}, indent=2))
    else:
        for r in rows:
            dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "(not installed as a distribution)"
            status = "disabled" if r["disabled"] else ("ERROR" if r["error"] else "ok")
            click.echo(f"{r['name']:<14} {status:<8} {dist}  [{r['target']}]")
            for kind, names in r["components"].items():
                click.echo(f"    {kind}: {', '.join(names)}")
            for c in r["conflicts"]:
                click.echo(f"    conflict: {c}")
            if r["error"]:
                click.echo(f"    error: {r['error']}")
        for c in conflicts:
            click.echo(f"conflict: {c['kind']} {c['name']!r} registered by {', '.join(c['plugins'])} "
                       f"(disable all but one with {DISABLE_ENV}=<plugin>)")
        for note in notes:
            click.echo(f"warning: {note}")
        if not rows:
            click.echo("no plugins found in the 'sdeflow' entry-point group")
    if check and (any(r["error"] for r in rows) or conflicts):
        sys.exit(1)

