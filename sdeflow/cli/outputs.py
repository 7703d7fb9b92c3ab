"""Files the commands write: sample arrays (.pt/.npz), plots (PNG), loss curves."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import click
import torch
from torch import Tensor

SAMPLE_SUFFIXES = (".pt", ".npz")
#: images drawn on a sample grid at most
GRID_MAX = 64


def check_sample_path(path: str | Path, flag: str = "--out") -> Path:
    """``path`` if it ends in .pt or .npz, else a usage error listing those."""
    p = Path(path)
    if p.suffix.lower() not in SAMPLE_SUFFIXES:
        raise click.BadParameter(f"{p}: the output format comes from the suffix; valid: {', '.join(SAMPLE_SUFFIXES)}",
                                 param_hint=flag)
    return p


def _atomic(path: Path, write: Any) -> None:
    """``write(tmp_path)`` then rename over ``path`` (no half-written file under the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_samples(path: Path, samples: Tensor, meta: dict[str, Any]) -> None:
    """Write ``samples`` and JSON-serialisable ``meta``.

    ``.pt``: a dict ``{"samples": tensor, **meta}`` (loads with ``torch.load(weights_only=True)``);
    ``.npz``: array ``samples`` plus ``meta`` as a JSON string array ``meta``.
    """
    x = samples.detach().cpu()
    if path.suffix.lower() == ".pt":
        _atomic(path, lambda tmp: torch.save({"samples": x, **meta}, tmp))
    else:
        import numpy as np

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, samples=x.numpy(), meta=np.array(json.dumps(meta)))
        _atomic(path, write)


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig: Any, path: Path, dpi: int = 100) -> None:
    plt = _plt()
    _atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
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
    """An image grid PNG: ``sdeflow.images.save_image_grid(images, path)`` when that module is
    installed, else a matplotlib grid (values mapped from ``[-1, 1]`` to ``[0, 1]``, clipped)."""
    try:
        from ..images import save_image_grid as grid  # type: ignore[import-not-found,attr-defined]
    except ImportError:
        grid = None
    if grid is not None:
        grid(images.clamp(-1, 1), path)
        return
    n = images.shape[0]
    cols = max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / cols))
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.0), squeeze=False)
    imgs = ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = imgs[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    _save_fig(fig, path)


def write_losses(folder: Path, losses: Sequence[tuple[int, float]], title: str = "training loss") -> list[Path]:
    """``losses.csv`` (step, loss) and ``loss.png`` in ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "losses.csv"

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", "loss"])
            w.writerows([int(s), float(v)] for s, v in losses)
    _atomic(csv_path, write)
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
