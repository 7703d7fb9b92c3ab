"""``sdeflow plugins``: every plugin, its distribution, components and load error."""

from __future__ import annotations

import json

import click

from ..plugin_manager import DISABLE_ENV, get_manager
from .main import main


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins_command(as_json: bool) -> None:
    """List plugins with their distribution, version, components and any load error."""
    mgr = get_manager()
    rows = []
    for info in sorted(mgr.plugins.values(), key=lambda i: i.name):
        rows.append({
            "name": info.name, "target": info.target, "distribution": info.distribution,
            "version": info.version, "components": {k: v for k, v in info.components.items() if v},
            "error": info.error, "disabled": info.disabled,
        })
    conflicts = [{"kind": k, "name": n, "plugins": s} for (k, n), s in sorted(mgr.conflicts.items())]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "conflicts": conflicts}, indent=2))
        return
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "(not installed as a distribution)"
        status = "disabled" if r["disabled"] else ("ERROR" if r["error"] else "ok")
        click.echo(f"{r['name']:<14} {status:<8} {dist}  [{r['target']}]")
        for kind, names in r["components"].items():
            click.echo(f"    {kind}: {', '.join(names)}")
        if r["error"]:
            click.echo(f"    error: {r['error']}")
    for c in conflicts:
        click.echo(f"conflict: {c['kind']} {c['name']!r} registered by {', '.join(c['plugins'])} "
                   f"(disable one with {DISABLE_ENV})")
    if not rows:
        click.echo("no plugins found in the 'sdeflow' entry-point group")
