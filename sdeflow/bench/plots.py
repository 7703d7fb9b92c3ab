"""PNG plots of error against NFE (log-log, one line per sampler, empirical order in the legend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .orders import order_of
from .runner import BenchResult


def _shrink(path: Path, colors: int = 96) -> None:
    """Re-save a PNG with a ``colors``-entry palette (line plots need few colours; ~3x smaller files)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors)
    small.save(path, optimize=True)


def plot_result(result: BenchResult, out_dir: Path, metric: str = "sw2", dpi: int = 72) -> list[Path]:
    """One ``error_vs_nfe_<target>.png`` per target: a column per process; top row the pathwise /
    strong error, bottom row ``metric`` with its noise floor (dotted) and ODE limit (dash-dot).
    One legend, with each sampler's empirical order per process (``p = vp / ...``); sdeflow's
    samplers are solid lines, diffusers' dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric if metric in result.metric_names else result.metric_names[0]
    labels = list(dict.fromkeys(r["sampler"] for r in result.rows))
    cmap = plt.get_cmap("tab20")
    style = {lab: (cmap(i % 20), "--" if lab.startswith("diffusers") else "-",
                   "os^vD<>ph*"[i % 10]) for i, lab in enumerate(labels)}
    paths = []
    for tname in result.spec.targets:
        procs = [p for p in result.spec.processes
                 if any(r["target"] == tname and r["process"] == p for r in result.rows)]
        if not procs:
            continue
        fig, axes = plt.subplots(2, len(procs), figsize=(3.6 * len(procs) + 3.6, 6.4), squeeze=False)
        handles: dict[str, Any] = {}
        for j, pname in enumerate(procs):
            rows = [r for r in result.rows if r["target"] == tname and r["process"] == pname and r["status"] == "ok"]
            for i, key in enumerate(("path_error", metric)):
                ax = axes[i][j]
                for lab in labels:
                    pts = sorted((r["nfe"], r[key]) for r in rows if r["sampler"] == lab and r[key] is not None
                                 and isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0)
                    if not pts:
                        continue
                    c, ls, mk = style[lab]
                    (line,) = ax.loglog(*zip(*pts), ls, color=c, marker=mk, ms=3, lw=1)
                    handles.setdefault(lab, line)
                if key == metric and result.floors.get(tname, {}).get(metric, 0) > 0:
                    handles["noise floor"] = ax.axhline(result.floors[tname][metric], color="k", ls=":", lw=1)
                lim = result.limits.get(f"{tname}/{pname}", {}).get(metric)
                if key == metric and lim is not None and math.isfinite(lim) and lim > 0:
                    handles["ODE limit"] = ax.axhline(lim, color="k", ls="-.", lw=0.8)
                if key == "path_error":
                    bound = max(result.path_floors.get(f"{tname}/{pname}", {}).values(), default=0)
                    if bound > 0:
                        handles["reference error bound"] = ax.axhline(bound, color="grey", ls=":", lw=1)
                ax.set_title(f"{tname} / {pname}: " + ("pathwise error" if key == "path_error" else metric), fontsize=8)
                ax.set_xlabel("NFE", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.grid(True, which="both", lw=0.3, alpha=0.5)
        names = []
        for lab in handles:
            orders = [order_of(result.orders, tname, p, lab) for p in procs]
            ps = [f"{o['order']:.1f}" if o and o["order"] is not None else "-" for o in orders]
            names.append(f"{lab}  (p = {' / '.join(ps)})" if any(x != "-" for x in ps) else lab)
        fig.legend(list(handles.values()), names, loc="center right", fontsize=7, frameon=False,
                   title=f"order p: {' / '.join(procs)}", title_fontsize=7)
        fig.tight_layout(rect=(0, 0, 1 - 3.6 / (3.6 * len(procs) + 3.6), 1))
        path = out_dir / f"error_vs_nfe_{tname}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=dpi)
        plt.close(fig)
        _shrink(tmp)
        tmp.replace(path)
        paths.append(path)
    return paths
