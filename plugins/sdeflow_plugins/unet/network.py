"""The diffusion UNet: ``net(x, t_cond)`` for images ``(batch, c, s, s)``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdeflow import LabelEmbedding, sinusoidal_embedding
from sdeflow.errors import OptionError, ShapeError

from .blocks import AttentionBlock, Downsample, ResBlock, Upsample, group_norm, zero_
from .options import (
    check_cond_range,
    check_unit_float,
    heads_for,
    positive_int,
    resolve_attention,
    resolve_channel_mult,
)


class _Level(nn.ModuleList):
    """A residual block, optionally followed by self-attention (one entry of the down/up paths)."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h


class UNet(nn.Module):
    """Diffusion UNet (Ronneberger et al. 2015; Ho et al. 2020, App. B; Nichol & Dhariwal 2021).

    An encoder-decoder of residual blocks over ``len(channel_mult)`` resolution levels, halving
    the resolution between levels (stride-2 conv) and doubling it back (nearest + conv), with a
    skip connection from every encoder block to the matching decoder block (concatenated, as in
    Ronneberger et al. 2015), self-attention at the chosen resolutions and a middle block
    ``ResBlock -> attention -> ResBlock`` at the lowest resolution. Every residual block is
    conditioned on an embedding of ``t_cond``: the sinusoidal embedding of Vaswani et al. 2017
    (Sec. 3.5) of ``time_scale * (t_cond - lo) / (hi - lo)`` with ``(lo, hi) = cond_range``,
    followed by ``Linear -> SiLU -> Linear`` (Ho et al. 2020's code). Nichol & Dhariwal 2021's
    improvements used: adaptive group norm (``scale_shift``), multi-head attention
    (``num_heads`` / ``head_channels``), attention at several resolutions. The last convolution
    of every residual branch, of every attention block and of the output are zero-initialised,
    so the untrained network outputs exactly 0 (an eps-model predicting ``E[eps] = 0``).

    Args:
        in_channels: image channels ``c`` (any positive number).
        image_size: side ``s`` of the square images; must be divisible by ``2^(levels - 1)``.
        base_channels: channels of the first level (also the sinusoidal embedding's size,
            rounded up to even).
        channel_mult: channels of level ``i`` are ``base_channels * channel_mult[i]``. Default
            (``None``): ``(1, 2)`` for 8x8, ``(1, 2, 2)`` for 16x16 and larger (halving while
            the size stays even and at least 4, at most twice), ``(1,)`` for odd sizes.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: feature-map sides that get self-attention after each residual
            block; ``None`` (default): the lowest resolution; ``()``: nowhere (the middle block's
            attention is set by ``mid_attention``).
        mid_attention: self-attention in the middle block.
        num_heads: attention heads (used when ``head_channels`` is ``None``).
        head_channels: channels per attention head (overrides ``num_heads``).
        dropout: dropout probability in the residual blocks (Ho et al. used 0.1 on CIFAR-10).
        norm_groups: requested group count of the group norms; where it does not divide a
            layer's channels, the largest divisor of the channels below it is used.
        scale_shift: condition through adaptive group norm ``norm(h)(1 + s) + b`` (Nichol &
            Dhariwal 2021) instead of adding the embedding (Ho et al. 2020).
        cond_range: ``(lo, hi)``, the range of ``t_cond`` that is mapped onto ``[0, 1]`` before the
            embedding: ``(0, 1)`` (default) for times in ``[0, 1]``; for log-SNR conditioning use
            the log-SNR range, e.g. ``(-20, 10)`` (values outside the range still work; they are
            extrapolated, not clipped).
        time_scale: the mapped value is multiplied by this before the sinusoids (1000: the
            scale of DDPM's integer steps, so the fastest frequencies resolve ``1/1000`` of the
            range and the slowest vary smoothly over it).
        emb_channels: width of the embedding MLP (default ``4 * base_channels``).
        num_classes: number of classes of a class-conditional UNet (``None``: unconditional): a learned
            label embedding (plus a null label for classifier-free guidance, Ho & Salimans 2022) is
            added to the time embedding (Dhariwal & Nichol 2021's class-conditional UNet), and the
            network is called as ``net(x, t_cond, labels)``.

    Shapes: ``x`` is ``(batch, in_channels, image_size, image_size)``; ``t_cond`` is ``(batch,)``
    (a scalar or one-element tensor is broadcast); ``labels`` is ``(batch,)`` integers (``-1`` or
    ``None``: no label). Returns a tensor shaped like ``x``.
    """

    def __init__(self, in_channels: int, image_size: int, base_channels: int = 32,
                 channel_mult: Sequence[int] | None = None, num_res_blocks: int = 1,
                 attention_resolutions: Sequence[int] | None = None, mid_attention: bool = True,
                 num_heads: int = 1, head_channels: int | None = None, dropout: float = 0.0,
                 norm_groups: int = 8, scale_shift: bool = True, cond_range: Sequence[float] = (0.0, 1.0),
                 time_scale: float = 1000.0, emb_channels: int | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        self.image_size = positive_int("image_size", image_size)
        base = positive_int("base_channels", base_channels)
        self.channel_mult = resolve_channel_mult(channel_mult, self.image_size)
        n_res = positive_int("num_res_blocks", num_res_blocks)
        self.resolutions = tuple(self.image_size // 2**i for i in range(len(self.channel_mult)))
        self.attention_resolutions = resolve_attention(attention_resolutions, self.resolutions)
        groups = positive_int("norm_groups", norm_groups)
        heads = positive_int("num_heads", num_heads)
        head_ch = None if head_channels is None else positive_int("head_channels", head_channels)
        drop = check_unit_float("dropout", dropout)
        self.cond_range = check_cond_range(cond_range)
        self.time_scale = float(time_scale)
        if not self.time_scale > 0:
            raise OptionError(f"unet: time_scale must be positive, got {time_scale!r}")
        self.embed_dim = base + base % 2
        emb_ch = 4 * base if emb_channels is None else positive_int("emb_channels", emb_channels)

        self.time_mlp = nn.Sequential(nn.Linear(self.embed_dim, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.label_embed = LabelEmbedding(num_classes, emb_ch) if num_classes is not None else None
        #: number of classes (``None``: unconditional)
        self.num_classes = self.label_embed.num_classes if self.label_embed is not None else None
        self.conv_in = nn.Conv2d(self.in_channels, base, 3, padding=1)

        def level(c_in: int, c_out: int, res: int) -> _Level:
            layers: list[nn.Module] = [ResBlock(c_in, c_out, emb_ch, drop, groups, scale_shift)]
            if res in self.attention_resolutions:
                layers.append(AttentionBlock(c_out, heads_for(c_out, heads, head_ch), groups))
            return _Level(layers)

        self.down = nn.ModuleList()
        skips, ch = [base], base
        for i, mult in enumerate(self.channel_mult):
            res = self.resolutions[i]
            for _ in range(n_res):
                self.down.append(level(ch, base * mult, res))
                ch = base * mult
                skips.append(ch)
            if i < len(self.channel_mult) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        mid: list[nn.Module] = [ResBlock(ch, ch, emb_ch, drop, groups, scale_shift)]
        if mid_attention:
            mid.append(AttentionBlock(ch, heads_for(ch, heads, head_ch), groups))
        mid.append(ResBlock(ch, ch, emb_ch, drop, groups, scale_shift))
        self.mid = _Level(mid)
        self.up = nn.ModuleList()
        for i in reversed(range(len(self.channel_mult))):
            res, out = self.resolutions[i], base * self.channel_mult[i]
            for _ in range(n_res + 1):
                self.up.append(level(ch + skips.pop(), out, res))
                ch = out
            if i > 0:
                self.up.append(Upsample(ch))
        self.norm_out = group_norm(ch, groups)
        self.conv_out = zero_(nn.Conv2d(ch, self.in_channels, 3, padding=1))

    def embed(self, t_cond: Tensor, batch: int, dtype: torch.dtype) -> Tensor:
        """The conditioning embedding ``MLP(sinusoidal(time_scale (t_cond - lo) / (hi - lo)))``, ``(batch, emb)``.

        The sinusoids are computed in at least float32 (``time_scale * t`` needs the precision);
        the MLP runs in its parameters' dtype (or under the caller's autocast).
        """
        t = t_cond.reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ShapeError(f"unet: t_cond must have shape (batch,) = ({batch},) (or be a scalar), got "
                             f"{tuple(t_cond.shape)}")
        work = torch.promote_types(dtype, torch.float32) if dtype.is_floating_point else torch.float32
        lo, hi = self.cond_range
        u = (t.to(work) - lo) / (hi - lo)
        sin = sinusoidal_embedding(u, self.embed_dim, self.time_scale)
        first = self.time_mlp[0]
        assert isinstance(first, nn.Linear)
        return self.time_mlp(sin.to(first.weight.dtype))

    def forward(self, x: Tensor, t_cond: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict a tensor shaped like ``x`` (``(batch, in_channels, s, s)``) at conditioning ``t_cond`` (``(batch,)``)
        and, for a class-conditional UNet, class ``labels`` (``(batch,)``; ``-1`` or ``None``: no label)."""
        c, s = self.in_channels, self.image_size
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"unet built for images (batch, {c}, {s}, {s}) got input of shape {got}; "
                             f"build it with in_channels/image_size matching the data")
        if not isinstance(t_cond, Tensor):
            t_cond = torch.as_tensor(t_cond, device=x.device)
        emb = self.embed(t_cond, x.shape[0], x.dtype)
        if self.label_embed is not None:
            emb = emb + self.label_embed(labels, x.shape[0]).to(emb.dtype)
        elif labels is not None:
            raise OptionError("this unet takes no labels: build it with num_classes=K to condition on classes")
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer(h, emb)
            hs.append(h)
        h = self.mid(h, emb)
        for layer in self.up:
            h = layer(h) if isinstance(layer, Upsample) else layer(torch.cat([h, hs.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, image_size={self.image_size}, channel_mult={self.channel_mult}, "
                f"attention_resolutions={self.attention_resolutions}, cond_range={self.cond_range}")
