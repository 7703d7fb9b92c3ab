"""Pieces every sampler loop shares: the time interval, step observers and the final step.

The end of a run: an integrator that evaluates the score up to its end time stops at
:func:`stop_time` ``= max(t_end, score_model.score_t_min)`` (later than ``t_end`` only where the
model's score is infinite at ``t_end``: an ``eps``/``x0``/``v`` network at ``sigma = 0``, VE at
``t = 0``), and :func:`finish` takes it the rest of the way with one data-prediction evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import OptionError, TimeRangeError
from ..core.process import ForwardProcess
from ..core.sampler import StepCallback
from ..core.score_model import ScoreModel
from ..utils.shapes import append_dims
from ..utils.validation import check_clip_x0, check_positive_int  # noqa: F401  (re-exported)
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


def stop_time(score_model: ScoreModel, t_end: float) -> float:
    """Where an integrator that evaluates the score at its end time stops: ``t_end``, or the model's
    :attr:`~sdeflow.ScoreModel.score_t_min` where that is later (the score of an ``eps``, ``x0`` or
    ``v`` network is infinite where ``sigma_t = 0``); :func:`finish` then steps on to ``t_end``.

    Args:
        score_model: the model being sampled.
        t_end: the run's end time (from :func:`resolve_interval`).

    Returns:
        ``max(t_end, score_model.score_t_min)`` (``t_end`` itself when the model's score is finite there).
    """
    floor = float(score_model.score_t_min)
    return floor if floor > t_end else t_end


def finish(denoiser: Denoiser, x: Tensor, t_stop: float, t_end: float, denoise: bool) -> Tensor:
    """The end of a sampling run that integrated down to ``t_stop >= t_end``, one evaluation of the
    data prediction ``x0_theta(x, t_stop)`` (counted and watched by ``denoiser``) or none:

    * ``denoise``: the posterior mean ``E[x_0 | x_{t_stop}]`` (Tweedie's formula; the noise-removal step
      of Song et al. 2021, App. G). With ``t_stop = t_end`` this is the usual final denoising; with
      ``t_stop > t_end`` it is also the best estimate of ``E[x_0 | x_{t_end}]`` given ``x_{t_stop}``
      (tower property of the forward Markov chain ``x_0 -> x_{t_end} -> x_{t_stop}``).
    * else, when ``t_stop > t_end``: the exact step to ``t_end`` of the probability-flow ODE with the
      data prediction held at its value at ``t_stop`` (DDIM, Song, Meng, Ermon 2021, Eq. 12 with
      ``eta = 0``, equal to DPM-Solver-1, Lu et al. 2022, Sec. 4.1; the ODE shares the reverse SDE's
      marginals, so it ends an SDE run as well):
      ``x_{t_end} = alpha_{t_end} x0 + sigma_{t_end} (x - alpha_{t_stop} x0) / sigma_{t_stop}``; at
      ``sigma_{t_end} = 0`` (VE at ``t = 0``) it is ``alpha_{t_end} x0``, the same as ``denoise``.
    * else ``x`` unchanged (no evaluation).

    Args:
        denoiser: the run's counted data prediction (:class:`~sdeflow.solvers.denoiser.Denoiser`).
        x: the state at ``t_stop``.
        t_stop: where the integration stopped (:func:`stop_time`).
        t_end: the requested end time.
        denoise: return the posterior mean.

    Returns:
        The samples, shaped like ``x``.
    """
    if not denoise and not t_stop > t_end:
        return x
    t = torch.full((x.shape[0],), float(t_stop), dtype=x.dtype, device=x.device)
    x0 = denoiser(x, t)
    if denoise:
        return x0
    process = denoiser.evaluator.score_model.process
    a_s, s_s = (append_dims(v, x.ndim) for v in process.marginal(t))
    a_e, s_e = (append_dims(v, x.ndim) for v in process.marginal(torch.full_like(t, float(t_end))))
    return a_e * x0 + s_e * ((x - a_s * x0) / s_s)


def final_step_label(denoise: bool, t_stop: float, t_end: float) -> str:
    """How error messages name the evaluation :func:`finish` makes."""
    if denoise:
        return "the final denoising"
    return f"the final data-prediction step from t={t_stop:.6g} to t_end={t_end:g}"


def resolve_steps(steps: int | None, dt: float | None, span: float, default: int) -> int:
    """Number of equal steps from ``steps`` or ``dt`` (rounded up so steps are equal; never a sliver)."""
    if steps is not None and dt is not None:
        raise OptionError("give either steps or dt, not both")
    if steps is not None:
        return int(steps)
    if dt is not None:
        return max(1, math.ceil(span / float(dt) - 1e-9))
    return default


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
    of ``evaluator``'s model (``score_model``) at the time ``t``, counted and watched.

    A sampler whose integrator stops at :func:`stop_time` rather than ``t_end`` calls :func:`finish`
    instead, which also covers ``denoise=False``."""
    return Denoiser(evaluator)(x, torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device))
