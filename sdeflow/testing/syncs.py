"""Counting host synchronisations in a sampler's step loop, on a CPU.

On a GPU, reading a device value on the host (``x.item()``, ``bool(x.max() > 1)``,
``float(t)``, ``x.tolist()``, ``x.cpu()``, a boolean mask ``x[x > 0]``) makes the host wait for
every kernel queued before it; once per step it serialises the loop. On a CPU nothing waits, so
the kit counts the conversions themselves: :class:`HostSyncCounter` is a
:class:`torch.overrides.TorchFunctionMode` that sees every tensor operation of a run and records
each of :data:`SYNC_OPS` applied to a *device tensor*.

Which tensors are device tensors is decided by provenance, because on a CPU every tensor is a
host tensor: the start ``x_T``, every network output, every tensor created or moved with an
explicit ``device=`` in the model's dtype (the kit runs the check in float32, so host-side
float64 grids and coefficients stay host tensors), and every result of an operation with a
device tensor among its inputs. A sampler may convert host tensors (its float64 grid) freely.

"In the step loop" means inside the run scaffold's step-loop region
(:meth:`sdeflow.solvers.SamplingRun.stepping`, which every sampler written on the toolkit runs its
loop in); for a sampler with a loop of its own, between the end of the first network evaluation
and the start of the last one. Conversions inside the kit's own model are not counted; set-up
before the loop and the checks after it (``SampleResult``, non-finite reports) may synchronise once.
"""

from __future__ import annotations

import copy
import os
import traceback
from collections import Counter
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..core.process import ForwardProcess
from ..solvers._run import IN_STEP_LOOP
from .common import CheckNotApplicable
from .reference import RecordingScoreModel
from .sampling import SamplerFactory, build, gaussian_target, gen, label, process_or_reference

#: the tensor-to-host conversions counted (Tensor methods and torch functions that return host values
#: or results whose shape depends on the data)
SYNC_OPS: frozenset[str] = frozenset({
    "item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__",
    "__format__", "__repr__", "is_nonzero", "equal", "allclose", "nonzero", "argwhere", "masked_select", "unique",
    "unique_consecutive",
})
#: operations that create a tensor (a device tensor when given ``device=`` in the model's dtype)
_FACTORIES = frozenset({
    "randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "normal", "zeros", "ones", "full",
    "empty", "zeros_like", "ones_like", "full_like", "empty_like", "tensor", "as_tensor", "linspace", "logspace",
    "arange", "eye",
})
_MARK = "_sdeflow_kit_device"
_SKIP_DIRS = (os.sep + "torch" + os.sep, os.path.dirname(os.path.abspath(__file__)))


#: how messages name the conversions
_NAMES = {"__bool__": "bool(tensor)", "__float__": "float(tensor)", "__int__": "int(tensor)",
          "__index__": "a tensor used as an index", "__complex__": "complex(tensor)",
          "__array__": "numpy.asarray(tensor)", "__format__": "format(tensor)", "__repr__": "repr(tensor)",
          "item": "Tensor.item()", "tolist": "Tensor.tolist()", "numpy": "Tensor.numpy()", "cpu": "Tensor.cpu()"}


class SyncEvent(NamedTuple):
    """One conversion: the number of network evaluations made before it, the operation, where, and
    whether it happened inside a run scaffold's step-loop region."""

    evaluations: int
    op: str
    where: str
    in_loop: bool = False


def _is_device(t: Any) -> bool:
    return isinstance(t, Tensor) and getattr(t, _MARK, False)


def mark_device(obj: Any) -> Any:
    """Mark every tensor in ``obj`` (a tensor or a nest of them) as a device tensor; return ``obj``."""
    for t in tree_flatten(obj)[0]:
        if isinstance(t, Tensor):
            try:
                setattr(t, _MARK, True)
            except (AttributeError, RuntimeError):  # pragma: no cover - tensors without a __dict__
                pass
    return obj


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch itself and this module (the sampler's code,
    or torchsde's / torchdiffeq's)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = os.path.abspath(frame.filename)
        if not any(part in path for part in _SKIP_DIRS):
            return f"{os.path.relpath(path) if path.startswith(os.getcwd()) else path}:{frame.lineno}"
    return "?"  # pragma: no cover


