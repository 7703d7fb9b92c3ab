"""The ``dpm_solver`` sampler: DPM-Solver++ multistep (data prediction) in log-SNR time."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.integrators.common import check_clip_x0, check_positive_int
from sdeflow.integrators.grid_sampler import GridRun, GridSampler
from sdeflow.integrators.schedules import SCHEDULES, GridCoefficients, solver_times

ORDERS = (1, 2, 3)
#: third-order rules: the Taylor-consistent one (default) and the authors' code's
ORDER3_RULES = ("taylor", "authors_code")


def multistep_weights(lam: list[float], alpha: list[float], sigma: list[float], k: int,
                      order: int, order3_rule: str = "taylor") -> tuple[float, list[float]]:
    """Coefficients of step ``k`` (from ``t_k`` to ``t_{k+1}``) of DPM-Solver++ ``order``-M.

    With ``lambda = log(alpha / sigma)``, ``h = lambda_{k+1} - lambda_k``, ``phi_1 = expm1(-h)``
    and the data predictions ``m_0 = x0(t_k)``, ``m_1 = x0(t_{k-1})``, ``m_2 = x0(t_{k-2})``:

    * order 1 (DDIM): ``x_{k+1} = sigma_{k+1}/sigma_k x_k - alpha_{k+1} phi_1 m_0``
      (Lu et al. 2022b, Eq. 9 with ``k = 1``);
    * order 2 (2M, Lu et al. 2022b, Alg. 2): ``r = h_{k-1} / h``,
      ``D = (1 + 1/(2r)) m_0 - 1/(2r) m_1``, ``x_{k+1} = sigma_{k+1}/sigma_k x_k - alpha_{k+1} phi_1 D``;
    * order 3 (3M, the authors' ``multistep_dpm_solver_third_update``): ``r_0 = h_{k-1}/h``,
      ``r_1 = h_{k-2}/h``, ``D1_0 = (m_0 - m_1)/r_0``, ``D1_1 = (m_1 - m_2)/r_1``,
      ``D1 = D1_0 + r_0/(r_0 + r_1) (D1_0 - D1_1)``, ``D2 = c (D1_0 - D1_1)/(r_0 + r_1)``,
      ``phi_2 = phi_1/h + 1``, ``phi_3 = phi_2/h - 1/2``, and
      ``x_{k+1} = sigma_{k+1}/sigma_k x_k - alpha_{k+1} (phi_1 m_0 - phi_2 D1 + phi_3 D2)``.
      The exact solution ``x_t = sigma_t/sigma_s x_s + sigma_t int e^lambda x0(lambda) dlambda``
      (Lu et al. 2022b, Eq. 9) expanded to second order in ``lambda - lambda_s`` has the term
      ``-alpha_t h^2 phi_3 x0''``; the divided differences give ``D1 = h x0' + O(h^3)`` and
      ``(D1_0 - D1_1)/(r_0 + r_1) = h^2 x0'' / 2 + O(h^3)``. ``order3_rule="taylor"`` (default)
      takes ``c = 2``: local error ``O(h^4)``, order 3. ``"authors_code"`` takes the code's
      ``c = 1``, which keeps half of the ``x0''`` term: local error ``O(h^3)``, so it converges at
      order 2 (measured: ``tests/test_fast_samplers.py``), with a smaller constant than 2M.

    A step to ``sigma = 0`` (``h = inf``) is ``x_{k+1} = alpha_{k+1} m_0``.

    Returns:
        ``(c, [w_0, ..., w_{order-1}])`` with ``x_{k+1} = c x_k + sum_j w_j m_j``.
    """
    h = lam[k + 1] - lam[k]
    ratio = sigma[k + 1] / sigma[k]
    a = alpha[k + 1]
    phi1 = math.expm1(-h)
    if order == 1:
        return ratio, [-a * phi1]
    h1 = lam[k] - lam[k - 1]
    r0 = h1 / h
    if order == 2:
        return ratio, [-a * phi1 * (1.0 + 0.5 / r0), a * phi1 * 0.5 / r0]
    h2 = lam[k - 1] - lam[k - 2]
    r1 = h2 / h
    phi2 = phi1 / h + 1.0
    phi3 = phi2 / h - 0.5
    ia, ib = 1.0 / r0, 1.0 / r1
    c = 2.0 if order3_rule == "taylor" else 1.0
    q = phi2 * r0 / (r0 + r1) - c * phi3 / (r0 + r1)  # coefficient of D1_0 - D1_1
    return ratio, [a * (-phi1 + phi2 * ia + q * ia), a * (-phi2 * ia - q * (ia + ib)), a * q * ib]


def step_orders(lam: list[float], order: int, lower_order_final: bool) -> list[int]:
    """The order of each step: warm-up with lower orders (Lu et al. 2022b, Alg. 2), lower orders on
    the last ``order - 1`` steps when ``lower_order_final``, and order 1 on any step whose own or
    previous log-SNR increments are not finite (a step to ``sigma = 0``)."""
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


class DPMSolverSampler(GridSampler):
    """DPM-Solver++ multistep with data prediction (Lu et al. 2022b, "DPM-Solver++", Alg. 2; the
    third-order variant as in the authors' code), written through ``alpha_t``, ``sigma_t`` and the
    log-SNR of the process, so it runs on every process with Gaussian marginals (VP, sub-VP, VE,
    DDPM, NCSN, VDM, third-party).

    ``steps`` steps cost exactly ``steps`` score evaluations (one per step; the data prediction of
    earlier steps is reused). A final step to ``sigma_{t_end} = 0`` (VE at ``t = 0``) is
    ``x = alpha x0_theta(x_{t_{K-1}})``, the exact first-order step with ``h = inf``.

    Lower-order final steps: with ``lower_order_final`` (default) the last step is first order and,
    for 3M, the one before second order, at every step count. Implementations that do this only
    for few steps (fewer than 10 or 15) take their last step with a large log-SNR ratio
    ``h_{K-1} / h_{K-2}`` (time-uniform grids towards a small ``t_end``: VP, sub-VP) at second
    order, extrapolating the data prediction linearly in log-SNR where it saturates; the error then
    jumps up as the step count grows past the threshold (see ``docs/solvers.md``).

    Args:
        steps: number of steps = score evaluations (default 20); at least ``order``.
        order: 1 (DDIM), 2 (2M, default) or 3 (3M).
        order3_rule: ``"taylor"`` (default; third order) or ``"authors_code"`` (the DPM-Solver
            code's 3M update, second order in fact; see :func:`multistep_weights`).
        schedule: ``"logSNR"`` (default), ``"time_uniform"``, ``"time_quadratic"`` or ``"chain"``
            (see :func:`sdeflow.integrators.schedules.solver_times`).
        lower_order_final: lower orders on the last steps (see above).
        clip_x0: clamp every data prediction to ``[-clip_x0, clip_x0]``.
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "dpm_solver"
    stochastic = False
    requires_gaussian_marginals = True

    def __init__(self, steps: int = 20, order: int = 2, schedule: str = "logSNR", lower_order_final: bool = True,
                 order3_rule: str = "taylor", clip_x0: float | None = None, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if order not in ORDERS or isinstance(order, bool):
            raise OptionError(f"order must be one of {ORDERS} (DDIM, DPM-Solver++ 2M, 3M), got {order!r}")
        if steps < order:
            raise OptionError(f"DPM-Solver++ {order}M needs steps >= order = {order} (a multistep method of order "
                              f"{order} uses the last {order} data predictions); got steps={steps}")
        if schedule not in SCHEDULES:
            raise OptionError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        if order3_rule not in ORDER3_RULES:
            raise OptionError(f"order3_rule must be one of {', '.join(ORDER3_RULES)}, got {order3_rule!r}")
        check_clip_x0(clip_x0)
        self.steps, self.order, self.schedule, self.order3_rule = int(steps), int(order), schedule, order3_rule
        self.lower_order_final, self.clip_x0 = bool(lower_order_final), clip_x0
        self.t_end, self.check_finite = t_end, bool(check_finite)

    def _plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The grid, every step's weights and an empty history of data predictions."""
        process = run.process
        grid = solver_times(process, t_start, t_end, self.steps, self.schedule)
        co = GridCoefficients.of(process, grid)
        n = grid.numel() - 1
        lam = co.lam
        if any(not lam[k + 1] > lam[k] for k in range(n)) or any(not grid[k + 1] < grid[k] for k in range(n)):
            raise OptionError(f"sampler 'dpm_solver': the {self.schedule!r} grid of {type(process).__name__} is not "
                              f"strictly decreasing in t and increasing in log-SNR: t={grid.tolist()}")
        orders = step_orders(lam, self.order, self.lower_order_final)
        weights = [multistep_weights(lam, co.alpha, co.sigma, k, orders[k], self.order3_rule) for k in range(n)]
        return grid, (weights, [])

    def _step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``x_{k+1} = c x_k + sum_j w_j m_j`` over the latest data predictions, the newest first."""
        weights, history = run.plan
        history.insert(0, run.x0(x, run.at(k)))
        del history[self.order:]
        c, w = weights[k]
        x = c * x
        for wj, mj in zip(w, history):
            x = x + wj * mj
        return x

    def _describe(self, run: GridRun) -> str:
        return f"order={self.order}, steps={run.n}, schedule={self.schedule!r}"
