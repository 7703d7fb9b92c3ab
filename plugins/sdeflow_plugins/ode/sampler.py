"""The ``ode`` sampler: the probability-flow ODE integrated by torchdiffeq."""

from __future__ import annotations

from typing import Any

import torch

from sdeflow import SampleResult, Sampler, ScoreModel
from sdeflow.errors import OptionError
from sdeflow.solvers.common import check_positive_int, final_step_label, resolve_interval, stop_time
from sdeflow.solvers.ode import (ADAPTIVE_METHODS, FIXED_GRID_METHODS, ODE_METHODS, ODE_ORDER, FlowField,
                                     integrate_ode, ode_failures)
from sdeflow.solvers.run import SamplingRun

ADAPTIVE_ORDER = {"dopri5": 5, "dopri8": 8, "bosh3": 3, "fehlberg2": 2, "adaptive_heun": 2}
DEFAULT_FIXED_STEPS = 100
DEFAULT_TOL = 1e-5


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
        if method not in ODE_METHODS:
            raise OptionError(f"unknown ode method {method!r}; valid: {', '.join(ODE_METHODS)}")
        check_positive_int("steps", steps)
        if method in ADAPTIVE_METHODS and steps is not None:
            raise OptionError(f"steps={steps} was given to the adaptive method {method!r}, which chooses its own "
                              f"steps from rtol/atol; use a fixed-grid method ({', '.join(FIXED_GRID_METHODS)}) "
                              "for a fixed number of steps")
        if method in FIXED_GRID_METHODS and (rtol is not None or atol is not None):
            raise OptionError(f"rtol/atol were given to the fixed-grid method {method!r}, which ignores them; "
                              f"use steps=..., or an adaptive method ({', '.join(ADAPTIVE_METHODS)})")
        for name, v in (("rtol", rtol), ("atol", atol)):
            if v is not None and not float(v) > 0:
                raise OptionError(f"{name} must be positive, got {v!r}")
        self.method, self.steps = method, steps
        self.rtol = DEFAULT_TOL if rtol is None else float(rtol)
        self.atol = DEFAULT_TOL if atol is None else float(atol)
        self.denoise, self.t_end, self.solver_options, self.check_finite = bool(denoise), t_end, options, bool(check_finite)

    @property
    def requires_gaussian_marginals(self) -> bool:  # type: ignore[override]
        """True with ``denoise``: the posterior mean ``E[x_0 | x_t]`` (Tweedie's formula) needs
        ``alpha_t`` and ``sigma_t``; the integration itself uses only drift, diffusion and score."""
        return self.denoise

    @property
    def order(self) -> float:  # type: ignore[override]
        """Classical order of the method."""
        return float(ODE_ORDER.get(self.method) or ADAPTIVE_ORDER[self.method])

    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback, progress: bool, return_trajectory: bool) -> SampleResult:  # type: ignore[no-untyped-def]
        process = score_model.process
        t_start, t_end = resolve_interval(process, self.t_end)
        t_stop = stop_time(score_model, t_end)
        fixed = self.method in FIXED_GRID_METHODS
        steps = (self.steps or DEFAULT_FIXED_STEPS) if fixed else None
        run = SamplingRun(score_model, shape, generator, self.check_finite, callback, progress, return_trajectory)
        evaluator = run.evaluator
        field = FlowField(process.probability_flow(evaluator), process, shape[0],
                          t_floor=t_stop)
        where = f"sampler 'ode' (method={self.method!r}" + (f", steps={steps})" if fixed else ")")
        count = [0]
        starts: list[int] = []  # evaluations made before each step began (host ints, no sync)
        integration_nfe = [0]  # evaluations made by the solver (the rest: the final step)
        run.observe_steps(t_start - t_stop, f"ode/{self.method}", by_time=True)

        def on_step(t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
            # torchdiffeq calls this before each (accepted) step with the state it starts from
            count[0] += 1
            starts.append(evaluator.nfe)
            if count[0] > 1:
                run.observe(count[0] - 1, t0, y0)

        def step_of(t: float) -> str:
            # the step during which the first non-finite evaluation happened (fixed grids only)
            step = run.step_of_first_nonfinite(starts, integration_nfe[0])
            if step is None:
                return f"{final_step_label(self.denoise, t_stop, t_end)} after step {steps} of {steps}"
            return f"step {step} of {steps}"

        with torch.no_grad():
            x = run.prior()
            run.observe(0, torch.tensor(t_start, dtype=x.dtype, device=x.device), x)
            try:
                with ode_failures(evaluator, where):
                    x = integrate_ode(field, x, t_start, t_stop, self.method, steps, self.rtol, self.atol,
                                      self.solver_options, on_step)
            finally:
                run.close()
            integration_nfe[0] = evaluator.nfe
            run.observe(count[0], torch.tensor(t_stop, dtype=x.dtype, device=x.device), x)
            x = run.finish(x, t_stop, t_end, self.denoise)
        return run.result(x, where, step_of if fixed else None, steps=steps if fixed else count[0])
