"""Pieces every sampler loop shares: the time interval, step observers and final denoising."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import OptionError, TimeRangeError
from ..process import ForwardProcess
from ..sampler import StepCallback
from ..score_model import ScoreModel
from .denoiser import Denoiser
from .evaluator import ScoreEvaluator


def resolve_interval(process: ForwardProcess, t_end: float | None) -> tuple[float, float]:
    """``(t_start, t_end)`` of a reverse-time run: ``t_max`` down to ``t_end`` (default ``t_min``)."""
    t_start = float(process.t_max)
    end = float(process.t_min) if t_end is None else float(t_end)
    if not (float(process.t_min) <= end < t_start):
        raise TimeRangeError(
            f"t_end={end:g} must lie in [t_min, t_max) = [{float(process.t_min):g}, {t_start:g}) "
            f"of {type(process).__name__}"
        )
    return t_start, end


def resolve_steps(steps: int | None, dt: float | None, span: float, default: int) -> int:
    """Number of equal steps from ``steps`` or ``dt`` (rounded up so steps are equal; never a sliver)."""
    if steps is not None and dt is not None:
        raise OptionError("give either steps or dt, not both")
    if steps is not None:
        return int(steps)
    if dt is not None:
        return max(1, math.ceil(span / float(dt) - 1e-9))
    return default


def check_positive_int(name: str, value: Any) -> None:
    """Raise :class:`OptionError` unless ``value`` is ``None`` or a positive integer."""
    if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
        raise OptionError(f"{name} must be a positive integer, got {value!r}")


def check_clip_x0(clip_x0: Any) -> None:
    """Raise :class:`OptionError` unless the data-prediction bound ``clip_x0`` is ``None`` or positive."""
    if clip_x0 is not None and not clip_x0 > 0:
        raise OptionError(f"clip_x0 must be positive or None, got {clip_x0!r}")


class StepObserver:
    """Feeds per-step callbacks, a progress bar and an optional trajectory record.

    ``observe(step, t, x)`` is called with the state after ``step`` steps (``step = 0``: the
    initial state). It only exists when one of the three was asked for, so the plain sampling
    loop pays nothing.
    """

    def __init__(self, callback: StepCallback | None, progress: bool, record: bool, total: float,
                 desc: str, by_time: bool = False) -> None:
        self.callback, self.record, self.by_time = callback, record, by_time
        self.states: list[Tensor] = []
        self.times: list[Tensor] = []
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)
        self._last_t: float | None = None

    def observe(self, step: int, t: Tensor, x: Tensor) -> None:
        """Record and report the state ``x`` at time ``t`` after ``step`` steps."""
        if self.record:
            self.states.append(x.detach().clone())
            self.times.append(torch.as_tensor(t).detach().reshape(()).clone())
        if self.callback is not None:
            self.callback(step, t, x)
        if self.bar is not None:
            tf = float(t)
            if step > 0 and self._last_t is not None:
                self.bar.update(abs(tf - self._last_t) if self.by_time else 1)
            self._last_t = tf

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def trajectory(self) -> tuple[Tensor | None, Tensor | None]:
        """Stacked ``(states, times)`` or ``(None, None)``."""
        if not self.record or not self.states:
            return None, None
        return torch.stack(self.states), torch.stack(self.times)


def denoise(score_model: ScoreModel, evaluator: ScoreEvaluator, x: Tensor, t: float) -> Tensor:
    """Final denoising to the posterior mean ``E[x_0 | x_t] = (x_t + sigma_t^2 score) / alpha_t``
    (Tweedie's formula; the "noise removal" step of Song et al. 2021, Appendix G), one evaluation
    of ``evaluator``'s model (``score_model``) at the time ``t``, counted and watched."""
    return Denoiser(evaluator)(x, torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device))