class HostSyncCounter(TorchFunctionMode):
    """Records conversions of device tensors to host values while active (see the module docstring).

    Args:
        dtype: the model's dtype: tensors created or moved with an explicit ``device=`` in it are
            device tensors.
        counting: returns the number of network evaluations made so far, or ``None`` while a
            conversion must not be counted (inside the model's own evaluation).

    Attributes:
        events: the recorded :class:`SyncEvent`\\ s, in order.
    """

    def __init__(self, dtype: torch.dtype, counting: Callable[[], int | None]) -> None:
        super().__init__()
        self.dtype, self.counting = dtype, counting
        self.events: list[SyncEvent] = []

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        inputs = tree_flatten((args, kwargs))[0]
        on_device = any(_is_device(a) for a in inputs)
        op = _NAMES.get(name, f"torch.{name}") if name in SYNC_OPS else None
        if name == "__getitem__" and any(_is_device(a) and a.dtype == torch.bool for a in inputs[1:]):
            op = "boolean-mask indexing"
        if op is not None and on_device:
            n = self.counting()
            if n is not None:
                self.events.append(SyncEvent(n, op, _caller(), IN_STEP_LOOP.get()))
        out = func(*args, **kwargs)
        if on_device:
            mark_device(out)
        elif (name in _FACTORIES or name == "to") and self._placed(name, args, kwargs):
            first = next((t for t in tree_flatten(out)[0] if isinstance(t, Tensor)), None)
            if first is not None and first.dtype == self.dtype:
                mark_device(out)
        return out

    @staticmethod
    def _placed(name: str, args: tuple, kwargs: dict[str, Any]) -> bool:
        """Whether the call names a device (``device=``, or ``.to(device, ...)`` / ``.to(other_tensor)``)."""
        if kwargs.get("device") is not None:
            return True
        return name == "to" and any(isinstance(a, (torch.device, str, Tensor)) for a in args[1:])


class _CountingScoreModel(RecordingScoreModel):
    """The exact Gaussian score whose outputs and prior draws are device tensors, and which tells the
    counter when a conversion happens inside its own evaluation (and whether it was evaluated
    inside a run scaffold's step loop)."""

    inside = False
    scaffolded = False

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        self.scaffolded = self.scaffolded or IN_STEP_LOOP.get()
        self.inside = True
        try:
            out = super().network_output(x, t)
        finally:
            self.inside = False
        return mark_device(out)

    def prior_sample(self, *args: Any, **kwargs: Any) -> Tensor:
        self.inside = True
        try:
            return mark_device(super().prior_sample(*args, **kwargs))
        finally:
            self.inside = False


def count_host_syncs(sampler: Any, score_model: _CountingScoreModel, shape: tuple[int, ...],
                     seed: int = 0) -> list[SyncEvent]:
    """Run ``sampler`` once under a :class:`HostSyncCounter` and return the conversions made in its
    step loop: inside the scaffold's step-loop region when the model was evaluated there, else
    between the end of the first and the start of the last network evaluation."""
    counter = HostSyncCounter(score_model.dtype, lambda: None if score_model.inside else score_model.calls)
    with counter:
        sampler.sample(score_model, shape, gen(seed))
    if score_model.scaffolded:
        return [e for e in counter.events if e.in_loop]
    last = score_model.calls
    return [e for e in counter.events if 1 <= e.evaluations < last]


def check_sampler_host_syncs(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """A sampler declaring ``host_syncs = False`` makes no host synchronisation in its step loop:
    run in float32 on a batch of 8, no conversion of a device tensor to a host value (:data:`SYNC_OPS`)
    in its step loop (see the module docstring for the loop's extent and for how device tensors are
    told from host ones on a CPU). A sampler declaring ``host_syncs = True`` passes.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).

    Raises:
        CheckNotApplicable: the sampler evaluates the model fewer than twice (no loop to watch).
    """
    sampler = build(factory)
    what = label(sampler)
    p = copy.deepcopy(process_or_reference(process)).to(torch.float32)
    sm = _CountingScoreModel(gaussian_target(), p, dtype=torch.float32)
    events = count_host_syncs(sampler, sm, (8, 2))
    if sm.calls < 2:
        raise CheckNotApplicable(f"{what} evaluated the model {sm.calls} time(s): no step loop to watch")
    if sampler.capabilities()["host_syncs"]:
        return
    where = Counter(f"{e.op} at {e.where}" for e in events)
    listed = "; ".join(f"{k} ({v}x)" for k, v in where.most_common(5))
    assert not events, (
        f"{what} declares host_syncs=False but its step loop converted device tensors to host values {len(events)} "
        f"times ({sm.calls} network evaluations in the run): {listed}. Keep host-side values "
        "(times, coefficients) as Python numbers or host tensors computed before the loop, or declare "
        "host_syncs = True")


__all__ = ["HostSyncCounter", "SYNC_OPS", "SyncEvent", "check_sampler_host_syncs", "count_host_syncs", "mark_device"]
