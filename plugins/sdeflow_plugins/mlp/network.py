"""A time-conditioned MLP for vector data: residual blocks with the sinusoidal time embedding of Ho et al.
2020 (App. B) added to every hidden layer."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from sdeflow import sinusoidal_embedding
from sdeflow.errors import OptionError, ShapeError

_ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


class TimeMLP(nn.Module):
    """``net(x, t_cond)``: residual MLP on flattened ``x`` with a sinusoidal time embedding added to
    every hidden layer.

    Args:
        dim: number of values per sample (``x`` may be ``(batch, dim)`` or ``(batch, *dims)``
            with ``prod(dims) == dim``).
        hidden: width of the hidden layers.
        depth: number of hidden layers (at least 1).
        embed_dim: size of the time embedding (even).
        time_scale: ``t_cond`` is multiplied by this before the embedding.
        activation: ``"silu"``, ``"gelu"``, ``"relu"`` or ``"tanh"``.
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, embed_dim: int = 64,
                 time_scale: float = 1000.0, activation: str = "silu") -> None:
        super().__init__()
        if int(dim) != dim or dim < 1:
            raise OptionError(f"dim must be a positive integer, got {dim!r}")
        if depth < 1 or hidden < 1:
            raise OptionError(f"depth and hidden must be positive, got depth={depth}, hidden={hidden}")
        if embed_dim < 2 or embed_dim % 2:
            raise OptionError(f"embed_dim must be even and at least 2, got {embed_dim}")
        if activation not in _ACTIVATIONS:
            raise OptionError(f"unknown activation {activation!r}; valid: {', '.join(_ACTIVATIONS)}")
        self.dim, self.embed_dim, self.time_scale = int(dim), int(embed_dim), float(time_scale)
        act = _ACTIVATIONS[activation]
        self.time_embed = nn.Sequential(nn.Linear(embed_dim, hidden), act(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(self.dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.time_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.act = act()
        self.out = nn.Linear(hidden, self.dim)

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        """Predict a tensor shaped like ``x`` from ``x`` and ``t_cond`` (shape ``(batch,)``)."""
        if x[0].numel() != self.dim:
            raise ShapeError(f"mlp built for dim={self.dim} got input of shape {tuple(x.shape)}")
        flat = rearrange(x, "b ... -> b (...)")
        t_cond = t_cond.reshape(-1).to(flat.dtype)
        if t_cond.numel() == 1:
            t_cond = t_cond.expand(flat.shape[0])
        emb = self.time_embed(sinusoidal_embedding(t_cond, self.embed_dim, self.time_scale))
        h = self.inp(flat)
        for layer, proj in zip(self.layers, self.time_proj):
            h = h + layer(self.act(h + proj(emb)))
        return self.out(self.act(h)).reshape(x.shape)
