"""One call of a sampler's ``sample``: the scaffold every sampler's loop runs in.

:class:`SamplingRun` holds what every sampler does around its own update: the counted,
NaN-watched model evaluations (:class:`~sdeflow.solvers.Evaluator`), the prior draw, the noise,
callbacks, the progress bar and the trajectory (built only when asked for), the step loop itself
(:meth:`SamplingRun.steps`, the one place a step loop runs), the end of the run
(:meth:`SamplingRun.finish`) and the :class:`~sdeflow.SampleResult`, with the
:class:`~sdeflow.errors.NonFiniteError` naming the step.
"""

from __future__ import annotations

import bisect
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Callable, Generator, Iterator, TypeVar

import torch
from torch import Tensor

from ..core.evaluator import Evaluator
from ..core.sampler import SampleResult, StepCallback
from ..core.score_model import ScoreModel
from ..utils.shapes import append_dims, randn
from ._interval import final_step_label

#: ``True`` while a run's step loop runs (inside :meth:`SamplingRun.stepping`): tools that watch the
#: loop read it (the conformance kit counts host synchronisations there)
IN_STEP_LOOP: ContextVar[bool] = ContextVar("sdeflow_in_step_loop", default=False)


class _StepObserver:
    """Feeds per-step callbacks, a progress bar and an optional trajectory record."""

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
        if self.record:
            self.states.append(x.detach().clone())
            self.times.append(t.detach().reshape(()).clone())
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
        if not self.record or not self.states:
            return None, None
        return torch.stack(self.states), torch.stack(self.times)


_Run = TypeVar("_Run", bound="SamplingRun")


