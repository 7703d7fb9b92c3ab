"""Integration of the probability-flow ODE with torchdiffeq.

torchdiffeq integrates a decreasing time grid itself (it negates time internally and calls
the vector field with the true time), so the ODE is handed over in forward time ``t`` and
``t = [t_start, t_end]`` with ``t_start > t_end``: no second negation here. Only the two
endpoints are requested, so memory stays O(batch). Fixed-grid methods get an explicit grid
of ``steps`` equal steps through ``grid_constructor``.

Adaptive Runge-Kutta methods step past the last requested time and interpolate back (dopri5
on the sub-VP ODE from 1 to 1e-3 evaluated the field at t = -0.01 and t = -0.08). They are
told to step to ``t_end`` exactly (torchdiffeq's ``step_t`` option), and every evaluation time
is clamped into ``[t_min, t_max]`` as well (:class:`FlowField`), which also covers the probe
of the initial step-size selection.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torchdiffeq import odeint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver
from torchdiffeq._impl.solvers import FixedGridODESolver

from ..errors import NonFiniteError, OptionError
from ..utils.validation import check_positive_int
from .dynamics import ProbabilityFlowODE
from .evaluator import Evaluator
from .process import ForwardProcess

#: every torchdiffeq method but scipy's wrapper (which needs its own options)
ODE_METHODS: tuple[str, ...] = tuple(m for m in SOLVERS if m != "scipy_solver")
#: fixed-grid methods (take ``steps``) and adaptive ones (take ``rtol``/``atol``)
FIXED_GRID_METHODS: tuple[str, ...] = tuple(m for m in ODE_METHODS if issubclass(SOLVERS[m], FixedGridODESolver))
ADAPTIVE_METHODS: tuple[str, ...] = tuple(m for m in ODE_METHODS if m not in FIXED_GRID_METHODS)
#: adaptive Runge-Kutta methods, which accept ``step_t`` (times they must step to exactly)
_RK_ADAPTIVE: tuple[str, ...] = tuple(m for m in ADAPTIVE_METHODS
                                      if issubclass(SOLVERS[m], RKAdaptiveStepsizeODESolver))
#: classical order of every method (of the higher-order solution for the adaptive pairs). The Adams
#: methods are variable-order (up to torchdiffeq's ``max_order`` option, default 12) and start with
#: RK4 steps: 4 is the order measured with the defaults (``docs/solvers.md``).
ODE_ORDER: dict[str, int] = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4,
                             "explicit_adams": 4, "implicit_adams": 4, "fixed_adams": 4,
                             "dopri5": 5, "dopri8": 8, "bosh3": 3, "fehlberg2": 2, "adaptive_heun": 2}
#: relative and absolute tolerance of the adaptive methods when none is given (Song et al. 2021's 1e-5)
DEFAULT_TOL = 1e-5
#: equal steps of a fixed-grid method when none are given
DEFAULT_FIXED_STEPS = 100


def check_ode_options(method: str, steps: int | None, rtol: float | None, atol: float | None
                      ) -> tuple[int | None, float, float]:
    """Check the options of a torchdiffeq integration and fill in the defaults.

    Args:
        method: a torchdiffeq method (:data:`ODE_METHODS`).
        steps: equal steps of a fixed-grid method (an error for an adaptive one).
        rtol: relative tolerance of an adaptive method (an error for a fixed-grid one).
        atol: absolute tolerance of an adaptive method (an error for a fixed-grid one).

    Returns:
        ``(steps, rtol, atol)``: ``steps`` is ``None`` for an adaptive method, else the given value or
        :data:`DEFAULT_FIXED_STEPS`; the tolerances default to :data:`DEFAULT_TOL`.

    Raises:
        OptionError: an unknown method, or options the method ignores.
    """
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
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not float(value) > 0:
            raise OptionError(f"{name} must be positive, got {value!r}")
    fixed_steps = (int(steps) if steps is not None else DEFAULT_FIXED_STEPS) if method in FIXED_GRID_METHODS else None
    return (fixed_steps, DEFAULT_TOL if rtol is None else float(rtol), DEFAULT_TOL if atol is None else float(atol))


class FlowField(nn.Module):
    """The probability-flow ODE as a torchdiffeq vector field ``func(t, x)``.

    Every evaluation time is clamped into ``[t_min, t_max]`` by the process
    (:meth:`sdeflow.ForwardProcess.clamp_time`): adaptive solvers probe outside the interval.

    Args:
        ode: the probability-flow ODE.
        process: its process.
        batch: the batch size.
        t_floor: where the integration ends if later than ``t_min`` (``t_end``, or
            :func:`~sdeflow.solvers.stop_time` from the model's
            :attr:`~sdeflow.ScoreModel.score_t_min`): times are clamped up to it as well, so the
            score is never asked for below the run's end (where it may be infinite); adaptive
            solvers' trial stages probe past the end. ``None`` or ``<= t_min``: no extra clamp.
    """

    def __init__(self, ode: ProbabilityFlowODE, process: ForwardProcess, batch: int,
                 t_floor: float | None = None) -> None:
        super().__init__()
        self.ode, self.process, self.batch = ode, process, batch
        self.t_floor = float(t_floor) if t_floor is not None and float(t_floor) > float(process.t_min) else None

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tt = self.process.clamp_time(t.to(x.dtype))
        if self.t_floor is not None:
            tt = tt.clamp(min=self.t_floor)
        return self.ode.velocity(x, tt.reshape(()).expand(self.batch))


def _time_list(v: Any) -> list[float]:
    """Times given as a tensor, a sequence or ``None``, as a list of floats."""
    return [] if v is None else [float(u) for u in torch.as_tensor(v).reshape(-1)]


def integrate_ode(
    field: nn.Module,
    x0: Tensor,
    t_start: float,
    t_end: float,
    method: str,
    steps: int | None,
    rtol: float,
    atol: float,
    options: dict[str, Any] | None = None,
    on_step: Callable[[Tensor, Tensor, Tensor], None] | None = None,
) -> Tensor:
    """Integrate ``field`` from ``t_start`` to ``t_end`` and return the final state.

    Args:
        field: the vector field ``field(t, x)`` (a :class:`FlowField`, or a module wrapping one).
        x0: initial state at ``t_start``.
        t_start: initial time (``t_max`` for sampling).
        t_end: final time (torchdiffeq integrates the decreasing interval itself).
        method: a torchdiffeq method name.
        steps: equal steps for fixed-grid methods (ignored by adaptive ones).
        rtol: relative tolerance of adaptive methods.
        atol: absolute tolerance of adaptive methods.
        options: extra torchdiffeq options.
        on_step: called as ``on_step(t, x, dt)`` before each (accepted) step, via torchdiffeq's
            ``callback_step`` / ``callback_accept_step``.

    Returns:
        The state at ``t_end``.
    """
    opts = dict(options or {})
    if method in FIXED_GRID_METHODS and steps is not None:
        n = int(steps)

        def grid(func: Any, y0: Tensor, t: Tensor) -> Tensor:
            return torch.linspace(float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)

        opts["grid_constructor"] = grid
    for name in ("callback_step", "callback_accept_step"):
        if hasattr(field, name):
            delattr(field, name)
    if on_step is not None:
        cb_name = "callback_step" if method in FIXED_GRID_METHODS else "callback_accept_step"

        setattr(field, cb_name, on_step)
    t = torch.tensor([float(t_start), float(t_end)], dtype=x0.dtype, device=x0.device)
    if method in _RK_ADAPTIVE:
        # land on t_end instead of overshooting it and interpolating back
        step_t = _time_list(opts.get("step_t"))
        end = float(t[-1])
        if end not in step_t and end not in _time_list(opts.get("jump_t")):
            step_t.append(end)
        opts["step_t"] = torch.tensor(step_t, dtype=x0.dtype, device=x0.device)
    kwargs: dict[str, Any] = dict(method=method, options=opts)
    if method in ADAPTIVE_METHODS:
        kwargs.update(rtol=rtol, atol=atol)
    return odeint(field, x0, t, **kwargs)[-1]


@contextmanager
def ode_failures(evaluator: Evaluator, where: str) -> Iterator[None]:
    """Turn torchdiffeq's failures inside the block into :class:`~sdeflow.errors.NonFiniteError`: a
    non-finite score (named with its step and time by ``evaluator``) or an underflowing adaptive
    step size (a stiff or non-finite field); any other error passes through.

    Args:
        evaluator: the counted, watched score the field evaluates.
        where: who is integrating, for the message.
    """
    try:
        yield
    except (AssertionError, RuntimeError) as exc:
        if evaluator.first_nonfinite() is not None:
            evaluator.raise_if_nonfinite(where)
        if "underflow" in str(exc):
            raise NonFiniteError(f"{where}: the step size underflowed ({exc}); the ODE is too stiff "
                                 "or its vector field is not finite") from exc
        raise
