"""Batch sharding with world-size-invariant randomness.

Data-parallel training splits a global batch of ``B`` rows over ``N`` processes. For ``N``
processes to compute exactly what one process computes on the whole batch, every per-row random
number (the diffusion time ``t`` and the noise ``eps`` of denoising score matching) must be the
one the single process would draw for that row. :class:`ShardedGenerator` makes this so without
touching any loss: while a shard is set, a draw through :func:`sdeflow.utils.shapes.rand` /
:func:`sdeflow.utils.shapes.randn` whose leading dimension is the local row count is drawn for the
*global* batch and this process's rows are returned. Every process's generator therefore
consumes the same stream as the single process's, and stays in lock-step with it.

Draws of any other shape (a scalar, a probe set) are taken as they are, identically on every
process (same seed, same state). Draws that bypass :mod:`sdeflow.utils.shapes` (``torch.randn(...,
generator=g)`` directly) are still valid random numbers, drawn per process; only the bit-for-bit
equality with one process is lost for them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of an ``n``-row batch that ``rank`` of ``world_size`` takes.

    Contiguous, in rank order, sizes differing by at most one (the first ``n % world_size``
    ranks take one row more), as :func:`torch.tensor_split` splits.

    Args:
        n: rows in the global batch (``>= 0``).
        world_size: number of processes (``>= 1``).
        rank: this process, ``0 <= rank < world_size``.

    Returns:
        ``(start, stop)``; empty (``start == stop``) when ``n < world_size`` and ``rank >= n``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    q, r = divmod(int(n), int(world_size))
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


class ShardedGenerator(torch.Generator):
    """A ``torch.Generator`` that knows which rows of the global batch this process holds.

    Use it like any generator; set :attr:`shard` (``(start, stop, total)``) around a step with
    :meth:`rows` and every batch-shaped draw through :mod:`sdeflow.utils.shapes` is drawn for ``total``
    rows and sliced to ``[start, stop)`` (see the module docstring). With no shard set it is
    an ordinary generator.

    Args:
        device: the generator's device.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()  # torch.Generator.__new__ took the device
        self.shard: tuple[int, int, int] | None = None

    def rows(self, start: int, stop: int, total: int) -> "_ShardScope":
        """Context manager: draws of ``stop - start`` leading rows cover ``total`` rows, sliced."""
        if not 0 <= start < stop <= total:
            raise ValueError(f"need 0 <= start < stop <= total, got {start}, {stop}, {total}")
        return _ShardScope(self, (int(start), int(stop), int(total)))


class _ShardScope:
    def __init__(self, gen: ShardedGenerator, shard: tuple[int, int, int]) -> None:
        self.gen, self.shard = gen, shard
        self.prev: tuple[int, int, int] | None = None

    def __enter__(self) -> ShardedGenerator:
        self.prev, self.gen.shard = self.gen.shard, self.shard
        return self.gen

    def __exit__(self, *exc: object) -> None:
        self.gen.shard = self.prev


def sharded_draw(draw: Callable[..., Tensor], shape: Sequence[int], generator: torch.Generator | None,
                 *args: object) -> Tensor:
    """``draw(shape, generator, *args)``, widened to the global batch and sliced when ``generator``
    is a :class:`ShardedGenerator` with a shard whose row count is ``shape[0]``.

    Args:
        draw: a plain draw ``draw(shape, generator, *args) -> Tensor`` (never this function).
        shape: the requested (local) shape.
        generator: the random source.
        args: passed on to ``draw`` (device, dtype).
    """
    shard = generator.shard if isinstance(generator, ShardedGenerator) else None
    shape = tuple(int(s) for s in shape)
    if shard is not None and shape and shape[0] == shard[1] - shard[0]:
        start, stop, total = shard
        return draw((total, *shape[1:]), generator, *args)[start:stop]
    return draw(shape, generator, *args)
