"""The time interval of a reverse-time run and where its integration stops.

A run goes from ``t_max`` down to ``t_end`` (default ``t_min``). An integrator that evaluates the
score at its end time stops at :func:`stop_time` ``= max(t_end, score_model.score_t_min)``: later
than ``t_end`` only where the model's score is infinite at ``t_end`` (an ``eps``/``x0``/``v`` network
at ``sigma = 0``, VE at ``t = 0``); :meth:`SamplingRun.finish <sdeflow.solvers.SamplingRun.finish>`
then takes it the rest of the way with one data-prediction evaluation.
"""

from __future__ import annotations

import math

from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..errors import OptionError, TimeRangeError


def resolve_interval(process: ForwardProcess, t_end: float | None) -> tuple[float, float]:
    """``(t_start, t_end)`` of a reverse-time run: ``t_max`` down to ``t_end`` (default ``t_min``).

    Raises:
        TimeRangeError: ``t_end`` outside ``[t_min, t_max)``.
    """
    t_start = float(process.t_max)
    end = float(process.t_min) if t_end is None else float(t_end)
    if not (float(process.t_min) <= end < t_start):
        raise TimeRangeError(
            f"t_end={end:g} must lie in [t_min, t_max) = [{float(process.t_min):g}, {t_start:g}) "
            f"of {type(process).__name__}"
        )
    return t_start, end


def stop_time(score_model: ScoreModel, t_end: float) -> float:
    """Where an integrator that evaluates the score at its end time stops: ``max(t_end,
    score_model.score_t_min)`` (:attr:`~sdeflow.ScoreModel.score_t_min`: the score of an ``eps``,
    ``x0`` or ``v`` network is infinite where ``sigma_t = 0``)."""
    floor = float(score_model.score_t_min)
    return floor if floor > t_end else t_end


def resolve_steps(steps: int | None, dt: float | None, span: float, default: int) -> int:
    """Number of equal steps from ``steps`` or ``dt`` (rounded up so steps are equal; never a sliver)."""
    if steps is not None and dt is not None:
        raise OptionError("give either steps or dt, not both")
    if steps is not None:
        return int(steps)
    if dt is not None:
        return max(1, math.ceil(span / float(dt) - 1e-9))
    return default


def final_step_label(denoise: bool, t_stop: float, t_end: float) -> str:
    """How error messages name the evaluation :meth:`SamplingRun.finish` makes."""
    if denoise:
        return "the final denoising"
    return f"the final data-prediction step from t={t_stop:.6g} to t_end={t_end:g}"
