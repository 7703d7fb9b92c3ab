"""``sdeflow demo``: the README's main job."""

from __future__ import annotations

import click

from .main import main


@main.command("demo")
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the table (md/csv/json) and the samples plot.")
@click.option("-n", "--samples", "n", default=4000, show_default=True, type=click.IntRange(min=10),
              help="Samples per configuration.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--quick", is_flag=True, help="Fewer configurations and steps (seconds).")
def demo_command(out_dir: str, n: int, seed: int, quick: bool) -> None:
    """Sample the nine-Gaussians set with its exact score by several sde and ode solvers;
    print a table of NFE, time and error and write a plot."""
    import torch

    from ..demo import run_demo

    torch.set_num_threads(max(1, torch.get_num_threads()))
    run_demo(out_dir, n=n, seed=seed, quick=quick, echo=click.echo)
