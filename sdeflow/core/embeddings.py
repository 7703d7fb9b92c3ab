"""Conditioning embeddings shared by the built-in networks (and available to third-party ones)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import OptionError, ShapeError


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


class LabelEmbedding(nn.Module):
    """A learned embedding of class labels with one extra row for "no label" (the null token of
    classifier-free guidance, Ho & Salimans 2022, Sec. 3.2), added to a network's time embedding as in
    Dhariwal & Nichol 2021's class-conditional UNet.

    Labels are ``0..num_classes-1``; ``-1`` (:data:`sdeflow.NULL_LABEL`) and ``labels=None`` select the
    null row, the unconditional prediction a network learns under label dropout.

    Args:
        num_classes: number of classes ``K`` (the table has ``K + 1`` rows).
        dim: embedding size (the width of the time embedding it is added to).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise OptionError(f"num_classes must be a positive integer (or None for an unconditional network), got "
                              f"{num_classes!r}")
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, int(dim))

    def forward(self, labels: Tensor | None, batch: int) -> Tensor:
        """``(batch, dim)`` embeddings of ``labels`` (``(batch,)`` or one label for all; ``None``: null)."""
        null = self.num_classes
        if labels is None:
            idx = torch.full((batch,), null, dtype=torch.int64, device=self.table.weight.device)
        else:
            if not isinstance(labels, Tensor):
                labels = torch.as_tensor(labels, device=self.table.weight.device)
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise OptionError(f"labels must be integer class indices, got dtype {labels.dtype}")
            idx = labels.reshape(-1).to(torch.int64)
            if idx.numel() == 1:
                idx = idx.expand(batch)
            if idx.numel() != batch:
                raise ShapeError(f"labels must have shape (batch,) = ({batch},) (or be one label), got "
                                 f"{tuple(labels.shape)}")
            idx = torch.where(idx < 0, torch.full_like(idx, null), idx)
        return self.table(idx)


__all__ = ["LabelEmbedding", "sinusoidal_embedding"]
