"""What ``sample`` and ``likelihood`` share: the checkpoint argument, the distributed context, and
the training target recorded in a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
import torch

from ..core.score_model import ScoreModel
from ..data import GaussianMixture
from ..training.distributed import DistributedContext
from .data import resolve_data
from .options import cli_errors, resolve_dtype


@dataclass
class LoadedRun:
    """A checkpoint opened for evaluation."""

    model: ScoreModel
    spec: Any  # sdeflow.training.ModelSpec
    checkpoint: Any  # sdeflow.training.Checkpoint
    ctx: DistributedContext
    device: torch.device
    dtype: torch.dtype
    #: a model loaded from another library's folder (``--diffusers``): what messages call it; ``None`` for a checkpoint
    pretrained: str | None = None

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    def training_data(self) -> dict[str, Any] | None:
        """``{"name", "options"}`` of the data the run was trained on (``sdeflow train`` records it)."""
        if self.pretrained is not None:
            return None
        data = (self.checkpoint.manifest.get("metadata") or {}).get("data")
        return data if isinstance(data, dict) and "name" in data else None

    def training_target(self) -> GaussianMixture | None:
        """The exact training density when the run trained on an analytic mixture, else ``None``."""
        data = self.training_data()
        if data is None:
            return None
        try:
            return resolve_data(data["name"], dict(data.get("options") or {}), torch.float64).target
        except click.BadParameter:
            return None  # e.g. a file that is not there any more

    def origin(self, raw: bool) -> str:
        """Where the weights came from, for messages: ``step N (EMA weights)`` or the diffusers folder."""
        if self.pretrained is not None:
            return self.pretrained
        return f"step {self.checkpoint.step} ({'raw' if raw else 'EMA'} weights)"

    def generator(self, seed: int, stream: int = 0) -> torch.Generator:
        """A CPU generator for this rank: ``seed`` itself on rank 0 for stream 0 (so one process
        draws what ``torch.Generator().manual_seed(seed)`` draws), a seed mixed from
        ``(seed, stream, rank)`` by NumPy's SeedSequence otherwise (torch's CPU generator uses only
        the low 32 bits of a seed, so offsets like ``seed + rank * 2**32`` would repeat streams)."""
        if self.ctx.rank == 0 and stream == 0:
            return torch.Generator().manual_seed(int(seed))
        import numpy as np

        mixed = np.random.SeedSequence([int(seed) % 2**63, int(stream), int(self.ctx.rank)]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(mixed))


def open_checkpoint(path: str, raw: bool, ctx: DistributedContext, dtype: str | None) -> LoadedRun:
    """Load the score model of checkpoint ``path`` (EMA weights unless ``raw``) on ``ctx.device``
    (in ``dtype``; default: the dtype it was trained in).

    Raises:
        click.ClickException: a missing or corrupt checkpoint (the CheckpointError message).
    """
    from ..training import load_checkpoint
    from ..training.model_spec import ModelSpec, load_score_model

    dev = ctx.device
    with cli_errors():
        ckpt = load_checkpoint(path)
        spec = ModelSpec.from_checkpoint(ckpt)
        dt = resolve_dtype(dtype, default=spec.dtype if spec.dtype in ("float32", "float64") else "float32")
        model = load_score_model(ckpt, ema=not raw, device=dev, dtype=dt)
    if spec.sample_shape is None:
        raise click.ClickException(f"checkpoint {ckpt.path} does not record the data's sample shape")
    return LoadedRun(model, spec, ckpt, ctx, dev, dt)


def open_diffusers(path: str, ctx: DistributedContext, dtype: str | None) -> LoadedRun:
    """Load the diffusers pipeline or model folder ``path`` (:func:`sdeflow.interop.from_diffusers`) on
    ``ctx.device`` in ``dtype`` (default float32) as a :class:`LoadedRun`.

    Raises:
        click.ClickException: a missing or unsupported folder (the sdeflow error's message).
    """
    from pathlib import Path

    from ..interop import DiffusersNetwork, from_diffusers
    from ..training.checkpoint import Checkpoint
    from ..training.model_spec import ModelSpec, dtype_name

    dt = resolve_dtype(dtype, default="float32")
    with cli_errors():
        model = from_diffusers(path, device=ctx.device, dtype=dt)
    shape = model.network.sample_shape if isinstance(model.network, DiffusersNetwork) else None
    if shape is None:
        raise click.ClickException(f"{path}: the model's config does not give in_channels and sample_size, so the "
                                   "shape of a sample is unknown")
    spec = ModelSpec(process="ddpm", model=type(model.network.model).__name__,
                     parametrization=model.parametrization, sample_shape=list(shape), dtype=dtype_name(dt))
    ckpt = Checkpoint(path=Path(path), tensors={}, manifest={"step": 0})
    return LoadedRun(model, spec, ckpt, ctx, ctx.device, dt, pretrained=f"diffusers folder {path}")


def open_model(checkpoint: str | None, diffusers: str | None, raw: bool, ctx: DistributedContext,
               dtype: str | None) -> LoadedRun:
    """The model of ``CHECKPOINT`` or of ``--diffusers DIR`` (exactly one of them).

    Raises:
        click.UsageError: both or neither given, or ``--raw`` with a diffusers folder.
    """
    if (checkpoint is None) == (diffusers is None):
        raise click.UsageError("give a CHECKPOINT or --diffusers DIR (one of them)")
    if diffusers is not None:
        if raw:
            raise click.UsageError("--raw selects a checkpoint's raw weights; a diffusers folder has one set")
        return open_diffusers(diffusers, ctx, dtype)
    assert checkpoint is not None
    return open_checkpoint(checkpoint, raw, ctx, dtype)
