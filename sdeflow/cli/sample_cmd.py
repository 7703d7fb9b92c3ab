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
@click.argument("checkpoint", metavar="CHECKPOINT", required=False)
@click.option("--diffusers", "diffusers_dir", default=None, metavar="DIR",
              help="Sample a diffusers pipeline or model folder (UNet2DModel + scheduler config, safetensors) "
                   "instead of a CHECKPOINT (sdeflow.interop.from_diffusers).")
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
@click.option("--class", "classes", multiple=True, metavar="CLASS",
              help="Sample a class of a class-conditional model (trained with --labels): its index or name; repeatable "
                   "(the samples are split evenly among the classes, in order).")
@click.option("--guidance", type=float, default=0.0, show_default=True,
              help="Classifier-free guidance scale w with --class: (1 + w) eps(x, c) - w eps(x, null) "
                   "(Ho & Salimans 2022); 0 samples p(x | c).")
@click.option("--known", type=click.Path(dir_okay=False), default=None,
              help="Known values to impute around (with --mask): a .npz/.pt/.npy array of one sample (or one per "
                   "sample) in the model's data scale, or a PNG image for an image model. Any sampler applies the "
                   "replacement method (Song et al. 2021, App. I.2); --sampler repaint adds RePaint's resampling.")
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False), default=None,
              help="Which values are known (with --known): a .npz/.pt/.npy array (true/1 = known) or a PNG "
                   "(white = known).")
@click.option("--decode", type=click.Choice(DECODE_CHOICES), default="mode", show_default=True,
              help="Processes of discrete data (vdm): map the final latents z_0 onto the data levels with the "
                   "decoder p(x | z_0), its most likely value (mode) or a draw (sample); none keeps z_0. "
                   "Continuous processes are not affected.")
@progress_option
@common_options
def sample_command(checkpoint: str | None, diffusers_dir: str | None, sampler: str, sampler_opt: tuple[str, ...],
                   n: int, out: str, plot_path: str | None, no_plot: bool, raw: bool, batch_size: int | None,
                   classes: tuple[str, ...], guidance: float, known: str | None, mask_path: str | None, decode: str,
                   progress: bool, device: str | None, seed: int | None, dtype: str | None) -> None:
    """Draw samples from the score model in CHECKPOINT (a checkpoint folder or step_XXXXXXXX.json), or
    from a diffusers folder (--diffusers DIR); images are also drawn as a grid.

    Under torchrun the N samples are split over the ranks and gathered on rank 0.

    \b
    Examples:
      sdeflow sample runs/train --sampler dpm_solver --sampler-opt steps=20 --n 5000 --out dpm.npz
      sdeflow sample runs/train --sampler sde --sampler-opt method=srk --sampler-opt steps=200 --out sde.pt
      sdeflow sample demo_out/model --sampler heun --sampler-opt steps=18 --raw
      sdeflow sample runs/digits --sampler ancestral --sampler-opt clip_x0=1 --sampler-opt denoise=false --n 64
      sdeflow sample runs/digits_cond --class 3 --guidance 2 --sampler dpm_solver --n 64
      sdeflow sample runs/moons --known point.npz --mask mask.npz --sampler repaint --n 2000
      sdeflow sample runs/digits --known digit.png --mask mask.png --sampler repaint --n 16
      sdeflow sample --diffusers my_ddpm --sampler dpm_solver --sampler-opt steps=20 --n 64 --out ddpm.npz
    """
    from .loading import open_model
    from .outputs import check_sample_path

    out_path = check_sample_path(out)
    png = None if no_plot else Path(plot_path) if plot_path else out_path.with_suffix(".png")
    if png is not None and png.suffix.lower() != ".png":
        raise click.BadParameter(f"{png}: the plot is a PNG file; give a path ending in .png", param_hint="--plot")
    options = parse_assignments(sampler_opt, "--sampler-opt")
    from ..training.distributed import distributed_session

    if guidance != 0.0 and not classes:
        raise click.BadParameter("guidance needs a class: --class C --guidance W", param_hint="--guidance")
    if (known is None) != (mask_path is None):
        raise click.BadParameter("imputation needs both --known and --mask", param_hint="--known/--mask")
    with distributed_session(resolve_device(device)) as ctx:
        run = open_model(checkpoint, diffusers_dir, raw, ctx, dtype)
        cond = _conditions(run, classes, guidance, known, mask_path, n)
        _sample(run, sampler, options, n, out_path, png, raw, batch_size, progress, seed, decode, cond)


