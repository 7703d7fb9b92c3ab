"""What the multistep exponential integrators in log-SNR time share (DPM-Solver++, UniPC).

Both solve the probability-flow ODE written with the data prediction ``x0_theta`` in
``lambda = log(alpha / sigma)`` (Lu et al. 2022b, Eq. 9):

    x_t = sigma_t / sigma_s x_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_theta(x_lambda, lambda) dlambda,

and approximate ``x0_theta`` by a polynomial through the latest data predictions. Every step's
update is a fixed linear combination ``x_{k+1} = c x_k + sum_j w_j m_{k-j}`` whose scalars are
computed before the loop from the grid's ``alpha``, ``sigma`` and ``lambda`` (host floats: no
device synchronisation in the loop). :class:`MultistepSampler` holds the options, the grid and
its checks; a subclass supplies the weights.
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor

from ..errors import OptionError
from .common import check_clip_x0, check_positive_int
from .grid_sampler import GridRun, GridSampler
from .schedules import GridCoefficients, check_schedule, schedule_label, schedule_steps, solver_times


def step_orders(lam: Sequence[float], order: int, lower_order_final: bool) -> list[int]:
    """The order of each step: warm-up with lower orders (Lu et al. 2022b, Alg. 2), lower orders on
    the last ``order - 1`` steps when ``lower_order_final``, and order 1 on any step whose own or
    previous log-SNR increments are not finite (a step to ``sigma = 0``).

    Args:
        lam: ``lambda`` at the grid's times, ascending.
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


def combine(c: float, weights: Sequence[float], x: Tensor, history: Sequence[Tensor]) -> Tensor:
    """``c x + sum_j w_j history[j]`` (the newest data prediction first)."""
    out = c * x
    for wj, mj in zip(weights, history):
        out = out + wj * mj
    return out


class MultistepSampler(GridSampler):
    """Options, grid and checks of a multistep log-SNR solver (subclasses: ``dpm_solver``, ``unipc``).

    Subclasses set ``orders`` (the valid ``order`` values) and call :meth:`_set_options` from their
    constructor; :meth:`_grid` gives the checked grid, its coefficients and the order of each step.
    """

    stochastic = False
    requires_gaussian_marginals = True
    #: the valid values of ``order``
    orders: tuple[int, ...] = (1, 2, 3)

    def _set_options(self, steps: int, order: int, schedule: str | Sequence[float], lower_order_final: bool,
                     clip_x0: float | None, t_end: float | None, check_finite: bool, orders_are: str, label: str,
                     default_steps: int) -> None:
        """Check and store the shared options (``orders_are`` says what each order is, ``label``
        names the method of this order in messages; a schedule of noise levels sets ``steps``)."""
        check_positive_int("steps", steps)
        schedule = check_schedule(schedule)
        steps = schedule_steps(schedule, steps, default_steps)
        if order not in self.orders or isinstance(order, bool):
            raise OptionError(f"order must be one of {self.orders} ({orders_are}), got {order!r}")
        if steps < order:
            raise OptionError(f"{label} needs steps >= order = {order} (a multistep method of order {order} uses "
                              f"the last {order} data predictions); got steps={steps}")
        check_clip_x0(clip_x0)
        self.steps, self.order, self.schedule = int(steps), int(order), schedule
        self.lower_order_final, self.clip_x0 = bool(lower_order_final), clip_x0
        self.t_end, self.check_finite = t_end, bool(check_finite)

    def _grid(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, GridCoefficients, list[int]]:
        """The ``schedule``'s grid, its coefficients and each step's order; refuses a grid that is not
        strictly decreasing in ``t`` and increasing in ``lambda``."""
        process = run.process
        grid = solver_times(process, t_start, t_end, self.steps, self.schedule)
        co = GridCoefficients.of(process, grid)
        n = grid.numel() - 1
        lam = co.lam
        if any(not lam[k + 1] > lam[k] for k in range(n)) or any(not grid[k + 1] < grid[k] for k in range(n)):
            raise OptionError(f"sampler {self.name!r}: the {schedule_label(self.schedule)} grid of {type(process).__name__} is not "
                              f"strictly decreasing in t and increasing in log-SNR: t={grid.tolist()}")
        return grid, co, step_orders(lam, self.order, self.lower_order_final)

    def _describe(self, run: GridRun) -> str:
        return f"order={self.order}, steps={run.n}, schedule={schedule_label(self.schedule)}"


__all__ = ["MultistepSampler", "combine", "step_orders"]
