"""The ``dpm_solver`` sampler: DPM-Solver++ multistep (data prediction) in log-SNR time."""

from __future__ import annotations

import math
from typing import Any, Sequence

from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers.grid_sampler import GridRun
from sdeflow.solvers.multistep import MultistepSampler, combine, step_orders

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


class DPMSolverSampler(MultistepSampler):
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
        schedule: ``"logSNR"`` (default), ``"time_uniform"``, ``"time_quadratic"``, ``"edm"``, ``"chain"``
            (see :func:`sdeflow.solvers.schedules.solver_times`), or the noise levels
            ``sigma_t / alpha_t`` themselves, e.g. from :func:`sdeflow.calibrate_schedule` (``steps`` is
            then their number less one).
        lower_order_final: lower orders on the last steps (see above).
        clip_x0: clamp every data prediction to ``[-clip_x0, clip_x0]``.
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "dpm_solver"

    def __init__(self, steps: int = 20, order: int = 2, schedule: str | Sequence[float] = "logSNR",
                 lower_order_final: bool = True, order3_rule: str = "taylor", clip_x0: float | None = None,
                 t_end: float | None = None, check_finite: bool = True) -> None:
        self._set_options(steps, order, schedule, lower_order_final, clip_x0, t_end, check_finite,
                          "DDIM, DPM-Solver++ 2M, 3M", f"DPM-Solver++ {order}M", default_steps=20)
        if order3_rule not in ORDER3_RULES:
            raise OptionError(f"order3_rule must be one of {', '.join(ORDER3_RULES)}, got {order3_rule!r}")
        self.order3_rule = order3_rule

    def capabilities(self) -> dict[str, Any]:
        """As :meth:`sdeflow.Sampler.capabilities`, with the order of accuracy: the option ``order``,
        except 2 for ``order3_rule="authors_code"``, whose 3M update is second order
        (:func:`multistep_weights`)."""
        caps = super().capabilities()
        if self.order == 3 and self.order3_rule == "authors_code":
            caps["order"] = 2.0
        return caps

    def _plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The grid, every step's weights and an empty history of data predictions."""
        grid, co, orders = self._grid(run, t_start, t_end)
        weights = [multistep_weights(co.lam, co.alpha, co.sigma, k, q, self.order3_rule) for k, q in enumerate(orders)]
        return grid, (weights, [])

    def _step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``x_{k+1} = c x_k + sum_j w_j m_j`` over the latest data predictions, the newest first."""
        weights, history = run.plan
        history.insert(0, run.x0(x, run.at(k)))
        del history[self.order:]
        return combine(*weights[k], x, history)

__all__ = ["DPMSolverSampler", "multistep_weights", "step_orders"]
