"""Multi-process data-parallel training and sampling on ``torch.distributed``.

Synchronous data parallelism with gradient all-reduce (DistributedDataParallel, Li et al. 2020,
"PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB).

Launch any script (or ``sdeflow train``) with ``torchrun --nproc_per_node N``: torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them, starts the process group (NCCL on CUDA devices, gloo on
CPU) and returns a :class:`DistributedContext`. A :class:`sdeflow.training.Trainer` built while
a process group is up trains data-parallel by itself:

* every rank reads the same global batch order (same seed) and keeps its contiguous rows
  (:func:`sdeflow.utils.sharding.shard_bounds`); the loss's ``t`` and noise come from a
  :class:`sdeflow.utils.sharding.ShardedGenerator`, so rank ``r`` draws exactly the numbers one
  process would draw for those rows;
* the loss module (score model + objective, so a learned schedule in the process is covered
  too) is wrapped in :class:`torch.nn.parallel.DistributedDataParallel`, which averages the
  gradients; each rank's loss is weighted by its share of the rows, so the averaged gradient is
  the gradient of the global batch mean even when the rows do not split evenly;
* logged losses are the global batch means (one all-reduce per log interval); rank 0 alone
  writes checkpoints and the others wait at a barrier; every rank resumes from the same file.

N ranks with global batch ``B`` therefore compute what one process computes with batch ``B``,
up to floating-point summation order (tests/test_distributed.py checks this with 2 gloo
processes).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import OptionError
from ..utils.sharding import shard_bounds

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank: global rank.
        world_size: number of processes (1: no process group, every collective is a no-op).
        local_rank: rank on this machine (selects the GPU).
        backend: ``"nccl"``, ``"gloo"`` or ``"none"`` (one process).
        device: this process's device.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes files and prints)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank arrives (no-op for one process)."""
        if self.active:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Sum ``x`` over ranks, in place, and return it (no-op for one process)."""
        if self.active:
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of an ``n``-row batch (see :func:`shard_bounds`)."""
        return shard_bounds(n, self.world_size, self.rank)

    def gather_rows(self, x: Tensor, n: int) -> Tensor | None:
        """Concatenate every rank's ``x`` (its rows of an ``n``-row batch, as :meth:`bounds` split
        them) in rank order on rank 0; other ranks get ``None``. One process returns ``x``.

        Works on gloo and NCCL alike (an all-gather of equal-sized, padded tensors).
        """
        if not self.active:
            return x
        sizes = [b - a for a, b in (shard_bounds(n, self.world_size, r) for r in range(self.world_size))]
        if x.shape[0] != sizes[self.rank]:
            raise ValueError(f"rank {self.rank} holds {x.shape[0]} rows, expected {sizes[self.rank]} of {n}")
        width = max(sizes)
        pad = torch.zeros((width, *x.shape[1:]), dtype=x.dtype, device=x.device)
        pad[: x.shape[0]] = x
        parts = [torch.empty_like(pad) for _ in range(self.world_size)]
        dist.all_gather(parts, pad.contiguous())
        if not self.is_main:
            return None
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order, on every rank (``[obj]`` for one process).

        ``torch.distributed.all_gather_object`` (gloo and NCCL; under NCCL the pickles travel through
        this rank's current CUDA device, which :func:`init_distributed` sets). Send plain data: a
        tensor comes back on the device it left from.
        """
        if not self.active:
            return [obj]
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, obj)
        return parts


def launched_by_torchrun() -> bool:
    """True when ``WORLD_SIZE`` (set by torchrun) asks for more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_distributed(device: torch.device | str | None = None, backend: str | None = None,
                     timeout_s: float = 600.0) -> DistributedContext:
    """Start the process group from torchrun's environment and return this process's context.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing is started and a one-process context is
    returned, so the same script runs either way. Calling it again returns the running group's
    context.

    Args:
        device: ``"cuda"`` (becomes ``cuda:LOCAL_RANK``), ``"cpu"``, or an explicit device;
            default: CUDA when available, else CPU.
        backend: ``"nccl"`` or ``"gloo"``; default NCCL for CUDA devices, gloo otherwise.
        timeout_s: collective timeout (a rank that died makes the others fail after it).

    Raises:
        OptionError: incomplete torchrun environment, an unknown backend, or NCCL on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    dev = _pick_device(device, local_rank)
    if world <= 1 and not dist.is_initialized():
        return DistributedContext(device=dev)
    if dev.type == "cuda" and dev.index != local_rank and device is not None and torch.device(device).index is not None:
        raise OptionError(f"under torchrun each rank takes cuda:LOCAL_RANK (this is rank {rank}, LOCAL_RANK "
                          f"{local_rank}); pass device 'cuda' (or auto), not {device!r}")
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing and not dist.is_initialized():
        raise OptionError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with "
                          "`torchrun --nproc_per_node N ...` (or set all of " + ", ".join(ENV_VARS) + ")")
    be = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if be not in ("nccl", "gloo"):
        raise OptionError(f"backend must be 'nccl' or 'gloo', got {be!r}")
    if be == "nccl" and dev.type != "cuda":
        raise OptionError(f"the NCCL backend needs CUDA devices; this process has {dev} (use backend='gloo')")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": be, "timeout": datetime.timedelta(seconds=timeout_s)}
        if be == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    else:
        be = dist.get_backend()
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, str(be), dev)


def _pick_device(device: torch.device | str | None, local_rank: int) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


@contextlib.contextmanager
def distributed_session(device: torch.device | str | None = None) -> Iterator[DistributedContext]:
    """``with distributed_session(device) as ctx:`` -- :func:`init_distributed` under torchrun (a
    one-process context otherwise); a process group started here is destroyed on exit, one that
    was already running is left alone."""
    started = launched_by_torchrun() and not dist.is_initialized()
    ctx = init_distributed(device) if launched_by_torchrun() else DistributedContext(device=_pick_device(device, 0))
    try:
        yield ctx
    finally:
        if started:
            shutdown_distributed()


def current_context() -> DistributedContext | None:
    """The context of an initialised default process group with more than one rank, else ``None``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", str(dist.get_rank())))
    backend = str(dist.get_backend())
    dev = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, dev)


