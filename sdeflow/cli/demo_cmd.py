"""``sdeflow demo``: the README's main job; ``sdeflow demo images``: a UNet on the digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .main import main
from .options import (
    cli_errors,
    common_options,
    component_option,
    parse_assignments,
    progress_option,
    resolve_device,
    resolve_dtype,
    resolve_seed,
)

#: processes the image demo trains when no --process is given (VDM, a process of discrete data, VP for
#: comparison, and a rectified flow)
IMAGE_DEMO_PROCESSES = ("vp", "vdm", "rectified_flow")


@main.group("demo", invoke_without_command=True)
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the tables (md/csv/json), samples.png, loss.png and the model checkpoint.")
@click.option("-n", "--samples", "n", default=4000, show_default=True, type=click.IntRange(min=10),
              help="Samples per solver configuration.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps [default: 2000; 150 with --quick].")
@click.option("--quick", is_flag=True, help="A small network, few steps and four solvers (seconds).")
@click.option("--images", is_flag=True,
              help="Run the image demo instead (`sdeflow demo images` with its defaults: a UNet on the digits under "
                   "vp, vdm and rectified_flow; --out [default: image_demo_out], --steps, -n (grid images), --quick "
                   "and the common options carry over).")
@progress_option
@common_options
@click.pass_context
def demo_command(ctx: click.Context, out_dir: str, n: int, steps: int | None, quick: bool, images: bool,
                 progress: bool, device: str | None, seed: int | None, dtype: str | None) -> None:
    """Train an MLP score model on the nine-Gaussians set, sample it and the exact score with
    several solvers (reverse SDE, probability-flow ODE, DPM-Solver++, Heun, DDIM), print a
    table of NFE, time and error, and write the table, a samples plot and the loss curve.

    `sdeflow demo --images` (or `sdeflow demo images`, whose --help lists all its options) is the image
    demo: a UNet on the digits.
    """
    if ctx.invoked_subcommand is not None:
        given = [p.opts[0] for p in ctx.command.params
                 if ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, None)]
        if given:
            raise click.UsageError(f"{', '.join(given)} belong(s) to `sdeflow demo` itself; give the options of "
                                   f"`sdeflow demo {ctx.invoked_subcommand}` after the subcommand")
        return
    if images:
        set_by_user = {name: ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
                       for name in ("out_dir", "n")}
        ctx.invoke(image_demo_command, out_dir=out_dir if set_by_user["out_dir"] else "image_demo_out",
                   n_samples=n if set_by_user["n"] else None, steps=steps, quick=quick, progress=progress,
                   device=device, seed=seed, dtype=dtype)
        return
    from .demo import run_demo

    run_demo(out_dir, n=n, seed=resolve_seed(seed), quick=quick, echo=click.echo, steps=steps,
             device=resolve_device(device), dtype=resolve_dtype(dtype), progress=progress)


@demo_command.command("images")
@click.option("--out", "out_dir", default="image_demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the run: one subfolder per process (grid.png, report.md/json, model/) and summary.md.")
@click.option("--process", "processes", multiple=True, metavar="NAME",
              help="Process to train (repeatable; any registered one) [default: vp, vdm and rectified_flow].")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Wall-clock training budget per process (ignored with --steps).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimiser steps per process instead of --minutes (exact and reproducible) [--quick: 100].")
@component_option("sampler", help="Sampler of the grid [default: dpm_solver 20 steps; for vdm its ancestral "
                  "chain, 1000 steps, clip_x0=1, then the decoder p(x | z_0)].")
@click.option("--model-opt", multiple=True, metavar="KEY=VALUE",
              help="Option of the UNet (repeatable), e.g. base_channels=16.")
@click.option("--image-size", type=click.IntRange(min=8), default=8, show_default=True,
              help="Side of the images: the 8x8 digits are padded with background to it.")
@click.option("-n", "--samples", "n_samples", type=click.IntRange(min=1), default=None,
              help="Images in each grid [default: 64; 16 with --quick].")
@click.option("--n-eval", type=click.IntRange(min=2), default=None,
              help="Held-out digits for bits/dim (at most 359) [default: 128; 16 with --quick].")
@click.option("--decode", type=click.Choice(("mode", "sample")), default="mode", show_default=True,
              help="vdm: show the decoder p(x | z_0)'s most likely level (mode) or a draw (sample).")
@click.option("--labels", is_flag=True,
              help="Train a class-conditional UNet on the digits' labels (label dropout 0.1) and write class_grid.png "
                   "(rows: digits 0-9, column blocks: guidance scales) with the digit classifier's agreement with the "
                   "requested class per guidance scale.")
@click.option("--guidance", "guidance", type=float, multiple=True, metavar="W",
              help="Guidance scales of the --labels sweep (repeatable) [default: 0, 1, 2, 4; the report's headline "
                   "is w = 2].")
@click.option("--quick", is_flag=True,
              help="Seconds: a small UNet (base_channels=8), 100 steps, 16 samples, 16 held-out digits, loose "
                   "likelihood tolerances (1e-2).")
@progress_option
@common_options
def image_demo_command(out_dir: str, processes: tuple[str, ...], minutes: float, steps: int | None, sampler: str | None,
                       sampler_opt: tuple[str, ...], model_opt: tuple[str, ...], image_size: int,
                       n_samples: int | None, n_eval: int | None, decode: str, labels: bool,
                       guidance: tuple[float, ...], quick: bool, progress: bool, device: str | None,
                       seed: int | None, dtype: str | None) -> None:
    """Train a small UNet on scikit-learn's 8x8 digits under VP, VDM and a rectified flow (or --process ...), write each
    one's sample grid and its bits/dim on held-out digits, and a summary table.

    \b
    Examples:
      sdeflow demo images                       # vp, vdm and rectified_flow, 2 minutes of training each
      sdeflow demo images --process vdm --steps 1000 --out vdm_digits
      sdeflow demo images --quick               # seconds, for a smoke test
      sdeflow demo images --process vp --labels  # class-conditional: a class-by-guidance grid of digits
    """
    from ..plugins.api import list_plugins
    from .image_demo import run_image_demo

    names = list(dict.fromkeys(processes or IMAGE_DEMO_PROCESSES))
    known = list_plugins()["process"]
    unknown = [p for p in names if p not in known]
    if unknown:
        raise click.BadParameter(f"unknown process(es) {', '.join(unknown)}; valid: {', '.join(known)}",
                                 param_hint="--process")
    model_options = parse_assignments(model_opt, "--model-opt")
    sampler_options = parse_assignments(sampler_opt, "--sampler-opt")
    if sampler is not None:
        from .options import build_component

        build_component("sampler", sampler, sampler_options)  # bad names and options: a usage error now
    kwargs: dict[str, Any] = {"n_samples": n_samples or (16 if quick else 64),
                              "n_eval": n_eval or (16 if quick else 128)}
    if guidance and not labels:
        raise click.BadParameter("the guidance sweep needs --labels", param_hint="--guidance")
    if labels:
        kwargs.update(labels=True, per_class=4 if quick else 20)
        if guidance:
            kwargs["guidance_scales"] = tuple(dict.fromkeys(guidance))
    if quick:
        model_options.setdefault("base_channels", 8)
        steps = steps or 100
        kwargs.update(rtol=1e-2, atol=1e-2)
    dev, dt, s = resolve_device(device), resolve_dtype(dtype), resolve_seed(seed)
    out = Path(out_dir)
    results = []
    for name in names:
        with cli_errors():
            results.append(run_image_demo(out / name, name, steps=steps, minutes=minutes, image_size=image_size,
                                          sampler=sampler, sampler_options=sampler_options or None,
                                          model_options=model_options, seed=s, device=dev, dtype=dt, decode=decode,
                                          progress=progress, echo=click.echo, **kwargs))
    from .image_demo import format_summary

    text = format_summary(results, out)
    with cli_errors():
        from ..utils.atomic import atomic_write

        atomic_write(out / "summary.md", text)
    click.echo(text, nl=False)
    click.echo(f"wrote {out / 'summary.md'}")
