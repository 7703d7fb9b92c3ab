"""``sdeflow sample``: draw samples from a checkpoint with any sampler; write .pt/.npz and a PNG."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from .main import main
from .options import (
    build_component,
    cli_errors,
    common_options,
    component_option,
    parse_assignments,
    progress_option,
    resolve_device,
    resolve_seed,
)

#: what ``--decode`` does with the final state of a process of discrete data
DECODE_CHOICES = ("mode", "sample", "none")


def decodes(process: Any) -> bool:
    """Whether ``process`` maps its final states onto data (overrides :meth:`ForwardProcess.decode`, e.g. vdm)."""
    from ..core.process import ForwardProcess

    return type(process).decode is not ForwardProcess.decode


@main.command("sample")
@click.argument("checkpoint", metavar="CHECKPOINT")
@component_option("sampler", default="ode",
                  help="Sampler (sde, ode, pc, ancestral, ddim, dpm_solver, heun, langevin, ...).")
@click.option("-n", "--n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="Samples to draw.")
@click.option("--out", default="samples.npz", show_default=True, type=click.Path(dir_okay=False),
              help="Output file; .pt (torch dict) or .npz (numpy) by suffix.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="PNG to draw (scatter for 2-D, histogram for 1-D, grid for images) [default: --out with .png].")
@click.option("--no-plot", is_flag=True, help="Do not draw the PNG.")
@click.option("--raw", is_flag=True, help="Use the raw trained weights instead of their EMA.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Sample in chunks of at most this many (memory) [default: all at once].")
@click.option("--decode", type=click.Choice(DECODE_CHOICES), default="mode", show_default=True,
              help="Processes of discrete data (vdm): map the final latents z_0 onto the data levels with the "
                   "decoder p(x | z_0), its most likely value (mode) or a draw (sample); none keeps z_0. "
                   "Continuous processes are not affected.")
@progress_option
@common_options
def sample_command(checkpoint: str, sampler: str, sampler_opt: tuple[str, ...], n: int, out: str,
                   plot_path: str | None, no_plot: bool, raw: bool, batch_size: int | None, decode: str,
                   progress: bool, device: str | None, seed: int | None, dtype: str | None) -> None:
    """Draw samples from the score model in CHECKPOINT (a checkpoint folder or step_XXXXXXXX.json).

    Under torchrun the N samples are split over the ranks and gathered on rank 0.

    \b
    Examples:
      sdeflow sample runs/train --sampler dpm_solver --sampler-opt steps=20 --n 5000 --out dpm.npz
      sdeflow sample runs/train --sampler sde --sampler-opt method=srk --sampler-opt steps=200 --out sde.pt
      sdeflow sample demo_out/model --sampler heun --sampler-opt steps=18 --raw
      sdeflow sample runs/digits --sampler ancestral --sampler-opt clip_x0=1 --sampler-opt denoise=false --n 64
    """
    from .loading import open_checkpoint
    from .outputs import check_sample_path

    out_path = check_sample_path(out)
    png = None if no_plot else Path(plot_path) if plot_path else out_path.with_suffix(".png")
    if png is not None and png.suffix.lower() != ".png":
        raise click.BadParameter(f"{png}: the plot is a PNG file; give a path ending in .png", param_hint="--plot")
    options = parse_assignments(sampler_opt, "--sampler-opt")
    from ..training.distributed import distributed_session

    with distributed_session(resolve_device(device)) as ctx:
        run = open_checkpoint(checkpoint, raw, ctx, dtype)
        _sample(run, sampler, options, n, out_path, png, raw, batch_size, progress, seed, decode)


def _sample(run: Any, sampler: str, options: dict[str, Any], n: int, out_path: Path, png: Path | None, raw: bool,
            batch_size: int | None, progress: bool, seed: int | None, decode: str = "mode") -> None:
    import torch

    from .outputs import plot_samples, save_samples

    smp = build_component("sampler", sampler, options)
    seed_v = resolve_seed(seed)
    start, stop = run.ctx.bounds(n)
    local = stop - start
    gen = run.generator(seed_v)
    shape = tuple(run.spec.sample_shape)
    chunk = batch_size or max(1, local)
    parts, nfes = [], []
    t0 = time.perf_counter()
    with cli_errors(), torch.no_grad():
        smp.check_compatible(run.model)
        done = 0
        while done < local:
            m = min(chunk, local - done)
            res = smp.sample(run.model, (m, *shape), generator=gen, progress=progress and run.is_main)
            parts.append(res.samples)
            nfes.append(int(res.nfe))
            done += m
    seconds = time.perf_counter() - t0
    samples = torch.cat(parts) if parts else torch.empty((0, *shape), device=run.device, dtype=run.dtype)
    gathered = run.ctx.gather_rows(samples, n)
    nfe = max(nfes) if nfes else 0
    if run.ctx.active:  # the largest per-batch NFE over ranks (adaptive solvers differ per batch)
        t = torch.tensor([float(nfe)], device=run.device if run.ctx.backend == "nccl" else "cpu")
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        nfe = int(t.item())
    if not run.is_main or gathered is None:
        return
    decoded = decodes(run.model.process) and decode != "none"
    if decoded:  # the generative model's last factor p(x | z_0) (vdm)
        with cli_errors():
            gathered = run.model.process.decode(gathered, run.generator(seed_v, stream=2), sample=decode == "sample")
    meta: dict[str, Any] = {"checkpoint": str(run.checkpoint.path), "step": run.checkpoint.step, "sampler": sampler,
                            "sampler_options": _jsonable(options), "nfe": nfe, "seed": seed_v, "ema": not raw,
                            "seconds": seconds, "world_size": run.ctx.world_size,
                            "decoded": decode if decoded else None}
    with cli_errors():
        save_samples(out_path, gathered, meta)
    msg = (f"drew {n} samples {tuple(gathered.shape[1:])} with {sampler} {options or ''} from step "
           f"{run.checkpoint.step} ({'raw' if raw else 'EMA'} weights): nfe={nfe}, {seconds:.2f} s"
           + (f", decoded by p(x | z_0) ({decode})" if decoded else "") + f" -> {out_path}")
    click.echo(msg)
    bad = int((~torch.isfinite(gathered)).any(dim=tuple(range(1, gathered.ndim))).sum()) if gathered.numel() else 0
    if bad:
        click.echo(f"warning: {bad} of {n} samples contain NaN/Inf", err=True)
    target = run.training_target()
    if target is not None and gathered.ndim == 2 and gathered.shape[1] == target.dim and not bad:
        click.echo(_quality_line(target, gathered, seed_v))
    if png is not None:
        reference = (target.sample(min(n, 5000), torch.Generator().manual_seed(seed_v + 1))
                     if target is not None else None)
        with cli_errors():
            kind = plot_samples(png, gathered, f"{sampler} {json.dumps(_jsonable(options))} (nfe {nfe})", reference)
        click.echo(f"{kind} -> {png}")


def _quality_line(target: Any, x: Any, seed: int) -> str:
    """Sample quality against the exact training density (the demo's statistics)."""
    import torch

    from ..data.metrics import log_density_gap, log_density_gap_stderr, mode_coverage, sliced_wasserstein

    ref = target.sample(100_000, torch.Generator().manual_seed(seed + 2))
    same = target.sample(x.shape[0], torch.Generator().manual_seed(seed + 3))
    gap, se = log_density_gap(target, x, ref), log_density_gap_stderr(target, x, ref)
    sw = sliced_wasserstein(x, same, generator=torch.Generator().manual_seed(1))
    floor = sliced_wasserstein(target.sample(x.shape[0], torch.Generator().manual_seed(seed + 4)), same,
                               generator=torch.Generator().manual_seed(1))
    near, _ = mode_coverage(target, x)
    return (f"vs the exact training density: log-density gap {gap:+.3f} ± {se:.3f} nats, sliced W2 {sw:.3f} "
            f"(noise floor {floor:.3f}), {100 * near:.1f}% within 3 std of a mode")


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(options, default=str))
