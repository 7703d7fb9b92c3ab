"""Checkpoints: tensors in safetensors, everything else in a small JSON manifest.

A checkpoint ``step_00001000`` in a folder is two files:

* ``step_00001000.safetensors``: model, EMA and optimiser tensors and RNG states, under
  prefixed keys (``model.``, ``ema.``, ``optim.``, ``rng.``);
* ``step_00001000.json``: step, optimiser hyper-parameters and non-tensor state, EMA update
  count, user metadata, and the SHA-256 and size of the tensor file.

Each file is written to a temporary name in the same folder, flushed, fsync'ed and renamed
over its final name (atomic on POSIX), tensors first, manifest last: a checkpoint exists once
its manifest does, and an interrupted save leaves the previous checkpoints untouched. Loading
checks the manifest's hash, so a truncated or corrupted tensor file is an error, never a
silently wrong model. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import CheckpointError
from ..utils.atomic import atomic_write

FORMAT = "sdeflow-checkpoint/1"
_NAME = re.compile(r"^step_(\d{8,})\.json$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors by prefix and the manifest."""

    path: Path
    tensors: dict[str, torch.Tensor]
    manifest: dict[str, Any]

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors whose key starts with ``prefix + "."``, with the prefix removed."""
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}

    @property
    def step(self) -> int:
        return int(self.manifest["step"])


def save_checkpoint(folder: str | Path, step: int, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> Path:
    """Write checkpoint ``step`` into ``folder`` atomically and return its manifest path.

    Args:
        folder: the checkpoint folder (created).
        step: training step, part of the file name.
        tensors: flat ``name -> tensor`` dict (contiguous CPU copies are made).
        manifest: JSON-serialisable metadata; ``format``, ``step`` and the file hash are added.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"step_{int(step):08d}"
    blob = st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})
    meta = dict(manifest)
    meta.update(format=FORMAT, step=int(step), tensors_file=f"{stem}.safetensors",
                sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    atomic_write(folder / f"{stem}.safetensors", blob)
    target = folder / f"{stem}.json"
    atomic_write(target, json.dumps(meta, indent=2, sort_keys=True).encode())
    return target


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Manifest paths in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a checkpoint from its manifest path (``.json``), its tensor file, or a
    folder (then the newest checkpoint that verifies).

    Raises:
        CheckpointError: missing files, bad JSON, wrong format, size or hash mismatch, or an
            unreadable tensor file; the message names the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        candidates = list_checkpoints(path)
        if not candidates:
            raise CheckpointError(f"no checkpoint (step_XXXXXXXX.json) in folder {path}")
        errors = []
        for manifest in reversed(candidates):
            try:
                return load_checkpoint(manifest)
            except CheckpointError as exc:
                errors.append(str(exc))
        raise CheckpointError(f"no valid checkpoint in {path}: " + "; ".join(errors))
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint manifest {path} does not exist")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an sdeflow checkpoint manifest (format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                              f"expected {FORMAT!r})")
    tfile = path.parent / str(manifest.get("tensors_file", ""))
    try:
        blob = tfile.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint tensor file {tfile} cannot be read: {exc}") from exc
    if len(blob) != manifest.get("size") or hashlib.sha256(blob).hexdigest() != manifest.get("sha256"):
        raise CheckpointError(f"checkpoint tensor file {tfile} is truncated or corrupted "
                              f"({len(blob)} bytes, manifest says {manifest.get('size')}; hash mismatch)")
    try:
        tensors = st_load(blob)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types
        raise CheckpointError(f"checkpoint tensor file {tfile} is not valid safetensors: {exc}") from exc
    return Checkpoint(path=path, tensors=tensors, manifest=manifest)


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints in ``folder``."""
    if keep <= 0:
        return
    for manifest in list_checkpoints(folder)[:-keep]:
        tensors = manifest.with_suffix(".safetensors")
        manifest.unlink(missing_ok=True)  # manifest first: a half-deleted checkpoint is not listed
        tensors.unlink(missing_ok=True)
