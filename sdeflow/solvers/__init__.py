"""The public toolkit samplers are written on: built-in samplers and third-party ones use the same names.

* The run scaffold: :class:`SamplingRun` (a context manager holding one call's counted, NaN-watched
  evaluations, prior draw, noise, callbacks, step loop and result) and :class:`Evaluator`.
* Grid samplers: :class:`GridSampler` (a sampler written as ``plan`` and ``step``) on a :class:`GridRun`;
  :class:`MultistepSampler` (:class:`MultistepPlan`, :class:`MultistepState`, :func:`step_orders`)
  for multistep solvers in log-SNR time.
* Predictor-corrector components: :class:`Predictor`, :class:`Corrector`, :class:`PCContext`,
  :class:`Transition`, and the :func:`ancestral_step` they share with the ``ancestral`` sampler.
* Time grids and noise-level schedules: :func:`reverse_grid`, :func:`uniform_log_snr_times`,
  :func:`solver_times` (:data:`SCHEDULES`), :func:`edm_times`, :func:`log_snr_levels`,
  :func:`times_of_levels`, :class:`GridCoefficients`, :func:`scaled_sigma`, :func:`t_from_scaled_sigma`.
* Interval and stop-time helpers: :func:`resolve_interval`, :func:`stop_time`, :func:`resolve_steps`,
  :func:`last_finite_time`.
* Validators: :func:`check_positive_int`, :func:`check_clip_x0`, :func:`check_schedule`,
  :func:`check_ode_options`.
* Integrators: the reverse SDE through torchsde in step time (:class:`ReverseSDEStepTime`,
  :func:`integrate_sde`, :class:`StepNoise`, :class:`ScaledBrownian`) and the probability-flow ODE
  through torchdiffeq (:class:`FlowField`, :func:`integrate_ode`, :func:`ode_failures`).

Everything else under ``sdeflow.solvers`` is private and may change without notice.
"""

from ..core.evaluator import Evaluator
from ..core.noise_levels import EDM_SIGMA_MAX, EDM_SIGMA_MIN, scaled_sigma, t_from_scaled_sigma
from ..core.ode import (
    ADAPTIVE_METHODS,
    DEFAULT_FIXED_STEPS,
    DEFAULT_TOL,
    FIXED_GRID_METHODS,
    ODE_METHODS,
    ODE_ORDER,
    FlowField,
    check_ode_options,
    integrate_ode,
    ode_failures,
)
from ..utils.validation import check_clip_x0, check_positive_int
from ._brownian import ScaledBrownian, StepNoise
from ._grid import GridRun, GridSampler
from ._grids import GRID_SPACINGS, reverse_grid, uniform_log_snr_times
from ._interval import resolve_interval, resolve_steps, stop_time
from ._multistep import MultistepPlan, MultistepSampler, MultistepState, step_orders
from ._predictor_corrector import ANCESTRAL_VARIANCES, Corrector, PCContext, Predictor, Transition, ancestral_step
from ._run import SamplingRun
from ._schedules import (
    SCHEDULES,
    GridCoefficients,
    check_schedule,
    edm_times,
    last_finite_time,
    log_snr_levels,
    schedule_label,
    schedule_steps,
    solver_times,
    times_of_levels,
)
from ._sde import SDE_METHODS, SDE_STRONG_ORDER, ReverseSDEStepTime, integrate_sde

__all__ = [
    # the run scaffold
    "SamplingRun", "Evaluator",
    # grid samplers
    "GridSampler", "GridRun", "MultistepSampler", "MultistepPlan", "MultistepState", "step_orders",
    # predictor-corrector components and the ancestral step
    "Predictor", "Corrector", "PCContext", "Transition", "ancestral_step", "ANCESTRAL_VARIANCES",
    # time grids and noise-level schedules
    "reverse_grid", "uniform_log_snr_times", "GRID_SPACINGS", "solver_times", "SCHEDULES", "edm_times",
    "log_snr_levels", "times_of_levels", "schedule_steps", "schedule_label", "GridCoefficients", "scaled_sigma",
    "t_from_scaled_sigma", "EDM_SIGMA_MIN", "EDM_SIGMA_MAX",
    # interval and stop-time helpers
    "resolve_interval", "stop_time", "resolve_steps", "last_finite_time",
    # validators
    "check_positive_int", "check_clip_x0", "check_schedule", "check_ode_options",
    # the reverse SDE through torchsde
    "ReverseSDEStepTime", "integrate_sde", "SDE_METHODS", "SDE_STRONG_ORDER", "StepNoise", "ScaledBrownian",
    # the probability-flow ODE through torchdiffeq
    "FlowField", "integrate_ode", "ode_failures", "ODE_METHODS", "FIXED_GRID_METHODS", "ADAPTIVE_METHODS",
    "ODE_ORDER", "DEFAULT_TOL", "DEFAULT_FIXED_STEPS",
]
