"""The ``unipc`` sampler: UniPC (Zhao et al. 2023), the unified predictor-corrector in log-SNR time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers import GridCoefficients, GridRun, MultistepSampler, MultistepState, schedule_label

#: the two choices of ``B(h)`` (Zhao et al. 2023, Sec. 3.3 and App. C), in the data-prediction form with
#: ``hh = -h``: ``bh1``: ``B = hh``, ``bh2``: ``B = expm1(hh)``
VARIANTS = ("bh1", "bh2")


@dataclass(frozen=True)
class UniPCState(MultistepState):
    """The loop state: ``x`` predicted at ``t_k``, the data predictions at ``t_{k-1}, t_{k-2}, ...``
    (newest first) and the state ``x_prev`` the step to ``t_k`` started from (UniC corrects that step)."""

    x_prev: Tensor | None = None


class UniPCSampler(MultistepSampler):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
    Diffusion Models"): the multistep predictor UniP-p and the corrector UniC-p with the data
    prediction, written through ``alpha_t``, ``sigma_t`` and ``lambda = log(alpha / sigma)`` like
    ``dpm_solver``, so it runs on every process with Gaussian marginals.

    At every grid time ``t_k`` the data prediction ``m_k = x0_theta(x_k, t_k)`` is evaluated at the
    predicted state; UniC then re-takes the step that led to ``t_k`` with ``m_k`` (no new evaluation)
    and UniP steps from the corrected state to ``t_{k+1}``. ``steps`` steps cost ``steps``
    evaluations; the last step is not corrected. UniP-2 with ``bh2`` is DPM-Solver++(2M); the
    corrector raises the order from ``p`` to ``p + 1``.

    Args:
        steps: number of steps = score evaluations (default 10); at least ``order``.
        order: the predictor's order ``p``: 1, 2 (default) or 3.
        variant: ``"bh2"`` (default, ``B = expm1(-h)``; the authors' choice for few steps of
            unconditional models) or ``"bh1"`` (``B = -h``).
        corrector: apply UniC (default); ``False`` gives the predictor alone (UniP-p).
        schedule: ``"logSNR_edm"`` (default), ``"logSNR"``, ``"time_uniform"``, ``"time_quadratic"``,
            ``"edm"``, ``"chain"`` or noise levels ``sigma_t / alpha_t`` (e.g. from
            :func:`sdeflow.calibrate_schedule`), as for ``dpm_solver``.
        lower_order_final: lower orders on the last steps (as ``dpm_solver``).
        clip_x0: clamp every data prediction to ``[-clip_x0, clip_x0]``.
        denoise: finish with the posterior mean ``x0_theta(x_{t_end})`` (one more evaluation; diffusers'
            DDIM with ``set_alpha_to_one`` and DPM-Solver++ with ``final_sigmas_type="zero"`` end this way).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "unipc"

    def __init__(self, steps: int = 10, order: int = 2, variant: str = "bh2", corrector: bool = True,
                 schedule: str | Sequence[float] = "logSNR_edm", lower_order_final: bool = True,
                 clip_x0: float | None = None, denoise: bool = False, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        self.set_options(steps, order, schedule, lower_order_final, clip_x0, t_end, check_finite,
                         "UniPC-1, UniPC-2, UniPC-3: the predictor's order", f"UniPC-{order}", default_steps=10)
        if variant not in VARIANTS:
            raise OptionError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.variant, self.corrector, self.denoise = variant, bool(corrector), bool(denoise)

    def capabilities(self) -> dict[str, Any]:
        """As :meth:`sdeflow.Sampler.capabilities`, with the order of accuracy: ``p + 1`` with the
        corrector, ``p`` without (Zhao et al. 2023, Thm. 3.1 and 3.3); the option ``order`` is ``p``."""
        caps = super().capabilities()
        caps["order"] = float(self.order + (1 if self.corrector else 0))
        return caps

    def start(self, run: GridRun, x: Tensor) -> UniPCState:
        """The prior draw, with no data prediction yet."""
        return UniPCState(x, x_prev=x)

    def step(self, run: GridRun, k: int, state: UniPCState) -> UniPCState:
        """Evaluate ``m_k`` at the predicted ``x_k``, correct ``x_k`` (UniC), predict ``x_{k+1}`` (UniP)."""
        co, orders = run.plan.coefficients, run.plan.orders
        m = (run.x0(state.x, run.at(k)), *state.history)  # m_k, m_{k-1}, ...
        x = state.x
        if self.corrector and k > 0 and state.x_prev is not None:
            # UniC-p on the step from t_{k-1} to t_k, with m_k as its new point
            x = self.update(co, k - 1, orders[k - 1], state.x_prev, m[1], m[2:], m_next=m[0])
        x_next = self.update(co, k, orders[k], x, m[0], m[1:])
        return UniPCState(x_next, m[: self.order], x_prev=x)

    def update(self, co: GridCoefficients, k: int, p: int, x: Tensor, m: Tensor, earlier: Sequence[Tensor],
               m_next: Tensor | None = None) -> Tensor:
        """UniP-p (Zhao et al. 2023, Eq. 8; ``m_next`` omitted) or UniC-p (Eq. 9) from ``s = t_k`` to
        ``t = t_{k+1}`` in the data-prediction form (their Alg. 2-3 with ``x0``-prediction):

            x_t = sigma_t/sigma_s x_s - alpha_t h phi_1 m_s - alpha_t B(h) sum_j rho_j D_j,

        ``h = lambda_t - lambda_s``, ``h phi_1 = expm1(-h)``, ``D_j = (m_{k-j} - m_s) / r_j`` with
        ``r_j = (lambda_{t_{k-j}} - lambda_s) / h`` over the ``p - 1`` earlier points (and, for UniC,
        ``D_p = m_next - m_s`` at ``r_p = 1``), and ``rho = R^{-1} b``: ``R = (r_j^(i-1))`` and
        ``b_i = (i - 1)! h phi_{i+1}(-h) / B(h)`` (``rho = 1/2`` for one difference). A step to
        ``sigma_t = 0`` (``h = inf``, order 1) is ``x_t = alpha_t m_s``.
        """
        lam, alpha, sigma = co.half_log_snr, co.alpha, co.sigma
        h = lam[k + 1] - lam[k]
        hh = -h
        h_phi1 = math.expm1(hh)
        x_t = (sigma[k + 1] / sigma[k]) * x - (alpha[k + 1] * h_phi1) * m
        ratios = [(lam[k - j] - lam[k]) / h for j in range(1, p)]
        diffs = [(m_j - m) / r for m_j, r in zip(earlier[: p - 1], ratios)]
        if m_next is not None:
            ratios.append(1.0)
            diffs.append(m_next - m)
        if not diffs:
            return x_t
        b_h = hh if self.variant == "bh1" else math.expm1(hh)
        rho = self.rho(ratios, hh, b_h)
        correction = rho[0] * diffs[0]
        for rho_j, d_j in zip(rho[1:], diffs[1:]):
            correction = correction + rho_j * d_j
        return x_t - (alpha[k + 1] * b_h) * correction

    @staticmethod
    def rho(ratios: Sequence[float], hh: float, b_h: float) -> list[float]:
        """The weights ``rho = R^{-1} b`` of the differences (Zhao et al. 2023, Alg. 2-3; their code's
        ``rho = 1/2`` for one difference, exact to the order needed), from host floats."""
        n = len(ratios)
        if n == 1:
            return [0.5]
        h_phi, fact, b = math.expm1(hh) / hh - 1.0, 1.0, []
        for i in range(1, n + 1):
            b.append(h_phi * fact / b_h)
            fact *= i + 1
            h_phi = h_phi / hh - 1.0 / fact
        vander = np.array([[r ** i for r in ratios] for i in range(n)], dtype=np.float64)
        return [float(v) for v in np.linalg.solve(vander, np.array(b, dtype=np.float64))]

    def describe(self, run: GridRun) -> str:
        return (f"order={self.order}, variant={self.variant!r}, corrector={self.corrector}, steps={run.n}, "
                f"schedule={schedule_label(self.schedule)}")


__all__ = ["UniPCSampler"]
