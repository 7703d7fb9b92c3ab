"""A time-conditioned MLP for vector data: residual blocks with the sinusoidal time embedding of Ho et al.
2020 (App. B) added to every hidden layer."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from sdeflow import LabelEmbedding, sinusoidal_embedding
from sdeflow.errors import OptionError, ShapeError

_ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


class TimeMLP(nn.Module):
    """``net(x, t_cond)``: residual MLP on flattened ``x`` with a sinusoidal time embedding added to
    every hidden layer; with ``num_classes``, ``net(x, t_cond, labels)``: a learned label embedding
    (plus a null label, ``-1`` or ``labels=None``) is added to the time embedding (classifier-free
    guidance, Ho & Salimans 2022).

    Args:
        dim: number of values per sample (``x`` may be ``(batch, dim)`` or ``(batch, *dims)``
            with ``prod(dims) == dim``).
        hidden: width of the hidden layers.
        depth: number of hidden layers (at least 1).
        embed_dim: size of the time embedding (even).
        time_scale: ``t_cond`` is multiplied by this before the embedding.
        activation: ``"silu"``, ``"gelu"``, ``"relu"`` or ``"tanh"``.
        num_classes: number of classes of a class-conditional network (``None``: unconditional).
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, embed_dim: int = 64,
                 time_scale: float = 1000.0, activation: str = "silu", num_classes: int | None = None) -> None:
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
        self.label_embed = LabelEmbedding(num_classes, hidden) if num_classes is not None else None
        #: number of classes (``None``: unconditional)
        self.num_classes = self.label_embed.num_classes if self.label_embed is not None else None

    def forward(self, x: Tensor, t_cond: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict a tensor shaped like ``x`` from ``x``, ``t_cond`` (shape ``(batch,)``) and, for a
        class-conditional network, ``labels`` (``(batch,)`` integers; ``-1`` or ``None``: no label)."""
        if x[0].numel() != self.dim:
            raise ShapeError(f"mlp built for dim={self.dim} got input of shape {tuple(x.shape)}")
        flat = rearrange(x, "b ... -> b (...)")
        t_cond = t_cond.reshape(-1).to(flat.dtype)
        if t_cond.numel() == 1:
            t_cond = t_cond.expand(flat.shape[0])
        emb = self.time_embed(sinusoidal_embedding(t_cond, self.embed_dim, self.time_scale))
        if self.label_embed is not None:
            emb = emb + self.label_embed(labels, flat.shape[0]).to(emb.dtype)
        elif labels is not None:
            raise OptionError("this mlp takes no labels: build it with num_classes=K to condition on classes")
        h = self.inp(flat)
        for layer, proj in zip(self.layers, self.time_proj):
            h = h + layer(self.act(h + proj(emb)))
        return self.out(self.act(h)).reshape(x.shape)
