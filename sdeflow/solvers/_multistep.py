"""What the multistep exponential integrators in log-SNR time share (DPM-Solver++, UniPC).

Both solve the probability-flow ODE written with the data prediction ``x0_theta`` in
``lambda = log(alpha / sigma)`` (half the log-SNR; Lu et al. 2022b, Eq. 9)

    x_t = sigma_t / sigma_s x_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_theta(x_lambda, lambda) dlambda,

approximating ``x0_theta`` by a polynomial through the latest data predictions, which the loop
state carries (:class:`MultistepState`). The step's coefficients are host floats computed from the
float64 grid (:class:`~sdeflow.solvers.GridCoefficients`), so nothing syncs inside the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

from torch import Tensor

from ..errors import OptionError
from ..utils.validation import check_clip_x0, check_positive_int
from ._grid import GridRun, GridSampler
from ._schedules import GridCoefficients, check_schedule, schedule_label, schedule_steps, solver_times


def step_orders(lam: Sequence[float], order: int, lower_order_final: bool) -> list[int]:
    """The order of each step: warm-up with lower orders (Lu et al. 2022b, Alg. 2), lower orders on
    the last ``order - 1`` steps when ``lower_order_final``, and order 1 on any step whose own or
    previous increments of ``lam`` are not finite (a step to ``sigma = 0``).

    Args:
        lam: ``lambda = log(alpha / sigma)`` at the grid's times, ascending.
        order: the method's order.
        lower_order_final: lower the order of the last steps.

    Returns:
        One order per step.
    """
    n = len(lam) - 1
    out = []
    for k in range(n):
        q = min(order, k + 1)
        if lower_order_final:
            q = min(q, n - k)
        while q > 1 and not all(math.isfinite(lam[j + 1] - lam[j]) for j in range(k - q + 1, k + 1)):
            q -= 1
        out.append(q)
    return out


@dataclass(frozen=True)
class MultistepPlan:
    """The plan of a multistep solver: the grid's coefficients and the order of each step."""

    coefficients: GridCoefficients
    orders: tuple[int, ...]


@dataclass(frozen=True)
class MultistepState:
    """The loop state of a multistep solver: ``x`` at the current grid time and the data predictions
    at the previous ones, newest first (at most ``order`` of them: O(batch) memory)."""

    x: Tensor
    history: tuple[Tensor, ...] = ()


class MultistepSampler(GridSampler):
    """Options, plan and loop state of a multistep log-SNR solver (``dpm_solver``, ``unipc``).

    A subclass sets ``orders`` (the valid ``order`` values), calls :meth:`set_options` from its
    constructor and writes :meth:`~sdeflow.solvers.GridSampler.step` on a :class:`MultistepState`.
    """

    stochastic = False
    requires_gaussian_marginals = True
    #: the method's order (the ``order`` option, set by :meth:`set_options`)
    order: ClassVar[int] = 2
    #: the valid values of ``order``
    orders: tuple[int, ...] = (1, 2, 3)

    def set_options(self, steps: int, order: int, schedule: str | Sequence[float], lower_order_final: bool,
                    clip_x0: float | None, t_end: float | None, check_finite: bool, orders_are: str, label: str,
                    default_steps: int) -> None:
        """Check and store the shared options (``orders_are`` says what each order is, ``label`` names
        the method of this order in messages; a schedule of noise levels sets ``steps``)."""
        check_positive_int("steps", steps)
        schedule = check_schedule(schedule)
        steps = schedule_steps(schedule, steps, default_steps)
        if order not in self.orders or isinstance(order, bool):
            raise OptionError(f"order must be one of {self.orders} ({orders_are}), got {order!r}")
        if steps < order:
            raise OptionError(f"{label} needs steps >= order = {order} (a multistep method of order {order} uses "
                              f"the last {order} data predictions); got steps={steps}")
        check_clip_x0(clip_x0)
        self.steps, self.schedule = int(steps), schedule
        self.order = int(order)  # type: ignore[misc]  # the instance's option, read through Sampler.order
        self.lower_order_final, self.clip_x0 = bool(lower_order_final), clip_x0
        self.t_end, self.check_finite = t_end, bool(check_finite)

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, MultistepPlan]:
        """The ``schedule``'s grid, its coefficients and each step's order; refuses a grid that is not
        strictly decreasing in ``t`` and increasing in ``lambda``."""
        process = run.process
        grid = solver_times(process, t_start, t_end, self.steps, self.schedule)
        co = GridCoefficients.of(process, grid)
        n = grid.numel() - 1
        lam = co.half_log_snr
        if any(not lam[k + 1] > lam[k] for k in range(n)) or any(not grid[k + 1] < grid[k] for k in range(n)):
            raise OptionError(f"sampler {self.name!r}: the {schedule_label(self.schedule)} grid of "
                              f"{type(process).__name__} is not strictly decreasing in t and increasing in "
                              f"log-SNR: t={grid.tolist()}")
        return grid, MultistepPlan(co, tuple(step_orders(lam, self.order, self.lower_order_final)))

    def start(self, run: GridRun, x: Tensor) -> MultistepState:
        """The prior draw, with no data prediction yet."""
        return MultistepState(x)

    def output(self, run: GridRun, k: int, state: MultistepState) -> Tensor:
        """The state's ``x``."""
        return state.x

    def describe(self, run: GridRun) -> str:
        return f"order={self.order}, steps={run.n}, schedule={schedule_label(self.schedule)}"
