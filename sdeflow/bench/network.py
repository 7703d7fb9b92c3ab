"""Solver accuracy on a real network: ``sdeflow bench --model DIR`` / ``--diffusers DIR``.

No closed form exists for a trained network, but its probability-flow ODE has one solution per
initial state. So every deterministic sampler (and each deterministic diffusers scheduler, driven by
the same network) starts from the same ``paths`` prior draws ``x_T``, and its end states are
compared with a tight adaptive solution of that ODE from the same ``x_T`` (dopri8 at
``rtol = atol = reference_tol``); the reference's own error is bounded by its distance to the
solution at ``100 x`` the tolerance. The error is the RMS over paths of ``||x - x_ref||``; samplers
that finish with the data prediction (diffusers' schedulers, ``denoise=True``) are compared with
the reference followed by the same denoising at ``t_min``. Empirical orders are fitted as for the
exact targets (:mod:`sdeflow.bench.orders`). This is the measurement of the DPM-Solver and UniPC
papers' "error against NFE" figures, on any checkpoint.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..core.score_model import ScoreModel
from ..errors import OptionError, SdeflowError
from ..plugins.api import component_options, create_sampler, list_plugins
from .configs import BUILTIN_CONFIGS, SamplerConfig, resolve_config
from .orders import fit_orders, order_of
from .outputs import _clean, fmt
from .overhead import machine
from .peers import DETERMINISTIC_PEERS, NUM_TRAIN_TIMESTEPS, PeerConfig, peer_config, peers_available, run_peer
from .reference import ode_reference, rms_path_error

DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: one configuration per deterministic sampler and order (``--samplers all`` adds every other
#: deterministic configuration of :data:`~sdeflow.bench.configs.BUILTIN_CONFIGS`)
DEFAULT_SAMPLERS = ["ode euler", "ode heun2", "ode rk4", "ddim", "dpm_solver 2M", "dpm_solver 3M", "unipc-2", "unipc-3",
                    "heun"]
DEFAULT_NFE = [5, 8, 10, 20, 50]
FILES = ("bench.csv", "bench.json", "table.txt", "summary.md", "error_vs_nfe.png")


@dataclass
class NetworkBenchSpec:
    """What the real-network benchmark measures.

    Attributes:
        samplers: sampler configuration labels (:data:`~sdeflow.bench.configs.BUILTIN_CONFIGS`) or
            registered sampler names taking ``steps=``; stochastic ones are skipped with a note.
        peers: diffusers scheduler labels (:data:`~sdeflow.bench.peers.PEER_CONFIGS`, deterministic).
        nfe: NFE budgets.
        paths: initial states (the batch every solver integrates).
        seed: seed of the initial states.
        device, dtype: where and in what precision the network runs (float64 lets the reference
            reach tolerances float32 cannot).
        reference_tol: ``rtol = atol`` of the dopri8 reference.
        threads: ``torch.set_num_threads`` for the run (``None``: leave as is).
    """

    samplers: list[str] = field(default_factory=lambda: list(DEFAULT_SAMPLERS))
    peers: list[str] = field(default_factory=lambda: list(DETERMINISTIC_PEERS))
    nfe: list[int] = field(default_factory=lambda: list(DEFAULT_NFE))
    paths: int = 16
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    reference_tol: float = 1e-7
    threads: int | None = None

    def validate(self) -> "NetworkBenchSpec":
        """Check types and ranges (:class:`OptionError` naming the field and what is valid)."""
        if not self.samplers and not self.peers:
            raise OptionError("give at least one sampler or peer")
        if not self.nfe or any(isinstance(b, bool) or int(b) != b or b < 1 for b in self.nfe):
            raise OptionError(f"NFE budgets must be positive integers, got {self.nfe}")
        if isinstance(self.paths, bool) or int(self.paths) < 1:
            raise OptionError(f"paths must be a positive integer, got {self.paths!r}")
        if self.dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (self.reference_tol > 0 and math.isfinite(self.reference_tol)):
            raise OptionError(f"reference_tol must be positive, got {self.reference_tol!r}")
        for p in self.peers:
            if peer_config(p).stochastic:
                raise OptionError(f"peer {p!r} is stochastic: it has no pathwise error; deterministic peers: "
                                  f"{', '.join(DETERMINISTIC_PEERS)}")
        self.nfe = sorted({int(b) for b in self.nfe})
        return self


@dataclass
class NetworkBenchResult:
    """The rows of a real-network run (same keys as :class:`~sdeflow.bench.runner.BenchResult` rows,
    ``target`` the model's label), the reference, fitted orders, notes and machine information."""

    spec: NetworkBenchSpec
    model: str
    process: str
    sample_shape: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def all_deterministic_samplers() -> list[str]:
    """Every deterministic built-in configuration, and the registered samplers with ``steps=`` that have no
    built-in configuration."""
    labels = [c.label for c in BUILTIN_CONFIGS if c.sampler in ("ode", "ddim", "dpm_solver", "unipc", "heun")
              and "eta=1" not in c.label]
    known = {c.sampler for c in BUILTIN_CONFIGS}
    labels += [n for n in list_plugins()["sampler"] if n not in known and "steps" in component_options("sampler", n)]
    return labels


def _row(label: str, process: str, sampler: str, family: str, name: str, options: str, budget: int) -> dict[str, Any]:
    return dict(target=label, process=process, sampler=sampler, family=family, sampler_name=name, options=options,
                budget=budget, nfe=None, steps=None, seconds=None, stochastic=False, status="", nominal_order=None,
                path_error=None, path_kind="", path_seconds=None)


def _error(row: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    row["status"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return row


def run_network_bench(score_model: ScoreModel, sample_shape: Sequence[int], spec: NetworkBenchSpec | None = None,
                      label: str = "model", progress: bool = True,
                      echo: Callable[[str], None] | None = None) -> NetworkBenchResult:
    """Measure every sampler and peer of ``spec`` on ``score_model`` (module docstring).

    Args:
        score_model: any score model (a trained sdeflow checkpoint, :func:`sdeflow.interop.from_diffusers`,
            :func:`sdeflow.interop.from_function`); moved to ``spec.device`` / ``spec.dtype``.
        sample_shape: the shape of one sample.
        spec: what to run (default :class:`NetworkBenchSpec`).
        label: the model's name in the outputs.
        progress: a progress bar on stderr.
        echo: where notes go.

    Returns:
        A :class:`NetworkBenchResult`.
    """
    spec = (spec or NetworkBenchSpec()).validate()
    say = echo or (lambda s: None)
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    device = torch.device(spec.device)
    model = score_model.to(device=device, dtype=DTYPES[spec.dtype]).eval()
    process = model.process
    pname = getattr(type(process), "__name__", "process")
    shape = (int(spec.paths), *[int(s) for s in sample_shape])
    configs: list[SamplerConfig] = [resolve_config(s) for s in spec.samplers]
    peers: list[PeerConfig] = [peer_config(p) for p in spec.peers]
    result = NetworkBenchResult(spec=spec, model=label, process=repr(process), sample_shape=list(shape[1:]))
    if peers and not peers_available():
        result.notes.append("diffusers is not installed (pip install sdeflow[diffusers]): peers skipped")
        say(result.notes[-1])
        peers = []
    n_train = int(getattr(process, "num_steps", NUM_TRAIN_TIMESTEPS)) if process.discrete_times() is not None \
        else NUM_TRAIN_TIMESTEPS
    t_run = time.perf_counter()
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(spec.seed)
    with torch.no_grad():
        x_T = model.prior_sample(shape, gen, device, DTYPES[spec.dtype])
    t0 = time.perf_counter()
    ref = ode_reference(model, shape, spec.reference_tol, x_T=x_T)
    t_min = torch.full((shape[0],), float(process.t_min), device=device, dtype=x_T.dtype)
    with torch.no_grad():
        ref_denoised = model.x0(ref.x, t_min, check=False)
    scale = float(torch.sqrt((ref.x.double().reshape(shape[0], -1) ** 2).sum(1).mean()))
    result.reference = dict(how=ref.how, nfe=ref.nfe, error_bound=ref.error_bound, seconds=time.perf_counter() - t0,
                            rms_norm=scale, t_min=float(process.t_min))
    say(f"reference: {ref.how}, {ref.nfe} evaluations, error bound {ref.error_bound:.2e} (RMS norm {scale:.3g})")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(len(configs) + len(peers)) * len(spec.nfe), desc=f"bench {label}", file=sys.stderr,
                   leave=False, dynamic_ncols=True)
    skipped: set[str] = set()
    try:
        for cfg in configs:
            for b in spec.nfe:
                row = _sdeflow_row(model, cfg, b, x_T, ref.x, ref_denoised, label, pname, skipped)
                if row is not None:
                    result.rows.append(row)
                if bar is not None:
                    bar.update(1)
        for pc in peers:
            for b in spec.nfe:
                result.rows.append(_peer_row(model, pc, b, x_T, ref_denoised, label, pname, n_train))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for s in sorted(skipped):
        result.notes.append(f"{s}: stochastic, no pathwise error: skipped")
    result.orders = fit_orders(result.rows, {f"{label}/{pname}": {"ode": ref.error_bound}})
    info = machine()
    info.update(seconds=time.perf_counter() - t_run, device=str(device), dtype=spec.dtype)
    try:
        info["diffusers"] = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        info["diffusers"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    result.meta = info
    return result


def _sdeflow_row(model: ScoreModel, cfg: SamplerConfig, budget: int, x_T: Tensor, ref: Tensor, ref_denoised: Tensor,
                 label: str, pname: str, skipped: set[str]) -> dict[str, Any] | None:
    opts = cfg.options(budget, model.process)
    if opts is None:
        return None
    row = _row(label, pname, cfg.label, "sdeflow", cfg.sampler, " ".join(f"{k}={v}" for k, v in opts.items()), budget)
    try:
        sampler = create_sampler(cfg.sampler, **opts)
        if sampler.stochastic:
            skipped.add(cfg.label)
            return None
        row["nominal_order"] = sampler.capabilities()["order"]
        t0 = time.perf_counter()
        res = sampler.sample(model, tuple(x_T.shape), x_T=x_T)
        row.update(seconds=time.perf_counter() - t0, nfe=int(res.nfe), steps=res.steps)
    except (SdeflowError, RuntimeError, ValueError, AssertionError) as exc:
        return _error(row, exc)
    return _with_error(row, res.samples, ref_denoised if getattr(sampler, "denoise", False) else ref)


def _peer_row(model: ScoreModel, pc: PeerConfig, budget: int, x_T: Tensor, ref_denoised: Tensor, label: str,
              pname: str, n_train: int) -> dict[str, Any]:
    row = _row(label, pname, pc.label, "diffusers", pc.scheduler, f"steps={pc.steps_for(budget)}", budget)
    row["nominal_order"] = pc.order
    try:
        t0 = time.perf_counter()
        res = run_peer(pc, budget, model, x_T, num_train_timesteps=n_train)
        row.update(seconds=time.perf_counter() - t0, nfe=res.nfe, steps=res.steps)
    except (SdeflowError, RuntimeError, ValueError, AssertionError, ImportError) as exc:
        return _error(row, exc)
    return _with_error(row, res.samples, ref_denoised)


def _with_error(row: dict[str, Any], samples: Tensor, ref: Tensor) -> dict[str, Any]:
    if not bool(torch.isfinite(samples).all()):
        row.update(status="non-finite samples", path_error=math.inf, path_kind="ode")
        return row
    row.update(status="ok", path_error=rms_path_error(samples, ref), path_kind="ode")
    return row


# ----------------------------------------------------------------------------------------- outputs
def _labels(result: NetworkBenchResult) -> list[str]:
    return list(dict.fromkeys(r["sampler"] for r in result.rows))


def network_markdown(result: NetworkBenchResult) -> str:
    """The pathwise-error table (a row per sampler, a column per budget) with the fitted orders."""
    ref = result.reference
    budgets = result.spec.nfe
    lines = [f"Model `{result.model}` ({result.process}), samples of shape {tuple(result.sample_shape)}; "
             f"{result.spec.paths} paths from seed {result.spec.seed}, {result.spec.dtype} on "
             f"{result.meta.get('device')}. "
             f"Reference: {ref['how']} ({ref['nfe']} evaluations); its error bound {fmt(ref['error_bound'])} "
             f"(RMS distance to the solution at 100x the tolerance); RMS norm of the reference end states "
             f"{fmt(ref['rms_norm'])}.", "",
             "Pathwise error (RMS over paths of ||x - x_ref||) at each NFE budget (cells: error, NFE used when it "
             "differs from the budget); order: least-squares slope over the resolved budgets / between the last two.",
             "", "| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " | order (fit / last two) | nominal |",
             "|---|" + "---:|" * len(budgets) + "---|---:|"]
    pname = next((r["process"] for r in result.rows), "")
    for lab in _labels(result):
        cells = []
        for b in budgets:
            r = next((r for r in result.rows if r["sampler"] == lab and r["budget"] == b), None)
            if r is None:
                cells.append("-")
            elif r["status"] != "ok":
                cells.append(r["status"][:30])
            else:
                cells.append(fmt(r["path_error"]) + (f" ({r['nfe']})" if r["nfe"] != b else ""))
        o = order_of(result.orders, result.model, pname, lab)
        nominal = next((r["nominal_order"] for r in result.rows if r["sampler"] == lab), None)
        order = f"{fmt(o['order'])} / {fmt(o['order_last'])}" if o else "-"
        lines.append(f"| {lab} | " + " | ".join(cells) + f" | {order} | {fmt(nominal)} |")
    lines.append("")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def network_table(result: NetworkBenchResult) -> str:
    """A terminal table: one line per sampler and budget."""
    ref = result.reference
    head = ["sampler", "B", "NFE", "s", "path err", "order"]
    body = [["reference", "", str(ref["nfe"]), fmt(ref["seconds"]), fmt(ref["error_bound"]), ""]]
    pname = next((r["process"] for r in result.rows), "")
    for r in result.rows:
        o = order_of(result.orders, result.model, pname, r["sampler"])
        last = r["budget"] == max(x["budget"] for x in result.rows if x["sampler"] == r["sampler"])
        order = fmt(o["order"]) if o and o["order"] is not None and last else ""
        body.append([r["sampler"], str(r["budget"]), fmt(r["nfe"]), fmt(r["seconds"]), fmt(r["path_error"]),
                     order if r["status"] == "ok" else r["status"][:40]])
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = [f"== {result.model}: {result.process}, {result.spec.paths} paths, {result.spec.dtype}"]
    for row in [head, *body]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append("path err: RMS ||x - x_ref|| against the reference from the same x_T (its error bound on the first "
                 "line); order: -slope of log(path err) vs log(NFE)")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def network_json(result: NetworkBenchResult) -> dict[str, Any]:
    """Plain JSON data (non-finite numbers as strings)."""
    return _clean(dict(spec=asdict(result.spec), model=result.model, process=result.process,
                      sample_shape=result.sample_shape, rows=result.rows, reference=result.reference,
                      orders=result.orders, notes=result.notes, meta=result.meta))


def plot_network(result: NetworkBenchResult, path: Path, dpi: int = 80) -> Path:
    """Log-log pathwise error against NFE, a line per sampler (diffusers' dashed), the reference's
    error bound dotted, each sampler's fitted order in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import _shrink

    labels = _labels(result)
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    pname = next((r["process"] for r in result.rows), "")
    for i, lab in enumerate(labels):
        pts = sorted((r["nfe"], r["path_error"]) for r in result.rows if r["sampler"] == lab and r["status"] == "ok"
                     and math.isfinite(r["path_error"]) and r["path_error"] > 0)
        if not pts:
            continue
        o = order_of(result.orders, result.model, pname, lab)
        name = lab + (f"  (p = {o['order']:.1f})" if o and o["order"] is not None else "")
        ax.loglog(*zip(*pts), "--" if lab.startswith("diffusers") else "-", color=cmap(i % 20),
                  marker="os^vD<>ph*"[i % 10], ms=3, lw=1, label=name)
    bound = result.reference.get("error_bound", 0.0)
    if bound > 0:
        ax.axhline(bound, color="grey", ls=":", lw=1, label="reference error bound")
    ax.set_xlabel("NFE")
    ax.set_ylabel("pathwise error (RMS)")
    ax.set_title(f"{result.model}: error vs NFE from the same x_T ({result.spec.paths} paths)", fontsize=9)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    _shrink(tmp)
    tmp.replace(path)
    return path


def write_network_outputs(result: NetworkBenchResult, out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write :data:`FILES` into ``out_dir`` (created); returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = list(_row("", "", "", "", "", "", 0))
    with open(out / "bench.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in result.rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    (out / "bench.json").write_text(json.dumps(network_json(result), indent=1, default=str))
    (out / "table.txt").write_text(network_table(result) + "\n")
    (out / "summary.md").write_text(network_markdown(result) + "\n")
    written = [out / f for f in FILES[:4]]
    if plots:
        written.append(plot_network(result, out / "error_vs_nfe.png"))
    return written


__all__ = ["DEFAULT_NFE", "DEFAULT_SAMPLERS", "NetworkBenchResult", "NetworkBenchSpec", "all_deterministic_samplers",
           "network_json", "network_markdown", "network_table", "plot_network", "run_network_bench",
           "write_network_outputs"]
