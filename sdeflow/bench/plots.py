"""PNG plots of error against NFE (log-log, one line per sampler, empirical order in the legend)."""

from __future__ import annotations

import math
from pathlib import Path

from .orders import order_of
from .runner import BenchResult


def plot_result(result: BenchResult, out_dir: Path, metric: str = "sw2", dpi: int = 72) -> list[Path]:
    """One ``error_vs_nfe_<target>.png`` per target: a column per process; top row the pathwise /
    strong error (legend: empirical order), bottom row ``metric`` with its noise floor dashed.
    sdeflow's samplers are solid lines, diffusers' dashed."""
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
        procs = [p for p in result.spec.processes if any(r["target"] == tname and r["process"] == p for r in result.rows)]
        if not procs:
            continue
        fig, axes = plt.subplots(2, len(procs), figsize=(4.2 * len(procs), 7.0), squeeze=False)
        for j, pname in enumerate(procs):
            rows = [r for r in result.rows if r["target"] == tname and r["process"] == pname and r["status"] == "ok"]
            for i, key in enumerate(("path_error", metric)):
                ax = axes[i][j]
                for lab in labels:
                    pts = sorted((r["nfe"], r[key]) for r in rows if r["sampler"] == lab and r[key] is not None
                                 and isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0)
                    if not pts:
                        continue
                    name = lab
                    if key == "path_error":
                        o = order_of(result.orders, tname, pname, lab)
                        if o and o["order"] is not None:
                            name = f"{lab} (p={o['order']:.2f})"
                    c, ls, mk = style[lab]
                    ax.loglog(*zip(*pts), ls, color=c, marker=mk, ms=3, lw=1, label=name)
                if key == metric and result.floors.get(tname, {}).get(metric, 0) > 0:
                    ax.axhline(result.floors[tname][metric], color="k", ls=":", lw=1, label="noise floor")
                lim = result.limits.get(f"{tname}/{pname}", {}).get(metric)
                if key == metric and lim is not None and math.isfinite(lim) and lim > 0:
                    ax.axhline(lim, color="k", ls="-.", lw=0.8, label="ODE limit")
                if key == "path_error":
                    bound = max(result.path_floors.get(f"{tname}/{pname}", {}).values(), default=0)
                    if bound > 0:
                        ax.axhline(bound, color="grey", ls=":", lw=1, label="reference error bound")
                ax.set_title(f"{tname} / {pname}: " + ("pathwise error" if key == "path_error" else metric), fontsize=8)
                ax.set_xlabel("NFE", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.grid(True, which="both", lw=0.3, alpha=0.5)
                ax.legend(fontsize=5, ncol=1, loc="best")
        fig.tight_layout()
        path = out_dir / f"error_vs_nfe_{tname}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=dpi)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths
