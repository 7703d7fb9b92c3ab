"""Samplers that walk a descending time grid one step at a time.

``ancestral``, ``ddim``, ``dpm_solver``, ``unipc``, ``pc``, ``heun``, ``langevin`` (and a third
party's sampler) differ only in their grid, what they compute before the loop (their plan) and the
update of one step; :class:`GridSampler` runs the rest in a :class:`GridRun`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.sampler import Sampler, SampleResult, StepCallback
from ..core.score_model import ScoreModel
from ._interval import final_step_label, resolve_interval, stop_time
from ._run import SamplingRun


class GridRun(SamplingRun):
    """A :class:`~sdeflow.solvers.SamplingRun` on a time grid.

    Attributes:
        grid: the descending times ``t_0 = t_max > ... > t_n`` (float64, host).
        times: the same on the model's device and dtype.
        n: the number of steps.
        plan: what :meth:`GridSampler.plan` returned for this run (a frozen dataclass of the sampler's
            coefficients, by convention).
        t_end: the requested end time.
        t_stop: the grid's last time: ``t_end``, or the model's ``score_t_min`` where that is later and
            the sampler's steps evaluate the score at their end (:attr:`GridSampler.scores_at_end`).
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
        """The grid time ``times[k]`` for the whole batch (an expanded view, no copy); an off-grid time
        goes through :meth:`~sdeflow.solvers.SamplingRun.time`."""
        return self.times[k].expand(self.batch)

    def denoise(self, x: Tensor) -> Tensor:
        """The posterior mean ``E[x_0 | x_{t_n}] = x0(x, t_n)`` (Tweedie's formula; the noise-removal
        step of Song et al. 2021, App. G; DDPM's noiseless last step), one evaluation."""
        return self.x0(x, self.at(self.n))


class GridSampler(Sampler):
    """Base class of the samplers that step along a descending time grid.

    A subclass writes the paper's algorithm as two methods (and may override the others)::

        def plan(self, run, t_start, t_end) -> tuple[Tensor, Plan]   # the grid and the coefficients
        def step(self, run, k, state) -> state                        # grid[k] -> grid[k + 1]

    Class attributes (set from the constructor's options): ``t_end`` (``None``: the process's
    ``t_min``), ``check_finite``, ``clip_x0`` (bound of ``run.x0``), ``denoise`` (finish with the
    posterior mean) and :attr:`scores_at_end`.
    """

    t_end: float | None = None
    check_finite: bool = True
    clip_x0: float | None = None
    denoise: bool = False
    #: the step evaluates the score at the time it steps *to* (annealed Langevin runs at each level),
    #: so the grid stops where the score is finite (``max(t_end, score_t_min)``, :func:`stop_time`) and
    #: :meth:`finish` takes the last data-prediction step from there to ``t_end``
    scores_at_end: ClassVar[bool] = False

    # ------------------------------------------------------------------ the authoring interface
    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The descending grid (float64, host) from ``t_start`` to ``t_end``, and the run's plan: what
        the steps read, computed once before the loop (host floats from the float64 grid, or tensors
        on ``run.device``), then ``run.plan``."""
        raise NotImplementedError(f"{type(self).__name__} must implement plan(run, t_start, t_end)")

    def step(self, run: GridRun, k: int, state: Any) -> Any:
        """One step from ``run.grid[k]`` to ``run.grid[k + 1]``: the loop state after it. No host
        synchronisation here (no ``.item()``, ``float(tensor)``, ``bool(tensor)``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(run, k, state)")

    def start(self, run: GridRun, x: Tensor) -> Any:
        """The loop state from the prior draw ``x`` (default: ``x`` itself; e.g. EDM's ``x / alpha``,
        or ``x`` with a history of data predictions)."""
        return x

    def output(self, run: GridRun, k: int, state: Any) -> Tensor:
        """The sample ``x`` at ``run.grid[k]`` from the loop state (default: the state itself)."""
        return state

    def finish(self, run: GridRun, x: Tensor) -> Tensor:
        """After the last step: the final denoising when ``self.denoise``; the data-prediction step to
        ``run.t_end`` when the grid stopped short of it (:attr:`scores_at_end`)."""
        if run.t_stop > run.t_end:
            return run.finish(x, run.t_stop, run.t_end, self.denoise)
        return run.denoise(x) if self.denoise else x

    def describe(self, run: GridRun) -> str:
        """The options named in messages (inside ``sampler 'name' (...)``)."""
        return f"steps={run.n}"

    def step_label(self, run: GridRun, step: int) -> str:
        """How messages name step ``step`` (1-based)."""
        return f"step {step} of {run.n}"

    # ------------------------------------------------------------------ the loop
    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback: StepCallback | None, progress: bool, return_trajectory: bool,
                x_T: Tensor | None = None) -> SampleResult:
        with GridRun(score_model, shape, generator, check_finite=self.check_finite, clip_x0=self.clip_x0,
                     callback=callback, progress=progress, return_trajectory=return_trajectory, x_T=x_T) as run:
            t_start, run.t_end = resolve_interval(run.process, self.t_end)
            run.t_stop = stop_time(score_model, run.t_end) if self.scores_at_end else run.t_end
            run.use_grid(*self.plan(run, t_start, run.t_stop))
            run.observe_steps(run.n, self.name)
            x = run.prior()
            run.observe(0, run.times[0], x)
            state = self.start(run, x)
            for k in run.steps(run.n):
                state = self.step(run, k, state)
                if run.observing:
                    run.observe(k + 1, run.times[k + 1], self.output(run, k + 1, state))
            x = self.finish(run, self.output(run, run.n, state))
        final = ("the final denoising step" if self.denoise or not run.t_stop > run.t_end
                 else final_step_label(False, run.t_stop, run.t_end))
        return run.result(x, f"sampler '{self.name}' ({self.describe(run)})", steps=run.n,
                          step_label=lambda step: self.step_label(run, step), final_label=final)