def resolve_context(distributed: "DistributedContext | bool | None",
                    what: str = "distributed") -> DistributedContext | None:
    """The context a component runs on: ``False`` -> ``None`` (one process); ``None`` -> the running
    process group's (:func:`current_context`, ``None`` without one); ``True`` -> the running group's,
    which must exist; a :class:`DistributedContext` -> itself when it has more than one rank.

    Args:
        distributed: what the caller passed.
        what: the argument's name, for the error messages.

    Raises:
        OptionError: ``True`` without a process group of more than one rank, or a value of another type.
    """
    if distributed is False:
        return None
    if distributed is None or distributed is True:
        ctx = current_context()
        if distributed is True and ctx is None:
            raise OptionError(f"{what}=True but no torch.distributed process group with more than one rank is "
                              "running; launch with torchrun and call sdeflow.training.init_distributed() first")
        return ctx
    if not isinstance(distributed, DistributedContext):
        raise OptionError(f"{what} must be a DistributedContext, True, False or None, got {distributed!r}")
    return distributed if distributed.active else None


def shutdown_distributed() -> None:
    """Destroy the default process group if one is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class LossModule(nn.Module):
    """``forward(x0, generator, labels=None) = loss_fn(score_model, x0, generator)`` (``score_model.given(labels)``
    for labelled batches of a class-conditional model): the module DDP wraps.

    Wrapping the whole objective (not only the network) puts every parameter the loss touches,
    a learned noise schedule included, under DDP's gradient averaging.
    """

    def __init__(self, score_model: nn.Module, loss_fn: Callable[[Any, Tensor, torch.Generator], Tensor]) -> None:
        super().__init__()
        self.score_model = score_model
        self.loss_fn = loss_fn

    def forward(self, x0: Tensor, generator: torch.Generator, labels: Tensor | None = None) -> Tensor:
        model: Any = self.score_model
        if labels is not None:
            model = model.given(labels, check=False)
        return self.loss_fn(model, x0, generator)


def wrap_ddp(module: nn.Module, ctx: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel(module)`` on ``ctx``'s device (broadcasts rank 0's weights).

    Raises:
        OptionError: the module's parameters are not on ``ctx.device``.
    """
    from torch.nn.parallel import DistributedDataParallel

    devices = {p.device for p in module.parameters()}
    if devices and devices != {ctx.device} and not (ctx.device.type == "cpu" and {d.type for d in devices} == {"cpu"}):
        raise OptionError(f"rank {ctx.rank}: the model is on {sorted(map(str, devices))} but this rank's device is "
                          f"{ctx.device}; move it there before training")
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)
