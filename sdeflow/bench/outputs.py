"""Writing a :class:`~sdeflow.bench.runner.BenchResult`: terminal table, CSV, JSON, Markdown summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from .orders import order_of
from .runner import BenchResult

#: files :func:`write_outputs` writes (plus one ``error_vs_nfe_<target>.png`` per target)
FILES = ("bench.csv", "bench.json", "table.txt", "summary.md")


def fmt(v: Any, signed: bool = False) -> str:
    """A number for a table cell (3 significant digits; ``-`` for none, ``inf``)."""
    if v is None or v == "":
        return "-"
    if isinstance(v, str):
        return v
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf"
    s = f"{v:+.3g}" if signed else f"{v:.3g}"
    return s


def _columns(result: BenchResult) -> list[str]:
    return ["target", "process", "sampler", "family", "sampler_name", "options", "budget", "nfe", "steps",
            "seconds", "stochastic", "status", *result.metric_names, "nominal_order", "path_error", "path_kind",
            "path_seconds"]


def terminal_table(result: BenchResult) -> str:
    """One block per (target, process): a line per sampler and budget, with the noise floors on top."""
    ms = result.metric_names
    head = ["sampler", "B", "NFE", "s", *ms, "path err", "order"]
    lines: list[str] = []
    for tname in result.spec.targets:
        info = result.targets.get(tname, {})
        for pname in result.spec.processes:
            rows = [r for r in result.rows if r["target"] == tname and r["process"] == pname]
            if not rows:
                continue
            pf = result.path_floors.get(f"{tname}/{pname}", {})
            lines.append(f"== {tname} (d={info.get('dim')}, H={info.get('entropy', math.nan):.4g} nats) / {pname}")
            body = [["noise floor", "", "", "", *[fmt(result.floors[tname][m]) for m in ms],
                     fmt(max(pf.values(), default=None)), ""]]
            lim = result.limits.get(f"{tname}/{pname}")
            if lim:
                body.append(["ODE limit", "", "", "", *[fmt(lim.get(m), signed=(m == "logp_gap")) for m in ms], "", ""])
            for r in rows:
                o = order_of(result.orders, tname, pname, r["sampler"])
                order = fmt(o["order"]) if o and o["order"] is not None and r["budget"] == max(
                    x["budget"] for x in rows if x["sampler"] == r["sampler"]) else ""
                path = "-" if r["path_error"] is None else \
                    fmt(r["path_error"]) + ("s" if r["path_kind"] == "strong" else "")
                body.append([r["sampler"], str(r["budget"]), fmt(r["nfe"]), fmt(r["seconds"]),
                             *[fmt(r[m], signed=(m == "logp_gap")) for m in ms], path,
                             order if r["status"] == "ok" else r["status"][:40]])
            widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
            lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
            for b in body:
                lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))
            lines.append("")
    if result.overhead:
        lines.append("== overhead against hand-written loops (median wall-time ratio of interleaved rounds)")
        for r in result.overhead:
            lines.append(f"  {r['sampler']:<16} NFE {r['nfe']:>4}  sdeflow {r['median_s']:.3f} s"
                         f"  hand {r['hand_median_s']:.3f} s"
                         f"  ratio {r['ratio']:.2f}  paired {r['paired_ratio']:.2f}  cpu {r['cpu_ratio']:.2f}"
                         f"  rel diff {r['rel_diff']:.1e}")
        lines.append("")
    lines.append("path err: RMS ||x - x_ref|| over the first paths (s: strong error on a shared Brownian path); "
                 "order: -slope of log(path err) vs log(NFE); ODE limit: the metrics of the exact ODE map of the "
                 "shared initial noise, where deterministic samplers converge")
    for n in result.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def _wide(result: BenchResult, tname: str, key: str, signed: bool = False) -> list[str]:
    procs = result.spec.processes
    labels = list(dict.fromkeys(r["sampler"] for r in result.rows if r["target"] == tname and
                                (key != "path_error" or r["path_error"] is not None)))
    out = ["| sampler | " + " | ".join(f"NFE {b}" for b in result.spec.nfe) + " | order |",
           "|---|" + "---|" * (len(result.spec.nfe) + 1)]
    for lab in labels:
        cells = []
        for b in result.spec.nfe:
            vals = []
            for p in procs:
                r = next((r for r in result.rows if (r["target"], r["process"], r["sampler"], r["budget"])
                          == (tname, p, lab, b)), None)
                vals.append("-" if r is None else fmt(r[key], signed))
            cells.append(" / ".join(vals))
        order = ""
        if key == "path_error":
            order = " / ".join(fmt(o["order"]) if (o := order_of(result.orders, tname, p, lab)) else "-" for p in procs)
        out.append(f"| {lab} | " + " | ".join(cells) + f" | {order} |")
    return out


def orders_markdown(result: BenchResult, tname: str) -> list[str]:
    """Empirical orders of one target: fitted over all resolved budgets / from the last two / nominal."""
    procs = result.spec.processes
    labels = list(dict.fromkeys(o["sampler"] for o in result.orders if o["target"] == tname))
    out = [f"Empirical orders ({' / '.join(procs)}; least squares over the budgets, then from the two largest):", "",
           "| sampler | nominal | order (fit) | order (last two) |", "|---|---:|---|---|"]
    for lab in labels:
        os_ = [order_of(result.orders, tname, p, lab) for p in procs]
        nominal = next((o["nominal"] for o in os_ if o and o.get("nominal") is not None), None)
        out.append(f"| {lab} | {fmt(nominal)} | " + " / ".join(fmt(o["order"]) if o else "-" for o in os_) + " | "
                   + " / ".join(fmt(o["order_last"]) if o else "-" for o in os_) + " |")
    return out


def summary_markdown(result: BenchResult) -> str:
    """Wide tables per target (cells ``process1 / process2 / ...``) for the path error and every metric."""
    procs = " / ".join(result.spec.processes)
    lines = [f"Preset `{result.spec.preset}`: {result.spec.samples} samples a cell, {result.spec.paths} paths for "
             f"pathwise/strong errors, NFE budgets {', '.join(map(str, result.spec.nfe))}, {result.spec.dtype}, "
             f"seed {result.spec.seed}. Cells: {procs}.", ""]
    for tname in result.spec.targets:
        if tname not in result.targets:  # a checkpoint written before this target ran
            continue
        info = result.targets[tname]
        lines += [f"## {tname}: {info['description']}", "",
                  f"d = {info['dim']}, entropy {info['entropy']:.4f} nats"
                  + (f" (Monte Carlo, standard error {info['entropy_se']:.1e})" if info["entropy_se"]
                     else " (closed form)")
                  + ". Noise floors: " + ", ".join(f"{m} {fmt(v)}" for m, v in result.floors[tname].items())
                  + ". Reference error bounds: " + "; ".join(
                      f"{p}: " + ", ".join(f"{k} {fmt(v)}"
                                           for k, v in result.path_floors.get(f"{tname}/{p}", {}).items())
                      for p in result.spec.processes) + ".", ""]
        lines += [f"### {tname}: pathwise error (deterministic: vs the ODE reference; `sde`: strong error on a "
                  "shared Brownian path), RMS", ""]
        lines += _wide(result, tname, "path_error") + [""]
        lines += orders_markdown(result, tname) + [""]
        for m in result.metric_names:
            lim = " / ".join(fmt(result.limits.get(f"{tname}/{p}", {}).get(m), signed=(m == "logp_gap"))
                             for p in result.spec.processes)
            lines += [f"### {tname}: {m} ({info['metric_formulas'][m]}); noise floor {fmt(result.floors[tname][m])}"
                      + (f"; ODE limit {lim}" if result.limits else ""), ""]
            lines += _wide(result, tname, m, signed=(m == "logp_gap")) + [""]
    if result.overhead:
        lines += ["## Overhead against hand-written loops", "",
                  "| sampler | NFE | sdeflow s | hand loop s | ratio | paired ratio | CPU ratio | rel diff |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result.overhead:
            lines.append(f"| {r['sampler']} | {r['nfe']} | {r['median_s']:.3f} | {r['hand_median_s']:.3f} | "
                         f"{r['ratio']:.2f} | {r['paired_ratio']:.2f} | {r['cpu_ratio']:.2f} | {r['rel_diff']:.1e} |")
        lines.append("")
    return "\n".join(lines)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def to_json(result: BenchResult) -> dict[str, Any]:
    """The result as plain JSON data (non-finite numbers as the strings ``"inf"``/``"nan"``)."""
    return _clean(dict(spec=result.spec.to_dict(), rows=result.rows, floors=result.floors,
                       path_floors=result.path_floors, limits=result.limits, targets=result.targets,
                       orders=result.orders, overhead=result.overhead, notes=result.notes, meta=result.meta))


def _restore(v: Any) -> Any:
    if v in ("inf", "-inf", "nan"):
        return float(v)
    if isinstance(v, dict):
        return {k: _restore(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_restore(x) for x in v]
    return v


def load_result(path: str | Path) -> BenchResult:
    """A :class:`BenchResult` from a ``bench.json`` written by :func:`write_outputs` (to re-render or merge)."""
    from .spec import BenchSpec

    data = _restore(json.loads(Path(path).read_text()))
    return BenchResult(spec=BenchSpec(**data["spec"]), rows=data["rows"], floors=data["floors"],
                       path_floors=data["path_floors"], limits=data.get("limits", {}), targets=data["targets"],
                       orders=data["orders"], overhead=data["overhead"], notes=data["notes"], meta=data["meta"])


def merge_results(results: list[BenchResult]) -> BenchResult:
    """One result from runs of one grid split by target or process (e.g. one run per target)."""
    from dataclasses import replace

    first = results[0]
    spec = replace(first.spec, targets=list(dict.fromkeys(t for r in results for t in r.spec.targets)),
                   processes=list(dict.fromkeys(p for r in results for p in r.spec.processes)))
    out = BenchResult(spec=spec, meta=dict(first.meta, parts=[r.meta for r in results]))
    for r in results:
        out.rows += r.rows
        out.orders += r.orders
        out.overhead += r.overhead
        out.notes += [n for n in r.notes if n not in out.notes]
        out.floors.update(r.floors)
        out.path_floors.update(r.path_floors)
        out.limits.update(r.limits)
        out.targets.update(r.targets)
    return out


def write_outputs(result: BenchResult, out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write :data:`FILES` and the plots into ``out_dir`` (created); returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with open(out / "bench.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_columns(result), extrasaction="ignore")
        w.writeheader()
        for r in result.rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    written.append(out / "bench.csv")
    (out / "bench.json").write_text(json.dumps(to_json(result), indent=1, default=str))
    (out / "table.txt").write_text(terminal_table(result) + "\n")
    (out / "summary.md").write_text(summary_markdown(result) + "\n")
    written += [out / "bench.json", out / "table.txt", out / "summary.md"]
    if plots:
        from .plots import plot_result

        written += plot_result(result, out)
    return written
