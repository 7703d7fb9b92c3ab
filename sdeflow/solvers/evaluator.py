"""Counting score evaluations and watching for non-finite values without host syncs."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import NonFiniteError
from ..core.score_model import ScoreModel

#: evaluations whose finiteness flags are gathered into one tensor at a time
_CHUNK = 256


class ScoreEvaluator:
    """Calls ``score_model.score(x, t, check=False)``, counts calls and records, per call, whether
    the output was finite.

    Each evaluation adds one reduction kernel, ``torch.aminmax(out)``: NaN propagates into both
    results and an infinity shows in one of them, so the output is finite exactly when its
    minimum and maximum are (one pass over the data, no temporary of the batch's size; the
    ``isfinite(out).all()`` it replaces took five kernels). The 0-d results and the 0-d time of
    the evaluation go into lists stacked every :data:`_CHUNK` evaluations; nothing is read back
    inside the step loop. :meth:`first_nonfinite` looks once, after the loop, and finds the first
    bad evaluation exactly. Memory: three scalars per evaluation.

    Args:
        score_model: the model to evaluate.
        check_finite: watch outputs for NaN/Inf.
    """

    def __init__(self, score_model: ScoreModel, check_finite: bool = True) -> None:
        self.score_model = score_model
        self.check_finite = check_finite
        self.nfe = 0
        self._flags: list[Tensor] = []  # (min, max) per evaluation not yet stacked
        self._times: list[Tensor] = []  # 0-d time per evaluation not yet stacked
        self._numbers: list[int] = []  # evaluation number (``nfe`` when watched) of every flag
        self._done: list[tuple[Tensor, Tensor]] = []  # stacked (flags, times) chunks

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """Score at ``x`` and times ``t`` (shape ``(batch,)``, already inside ``[t_min, t_max]``)."""
        self.nfe += 1
        out = self.score_model.score(x, t, check=False)
        if self.check_finite:
            self.watch(out, t)
        return out

    def watch(self, out: Tensor, t: Tensor) -> None:
        """Record whether ``out`` (the evaluation just counted in :attr:`nfe`) is finite, and its
        time ``t`` (0-d, or ``(batch,)`` sharing one time)."""
        self._flags.extend(torch.aminmax(out))
        if t.ndim == 1 and t.stride(0) == 0:
            tt = t[0]  # a view of one shared scalar (our loops expand one time): nothing to copy
        else:
            # a copy, so that a whole (batch,) tensor is not kept alive by its first element
            tt = t.reshape(-1)[0].clone()
        self._times.append(tt)
        self._numbers.append(self.nfe)
        if len(self._times) >= _CHUNK:
            self._gather()

    def _gather(self) -> None:
        if self._times:
            extremes = torch.stack(self._flags).reshape(-1, 2)  # in the outputs' own dtype
            dtype = self._times[0].dtype
            times = torch.stack([t.to(dtype) for t in self._times])
            self._done.append((torch.isfinite(extremes).all(1), times))
            self._flags, self._times = [], []

    def first_nonfinite(self) -> tuple[float, int] | None:
        """``(t, evaluation number)`` of the first non-finite output, or ``None`` (one host sync)."""
        self._gather()
        if not self._done:
            return None
        if len(self._done) > 1:
            flags = torch.cat([f for f, _ in self._done])
            times = torch.cat([t.to(self._done[0][1].dtype) for _, t in self._done])
            self._done = [(flags, times)]
        flags, times = self._done[0]
        if bool(flags.all()):
            return None
        k = int(torch.argmin(flags.to(torch.uint8)))  # first False
        return float(times[k]), self._numbers[k]

    def raise_if_nonfinite(self, where: str, step_of: Callable[[float], str] | None = None,
                           samples: Tensor | None = None) -> None:
        """Raise :class:`NonFiniteError` if a score output or ``samples`` is not finite.

        Args:
            where: who is sampling, for the message (e.g. ``"sampler 'sde' (method='euler')"``).
            step_of: maps the time of the first bad evaluation to a step description.
            samples: final samples to check as well.
        """
        first = self.first_nonfinite()
        if first is not None:
            t, k = first
            step = f"{step_of(t)}, " if step_of is not None else ""
            raise NonFiniteError(
                f"{where}: the score became NaN/Inf at {step}t={t:.6g} (score evaluation {k} of {self.nfe}); "
                "check the model, the time range (t_end) and the step size"
            )
        if samples is not None and not bool(torch.isfinite(samples).all()):
            raise NonFiniteError(f"{where}: the samples contain NaN/Inf after {self.nfe} score evaluations "
                                 "although every score output was finite; the step size may be unstable")
