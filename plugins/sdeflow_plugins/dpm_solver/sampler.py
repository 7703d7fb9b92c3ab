"""The ``dpm_solver`` sampler: DPM-Solver++ multistep (data prediction) in log-SNR time."""

from __future__ import annotations

import math
from typing import Any, Sequence

from sdeflow.errors import OptionError
from sdeflow.solvers import GridRun, MultistepSampler, MultistepState

#: third-order rules: the Taylor-consistent one (default) and the authors' code's
ORDER3_RULES = ("taylor", "authors_code")


class DPMSolverSampler(MultistepSampler):
    """DPM-Solver++ multistep with data prediction (Lu et al. 2022b, "DPM-Solver++", Alg. 2; the
    third-order variant of the authors' code), written through ``alpha_t``, ``sigma_t`` and
    ``lambda_t = log(alpha_t / sigma_t)``, so it runs on every process with Gaussian marginals.

    With ``h = lambda_{k+1} - lambda_k``, ``phi_1 = expm1(-h)`` and the data predictions
    ``m_0 = x0_theta(x_k, t_k)``, ``m_1``, ``m_2`` at the two previous grid times, a step is

        x_{k+1} = sigma_{k+1} / sigma_k x_k - alpha_{k+1} phi_1 D        (orders 1 and 2)
        x_{k+1} = sigma_{k+1} / sigma_k x_k - alpha_{k+1} (phi_1 m_0 - phi_2 D_1 + phi_3 D_2)   (order 3)

    with ``D = m_0`` (order 1: DDIM, Eq. 9), ``D = (1 + 1/(2r)) m_0 - 1/(2r) m_1``, ``r = h_{k-1} / h``
    (2M, Alg. 2), and for 3M ``r_0 = h_{k-1}/h``, ``r_1 = h_{k-2}/h``, ``D1_0 = (m_0 - m_1)/r_0``,
    ``D1_1 = (m_1 - m_2)/r_1``, ``D_1 = D1_0 + r_0/(r_0 + r_1) (D1_0 - D1_1)``,
    ``D_2 = c (D1_0 - D1_1)/(r_0 + r_1)``, ``phi_2 = phi_1/h + 1``, ``phi_3 = phi_2/h - 1/2``: ``c = 2``
    makes the local error ``O(h^4)`` (``order3_rule="taylor"``), the authors' code's ``c = 1`` converges
    at order 2 (``docs/solvers.md``). A step to ``sigma = 0`` (``h = inf``) is ``alpha_{k+1} m_0``.
    ``steps`` steps cost ``steps`` evaluations; with ``lower_order_final`` the last steps lower their
    order at every step count.

    Args:
        steps: number of steps = score evaluations (default 20); at least ``order``.
        order: 1 (DDIM), 2 (2M, default) or 3 (3M).
        order3_rule: ``"taylor"`` (default; third order) or ``"authors_code"``.
        schedule: ``"logSNR_edm"`` (default), ``"logSNR"``, ``"time_uniform"``, ``"time_quadratic"``,
            ``"edm"``, ``"chain"`` (:func:`sdeflow.solvers.solver_times`), or the noise levels
            ``sigma_t / alpha_t`` themselves, e.g. from :func:`sdeflow.calibrate_schedule` (``steps`` is
            then their number less one).
        lower_order_final: lower orders on the last steps.
        clip_x0: clamp every data prediction to ``[-clip_x0, clip_x0]``.
        denoise: finish with the posterior mean ``x0_theta(x_{t_end})`` (one more evaluation; diffusers'
            DDIM with ``set_alpha_to_one`` and DPM-Solver++ with ``final_sigmas_type="zero"`` end this way).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "dpm_solver"

    def __init__(self, steps: int = 20, order: int = 2, schedule: str | Sequence[float] = "logSNR_edm",
                 lower_order_final: bool = True, order3_rule: str = "taylor", clip_x0: float | None = None,
                 denoise: bool = False, t_end: float | None = None, check_finite: bool = True) -> None:
        self.set_options(steps, order, schedule, lower_order_final, clip_x0, t_end, check_finite,
                         "DDIM, DPM-Solver++ 2M, 3M", f"DPM-Solver++ {order}M", default_steps=20)
        if order3_rule not in ORDER3_RULES:
            raise OptionError(f"order3_rule must be one of {', '.join(ORDER3_RULES)}, got {order3_rule!r}")
        self.order3_rule, self.denoise = order3_rule, bool(denoise)

    def capabilities(self) -> dict[str, Any]:
        """As :meth:`sdeflow.Sampler.capabilities`, with the order of accuracy: the option ``order``,
        except 2 for ``order3_rule="authors_code"``, whose 3M update is second order
        (:func:`multistep_weights`)."""
        caps = super().capabilities()
        if self.order == 3 and self.order3_rule == "authors_code":
            caps["order"] = 2.0
        return caps

    def step(self, run: GridRun, k: int, state: MultistepState) -> MultistepState:
        """DPM-Solver++ from ``t_k`` to ``t_{k+1}`` at the step's order (warm-up and final steps lower)."""
        co, order = run.plan.coefficients, run.plan.orders[k]
        lam, alpha, sigma = co.half_log_snr, co.alpha, co.sigma
        m = (run.x0(state.x, run.at(k)), *state.history)  # m_0 = x0(t_k), m_1 = x0(t_{k-1}), ...
        h = lam[k + 1] - lam[k]
        phi1 = math.expm1(-h)
        if order == 1:
            x = (sigma[k + 1] / sigma[k]) * state.x - (alpha[k + 1] * phi1) * m[0]
        elif order == 2:
            r = (lam[k] - lam[k - 1]) / h
            d = (1.0 + 0.5 / r) * m[0] - (0.5 / r) * m[1]
            x = (sigma[k + 1] / sigma[k]) * state.x - (alpha[k + 1] * phi1) * d
        else:
            r0, r1 = (lam[k] - lam[k - 1]) / h, (lam[k - 1] - lam[k - 2]) / h
            d1_0, d1_1 = (m[0] - m[1]) / r0, (m[1] - m[2]) / r1
            c = 2.0 if self.order3_rule == "taylor" else 1.0
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = (c / (r0 + r1)) * (d1_0 - d1_1)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            x = (sigma[k + 1] / sigma[k]) * state.x - alpha[k + 1] * (phi1 * m[0] - phi2 * d1 + phi3 * d2)
        return MultistepState(x, m[: self.order - 1])


__all__ = ["DPMSolverSampler"]
