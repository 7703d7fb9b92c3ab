"""The shared loop of the samplers that walk a descending time grid one step at a time.

``ancestral``, ``ddim``, ``dpm_solver``, ``pc``, ``heun``, ``langevin`` (and a third party's
sampler) differ only in their grid, the coefficients they compute before the loop and the
formula of one step. :class:`GridSampler` owns the rest: the interval ``[t_end, t_max]``, the
counted and watched evaluations, the prior draw under ``no_grad``, callbacks, progress and
trajectory, the final denoising, the NaN message naming the step and the result.

A subclass implements::

    def _plan(self, run, t_start, t_end):   # -> (grid, plan): float64 descending times, coefficients
    def _step(self, run, k, state):          # -> the state at grid[k + 1] from the state at grid[k]

and may override :meth:`~GridSampler._start` / :meth:`~GridSampler._output` (a state other than
``x``, e.g. EDM's ``x / alpha_t``), :meth:`~GridSampler._finish` (default: the final denoising when
``self.denoise``), :meth:`~GridSampler._describe` and :meth:`~GridSampler._step_label` (messages).

A step that evaluates the score at the time it steps *to* (annealed Langevin runs at each level)
sets the class attribute ``scores_at_end = True``: the grid then ends at
``max(t_end, score_model.score_t_min)`` (:func:`~sdeflow.solvers.common.stop_time`) and
:meth:`~GridSampler._finish` takes the last data-prediction step from there to ``t_end``. The other
built-in grid samplers evaluate only at ``grid[k]``, ``k < n``, and take their own step to ``t_end``
(a data-prediction step, finite at ``sigma = 0``), so their grid reaches ``t_end``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.sampler import SampleResult, Sampler, StepCallback
from ..core.score_model import ScoreModel
from .common import final_step_label, resolve_interval, stop_time
from .run import SamplingRun


class GridRun(SamplingRun):
    """A :class:`~sdeflow.solvers.run.SamplingRun` on a time grid.

    Attributes:
        grid: the descending times ``t_0 = t_max > ... > t_n = t_end`` (float64, host).
        times: the same on the model's device and dtype.
        n: number of steps.
        plan: what the sampler's ``_plan`` computed for this run (coefficients, per-run memory).
        t_end: the requested end time.
        t_stop: the end time handed to the sampler's ``_plan``: ``t_end``, or the model's
            ``score_t_min`` where that is later and the sampler's steps evaluate the score at their end
            (:attr:`GridSampler.scores_at_end`).
    """

    grid: Tensor
    times: Tensor
    n: int
    plan: Any
    t_end: float
    t_stop: float

    def use_grid(self, grid: Tensor, plan: Any) -> None:
        """Set the run's grid (float64, descending) and the sampler's plan."""
        self.grid, self.plan = grid, plan
        self.times = grid.to(device=self.device, dtype=self.dtype)
        self.n = grid.numel() - 1

    def at(self, k: int) -> Tensor:
        """The time ``times[k]`` for the whole batch (an expanded view, no copy)."""
        return self.times[k].expand(self.batch)

    def denoise(self, x: Tensor) -> Tensor:
        """The posterior mean ``E[x_0 | x_{t_n}] = x0(x, t_n)`` (Tweedie's formula; the noise-removal
        step of Song et al. 2021, App. G; DDPM's noiseless last step), one evaluation."""
        return self.x0(x, self.at(self.n))


class GridSampler(Sampler):
    """Base class of samplers that step along a descending time grid (see the module docstring).

    Subclasses set the attributes ``t_end`` (``None``: the process's ``t_min``) and
    ``check_finite``; ``clip_x0`` bounds the data prediction ``run.x0`` and ``denoise`` turns on the
    final denoising (both off by default).

    The step of a non-finite evaluation is found from its evaluation number: the loop records the
    count before every step (host integers, no device synchronisation), so the message names the
    step exactly, or "the final denoising step".
    """

    t_end: float | None = None
    check_finite: bool = True
    clip_x0: float | None = None
    denoise: bool = False
    #: the step evaluates the score at ``grid[k + 1]``, so the grid must stop where the score is finite
    scores_at_end: ClassVar[bool] = False

    # ------------------------------------------------------------------ what a subclass writes
    def _plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The grid (float64, descending, from ``t_start`` to ``t_end``) and the run's plan."""
        raise NotImplementedError(f"{type(self).__name__} must implement _plan(run, t_start, t_end)")

    def _step(self, run: GridRun, k: int, state: Any) -> Any:
        """One step from ``grid[k]`` to ``grid[k + 1]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _step(run, k, state)")

    def _start(self, run: GridRun, x: Tensor) -> Any:
        """The loop's state from the prior sample ``x`` (default: ``x`` itself)."""
        return x

    def _output(self, run: GridRun, k: int, state: Any) -> Tensor:
        """The sample ``x`` at ``grid[k]`` from the loop's state (default: the state itself)."""
        return state

    def _finish(self, run: GridRun, x: Tensor) -> Tensor:
        """After the last step: the final denoising when ``self.denoise``; the data-prediction step to
        ``run.t_end`` when the grid stopped short of it (:attr:`scores_at_end`)."""
        if run.t_stop > run.t_end:
            return run.finish(x, run.t_stop, run.t_end, self.denoise)
        return run.denoise(x) if self.denoise else x

    def _describe(self, run: GridRun) -> str:
        """The options named in messages (inside ``sampler 'name' (...)``)."""
        return f"steps={run.n}"

    def _step_label(self, run: GridRun, step: int) -> str:
        """How messages name step ``step`` (1-based)."""
        return f"step {step} of {run.n}"

    # ------------------------------------------------------------------ the loop
    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback: StepCallback | None, progress: bool, return_trajectory: bool,
                x_T: Tensor | None = None) -> SampleResult:
        run = GridRun(score_model, shape, generator, self.check_finite, callback, progress, return_trajectory,
                      self.clip_x0, x_T)
        t_start, t_end = resolve_interval(run.process, self.t_end)
        run.t_end = t_end
        run.t_stop = stop_time(score_model, t_end) if self.scores_at_end else t_end
        run.use_grid(*self._plan(run, t_start, run.t_stop))
        run.observe_steps(run.n, self.name)
        starts: list[int] = []  # evaluations made before each step (host ints)
        with torch.no_grad():
            x = run.prior()
            run.observe(0, run.times[0], x)
            state = self._start(run, x)
            try:
                for k in range(run.n):
                    starts.append(run.evaluator.nfe)
                    state = self._step(run, k, state)
                    if run.observer is not None:
                        run.observer.observe(k + 1, run.times[k + 1], self._output(run, k + 1, state))
            finally:
                run.close()
            in_loop = run.evaluator.nfe
            x = self._finish(run, self._output(run, run.n, state))

        def step_of(t: float) -> str:
            step = run.step_of_first_nonfinite(starts, in_loop)
            if step is None:
                if self.denoise or not run.t_stop > run.t_end:
                    return "the final denoising step"
                return final_step_label(False, run.t_stop, run.t_end)
            return self._step_label(run, step)

        return run.result(x, f"sampler '{self.name}' ({self._describe(run)})", step_of, steps=run.n)
