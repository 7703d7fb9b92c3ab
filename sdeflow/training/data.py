"""Training data sources: a tensor, an iterable of tensors, or a distribution with ``sample``."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple

import torch
from torch import Tensor

from ..errors import OptionError, ShapeError
from ..utils.sharding import shard_bounds


class Shard(NamedTuple):
    """This process's part of one global batch.

    Attributes:
        x: the rows ``[start, stop)`` of the global batch (moved and cast).
        start, stop: the row range. A rank left without rows (a batch with fewer rows than
            ranks) gets row 0 with ``weight = 0``, so every rank still runs the step.
        total: rows in the global batch.
        weight: ``(stop - start) / total``, this rank's share of the batch mean.
        y: the rows' class labels (``int64``), for labelled data; else ``None``.
    """

    x: Tensor
    start: int
    stop: int
    total: int
    weight: float
    y: Tensor | None = None


def labelled_pair(data: Any) -> tuple[Tensor, Tensor] | None:
    """``(x, y)`` when ``data`` is a pair of tensors ``x`` ``(N, *dims)`` and integer labels ``y`` ``(N,)``."""
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not all(isinstance(v, Tensor) for v in data):
        return None
    x, y = data
    if x.ndim < 2 or y.ndim != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
        return None
    return x, y


class BatchSource:
    """Yields training batches in a seeded, resumable order.

    * A tensor ``(N, *dims)``: shuffled without replacement each epoch by a dedicated
      ``torch.Generator``; the permutation and position are part of :meth:`state`, so a resumed
      run sees exactly the batches the uninterrupted run would have seen.
    * An object with ``sample(n, generator)`` (e.g. :class:`sdeflow.GaussianMixture`): fresh
      samples from the same generator.
    * Any other iterable of tensors (or of tuples whose first item is the batch): iterated,
      restarted when exhausted (its order is the iterable's own; resuming skips consumed batches).

    Labelled data (``labelled=True``, for a class-conditional model): a pair ``(x, y)`` of tensors
    (``y``: ``int64`` labels ``(N,)``, shuffled with ``x``), a distribution with
    ``sample_labelled(n, generator) -> (x, y)`` (:class:`sdeflow.GaussianMixture`: the component is the
    label), or an iterable of ``(x, y)`` batches. A pair ``(x, y)`` given without ``labelled`` trains
    on ``x`` alone.

    Args:
        data: the data.
        batch_size: batch size for tensors and distributions.
        seed: seed of the data generator.
        device: where batches are moved.
        dtype: floating dtype of the batches (``None`` keeps the data's).
        shard: ``(rank, world_size)`` for data-parallel training: every rank walks the same global
            batch order (same seed) and :meth:`next` returns this rank's contiguous rows of each
            global batch (:func:`sdeflow.utils.sharding.shard_bounds`); ``None``: the whole batch.
        labelled: serve class labels with the batches (:attr:`Shard.y`).
    """

    def __init__(self, data: Any, batch_size: int, seed: int = 0, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, shard: tuple[int, int] | None = None,
                 labelled: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.data, self.batch_size, self.device, self.dtype = data, int(batch_size), torch.device(device), dtype
        self.rank, self.world_size = shard if shard is not None else (0, 1)
        shard_bounds(0, self.world_size, self.rank)  # validates the pair
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm: Tensor | None = None
        self.pos = 0
        self.epoch = 0
        self.consumed = 0  # batches drawn from an iterable
        self._iter: Iterator[Any] | None = None
        self.labelled = bool(labelled)
        self.labels: Tensor | None = None
        pair = labelled_pair(data)
        if pair is not None:
            data, self.labels = pair
            self.data = data
        if self.labelled and pair is None and isinstance(data, Tensor):
            raise OptionError("a class-conditional model needs labelled data: pass (x, y) with integer labels y of "
                              "shape (N,), a distribution with sample_labelled(n, generator), or an iterable of (x, y) "
                              "batches")
        if isinstance(data, Tensor):
            if data.ndim < 2 or data.shape[0] < 1:
                raise ShapeError(f"training data must have shape (N, *dims) with N >= 1, got {tuple(data.shape)}")
            self.kind = "tensor"
        elif hasattr(data, "sample") and callable(data.sample):
            self.kind = "distribution"
            if self.labelled and not callable(getattr(data, "sample_labelled", None)):
                raise OptionError(f"a class-conditional model needs labelled data, but {type(data).__name__} has no "
                                  "sample_labelled(n, generator) -> (x, y); pass labelled samples (x, y) instead")
        elif isinstance(data, Iterable):
            self.kind = "iterable"
        else:
            raise TypeError(f"training data must be a tensor (N, *dims), an iterable of tensors or an object with "
                            f"sample(n, generator); got {type(data).__name__}")

    def _labels_of(self, batch: Any) -> Tensor | None:
        """The labels of an iterable's batch ``(x, y)`` (when labelled)."""
        if not self.labelled:
            return None
        if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not isinstance(batch[1], Tensor):
            raise OptionError(f"a class-conditional model needs labelled batches (x, y); the iterable yielded "
                              f"{type(batch).__name__}")
        return batch[1].reshape(-1).to(device=self.device, dtype=torch.int64)

    def _to(self, x: Any) -> Tensor:
        if isinstance(x, (tuple, list)):
            x = x[0]
        if not isinstance(x, Tensor) or x.ndim < 2:
            raise ShapeError(f"each training batch must be a tensor (batch, *dims), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        return x.to(device=self.device, dtype=self.dtype or (x.dtype if x.is_floating_point() else torch.float32))

    def next(self) -> Tensor:
        """The next batch (this rank's rows of it when sharded)."""
        return self.next_shard().x

    def next_shard(self) -> Shard:
        """The next global batch's rows for this rank, with their range and weight."""
        if self.kind == "tensor":
            n = self.data.shape[0]
            if self.perm is None or self.pos >= n:
                if self.perm is not None:
                    self.epoch += 1
                self.perm = torch.randperm(n, generator=self.generator)
                self.pos = 0
            idx = self.perm[self.pos:self.pos + self.batch_size]
            self.pos += idx.numel()
            start, stop, total, weight = self._bounds(idx.numel())
            rows = idx[start:stop]
            y = self.labels[rows].to(self.device) if self.labelled and self.labels is not None else None
            return Shard(self._to(self.data[rows]), start, stop, total, weight, y)
        if self.kind == "distribution":
            if self.labelled:
                x, y = self.data.sample_labelled(self.batch_size, generator=self.generator)
                return self._slice(self._to(x), y.reshape(-1).to(device=self.device, dtype=torch.int64))
            return self._slice(self._to(self.data.sample(self.batch_size, generator=self.generator)))
        return self._slice(*self._next_from_iterable())

    def _bounds(self, total: int) -> tuple[int, int, int, float]:
        if self.world_size == 1:
            return 0, total, total, 1.0
        start, stop = shard_bounds(total, self.world_size, self.rank)
        if start == stop:  # fewer rows than ranks: take row 0 with weight 0, so this rank still steps
            return 0, 1, total, 0.0
        return start, stop, total, (stop - start) / total

    def _slice(self, x: Tensor, y: Tensor | None = None) -> Shard:
        start, stop, total, weight = self._bounds(x.shape[0])
        if y is not None and y.shape[0] != x.shape[0]:
            raise ShapeError(f"a labelled batch has {x.shape[0]} samples but {y.shape[0]} labels")
        if self.world_size == 1:
            return Shard(x, start, stop, total, weight, y)
        return Shard(x[start:stop], start, stop, total, weight, None if y is None else y[start:stop])

    def _next_from_iterable(self) -> tuple[Tensor, Tensor | None]:
        for _ in range(2):
            if self._iter is None:
                self._iter = iter(self.data)
            try:
                batch = next(self._iter)
                self.consumed += 1
                return self._to(batch), self._labels_of(batch)
            except StopIteration:
                self._iter = None
                self.epoch += 1
        raise ValueError(f"the training data iterable ({type(self.data).__name__}) yielded no batch after "
                         f"{self.consumed} batches; a one-shot iterator (a generator object) is exhausted after one "
                         "pass: pass a re-iterable (a list, a DataLoader, or a class whose __iter__ starts a new pass)")

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, scalars)`` that restore the order exactly."""
        tensors = {"generator": self.generator.get_state()}
        if self.perm is not None:
            tensors["perm"] = self.perm
        return tensors, {"pos": self.pos, "epoch": self.epoch, "consumed": self.consumed, "kind": self.kind}

    def load_state(self, tensors: dict[str, Tensor], scalars: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.generator.set_state(tensors["generator"])
        self.perm = tensors.get("perm")
        self.pos, self.epoch = int(scalars["pos"]), int(scalars["epoch"])
        if self.kind == "iterable":
            self._iter = iter(self.data)
            skip = int(scalars["consumed"]) % max(1, _len_or_inf(self.data))
            for _ in range(skip):
                next(self._iter)
            self.consumed = int(scalars["consumed"])


def _len_or_inf(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 2**62
