"""One call of a sampler's ``sample``: the counted score, the observers, the prior draw and the result.

Every sampler does the same around its own integration loop: count and watch the score
evaluations (:class:`~sdeflow.solvers.evaluator.ScoreEvaluator`), feed callbacks, a progress bar
and a trajectory record (:class:`~sdeflow.solvers.common.StepObserver`) only when one was
asked for, draw ``x_{t_max}`` from the prior, raise a :class:`~sdeflow.errors.NonFiniteError`
naming the step after the loop, and assemble the :class:`~sdeflow.SampleResult`.
:class:`SamplingRun` holds that, so a sampler's file holds only its own step formula.
"""

from __future__ import annotations

import bisect
from typing import Callable

import torch
from torch import Tensor

from ..core.sampler import SampleResult, StepCallback
from ..core.score_model import ScoreModel
from ..utils.shapes import randn
from .common import StepObserver, finish
from .denoiser import Denoiser
from .evaluator import ScoreEvaluator


class SamplingRun:
    """The state one sampling call shares with every sampler.

    Args:
        score_model: the model being sampled.
        shape: ``(batch, *dims)``.
        generator: the run's random source (prior draw and every noise draw).
        check_finite: watch score outputs for NaN/Inf.
        callback: as in :meth:`sdeflow.Sampler.sample`.
        progress: as in :meth:`sdeflow.Sampler.sample`.
        return_trajectory: as in :meth:`sdeflow.Sampler.sample`.
        clip_x0: bound of the data prediction :attr:`x0` (``None``: no clipping).
        x_T: the prior draw to start from (as :meth:`sdeflow.Sampler.sample` checked it), or ``None``
            to draw one from ``generator``.

    Attributes:
        evaluator: the counted, watched score ``evaluator(x, t)``.
        x0: the counted, watched data prediction ``x0(x, t)`` (Tweedie's formula), clipped to ``clip_x0``.
        observer: the :class:`StepObserver` once :meth:`observe_steps` made one (``None`` when
            nothing is observed, so the plain loop pays nothing).
    """

    def __init__(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                 check_finite: bool, callback: StepCallback | None, progress: bool, return_trajectory: bool,
                 clip_x0: float | None = None, x_T: Tensor | None = None) -> None:
        self.score_model, self.process = score_model, score_model.process
        self.x_T = x_T
        self.shape, self.generator = shape, generator
        self.device, self.dtype = score_model.device, score_model.dtype
        self.evaluator = ScoreEvaluator(score_model, check_finite)
        self.x0 = Denoiser(self.evaluator, clip_x0)
        self._watch = (callback, progress, return_trajectory)
        self.observer: StepObserver | None = None

    @property
    def batch(self) -> int:
        """The batch size ``shape[0]``."""
        return self.shape[0]

    def observe_steps(self, total: float, desc: str, by_time: bool = False) -> None:
        """Create the observer if a callback, progress bar or trajectory was asked for (``total``:
        the progress bar's length, in steps or, with ``by_time``, in time)."""
        callback, progress, record = self._watch
        if callback is not None or progress or record:
            self.observer = StepObserver(callback, progress, record, total=total, desc=desc, by_time=by_time)

    def observe(self, step: int, t: Tensor, x: Tensor) -> None:
        """Report the state ``x`` at time ``t`` after ``step`` steps (nothing when nothing is observed)."""
        if self.observer is not None:
            self.observer.observe(step, t, x)

    def close(self) -> None:
        """Close the progress bar."""
        if self.observer is not None:
            self.observer.close()

    def prior(self) -> Tensor:
        """``x_{t_max}``: a copy of the given ``x_T``, else a draw of the model's prior from the run's
        generator (which a given ``x_T`` leaves untouched for the sampler's own noise)."""
        if self.x_T is not None:
            return self.x_T.clone()
        return self.score_model.prior_sample(self.shape, self.generator, self.device, self.dtype)

    def finish(self, x: Tensor, t_stop: float, t_end: float, denoise: bool) -> Tensor:
        """The end of the run from the state ``x`` at ``t_stop`` (:func:`~sdeflow.solvers.common.finish`:
        the posterior mean when ``denoise``, else the exact data-prediction step to ``t_end`` when the
        integration stopped early at the model's :attr:`~sdeflow.ScoreModel.score_t_min`)."""
        return finish(self.x0, x, t_stop, t_end, denoise)

    def noise(self) -> Tensor:
        """Standard normal noise of the sample shape from the run's generator."""
        return randn(self.shape, self.generator, self.device, self.dtype)

    def step_of_first_nonfinite(self, starts: list[int], in_loop: int) -> int | None:
        """The 1-based step during which the first non-finite evaluation happened, from the number of
        evaluations made before each step (``starts``, host integers recorded by the loop: exact, no
        device synchronisation); ``None`` when it came after the loop's first ``in_loop`` evaluations
        (the final denoising)."""
        first = self.evaluator.first_nonfinite()
        number = first[1] if first is not None else 1
        if number > in_loop:
            return None
        return max(1, bisect.bisect_left(starts, number))

    def result(self, x: Tensor, where: str, step_of: Callable[[float], str] | None, steps: int | None) -> SampleResult:
        """Raise :class:`~sdeflow.errors.NonFiniteError` if a score output or ``x`` is not finite
        (``where`` names the sampler, ``step_of`` maps the time of the first bad evaluation to its
        step), else return the :class:`~sdeflow.SampleResult` with the recorded trajectory."""
        self.evaluator.raise_if_nonfinite(where, step_of, samples=x)
        traj, times = self.observer.trajectory() if self.observer is not None else (None, None)
        return SampleResult(samples=x, nfe=self.evaluator.nfe, steps=steps, trajectory=traj, times=times)
