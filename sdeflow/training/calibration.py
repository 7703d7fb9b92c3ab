"""Step schedules calibrated to a model: few-step noise levels fitted to the model's own probability-flow ODE.

A fixed schedule (uniform log-SNR, EDM's rho = 7) spends its steps without knowing where the
data's structure is. For ~10 evaluations that decides the error: on the exact-score mixtures of
``docs/solvers.md`` the best fixed grid for the nine Gaussians puts its levels between
``sigma/alpha`` = 4 and 0.03, the best for the 16-D mixture between 13 and 0.07, and no single grid
serves both within the metric's noise floor. :func:`calibrate_schedule` fits the levels to the model
at hand, as "Align Your Steps" (Sabour et al. 2024) and learned-schedule solvers do: it solves the
probability-flow ODE accurately (dopri5) from a calibration batch of prior noise once, then moves
the ``steps - 1`` interior levels (log-levels, Powell's method) to minimise the sampler's error
against that solution. The calibration batch is drawn from its own generator; samples drawn
afterwards with the calibrated levels are fresh noise (the benchmark evaluates on other noise).

Objectives (``objective=``):

* ``"log_density"`` (default): the mean absolute change of the log-density at the ODE's endpoint,
  to second order, ``|s . e + e^T H e / 2|`` with the error ``e`` of the sampler's sample, the
  model's score ``s`` at the endpoint and its Jacobian ``H`` (``H e`` by one backward pass per
  evaluation of the objective). It weighs an error along a narrow direction of the data as the
  log-density does (the mean log-density gap of ``docs/solvers.md``), which the squared error does not.
* ``"mse"``: the mean squared error ``|e|^2`` (cheapest; no derivative of the model).

Cost: one dopri5 solve of the batch (~100-300 evaluations of the model) plus ``max_evals`` runs of
the sampler on the batch (``steps`` evaluations each, plus one backward pass for ``log_density``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..core.score_model import ScoreModel
from ..errors import OptionError
from ..solvers import EDM_SIGMA_MIN, check_positive_int, last_finite_time, resolve_interval, scaled_sigma, solver_times

OBJECTIVES = ("log_density", "mse")


@dataclass
class ScheduleCalibration:
    """The result of :func:`calibrate_schedule`.

    Attributes:
        sigmas: the calibrated noise levels ``sigma_t / alpha_t``, descending, from the level at
            ``t_max`` to the level at ``t_end``: pass them as ``schedule=`` to ``dpm_solver``,
            ``unipc`` or ``ddim``.
        objective: the objective's name.
        start: the objective on the calibration batch with the log-SNR levels the search
            starts from (the default schedule of ``dpm_solver`` and ``unipc``, ``"logSNR_edm"``).
        final: the objective with ``sigmas``.
        evaluations: objective evaluations (sampler runs on the batch).
        reference_nfe: model evaluations of the reference solve.
        history: the best objective after each evaluation (for plots and convergence checks).
    """

    sigmas: list[float]
    objective: str
    start: float
    final: float
    evaluations: int
    reference_nfe: int
    history: list[float] = field(default_factory=list, repr=False)


def _levels(theta: np.ndarray, top: float, low: float, bottom: float) -> list[float]:
    """Levels from ``top`` down to ``low`` with log-increments proportional to ``exp(theta)`` (so any
    ``theta`` gives a strictly decreasing schedule), then ``bottom`` when it lies below ``low``."""
    inc = np.exp(theta - theta.max())
    cum = np.cumsum(inc) / inc.sum()
    logs = math.log(top) + (math.log(low) - math.log(top)) * np.concatenate([[0.0], cum])
    levels = [float(v) for v in np.exp(logs)]
    levels[0], levels[-1] = top, low
    return levels + ([bottom] if bottom < low else [])


def calibrate_schedule(
    score_model: ScoreModel,
    shape: tuple[int, ...],
    sampler: str = "unipc",
    steps: int = 10,
    objective: str = "log_density",
    max_evals: int = 2000,
    generator: torch.Generator | None = None,
    reference_options: dict[str, Any] | None = None,
    **sampler_options: Any,
) -> ScheduleCalibration:
    """Noise levels for ``steps`` steps of ``sampler`` fitted to ``score_model`` (see the module docstring).

    Args:
        score_model: the model to sample (its process defines the levels' times).
        shape: the calibration batch, ``(n, *dims)`` (a few hundred samples suffice).
        sampler: a deterministic sampler that takes a ``schedule`` of noise levels: ``unipc``
            (default), ``dpm_solver`` or ``ddim`` (with ``eta = 0``).
        steps: the number of steps (= evaluations for these samplers), at least 2.
        objective: ``"log_density"`` (default) or ``"mse"``.
        max_evals: the budget of objective evaluations of Powell's method.
        generator: draws the calibration batch's prior noise.
        reference_options: options of the ``ode`` sampler solving the reference (default: dopri5,
            ``rtol = atol = 1e-6``).
        **sampler_options: further options of ``sampler`` (``order``, ``t_end``, ...).

    Returns:
        A :class:`ScheduleCalibration`; its ``sigmas`` go to ``schedule=``.

    Raises:
        OptionError: bad options, a stochastic sampler, or SciPy missing (``pip install scipy``).
    """
    from ..plugins.api import create_sampler

    try:
        from scipy.optimize import minimize
    except ImportError as exc:  # pragma: no cover - scipy is in the test and calibrate extras
        raise OptionError("calibrate_schedule needs SciPy (Powell's method): pip install scipy "
                          "(or sdeflow[calibrate])") from exc
    check_positive_int("steps", steps)
    check_positive_int("max_evals", max_evals)
    if steps < 2:
        raise OptionError(f"calibrate_schedule needs steps >= 2 (one interior level at least); got steps={steps}")
    if objective not in OBJECTIVES:
        raise OptionError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if "schedule" in sampler_options or "steps" in sampler_options:
        raise OptionError("calibrate_schedule chooses the schedule; give steps= as its own argument")
    probe = create_sampler(sampler, steps=steps, **sampler_options)
    if probe.stochastic or "schedule" not in probe.options():
        raise OptionError(f"calibrate_schedule needs a deterministic sampler with a schedule option "
                          f"(unipc, dpm_solver, ddim with eta=0); got {sampler!r} ({probe!r})")
    process = score_model.process
    t_start, t_end = resolve_interval(process, sampler_options.get("t_end"))
    top, bottom = scaled_sigma(process, torch.tensor([t_start, t_end], dtype=torch.float64)).tolist()
    t_low = last_finite_time(process, t_start, t_end)
    low = bottom if t_low == t_end else EDM_SIGMA_MIN
    n_free = steps - (0 if t_low == t_end else 1)  # the increments down to ``low``
    if n_free < 2:
        raise OptionError(f"steps={steps} leave no interior level to calibrate on {type(process).__name__} "
                          f"(one step goes to sigma/alpha = {EDM_SIGMA_MIN}, one to t_end); use steps >= 3")

    seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                             device=generator.device if generator is not None else "cpu"))
    ref_opts = dict(method="dopri5", rtol=1e-6, atol=1e-6)
    ref_opts.update(reference_options or {})
    reference = create_sampler("ode", t_end=t_end, **ref_opts).sample(score_model, shape, _gen(seed, score_model))
    x_ref = reference.samples.detach()
    delta = _objective(objective, score_model, x_ref, t_end)

    def run(levels: list[float]) -> Tensor:
        s = create_sampler(sampler, steps=steps, schedule=levels, **sampler_options)
        return s.sample(score_model, shape, _gen(seed, score_model)).samples

    best = [math.inf]
    history: list[float] = []

    def f(theta: np.ndarray) -> float:
        try:
            value = delta(run(_levels(theta, top, low, bottom)) - x_ref)
        except (OptionError, ArithmeticError, RuntimeError):  # a degenerate grid (levels merged)
            value = math.inf
        if not math.isfinite(value):
            value = 1e30
        best[0] = min(best[0], value)
        history.append(best[0])
        return value

    # start from the samplers' default "logSNR_edm" levels (their log-increments down to ``low``)
    default = scaled_sigma(process, solver_times(process, t_start, t_end, steps, "logSNR_edm")).tolist()[: n_free + 1]
    theta0 = np.log(-np.diff(np.log(np.asarray(default, dtype=np.float64))))
    start = f(theta0)
    res = minimize(f, theta0, method="Powell", options=dict(maxfev=int(max_evals), xtol=1e-3, ftol=1e-6))
    theta = res.x if res.fun <= start else theta0
    return ScheduleCalibration(sigmas=_levels(theta, top, low, bottom), objective=objective, start=start,
                               final=min(float(res.fun), start), evaluations=len(history),
                               reference_nfe=reference.nfe, history=history)


def _gen(seed: int, score_model: ScoreModel) -> torch.Generator:
    """A generator on the model's device seeded with ``seed`` (the same prior noise for every run)."""
    return torch.Generator(device=score_model.device).manual_seed(seed)


def _objective(name: str, score_model: ScoreModel, x_ref: Tensor, t_end: float) -> Callable[[Tensor], float]:
    """The objective as a function of the error ``e = x - x_ref`` of a run."""
    n = x_ref.shape[0]
    if name == "mse":
        return lambda e: float(e.reshape(n, -1).pow(2).sum(1).mean())
    tt = torch.full((n,), float(t_end), dtype=x_ref.dtype, device=x_ref.device)
    xr = x_ref.clone().requires_grad_(True)
    with torch.enable_grad():
        score = score_model.score(xr, tt)
    s = score.detach()

    def delta_log_p(e: Tensor) -> float:
        # second-order change of log p_{t_end} at x_ref: s.e + e^T H e / 2, with H e = d(s.e)/dx (H symmetric)
        (he,) = torch.autograd.grad(score, xr, grad_outputs=e.detach(), retain_graph=True)
        dl = (s * e).reshape(n, -1).sum(1) + 0.5 * (e * he).reshape(n, -1).sum(1)
        return float(dl.abs().mean())

    return delta_log_p
