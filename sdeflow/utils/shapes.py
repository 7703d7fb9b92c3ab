"""Shape helpers shared by processes, score models and samplers."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..errors import ShapeError
from .sharding import sharded_draw


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to ``v`` until it has ``ndim`` dimensions.

    Broadcasts a per-sample quantity of shape ``(batch,)`` (a time, ``alpha_t``, ``sigma_t``)
    against data of any shape ``(batch, *dims)``: vectors and images alike.

    Args:
        v: tensor of shape ``(batch,)`` (or any shape with at most ``ndim`` dimensions).
        ndim: number of dimensions of the data to broadcast against.

    Returns:
        A view of ``v`` with shape ``v.shape + (1,) * (ndim - v.ndim)``.
    """
    extra = ndim - v.ndim
    if extra < 0:
        raise ShapeError(f"append_dims: tensor has {v.ndim} dimensions, more than the target {ndim}")
    return v.reshape(*v.shape, *([1] * extra))


def check_shape(shape: Sequence[int], what: str = "shape") -> tuple[int, ...]:
    """Validate a sample shape ``(batch, *dims)`` and return it as a tuple of ints.

    Args:
        shape: the requested shape; the first entry is the batch size.
        what: name used in the error message.

    Returns:
        The shape as a tuple of Python ints.
    """
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ShapeError(f"{what} must be a sequence of positive ints (batch, *dims), got {shape!r}") from exc
    if len(out) < 2 or any(s <= 0 for s in out) or any(int(s) != s for s in shape):
        raise ShapeError(
            f"{what} must be (batch, *dims) with at least one data dimension and all entries positive, "
            f"got {tuple(shape)!r}; e.g. (1000, 2) for 2-D points or (16, 1, 8, 8) for images"
        )
    return out


def randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    """Standard normal noise from ``generator`` on ``device``.

    A generator lives on one device; when it differs from ``device`` the noise is drawn where
    the generator lives and moved, so the same seed gives the same numbers on every device.
    A :class:`sdeflow.utils.sharding.ShardedGenerator` with a shard set draws batch-shaped noise for
    the global batch and returns this process's rows (data-parallel training).
    """
    return _seeded(torch.randn, shape, generator, device, dtype)


def rand(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    """Uniform ``[0, 1)`` numbers from ``generator`` on ``device`` (see :func:`randn`)."""
    return _seeded(torch.rand, shape, generator, device, dtype)


def _seeded(fn: Callable[..., Tensor], shape: Sequence[int], generator: torch.Generator | None,
            device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    """``fn`` (``torch.randn`` or ``torch.rand``) drawn as :func:`randn` describes."""
    device = torch.device(device) if device is not None else torch.device("cpu")

    def draw(shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        if generator is not None and generator.device.type != device.type:
            return fn(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)
        return fn(tuple(shape), generator=generator, device=device, dtype=dtype)

    return sharded_draw(draw, shape, generator)
