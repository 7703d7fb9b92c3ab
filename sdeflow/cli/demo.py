"""The README's main job: train a score model on the nine-Gaussians set, then compare solvers on
the trained model and on the exact score.

1. Train an MLP score model (eps-parametrised, sub-VP SDE with ``beta_max = 10`` as in reference
   text 004) on fresh draws of the nine-Gaussians mixture, with :class:`sdeflow.training.Trainer`;
   the checkpoint goes to ``<out>/model`` (so ``sdeflow sample <out>/model ...`` works) and the
   loss curve to ``<out>/loss.png`` / ``losses.csv``.
2. Sample the trained model and the mixture's exact score (:meth:`GaussianMixture.score_model`,
   where every error is the solver's) with several solvers: reverse SDE, probability-flow ODE
   (adaptive and fixed-step), DPM-Solver++, EDM's Heun, DDIM.
   The same network trained as a rectified flow (Liu et al. 2022) by flow matching (Lipman et al.
   2023), predicting the velocity, and the exact flow of the mixture, are sampled by Euler on the
   flow (the rectified-flow sampler), UniPC and DPM-Solver++: the rows ``exact flow`` and ``trained flow``
   (checkpoint in ``<out>/flow_model``).
3. Score every sample set against the exact density: NFE, wall time, log-density gap with its
   standard error, sliced W2 (with the noise floor of two independent target sets), and the
   fraction of samples within 3 standard deviations of a mode; print the table and write
   ``table.md``, ``table.csv``, ``table.json`` and ``samples.png``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..core.score_model import ScoreModel
from ..data.datasets import nine_gaussians
from ..data.metrics import log_density_gap, log_density_gap_stderr, mode_coverage, sliced_wasserstein
from ..plugins.api import create_model, create_process, create_sampler

#: (label, sampler name, options)
FULL_CONFIGS: list[tuple[str, str, dict]] = [
    ("sde euler 500", "sde", {"method": "euler", "steps": 500}),
    ("sde heun 100", "sde", {"method": "heun", "steps": 100}),
    ("ode dopri5 1e-5", "ode", {"method": "dopri5"}),
    ("ode rk4 25", "ode", {"method": "rk4", "steps": 25}),
    ("dpm_solver++ 2M 20", "dpm_solver", {"steps": 20}),
    ("heun (EDM) 18", "heun", {"steps": 18}),
    ("ddim 50", "ddim", {"steps": 50}),
]
QUICK_CONFIGS: list[tuple[str, str, dict]] = [
    ("sde euler 100", "sde", {"method": "euler", "steps": 100}),
    ("ode rk4 10", "ode", {"method": "rk4", "steps": 10}),
    ("dpm_solver++ 2M 10", "dpm_solver", {"steps": 10}),
    ("heun (EDM) 10", "heun", {"steps": 10}),
]
#: the rectified flow's rows: Euler on the flow (Liu et al. 2022's sampler), UniPC with steps uniform in time (the
#: better schedule for a flow, docs/bench_results.md) and DPM-Solver++ with its default log-SNR steps
FLOW_CONFIGS: list[tuple[str, str, dict]] = [
    ("ode euler 20", "ode", {"method": "euler", "steps": 20}),
    ("ode euler 100", "ode", {"method": "euler", "steps": 100}),
    ("unipc 20 time_uniform", "unipc", {"steps": 20, "schedule": "time_uniform"}),
    ("dpm_solver++ 2M 20", "dpm_solver", {"steps": 20}),
]
QUICK_FLOW_CONFIGS: list[tuple[str, str, dict]] = [
    ("ode euler 20", "ode", {"method": "euler", "steps": 20}),
]
#: the flow trained next to the diffusion: the same network and recipe, flow matching, a velocity network
FLOW_PROCESS = "rectified_flow"


@dataclass
class DemoTraining:
    """What the demo trains (the default takes one to two minutes on two CPU cores)."""

    process: str = "subvp"
    process_options: dict[str, Any] = field(default_factory=lambda: {"beta_max": 10.0})
    hidden: int = 64
    depth: int = 2
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 5e-3
    warmup_steps: int = 100
    ema_decay: float = 0.99

    def as_flow(self) -> "DemoTraining":
        """The same recipe for the rectified flow (its own default loss, flow matching)."""
        return DemoTraining(**{**asdict(self), "process": FLOW_PROCESS, "process_options": {}})

    @classmethod
    def quick(cls) -> "DemoTraining":
        """Seconds, for tests: a small network and few steps."""
        return cls(hidden=32, depth=1, steps=150, batch_size=256, warmup_steps=20, ema_decay=0.9)


@dataclass
class DemoRow:
    """One line of the demo table."""

    model: str
    sampler: str
    nfe: int
    seconds: float
    log_density_gap: float
    gap_stderr: float
    sliced_w2: float
    near_mode: float


def train_demo_model(out: Path, settings: DemoTraining, seed: int = 0, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32, progress: bool = False) -> tuple[ScoreModel, list]:
    """Train the demo's score model; checkpoint in ``out`` (earlier demo checkpoints there are
    replaced). Returns the EMA model and the logged losses."""
    from ..training import Trainer, list_checkpoints

    out.mkdir(parents=True, exist_ok=True)
    for old in list_checkpoints(out):  # a fresh run: the demo always retrains
        old.with_suffix(".safetensors").unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    torch.manual_seed(seed)
    process = create_process(settings.process, **settings.process_options)
    net = create_model("mlp", dim=2, hidden=settings.hidden, depth=settings.depth)
    model = ScoreModel(net, process).to(device=device, dtype=dtype)
    trainer = Trainer(model, nine_gaussians(dtype=dtype), out_dir=out, steps=settings.steps,
                      batch_size=settings.batch_size, lr=settings.lr, warmup_steps=settings.warmup_steps,
                      lr_schedule="cosine", ema_decay=settings.ema_decay, seed=seed, log_every=50,
                      progress=progress, metadata={"data": {"name": "nine_gaussians", "options": {}},
                                                   "demo": asdict(settings)},
                      distributed=False)
    trainer.fit()
    return trainer.ema_model().eval(), trainer.losses


def run_demo(out_dir: str | Path = "demo_out", n: int = 4000, seed: int = 0, quick: bool = False,
             echo: Callable[[str], None] = print, steps: int | None = None, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, progress: bool = False) -> list[DemoRow]:
    """Train, sample with several solvers, score, and write the demo's files.

    Args:
        out_dir: output folder (created): ``table.{md,csv,json}``, ``samples.png``, ``loss.png``,
            ``losses.csv`` and the checkpoint folders ``model/`` and ``flow_model/`` (the rectified flow).
        n: samples per configuration.
        seed: seeds the network initialisation, training and every sampler (the same seed for
            each configuration).
        quick: a small network, few steps and four solvers (seconds; for tests).
        echo: where progress lines and the table go.
        steps: training steps (default 2000; 150 with ``quick``).
        device, dtype: where and in which precision to train and sample.
        progress: show a training progress bar.

    Returns:
        The table rows (exact rows first, per solver, then the trained ones; then the flow's, likewise).
    """
    from .outputs import write_losses

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = DemoTraining.quick() if quick else DemoTraining()
    if steps is not None:
        settings.steps = int(steps)
        settings.warmup_steps = min(settings.warmup_steps, max(0, settings.steps // 10))
    target = nine_gaussians(dtype=torch.float64)
    echo(f"training an MLP ({settings.hidden} wide, {settings.depth} deep) on the nine-Gaussians set: "
         f"{settings.process} {settings.process_options}, {settings.steps} steps of {settings.batch_size}")
    t0 = time.perf_counter()
    trained, losses = train_demo_model(out / "model", settings, seed=seed, device=device, dtype=dtype,
                                       progress=progress)
    echo(f"  trained in {time.perf_counter() - t0:.1f} s, final loss {losses[-1][1]:.4f}; "
         f"checkpoint in {out / 'model'}")
    write_losses(out, losses, f"demo: {settings.process} + mlp on nine Gaussians")
    flow_settings = settings.as_flow()
    t0 = time.perf_counter()
    flow_trained, flow_losses = train_demo_model(out / "flow_model", flow_settings, seed=seed, device=device,
                                                 dtype=dtype, progress=progress)
    echo(f"  the same MLP as a rectified flow (flow matching, velocity): trained in {time.perf_counter() - t0:.1f} s, "
         f"final loss {flow_losses[-1][1]:.4f}; checkpoint in {out / 'flow_model'}")
    exact = nine_gaussians(dtype=dtype).score_model(create_process(settings.process, **settings.process_options))
    exact = exact.to(device=device)
    exact_flow = nine_gaussians(dtype=dtype).score_model(create_process(FLOW_PROCESS)).to(device=device)
    reference = target.sample(n, torch.Generator().manual_seed(seed + 10_000))
    # E_p[log p] from many target samples, so the gap's noise is the sampler's samples' alone
    big_reference = target.sample(200_000, torch.Generator().manual_seed(seed + 30_000))
    noise_floor = sliced_wasserstein(target.sample(n, torch.Generator().manual_seed(seed + 20_000)), reference,
                                     generator=torch.Generator().manual_seed(1))
    configs = QUICK_CONFIGS if quick else FULL_CONFIGS
    flow_configs = QUICK_FLOW_CONFIGS if quick else FLOW_CONFIGS
    rows: list[DemoRow] = []
    panels: list[tuple[str, torch.Tensor]] = []
    runs = [("exact", exact, configs), ("trained", trained, configs), ("exact flow", exact_flow, flow_configs),
            ("trained flow", flow_trained, flow_configs)]
    for model_name, model, model_configs in runs:
        for label, sname, opts in model_configs:
            sampler = create_sampler(sname, **opts)
            t1 = time.perf_counter()
            with torch.no_grad():
                res = sampler.sample(model, (n, 2), generator=torch.Generator().manual_seed(seed))
            dt = time.perf_counter() - t1
            x = res.samples.detach().to("cpu", torch.float64)
            near, _ = mode_coverage(target, x)
            row = DemoRow(model_name, label, res.nfe, dt, log_density_gap(target, x, big_reference),
                          log_density_gap_stderr(target, x, big_reference),
                          sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(1)), near)
            rows.append(row)
            panels.append((f"{model_name}: {label}", x))
            echo(f"  {model_name:<8} {label:<20} nfe={res.nfe:<5} {dt:6.2f}s  gap={row.log_density_gap:+.3f}")
    header = (f"Nine Gaussians, {settings.process} {settings.process_options}; trained: MLP {settings.hidden}x"
              f"{settings.depth}, {settings.steps} steps of {settings.batch_size}, EMA {settings.ema_decay}; "
              f"'flow' rows: {FLOW_PROCESS} (the same MLP and recipe, flow matching, velocity); "
              f"{n} samples per row, seed {seed}.")
    table = header + "\n\n" + format_table(rows, noise_floor)
    echo(table)
    _write_tables(out, rows, noise_floor, table, settings, n, seed)
    _plot(out / "samples.png", reference, panels, len(configs), losses)
    echo(f"wrote {out / 'table.md'}, {out / 'table.csv'}, {out / 'table.json'}, {out / 'samples.png'}, "
         f"{out / 'loss.png'}; sample the trained model again with: sdeflow sample {out / 'model'} --sampler heun")
    return rows


def format_table(rows: list[DemoRow], noise_floor: float) -> str:
    """A Markdown table of the rows, with the sliced-W2 noise floor in a note."""
    lines = ["| model | sampler | NFE | time (s) | log-density gap (nats) | sliced W2 | within 3 std of a mode |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.sampler} | {r.nfe} | {r.seconds:.2f} | "
                     f"{r.log_density_gap:+.3f} ± {r.gap_stderr:.3f} | {r.sliced_w2:.3f} | {100 * r.near_mode:.1f}% |")
    lines.append("")
    lines.append(f"Sliced W2 between two independent target sample sets of this size (noise floor): {noise_floor:.3f}. "
                 "The log-density gap is E_target[log p] (from 200,000 target samples) - E_samples[log p] under the "
                 "exact target density; ± is its standard error. 0 within ± means the sampler is indistinguishable "
                 "from the target by this statistic. 'exact' rows use the mixture's closed-form score (the error is "
                 "the solver's alone); 'trained' rows add the network's error. 'flow' rows: the rectified flow "
                 "x_t = (1 - t) x_0 + t eps, sampled by Euler on its velocity (the rectified-flow sampler), UniPC "
                 "with time-uniform steps (on a flow better than log-SNR steps) and DPM-Solver++ (log-SNR steps).")
    return "\n".join(lines)


def _write_tables(out: Path, rows: list[DemoRow], noise_floor: float, table: str, settings: DemoTraining, n: int,
                  seed: int) -> None:
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    (out / "table.json").write_text(json.dumps({"rows": [asdict(r) for r in rows], "sliced_w2_noise_floor": noise_floor,
                                                "training": asdict(settings), "samples": n, "seed": seed}, indent=2))
    (out / "table.md").write_text(table + "\n")


def _plot(path: Path, reference: torch.Tensor, panels: list[tuple[str, torch.Tensor]], ncols: int,
          losses: list[tuple[int, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = 1 + -(-len(panels) // ncols)  # the target and the loss on the first row, then the panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    first = axes[0][0]
    first.scatter(reference[:, 0], reference[:, 1], s=1, alpha=0.3, color="k")
    first.set_title("target (nine Gaussians)", fontsize=8)
    for ax in axes[0][1:]:
        ax.axis("off")
    if ncols > 1 and losses:
        ax = axes[0][1]
        ax.axis("on")
        ax.set_aspect("auto")
        ax.set_xlim(auto=True)
        ax.set_ylim(auto=True)
        steps, vals = zip(*losses)
        ax.plot(steps, vals, color="tab:orange")
        ax.set_yscale("log")
        ax.tick_params(labelsize=6)
        ax.set_title("training loss", fontsize=8)
    for i, (title, x) in enumerate(panels):
        ax = axes[1 + i // ncols][i % ncols]
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="tab:blue" if title.startswith("exact") else "tab:orange")
        ax.set_title(title, fontsize=8)
    for ax in axes.flat[ncols + len(panels):]:  # the unused cells of the last row
        ax.axis("off")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
