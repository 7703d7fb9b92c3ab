"""Counted, NaN-watched evaluations of a score model without host synchronisation."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import NonFiniteError
from .score_model import ScoreModel

#: evaluations whose finiteness flags are gathered into one tensor at a time
_CHUNK = 256


class Evaluator:
    """The model evaluations of one sampling or likelihood run: :meth:`score`, :meth:`eps` and
    :meth:`x0` (the conversions of :class:`~sdeflow.ScoreModel`), each counted in :attr:`nfe` and,
    with ``check_finite``, watched for NaN/Inf. Calling the evaluator is :meth:`score`, so it is a
    score function for :meth:`~sdeflow.ForwardProcess.reverse_sde` and
    :meth:`~sdeflow.ForwardProcess.probability_flow`.

    Watching adds one reduction per evaluation, ``torch.aminmax(out)`` (NaN reaches both results, an
    infinity one of them); the 0-d results and times are stacked every 256 evaluations and read back
    once, after the loop (:meth:`first_nonfinite`), so nothing syncs inside it.

    Args:
        score_model: the model to evaluate.
        check_finite: watch outputs for NaN/Inf.
        clip_x0: clamp :meth:`x0` to ``[-clip_x0, clip_x0]`` (images in ``[-1, 1]``: 1.0); ``None``: no clamp.
    """

    def __init__(self, score_model: ScoreModel, check_finite: bool = True, clip_x0: float | None = None) -> None:
        self.score_model, self.check_finite, self.clip_x0 = score_model, bool(check_finite), clip_x0
        self.nfe = 0
        self._flags: list[Tensor] = []  # (min, max) per evaluation not yet stacked
        self._times: list[Tensor] = []  # 0-d time per evaluation not yet stacked
        self._numbers: list[int] = []  # evaluation number (``nfe`` when watched) of every flag
        self._done: list[tuple[Tensor, Tensor]] = []  # stacked (flags, times) chunks

    def _evaluate(self, fn: Callable[..., Tensor], x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        out = fn(x, t, check=False)
        if self.check_finite:
            self.watch(out.detach(), t)
        return out

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """``grad_x log p_t(x)`` (Song et al. 2021, Eq. 7) at times ``t`` of shape ``(batch,)`` inside
        ``[t_min, t_max]`` (not checked: the caller's grid is)."""
        return self._evaluate(self.score_model.score, x, t)

    __call__ = score

    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        """The noise prediction ``eps_theta(x_t, t) = -sigma_t score`` (Ho et al. 2020, Eq. 11)."""
        return self._evaluate(self.score_model.eps, x, t)

    def x0(self, x: Tensor, t: Tensor) -> Tensor:
        """The data prediction ``x0_theta(x_t, t) = (x_t + sigma_t^2 score) / alpha_t`` (Tweedie's
        formula; DPM-Solver++'s data prediction, Lu et al. 2022b, Eq. 8; EDM's ``D(x; sigma)``, Karras et
        al. 2022, Eq. 3), clamped to ``clip_x0`` after the watch."""
        out = self._evaluate(self.score_model.x0, x, t)
        return out.clamp(-self.clip_x0, self.clip_x0) if self.clip_x0 is not None else out

    def watch(self, out: Tensor, t: Tensor) -> None:
        """Record whether ``out`` (the evaluation just counted in :attr:`nfe`) is finite, and its time
        ``t`` (0-d, or ``(batch,)`` sharing one time)."""
        self._flags.extend(torch.aminmax(out))
        if t.ndim == 1 and t.stride(0) == 0:
            tt = t[0]  # a view of one shared scalar (the loops expand one time): nothing to copy
        else:
            tt = t.reshape(-1)[0].clone()  # a copy, so a whole (batch,) tensor is not kept alive
        self._times.append(tt)
        self._numbers.append(self.nfe)
        if len(self._times) >= _CHUNK:
            self._gather()

    def _gather(self) -> None:
        if self._times:
            extremes = torch.stack(self._flags).reshape(-1, 2)
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
        """Raise :class:`~sdeflow.errors.NonFiniteError` if an output or ``samples`` is not finite.

        Args:
            where: who is evaluating, for the message (e.g. ``"sampler 'sde' (method='euler')"``).
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


__all__ = ["Evaluator"]
