"""``sdeflow bench --model DIR`` / ``--diffusers DIR``: solver accuracy on a trained network
(:mod:`sdeflow.bench.network`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import torch

from .options import cli_errors, resolve_device


def load_network(model_dir: str | None, diffusers_dir: str | None, device: torch.device,
                 dtype: torch.dtype) -> tuple[Any, tuple[int, ...], str]:
    """``(score model, sample shape, label)`` of an sdeflow checkpoint or a diffusers folder.

    Raises:
        click.UsageError: both or neither given.
        click.ClickException: the model cannot be loaded (the sdeflow error's message).
    """
    if (model_dir is None) == (diffusers_dir is None):
        raise click.UsageError("give one of --model DIR and --diffusers DIR")
    from ..interop import DiffusersNetwork, from_diffusers, is_diffusers_folder

    path = model_dir if model_dir is not None else diffusers_dir
    assert path is not None
    with cli_errors():
        if diffusers_dir is not None or is_diffusers_folder(path):
            model = from_diffusers(path, device=device, dtype=dtype)
            shape = model.network.sample_shape if isinstance(model.network, DiffusersNetwork) else None
            if shape is None:
                raise click.ClickException(f"{path}: the model's config does not give in_channels and sample_size")
            return model, tuple(shape), Path(path).name or str(path)
        from ..training import load_checkpoint
        from ..training.model_spec import ModelSpec, load_score_model

        ckpt = load_checkpoint(path)
        spec = ModelSpec.from_checkpoint(ckpt)
        if spec.sample_shape is None:
            raise click.ClickException(f"checkpoint {ckpt.path} does not record the data's sample shape")
        model = load_score_model(ckpt, device=device, dtype=dtype)
        return model, tuple(spec.sample_shape), f"{Path(path).name or path}@{ckpt.step}"


def network_bench(model_dir: str | None, diffusers_dir: str | None, samplers: list[str] | None,
                  budgets: list[int] | None, paths: int | None, seed: int | None, device: str | None,
                  dtype: str | None, peers: bool, peer_list: list[str] | None, threads: int | None, out_dir: str,
                  no_plots: bool, as_json: bool, progress: bool, reference_tol: float | None) -> None:
    """Run and write the real-network benchmark (the options as ``sdeflow bench`` documents them)."""
    from ..bench.network import (
        DEFAULT_NFE,
        DEFAULT_SAMPLERS,
        DTYPES,
        NetworkBenchSpec,
        all_deterministic_samplers,
        network_json,
        network_table,
        run_network_bench,
        write_network_outputs,
    )
    from ..bench.peers import DETERMINISTIC_PEERS
    from ..errors import SdeflowError

    dev = resolve_device(device or "cpu")
    name = dtype or "float64"
    model, shape, label = load_network(model_dir, diffusers_dir, dev, DTYPES[name])
    if samplers == ["all"]:
        samplers = all_deterministic_samplers()
    if peer_list == ["all"]:
        peer_list = list(DETERMINISTIC_PEERS)
    spec = NetworkBenchSpec(samplers=samplers if samplers is not None else list(DEFAULT_SAMPLERS),
                            peers=(peer_list if peer_list is not None else list(DETERMINISTIC_PEERS)) if peers else [],
                            nfe=budgets or list(DEFAULT_NFE), paths=paths or 16, seed=seed or 0, device=str(dev),
                            dtype=name, reference_tol=reference_tol or 1e-7, threads=threads)
    t0 = time.perf_counter()
    try:
        spec.validate()
        result = run_network_bench(model, shape, spec, label=label, progress=progress,
                                   echo=lambda s: click.echo(s, err=True))
        written = write_network_outputs(result, out_dir, plots=not no_plots)
    except SdeflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(network_json(result), indent=1, default=str))
    else:
        click.echo(network_table(result))
    click.echo(f"wrote {', '.join(str(p) for p in written)} ({time.perf_counter() - t0:.0f} s)", err=True)
