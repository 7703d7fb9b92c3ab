"""Building blocks of the diffusion UNet: group norm, residual block, self-attention, resampling.

Ho et al. 2020 (App. B) build their denoiser from the PixelCNN++ / Wide-ResNet residual block
with group normalisation and self-attention at the 16x16 level; Nichol & Dhariwal 2021 (Sec. 3
and App. A) and Dhariwal & Nichol 2021 (Sec. 3) add the adaptive group norm
``GroupNorm(h) (1 + scale(e)) + shift(e)`` ("use_scale_shift_norm") and multi-head attention.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from sdeflow.errors import OptionError


def group_count(channels: int, max_groups: int) -> int:
    """The group count used for ``channels`` channels: the largest divisor of ``channels`` that is
    at most ``max_groups`` (``max_groups`` itself whenever it divides ``channels``).

    Group normalisation (Wu & He 2018) needs the group count to divide the channel count; Ho et al.
    2020 use 32 groups on 128..512 channels. Choosing the largest valid divisor keeps small models
    (e.g. 24 channels with ``max_groups=32`` -> 24 groups) working instead of failing.

    Args:
        channels: number of channels (positive).
        max_groups: the requested group count (positive).

    Returns:
        A divisor of ``channels`` in ``[1, max_groups]``.
    """
    if channels < 1 or max_groups < 1:
        raise OptionError(f"group norm needs positive channels and groups, got channels={channels}, "
                          f"groups={max_groups}")
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    """``nn.GroupNorm`` over ``channels`` with :func:`group_count` groups (eps 1e-6 as in Ho et al.'s code)."""
    return nn.GroupNorm(group_count(channels, max_groups), channels, eps=1e-6)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and biases in place (the last layer of every residual branch and the
    output convolution start at zero, so each block starts as the identity; Ho et al. 2020's code,
    Nichol & Dhariwal 2021's ``zero_module``)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class ResBlock(nn.Module):
    """Residual block ``x + conv(drop(act(norm'(conv(act(norm(x)))))))`` conditioned on an embedding.

    The embedding ``e`` enters through ``Linear(act(e))``: added to the hidden activations
    (Ho et al. 2020, App. B) or, with ``scale_shift=True``, as the adaptive group norm
    ``norm'(h) (1 + scale) + shift`` (Nichol & Dhariwal 2021, App. A; Dhariwal & Nichol 2021,
    Sec. 3, "AdaGN"). A 1x1 convolution maps the skip path when the channel count changes.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        emb_channels: size of the conditioning embedding.
        dropout: dropout probability before the second convolution.
        groups: requested group count of the norms (see :func:`group_count`).
        scale_shift: adaptive group norm instead of adding the embedding.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, dropout: float, groups: int,
                 scale_shift: bool) -> None:
        super().__init__()
        self.scale_shift = bool(scale_shift)
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_channels, out_channels * (2 if self.scale_shift else 1))
        self.norm2 = group_norm(out_channels, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x``: ``(b, c_in, h, w)``; ``emb``: ``(b, emb_channels)`` (already passed through the MLP)."""
        h = self.conv1(F.silu(self.norm1(x)))
        e = rearrange(self.emb(F.silu(emb)), "b c -> b c 1 1")
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection.

    ``x + proj(softmax(q k^T / sqrt(d)) v)`` with ``q, k, v`` a 1x1 convolution of
    ``GroupNorm(x)`` (Vaswani et al. 2017, Eq. 1; Ho et al. 2020, App. B, one head; Nichol &
    Dhariwal 2021, several heads). The pixels are the sequence:
    ``rearrange(qkv, "b (three heads d) h w -> three b heads (h w) d")``; the product runs in
    ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU).

    Args:
        channels: channels of the feature map.
        heads: number of heads (must divide ``channels``).
        groups: requested group count of the norm.
    """

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        if heads < 1 or channels % heads:
            raise OptionError(f"attention heads must divide the channel count: {channels} channels, "
                              f"{heads} heads (set num_heads or head_channels to fit)")
        self.heads = int(heads)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(b, c, h, w)`` -> same shape."""
        height = x.shape[-2]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three heads d) h w -> three b heads (h w) d",
                            three=3, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b heads (h w) d -> b (heads d) h w", h=height)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution (Ho et al. 2020's code)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, h, w)`` -> ``(b, c, h/2, w/2)``."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution (Ho et al. 2020's code)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, c, h, w)`` -> ``(b, c, 2h, 2w)``."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
