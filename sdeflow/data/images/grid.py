"""Sample grids: a batch of images tiled into one picture and saved as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from ...errors import OptionError, ShapeError
from ...utils.atomic import atomic_write
from .convert import check_images, to_uint8
from .io import encode_png


def make_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 255,
              value_range: tuple[float, float] = (-1.0, 1.0), upscale: int = 1) -> Tensor:
    """Tile a batch ``(N, C, H, W)`` into one ``uint8`` image ``(C, H', W')``, ``nrow`` images per row.

    The layout of torchvision's ``make_grid``: images in row-major order, ``padding`` pixels of
    ``pad_value`` between and around them; the last row is filled with padding where ``N`` is
    not a multiple of ``nrow``.

    Args:
        images: the batch (values in ``value_range``; clamped).
        nrow: images per row (fewer when ``N < nrow``).
        padding: pixels between images (``>= 0``).
        pad_value: gray level ``0..255`` of the padding.
        value_range: ``(lo, hi)`` mapped onto ``0..255``.
        upscale: integer nearest-neighbour magnification of every image (8x8 digits are tiny).

    Returns:
        ``uint8`` tensor ``(C, rows * (H u + p) + p, cols * (W u + p) + p)`` with ``u = upscale``.
    """
    images = check_images(images)
    for name, val, low in (("nrow", nrow, 1), ("padding", padding, 0), ("upscale", upscale, 1)):
        if isinstance(val, bool) or int(val) != val or val < low:
            raise OptionError(f"make_grid: {name} must be an integer >= {low}, got {val!r}")
    if not 0 <= int(pad_value) <= 255:
        raise OptionError(f"make_grid: pad_value must be a gray level in 0..255, got {pad_value!r}")
    n, c = images.shape[:2]
    pixels = to_uint8(images.detach().cpu(), value_range)
    if upscale > 1:
        pixels = pixels.repeat_interleave(int(upscale), dim=2).repeat_interleave(int(upscale), dim=3)
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)
    p = int(padding)
    filled = torch.full((rows * cols, c, pixels.shape[2] + p, pixels.shape[3] + p), int(pad_value), dtype=torch.uint8)
    filled[:n, :, p:, p:] = pixels
    grid = rearrange(filled, "(rows cols) c h w -> c (rows h) (cols w)", rows=rows, cols=cols)
    edge_h = torch.full((c, grid.shape[1], p), int(pad_value), dtype=torch.uint8)
    grid = torch.cat([grid, edge_h], dim=2)
    edge_v = torch.full((c, p, grid.shape[2]), int(pad_value), dtype=torch.uint8)
    return torch.cat([grid, edge_v], dim=1)


def save_image_grid(samples: Tensor, path: str | Path, nrow: int = 8, padding: int = 2, pad_value: int = 255,
                    value_range: tuple[float, float] = (-1.0, 1.0), upscale: int = 1) -> Path:
    """Save a batch ``(N, C, H, W)`` (``C`` = 1, 3 or 4) as one PNG grid (see :func:`make_grid`), atomically.

    Returns:
        The path written.
    """
    grid = make_grid(samples, nrow, padding, pad_value, value_range, upscale)
    c = grid.shape[0]
    if c not in (1, 3, 4):
        raise ShapeError(f"save_image_grid: PNG needs 1, 3 or 4 channels, got {c}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    arr = grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()
    atomic_write(out, encode_png(arr))
    return out
