"""``sdeflow demo``: the README's main job."""

from __future__ import annotations

import click

from .main import main
from .options import common_options, progress_option, resolve_device, resolve_dtype, resolve_seed


@main.command("demo")
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the tables (md/csv/json), samples.png, loss.png and the model checkpoint.")
@click.option("-n", "--samples", "n", default=4000, show_default=True, type=click.IntRange(min=10),
              help="Samples per solver configuration.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps [default: 2000; 150 with --quick].")
@click.option("--quick", is_flag=True, help="A small network, few steps and four solvers (seconds).")
@progress_option
@common_options
def demo_command(out_dir: str, n: int, steps: int | None, quick: bool, progress: bool, device: str | None,
                 seed: int | None, dtype: str | None) -> None:
    """Train an MLP score model on the nine-Gaussians set, sample it and the exact score with
    several solvers (reverse SDE, probability-flow ODE, DPM-Solver++, Heun, DDIM), print a
    table of NFE, time and error, and write the table, a samples plot and the loss curve."""
    from ..demo import run_demo

    run_demo(out_dir, n=n, seed=resolve_seed(seed), quick=quick, echo=click.echo, steps=steps,
             device=resolve_device(device), dtype=resolve_dtype(dtype), progress=progress)
