"""Files the commands write: sample arrays (.pt/.npz), plots (PNG), loss curves."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import click
import torch
from torch import Tensor

from ..utils.atomic import atomic_path

SAMPLE_SUFFIXES = (".pt", ".npz")
#: images drawn on a sample grid at most
GRID_MAX = 64
#: small images are enlarged on the grid to at least this many pixels
GRID_PIXELS = 32


def check_sample_path(path: str | Path, flag: str = "--out") -> Path:
    """``path`` if it ends in .pt or .npz, else a usage error listing those."""
    p = Path(path)
    if p.suffix.lower() not in SAMPLE_SUFFIXES:
        raise click.BadParameter(f"{p}: the output format comes from the suffix; valid: {', '.join(SAMPLE_SUFFIXES)}",
                                 param_hint=flag)
    return p


def save_samples(path: Path, samples: Tensor, meta: dict[str, Any]) -> None:
    """Write ``samples`` and JSON-serialisable ``meta``.

    ``.pt``: a dict ``{"samples": tensor, **meta}`` (loads with ``torch.load(weights_only=True)``);
    ``.npz``: array ``samples`` plus ``meta`` as a JSON string array ``meta``.
    """
    x = samples.detach().cpu()
    if path.suffix.lower() == ".pt":
        with atomic_path(path) as tmp:
            torch.save({"samples": x, **meta}, tmp)
    else:
        import numpy as np

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, samples=x.numpy(), meta=np.array(json.dumps(meta)))


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig: Any, path: Path, dpi: int = 100) -> None:
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def plot_samples(path: Path, samples: Tensor, title: str = "", reference: Tensor | None = None) -> str:
    """A PNG of ``samples``: a scatter plot for 2-D points (first two coordinates for more), a
    histogram for 1-D values, an image grid of the first :data:`GRID_MAX` images for
    ``(n, c, h, w)`` images. Returns the kind drawn."""
    x = samples.detach().cpu().float()
    if x.ndim == 4:
        save_image_grid(path, x[:GRID_MAX])
        return "image grid" + (f" of the first {GRID_MAX}" if x.shape[0] > GRID_MAX else "")
    flat = x.reshape(x.shape[0], -1)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5) if flat.shape[1] > 1 else (6, 4))
    if flat.shape[1] == 1:
        ax.hist(flat[:, 0].numpy(), bins=min(100, max(10, int(math.sqrt(flat.shape[0])))), density=True, alpha=0.7,
                label="samples")
        if reference is not None:
            ax.hist(reference.reshape(-1).cpu().float().numpy(), bins=100, density=True, histtype="step", color="k",
                    label="data")
            ax.legend()
        kind = "histogram"
    else:
        if reference is not None:
            r = reference.reshape(reference.shape[0], -1).cpu().float()
            ax.scatter(r[:, 0], r[:, 1], s=1, alpha=0.2, color="k", label="data")
        ax.scatter(flat[:, 0], flat[:, 1], s=1, alpha=0.4, label="samples")
        ax.set_aspect("equal", adjustable="datalim")
        kind = "scatter" if flat.shape[1] == 2 else f"scatter of the first 2 of {flat.shape[1]} coordinates"
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)
    return kind


def save_image_grid(path: Path, images: Tensor) -> None:
    """An image grid PNG of ``(n, c, h, w)`` images in ``[-1, 1]`` (clamped): ``ceil(sqrt(n))`` per row,
    small images enlarged by an integer factor to at least 32 pixels (:func:`sdeflow.data.images.save_image_grid`)."""
    from ..data.images import save_image_grid as grid

    n, h = images.shape[0], images.shape[-1]
    grid(images.clamp(-1, 1), path, nrow=max(1, math.ceil(math.sqrt(n))), upscale=max(1, math.ceil(GRID_PIXELS / h)))


def write_losses(folder: Path, losses: Sequence[tuple[int, float]], title: str = "training loss") -> list[Path]:
    """``losses.csv`` (step, loss) and ``loss.png`` in ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "losses.csv"

    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss"])
        w.writerows([int(s), float(v)] for s, v in losses)
    png = folder / "loss.png"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if losses:
        steps, vals = zip(*losses)
        ax.plot(steps, vals)
        if all(v > 0 for v in vals):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over the log interval)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save_fig(fig, png)
    return [csv_path, png]
