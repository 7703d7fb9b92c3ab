"""The ``ode`` sampler: the probability-flow ODE integrated by torchdiffeq."""

from __future__ import annotations

from typing import Any

import torch

from sdeflow import Sampler, SampleResult, ScoreModel
from sdeflow.solvers import (
    ODE_ORDER,
    FlowField,
    SamplingRun,
    check_ode_options,
    integrate_ode,
    ode_failures,
    resolve_interval,
    stop_time,
)


class ODESampler(Sampler):
    """Sample by integrating ``dx/dt = f - 1/2 g^2 score`` from ``t_max`` to ``t_end``
    (Song et al. 2021, Eq. 13) with a torchdiffeq method.

    Args:
        method: any torchdiffeq method: adaptive (``dopri5``, ``dopri8``, ``bosh3``,
            ``fehlberg2``, ``adaptive_heun``) or fixed-grid (``euler``, ``midpoint``, ``heun2``,
            ``heun3``, ``rk4``, ``explicit_adams``, ``implicit_adams``, ``fixed_adams``).
        rtol: relative tolerance of adaptive methods (default 1e-5, as in Song et al. 2021).
        atol: absolute tolerance of adaptive methods (default 1e-5).
        steps: equal steps of a fixed-grid method (default 100).
        denoise: finish with the posterior mean ``E[x_0 | x_{t_end}]`` (one more evaluation).
        t_end: final time (default: the process's ``t_min``). Where the model's score is infinite
            there (an ``eps``/``x0``/``v`` network at ``sigma_t = 0``: VE at ``t = 0``), the ODE is
            integrated to ``score_model.score_t_min`` and one exact data-prediction step (one more
            evaluation, the same one ``denoise`` makes) goes on to ``t_end``.
        options: further torchdiffeq options (e.g. ``{"max_num_steps": 10_000}``, or
            ``{"max_order": 4}`` for the Adams methods: with torchdiffeq's default order of up to
            12, ``explicit_adams`` is unstable on stiff fields such as VE's).
        check_finite: raise :class:`sdeflow.errors.NonFiniteError` naming the time (and, for
            fixed-grid methods, the step) where the score first became NaN/Inf.

    The initial samples come from ``score_model.prior_sample`` (the process's marginal at
    ``t_max``; exact ``p_{t_max}`` for an exact mixture model). Adaptive methods are made to step
    exactly to ``t_end`` (or ``score_t_min``) and every evaluation time is clamped into
    ``[t_end, t_max]`` (and up to ``score_t_min``): the score is never asked for outside the run's
    interval (the contract of ``t_end``; adaptive trial stages probe past the end) or where it is
    infinite. ``result.steps`` counts the solver's steps; the
    final denoising or data-prediction step is one more evaluation in ``result.nfe``.
    """

    name = "ode"
    stochastic = False
    #: torchdiffeq's step loops read device values on the host: the adaptive methods' step-size
    #: control compares the error norm with 1 every step, and the fixed-grid loop compares each
    #: step's end time with the output times (``t1 >= t[j]``)
    host_syncs = True

    def __init__(self, method: str = "dopri5", rtol: float | None = None, atol: float | None = None,
                 steps: int | None = None, denoise: bool = False, t_end: float | None = None,
                 options: dict[str, Any] | None = None, check_finite: bool = True) -> None:
        _, self.rtol, self.atol = check_ode_options(method, steps, rtol, atol)
        self.method, self.steps = method, steps
        self.denoise, self.t_end, self.solver_options = bool(denoise), t_end, options
        self.check_finite = bool(check_finite)

    @property
    def requires_gaussian_marginals(self) -> bool:  # type: ignore[override]
        """True with ``denoise``: the posterior mean ``E[x_0 | x_t]`` (Tweedie's formula) needs
        ``alpha_t`` and ``sigma_t``; the integration itself uses only drift, diffusion and score."""
        return self.denoise

    @property
    def order(self) -> float:  # type: ignore[override]
        """Classical order of the method."""
        return float(ODE_ORDER[self.method])

    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback, progress: bool, return_trajectory: bool,  # type: ignore[no-untyped-def]
                x_T: torch.Tensor | None = None) -> SampleResult:
        steps = check_ode_options(self.method, self.steps, None, None)[0]  # None for an adaptive method
        where = f"sampler 'ode' (method={self.method!r}" + (f", steps={steps})" if steps is not None else ")")
        count = 0  # the solver's steps, accepted steps for an adaptive method
        with SamplingRun(score_model, shape, generator, check_finite=self.check_finite, callback=callback,
                         progress=progress, return_trajectory=return_trajectory, x_T=x_T) as run:
            t_start, t_end = resolve_interval(run.process, self.t_end)
            t_stop = stop_time(score_model, t_end)
            field = FlowField(run.process.probability_flow(run.score), run.process, run.batch,
                              t_floor=t_stop)
            run.observe_steps(t_start - t_stop, f"ode/{self.method}", by_time=True)

            def on_step(t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
                # torchdiffeq calls this before each (accepted) step with the state it starts from
                nonlocal count
                count += 1
                run.begin_step()
                if count > 1:
                    run.observe(count - 1, t0, y0)

            x = run.prior()
            run.observe(0, t_start, x)
            with run.stepping(), ode_failures(run.evaluator, where):
                x = integrate_ode(field, x, t_start, t_stop, self.method, steps, self.rtol, self.atol,
                                  self.solver_options, on_step)
            run.observe(count, t_stop, x)
            x = run.finish(x, t_stop, t_end, self.denoise)
        return run.result(x, where, steps=steps if steps is not None else count,
                          step_label=(lambda step: f"step {step} of {steps}") if steps is not None else None)
