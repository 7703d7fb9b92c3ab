"""The ``unipc`` sampler: UniPC (Zhao et al. 2023), the unified predictor-corrector in log-SNR time."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers.grid_sampler import GridRun
from sdeflow.solvers.multistep import MultistepSampler, combine
from sdeflow.solvers.schedules import schedule_label

#: the two choices of ``B(h)`` (Zhao et al. 2023, Sec. 3.3 and App. C), in the data-prediction form with
#: ``hh = -h``: ``bh1``: ``B = hh``, ``bh2``: ``B = expm1(hh)``
VARIANTS = ("bh1", "bh2")


def unipc_weights(lam: list[float], alpha: list[float], sigma: list[float], k: int, order: int, variant: str,
                  corrector: bool) -> tuple[float, list[float]]:
    """Coefficients of UniPC's data-prediction update on the interval from ``s = t_k`` to ``t = t_{k+1}``
    (Zhao et al. 2023, Alg. 1-3 with ``x0``-prediction; the ``bh`` variants of their code).

    With ``h = lambda_t - lambda_s``, ``hh = -h``, ``h phi_1 = expm1(hh)``, ``B(h) = hh`` (bh1) or
    ``expm1(hh)`` (bh2), the ratios ``r_j = (lambda_{t_{k-j}} - lambda_s) / h`` of the ``p - 1``
    earlier points (``p = order``) and ``D_j = (m_{k-j} - m_k) / r_j``:

    * UniP-p (the predictor, Eq. 8): ``x_t = sigma_t/sigma_s x_s - alpha_t h phi_1 m_k
      - alpha_t B(h) sum_j rho_j D_j`` with ``rho = R_{p-1}^{-1} b_{p-1}`` (``rho = 1/2`` for ``p = 2``);
    * UniC-p (the corrector, Eq. 9), given ``m_{k+1} = x0_theta(x_t)`` at the predicted point: the
      same with the extra difference ``D_p = m_{k+1} - m_k`` at ``r_p = 1`` and ``rho = R_p^{-1} b_p``
      (``rho = 1/2`` for ``p = 1``); it raises the order to ``p + 1`` without a new evaluation.

    ``R_p`` is the Vandermonde matrix ``(r_j^(i-1))`` of ``r_1 .. r_p`` (``r_p = 1``) and
    ``b_i = (i - 1)! h phi_{i+1}(hh) / B(h)`` with ``h phi_2 = h phi_1 / hh - 1``,
    ``h phi_{i+1} = h phi_i / hh - 1 / i!`` (their ``g_i``).

    Args:
        lam: the grid's ``lambda = log(alpha / sigma)``.
        alpha: the grid's ``alpha``.
        sigma: the grid's ``sigma``.
        k: the step (from ``t_k`` to ``t_{k+1}``).
        order: ``p``.
        variant: ``"bh1"`` or ``"bh2"``.
        corrector: the corrector's weights (on ``m_{k+1}, m_k, m_{k-1}, ...``) instead of the
            predictor's (on ``m_k, m_{k-1}, ...``).

    Returns:
        ``(c, w)``: the update is ``c x_s + sum_j w_j m_j``, the newest data prediction first.
        A step to ``sigma_t = 0`` (``h = inf``, order 1) is ``x_t = alpha_t m_k``.
    """
    h = lam[k + 1] - lam[k]
    ratio, a = sigma[k + 1] / sigma[k], alpha[k + 1]
    hh = -h
    h_phi1 = math.expm1(hh)
    base = [-a * h_phi1]  # the first-order part: weight of m_k
    n_rho = order if corrector else order - 1
    if n_rho == 0:
        return ratio, base
    b_h = hh if variant == "bh1" else math.expm1(hh)
    rks = [(lam[k - j] - lam[k]) / h for j in range(1, order)] + [1.0]
    h_phi, fact, b = h_phi1 / hh - 1.0, 1.0, []
    for i in range(1, order + 1):
        b.append(h_phi * fact / b_h)
        fact *= i + 1
        h_phi = h_phi / hh - 1.0 / fact
    if n_rho == 1:  # UniP-2 and UniC-1: the reference code's rho = 1/2 (exact to the order needed)
        rho = [0.5]
    else:
        vander = np.array([[r ** i for r in rks[:n_rho]] for i in range(n_rho)], dtype=np.float64)
        rho = np.linalg.solve(vander, np.array(b[:n_rho], dtype=np.float64)).tolist()
    # - alpha_t B(h) sum_j rho_j (m_j - m_k) / r_j over the differences used
    scale = -a * b_h
    diffs = [(rho[j] / rks[j], j) for j in range(n_rho)]
    w_k = base[0] - scale * sum(c for c, _ in diffs)
    if corrector:
        # D_p = m_{k+1} - m_k at r = 1 is the last one; the rest are the earlier points'
        w_new = scale * rho[-1]
        w_prev = [scale * c for c, j in diffs[:-1]]
        return ratio, [w_new, w_k, *w_prev]
    return ratio, [w_k, *[scale * c for c, _ in diffs]]


class UniPCSampler(MultistepSampler):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
    Diffusion Models"): the multistep predictor UniP-p and the corrector UniC-p with the data
    prediction, written through ``alpha_t``, ``sigma_t`` and the log-SNR like ``dpm_solver``, so it
    runs on every process with Gaussian marginals.

    At every grid time ``t_k`` the data prediction ``m_k = x0_theta(x_k, t_k)`` is evaluated at the
    predicted state; the corrector then replaces ``x_k`` with UniC's ``x_k^c`` (using ``m_k``) and the
    predictor steps from ``x_k^c`` to ``t_{k+1}``. ``m_k`` is not re-evaluated at ``x_k^c``: the
    corrector costs no evaluation, and ``steps`` steps cost ``steps`` evaluations. The last step is
    not corrected (that would need one more evaluation). UniP-2 with ``bh2`` is DPM-Solver++(2M);
    the corrector raises the order from ``p`` to ``p + 1``.

    Args:
        steps: number of steps = score evaluations (default 10); at least ``order``.
        order: the predictor's order ``p``: 1, 2 (default) or 3.
        variant: ``"bh2"`` (default, ``B = expm1(-h)``; the authors' choice for few steps of
            unconditional models) or ``"bh1"`` (``B = -h``).
        corrector: apply UniC (default); ``False`` gives the predictor alone (UniP-p).
        schedule: ``"logSNR"`` (default), ``"time_uniform"``, ``"time_quadratic"``, ``"edm"``, ``"chain"``
            or noise levels ``sigma_t / alpha_t`` (e.g. from :func:`sdeflow.calibrate_schedule`), as for
            ``dpm_solver``.
        lower_order_final: lower orders on the last steps (as ``dpm_solver``).
        clip_x0: clamp every data prediction to ``[-clip_x0, clip_x0]``.
        denoise: finish with the posterior mean ``x0_theta(x_{t_end})`` (one more evaluation; diffusers'
            DDIM with ``set_alpha_to_one`` and DPM-Solver++ with ``final_sigmas_type="zero"`` end this way).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "unipc"

    def __init__(self, steps: int = 10, order: int = 2, variant: str = "bh2", corrector: bool = True,
                 schedule: str | Sequence[float] = "logSNR", lower_order_final: bool = True,
                 clip_x0: float | None = None, denoise: bool = False, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        self._set_options(steps, order, schedule, lower_order_final, clip_x0, t_end, check_finite,
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

    def _plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        """The grid, every step's predictor and corrector weights and an empty history."""
        grid, co, orders = self._grid(run, t_start, t_end)
        args = (co.lam, co.alpha, co.sigma)
        pred = [unipc_weights(*args, k, q, self.variant, corrector=False) for k, q in enumerate(orders)]
        # the corrector at t_k (k >= 1) corrects the step from t_{k-1}, with that step's order
        corr = [None] + [unipc_weights(*args, k, q, self.variant, corrector=True) if self.corrector else None
                         for k, q in enumerate(orders[:-1])]
        return grid, (pred, corr, [])

    def _start(self, run: GridRun, x: Tensor) -> tuple[Tensor, Tensor]:
        """The state: the predicted ``x_k`` and the corrected ``x_{k-1}^c``."""
        return x, x

    def _output(self, run: GridRun, k: int, state: tuple[Tensor, Tensor]) -> Tensor:
        return state[0]

    def _step(self, run: GridRun, k: int, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Evaluate ``m_k`` at the predicted ``x_k``, correct ``x_k`` (UniC), predict ``x_{k+1}`` (UniP)."""
        pred, corr, history = run.plan
        x, x_prev = state
        history.insert(0, run.x0(x, run.at(k)))
        del history[self.order + 1:]
        if corr[k] is not None:
            x = combine(*corr[k], x_prev, history)
        return combine(*pred[k], x, history), x

    def _describe(self, run: GridRun) -> str:
        return f"order={self.order}, variant={self.variant!r}, corrector={self.corrector}, steps={run.n}, " \
               f"schedule={schedule_label(self.schedule)}"