class SamplingRun:
    """The scaffold of one sampling call, used as a context manager (gradients off inside)::

        with SamplingRun(score_model, shape, generator, callback=callback) as run:
            x = run.prior()
            run.observe(0, t_start, x)
            for k in run.steps(n):           # the step loop: no host synchronisation inside
                x = ...                       # the sampler's update, with run.score / run.x0 / run.noise()
                run.observe(k + 1, t_next, x)
            x = run.finish(x, t_stop, t_end, denoise)
        return run.result(x, "sampler 'mine'", steps=n, step_label=lambda s: f"step {s} of {n}")

    Args:
        score_model: the model being sampled.
        shape: ``(batch, *dims)``.
        generator: the run's random source (prior draw and every noise draw).
        check_finite: watch every evaluation for NaN/Inf (read back once, after the loop).
        clip_x0: bound of the data prediction :meth:`x0` (``None``: no clipping).
        callback: as in :meth:`sdeflow.Sampler.sample`.
        progress: as in :meth:`sdeflow.Sampler.sample`.
        return_trajectory: as in :meth:`sdeflow.Sampler.sample`.
        x_T: the prior draw to start from (as :meth:`sdeflow.Sampler.sample` checked it), or ``None``
            to draw one from ``generator``.

    Attributes:
        evaluator: the run's :class:`~sdeflow.solvers.Evaluator` (``evaluator.nfe``: evaluations so far).
        score, eps, x0: its counted, watched evaluations ``f(x, t)`` with ``t`` of shape ``(batch,)``.
        process, device, dtype: of the model.
    """

    def __init__(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None, *,
                 check_finite: bool = True, clip_x0: float | None = None, callback: StepCallback | None = None,
                 progress: bool = False, return_trajectory: bool = False, x_T: Tensor | None = None) -> None:
        self.score_model, self.process = score_model, score_model.process
        self.x_T = x_T
        self.shape, self.generator = tuple(shape), generator
        self.device, self.dtype = score_model.device, score_model.dtype
        self.evaluator = Evaluator(score_model, check_finite, clip_x0)
        self.score, self.eps, self.x0 = self.evaluator.score, self.evaluator.eps, self.evaluator.x0
        self._watch = (callback, progress, return_trajectory)
        self._observer: _StepObserver | None = None
        self._starts: list[int] = []  # evaluations made before each step (host ints, no sync)
        self._loop_nfe: int | None = None  # evaluations made when the step loop ended
        self._finish_label: str | None = None
        self._stack = ExitStack()

    # ------------------------------------------------------------------ the context
    def __enter__(self: _Run) -> _Run:
        self._stack.enter_context(torch.no_grad())
        self._stack.callback(self._close)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _close(self) -> None:
        if self._observer is not None:
            self._observer.close()

    # ------------------------------------------------------------------ draws and times
    @property
    def batch(self) -> int:
        """The batch size ``shape[0]``."""
        return self.shape[0]

    def prior(self) -> Tensor:
        """``x_{t_max}``: a copy of the given ``x_T``, else a draw of the model's prior
        (:meth:`~sdeflow.ScoreModel.prior_sample`) from the run's generator (which a given ``x_T`` leaves
        untouched for the sampler's own noise)."""
        if self.x_T is not None:
            return self.x_T.clone()
        return self.score_model.prior_sample(self.shape, self.generator, self.device, self.dtype)

    def noise(self) -> Tensor:
        """Standard normal noise of the sample shape from the run's generator."""
        return randn(self.shape, self.generator, self.device, self.dtype)

    def time(self, t: float) -> Tensor:
        """The host time ``t`` (a grid time, a midpoint, a churned level's time) for the whole batch: a
        ``(batch,)`` tensor on the model's device and dtype (filled on the device, no synchronisation)."""
        return torch.full((self.batch,), float(t), dtype=self.dtype, device=self.device)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` at the times ``t`` (``(batch,)``), broadcastable against the samples."""
        a, s = self.process.marginal(t)
        return append_dims(a, len(self.shape)), append_dims(s, len(self.shape))

    # ------------------------------------------------------------------ callbacks, progress, trajectory
    def observe_steps(self, total: float, desc: str, by_time: bool = False) -> None:
        """Build the observer if a callback, progress bar or trajectory was asked for (``total``: the
        progress bar's length, in steps or, with ``by_time``, in time)."""
        callback, progress, record = self._watch
        if callback is not None or progress or record:
            self._observer = _StepObserver(callback, progress, record, total=total, desc=desc, by_time=by_time)

    @property
    def observing(self) -> bool:
        """Whether :meth:`observe` does anything (compute an observed state only when it does)."""
        return self._observer is not None

    def observe(self, step: int, t: Tensor | float, x: Tensor) -> None:
        """Report the state ``x`` at time ``t`` after ``step`` steps (nothing when nothing is observed)."""
        if self._observer is not None:
            tt = t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=x.dtype, device=x.device)
            self._observer.observe(step, tt, x)

    # ------------------------------------------------------------------ the step loop
    @contextmanager
    def stepping(self) -> Iterator[None]:
        """The step loop's region: a solver with its own loop (torchdiffeq's) runs inside it and calls
        :meth:`begin_step` before each step; :meth:`steps` is this region around ``range(n)``."""
        token = IN_STEP_LOOP.set(True)
        try:
            yield
        finally:
            IN_STEP_LOOP.reset(token)
            self._loop_nfe = self.evaluator.nfe

    def begin_step(self) -> None:
        """Record the evaluations made before the step that begins (a host integer: the step of a
        non-finite evaluation is then found exactly, after the loop)."""
        self._starts.append(self.evaluator.nfe)

    def steps(self, n: int) -> Iterator[int]:
        """The step loop: yields ``k = 0 .. n - 1``, each after :meth:`begin_step`, inside :meth:`stepping`."""
        loop = self._loop(n)
        self._stack.callback(loop.close)  # ends the region if the loop body raised
        return loop

    def _loop(self, n: int) -> Generator[int, None, None]:
        with self.stepping():
            for k in range(n):
                self.begin_step()
                yield k

    def step_of_first_nonfinite(self) -> int | None:
        """The 1-based step during which the first non-finite evaluation happened, or ``None`` when it
        came after the step loop (the final denoising or data-prediction step)."""
        first = self.evaluator.first_nonfinite()
        number = first[1] if first is not None else 1
        if self._loop_nfe is not None and number > self._loop_nfe:
            return None
        return max(1, bisect.bisect_left(self._starts, number))

    # ------------------------------------------------------------------ the end of the run
    def finish(self, x: Tensor, t_stop: float, t_end: float, denoise: bool) -> Tensor:
        """The end of a run that integrated down to ``t_stop >= t_end``: one evaluation of the data
        prediction ``x0_theta(x, t_stop)``, or none.

        * ``denoise``: the posterior mean ``E[x_0 | x_{t_stop}]`` (Tweedie's formula; the noise-removal
          step of Song et al. 2021, App. G).
        * else, when ``t_stop > t_end``: the exact step of the probability-flow ODE to ``t_end`` with
          the data prediction held fixed (DDIM, Song, Meng, Ermon 2021, Eq. 12 with ``eta = 0``):
          ``x_{t_end} = alpha_{t_end} x0 + sigma_{t_end} (x - alpha_{t_stop} x0) / sigma_{t_stop}``.
        * else ``x`` unchanged.
        """
        self._finish_label = final_step_label(denoise, t_stop, t_end)
        if not denoise and not t_stop > t_end:
            return x
        t = self.time(t_stop)
        x0 = self.x0(x, t)
        if denoise:
            return x0
        a_s, s_s = self.marginal(t)
        a_e, s_e = self.marginal(self.time(t_end))
        return a_e * x0 + s_e * ((x - a_s * x0) / s_s)

    def result(self, x: Tensor, where: str, steps: int | None, step_label: Callable[[int], str] | None = None,
               final_label: str | None = None) -> SampleResult:
        """The :class:`~sdeflow.SampleResult` with the recorded trajectory, after checking the watched
        evaluations and ``x`` (one host synchronisation).

        Args:
            x: the samples.
            where: who sampled, for messages (``"sampler 'ode' (method='rk4', steps=10)"``).
            steps: the steps taken (``result.steps``).
            step_label: names the 1-based step of the first non-finite evaluation (``None``: name its
                time only).
            final_label: names an evaluation after the loop (default: the step :meth:`finish` took,
                ``"... after step n of n"``).

        Raises:
            NonFiniteError: an evaluation or ``x`` is not finite.
        """
        def step_of(t: float) -> str:
            step = self.step_of_first_nonfinite()
            if step is not None:
                return step_label(step)  # type: ignore[misc]
            return final_label or f"{self._finish_label} after step {steps} of {steps}"

        self.evaluator.raise_if_nonfinite(where, step_of if step_label is not None else None, samples=x)
        traj, times = self._observer.trajectory() if self._observer is not None else (None, None)
        return SampleResult(samples=x, nfe=self.evaluator.nfe, steps=steps, trajectory=traj, times=times)
