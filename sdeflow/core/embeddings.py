"""Conditioning embeddings shared by the built-in networks (and available to third-party ones)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import OptionError


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Transformer sinusoidal embedding of ``scale * t`` (Vaswani et al. 2017, Sec. 3.5).

    Ho et al. 2020 (App. B) condition their UNet on the diffusion step this way; with
    ``t in [0, 1]`` and ``scale = 1000`` the arguments span the same range as DDPM's integer
    steps ``0..1000``.

    Args:
        t: conditioning values, shape ``(batch,)``.
        dim: embedding size (even, at least 2).
        scale: multiplies ``t`` first, so ``t in [0, 1]`` spans many periods.
        max_period: longest period.

    Returns:
        ``(batch, dim)`` with ``[sin(w_k s t), cos(w_k s t)]``, ``w_k = max_period^{-k/(dim/2)}``,
        ``k = 0..dim/2-1``, in the dtype of ``t``.
    """
    if isinstance(dim, bool) or int(dim) != dim or dim < 2 or dim % 2:
        raise OptionError(f"sinusoidal_embedding: dim must be an even integer >= 2, got {dim!r}")
    half = int(dim) // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    args = (scale * t)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


__all__ = ["sinusoidal_embedding"]
