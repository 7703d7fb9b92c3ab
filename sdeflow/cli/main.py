"""``sdeflow`` command group."""

from __future__ import annotations

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdeflow")
def main() -> None:
    """sdeflow: score-based diffusion models from one forward SDE."""


from . import (  # noqa: E402,F401  (importing them registers the commands)
    bench_cmd,
    demo_cmd,
    likelihood_cmd,
    plugins_cmd,
    sample_cmd,
    train_cmd,
)