def _conditions(run: Any, classes: tuple[str, ...], guidance: float, known: str | None, mask_path: str | None,
                n: int) -> Any:
    from .conditions import Conditions, load_known, load_mask, resolve_classes

    cond = Conditions(guidance=float(guidance))
    if classes:
        cond.classes, cond.class_names = resolve_classes(classes, run.model.num_classes, run.spec.class_names)
    if known is not None and mask_path is not None:
        shape = tuple(run.spec.sample_shape)
        with cli_errors():
            cond.values = load_known(known, shape, n, run.dtype)
            cond.mask = load_mask(mask_path, shape, n)
        cond.per_sample = cond.values.dim() > len(shape)
    return cond


def _sample(run: Any, sampler: str, options: dict[str, Any], n: int, out_path: Path, png: Path | None, raw: bool,
            batch_size: int | None, progress: bool, seed: int | None, decode: str = "mode", cond: Any = None) -> None:
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
    from .conditions import Conditions

    cond = cond or Conditions()
    with cli_errors(), torch.no_grad():
        smp.check_compatible(cond.model(run.model, n, start, start + min(chunk, max(1, local))))
        done = 0
        while done < local:
            m = min(chunk, local - done)
            model = cond.model(run.model, n, start + done, start + done + m)
            res = smp.sample(model, (m, *shape), generator=gen, progress=progress and run.is_main)
            parts.append(model.fill_observed(res.samples) if cond.mask is not None else res.samples)
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
    meta: dict[str, Any] = {"checkpoint": str(run.checkpoint.path),
                            "step": None if run.pretrained else run.checkpoint.step,
                            "pretrained": run.pretrained, "sampler": sampler,
                            "sampler_options": _jsonable(options), "nfe": nfe, "seed": seed_v, "ema": not raw,
                            "seconds": seconds, "world_size": run.ctx.world_size,
                            "decoded": decode if decoded else None, **cond.metadata()}
    with cli_errors():
        save_samples(out_path, gathered, meta)
    given = ""
    if cond.classes is not None:
        given += f" of class {', '.join(cond.class_names or [])}"
        given += f" (guidance {cond.guidance:g})" if cond.guidance else ""
    if cond.mask is not None:
        given += f" given {int(cond.mask.sum())} known values"
    msg = (f"drew {n} samples {tuple(gathered.shape[1:])}{given} with {sampler} {options or ''} from "
           f"{run.origin(raw)}: nfe={nfe}, {seconds:.2f} s"
           + (f", decoded by p(x | z_0) ({decode})" if decoded else "") + f" -> {out_path}")
    click.echo(msg)
    bad = int((~torch.isfinite(gathered)).any(dim=tuple(range(1, gathered.ndim))).sum()) if gathered.numel() else 0
    if bad:
        click.echo(f"warning: {bad} of {n} samples contain NaN/Inf", err=True)
    target = run.training_target()
    reference = None
    if target is not None and gathered.ndim == 2 and gathered.shape[1] == target.dim:
        exact, part, what = _exact_conditional(target, gathered, cond)
        if exact is not None and not bad:
            click.echo(_quality_line(exact, part, seed_v, what))
        if png is not None and (exact is None or exact.dim == target.dim):  # a reference of the samples' dimension
            reference = (exact or target).sample(min(n, 5000), torch.Generator().manual_seed(seed_v + 1))
    if png is not None:
        with cli_errors():
            kind = plot_samples(png, gathered, f"{sampler} {json.dumps(_jsonable(options))} (nfe {nfe})", reference)
        click.echo(f"{kind} -> {png}")


def _exact_conditional(target: Any, x: Any, cond: Any) -> tuple[Any, Any, str]:
    """The exact density the samples ``x`` should follow given ``cond`` (the class's component; the
    conditional of the unobserved coordinates), the part of ``x`` it describes and its name; ``None``
    where there is no closed form (guided samples, several classes, one known row per sample)."""
    if not cond.active:
        return target, x, "the exact training density"
    if cond.per_sample or cond.guidance != 0.0 or (cond.classes is not None and len(set(cond.classes)) > 1):
        return None, x, ""
    what = []
    if cond.classes is not None:
        target = target.condition(component=cond.classes[0])
        what.append(f"class {cond.class_names[0]}")
    if cond.mask is not None:
        mask = cond.mask.reshape(-1)
        target = target.condition(mask=mask, values=cond.values.reshape(-1).to(target.dtype))
        x = x.reshape(x.shape[0], -1)[:, ~mask.to(x.device)]
        what.append("the known values")
    return target, x, "the exact density given " + " and ".join(what)


def _quality_line(target: Any, x: Any, seed: int, what: str = "the exact training density") -> str:
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
    return (f"vs {what}: log-density gap {gap:+.3f} ± {se:.3f} nats, sliced W2 {sw:.3f} "
            f"(noise floor {floor:.3f}), {100 * near:.1f}% within 3 std of a mode")


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(options, default=str))
