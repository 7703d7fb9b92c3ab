"""Hand-written PyTorch sampling loops with the same arithmetic as sdeflow's samplers (overhead baselines).

Each loop does what one sampler does, written out as a plain ``for`` loop over
``score_model.score`` / ``score_model.x0`` (``check=False``), with the same number of evaluations
and ``torch.randn`` from the same generator for the noise, so with one seed both give the same
samples up to rounding (the overhead benchmark checks it) and the time ratio sampler / hand loop
measures the sampler's machinery alone. The ``sde``/``ode`` loops use VP's formulas
(``beta(t) = beta_min + t (beta_max - beta_min)``, ``f = -beta x / 2``, ``g^2 = beta``); the
``ddim``, ``dpm_solver`` and ``heun`` loops take their time grids from
:mod:`sdeflow.solvers` (computed once, before the loop, as the samplers do) and
write each step's formula by hand.

Every loop has the signature ``loop(score_model, shape, generator, **options) -> (samples, nfe)``
with the sampler's own options (:data:`HAND_LOOPS`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..core.score_model import ScoreModel
from ..errors import OptionError
from ..solvers import GridCoefficients, edm_times, solver_times

HandLoop = Callable[..., "tuple[Tensor, int]"]


class Counted:
    """``score_model.score(x, t, check=False)`` (or ``.x0``) at a scalar time, with a call counter."""

    def __init__(self, score_model: ScoreModel, what: str = "score") -> None:
        self.sm, self.nfe, self.fn = score_model, 0, getattr(score_model, what)

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        self.nfe += 1
        tt = t.expand(x.shape[0]) if isinstance(t, Tensor) else torch.full((x.shape[0],), t, dtype=x.dtype,
                                                                            device=x.device)
        return self.fn(x, tt, check=False)


def _vp(sm: ScoreModel) -> tuple[float, float, float, float]:
    p = sm.process
    beta_min, beta_max = getattr(p, "beta_min", None), getattr(p, "beta_max", None)
    if beta_min is None or beta_max is None:
        raise OptionError(f"the hand-written sde/ode loops use VP's formulas; got {type(p).__name__}")
    return float(beta_min), float(beta_max), float(p.t_min), float(p.t_max)


def hand_sde_euler(sm: ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int,
                   method: str = "euler", **_: Any) -> tuple[Tensor, int]:
    """Euler-Maruyama on the reverse VP SDE ``dx = [f - g^2 score] dt + g dw`` (Song et al. 2021,
    Eq. 6), then the posterior-mean denoising step, written out by hand."""
    bmin, bmax, t_end, t_start = _vp(sm)
    score = Counted(sm)
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        h = (t_start - t_end) / steps
        for k in range(steps):
            t = t_start - k * h
            beta = bmin + t * (bmax - bmin)
            drift = -0.5 * beta * x - beta * score(x, t)
            x = x - h * drift + math.sqrt(h * beta) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        score.nfe += 1
        x = sm.x0(x, torch.full((shape[0],), t_end, dtype=x.dtype), check=False)
    return x, score.nfe


def _velocity(score: Counted, bmin: float, bmax: float) -> Callable[[Tensor, float], Tensor]:
    def v(x: Tensor, t: float) -> Tensor:
        beta = bmin + t * (bmax - bmin)
        return -0.5 * beta * x - 0.5 * beta * score(x, t)  # f - g^2 score / 2 (Song et al. 2021, Eq. 13)
    return v


def hand_ode(sm: ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int, method: str = "euler",
             **_: Any) -> tuple[Tensor, int]:
    """Euler or classical RK4 (3/8 rule, as torchdiffeq's ``rk4``) on the VP probability-flow ODE, by hand."""
    if method not in ("euler", "rk4"):
        raise OptionError(f"hand-written ode loops exist for euler and rk4, not {method!r}")
    bmin, bmax, t_end, t_start = _vp(sm)
    score = Counted(sm)
    v = _velocity(score, bmin, bmax)
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        dt = (t_end - t_start) / steps
        for k in range(steps):
            t0 = t_start + k * dt
            if method == "euler":
                x = x + dt * v(x, t0)
                continue
            k1 = v(x, t0)
            k2 = v(x + dt * k1 / 3, t0 + dt / 3)
            k3 = v(x + dt * (k2 - k1 / 3), t0 + 2 * dt / 3)
            k4 = v(x + dt * (k1 - k2 + k3), t0 + dt)
            x = x + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125
    return x, score.nfe


def _grid(sm: ScoreModel, times: Tensor) -> tuple[GridCoefficients, Tensor]:
    return GridCoefficients.of(sm.process, times), times.to(device=sm.device, dtype=sm.dtype)


def hand_ddim(sm: ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int,
              schedule: str = "time_uniform", **_: Any) -> tuple[Tensor, int]:
    """Deterministic DDIM (Song, Meng, Ermon 2021, Eq. 12 with eta = 0):
    ``x_s = alpha_s x0 + sigma_s (x_t - alpha_t x0) / sigma_t``, by hand."""
    p = sm.process
    co, times = _grid(sm, solver_times(p, float(p.t_max), float(p.t_min), steps, schedule))
    a, s = co.alpha, co.sigma
    x0_of = Counted(sm, "x0")
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        for k in range(len(a) - 1):
            x0 = x0_of(x, times[k])
            eps = (x - a[k] * x0) / s[k]
            x = a[k + 1] * x0 + s[k + 1] * eps
    return x, x0_of.nfe


def hand_dpm_solver_2m(sm: ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int,
                       schedule: str = "logSNR_edm", **_: Any) -> tuple[Tensor, int]:
    """DPM-Solver++ 2M (Lu et al. 2022b, Alg. 2) with a first-order first and last step, by hand:
    ``x_{k+1} = sigma_{k+1}/sigma_k x_k - alpha_{k+1} phi_1 D``, ``phi_1 = expm1(-h)``,
    ``D = (1 + 1/(2r)) x0_k - 1/(2r) x0_{k-1}``, ``r = h_{k-1} / h_k``."""
    p = sm.process
    co, times = _grid(sm, solver_times(p, float(p.t_max), float(p.t_min), steps, schedule))
    a, s, lam = co.alpha, co.sigma, co.half_log_snr
    n = len(a) - 1
    coef = []  # (c, w0, w1) per step, on the host before the loop
    for k in range(n):
        h = lam[k + 1] - lam[k]
        phi1 = math.expm1(-h)
        if k == 0 or k == n - 1:
            coef.append((s[k + 1] / s[k], -a[k + 1] * phi1, 0.0))
        else:
            r = (lam[k] - lam[k - 1]) / h
            coef.append((s[k + 1] / s[k], -a[k + 1] * phi1 * (1 + 0.5 / r), a[k + 1] * phi1 * 0.5 / r))
    x0_of = Counted(sm, "x0")
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        prev = x
        for k in range(n):
            m0 = x0_of(x, times[k])
            c, w0, w1 = coef[k]
            x = c * x + w0 * m0 if w1 == 0.0 else c * x + w0 * m0 + w1 * prev
            prev = m0
    return x, x0_of.nfe


def hand_edm_heun(sm: ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int, rho: float = 7.0,
                  **_: Any) -> tuple[Tensor, int]:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1) in ``y = x / alpha_t``:
    ``d = (y - D(y; sigma_i)) / sigma_i``, Euler to ``sigma_{i+1}``, then the trapezoidal
    correction when ``sigma_{i+1} > 0``, by hand."""
    p = sm.process
    grid, sig = edm_times(p, float(p.t_max), float(p.t_min), steps, rho)
    co, times = _grid(sm, grid)
    a, sl = co.alpha, sig.tolist()
    D = Counted(sm, "x0")
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        y = x / a[0]
        for i in range(len(sl) - 1):
            d = (y - D(a[i] * y, times[i])) / sl[i]
            y_next = y + (sl[i + 1] - sl[i]) * d
            if sl[i + 1] > 0:
                d2 = (y_next - D(a[i + 1] * y_next, times[i + 1])) / sl[i + 1]
                y_next = y + (sl[i + 1] - sl[i]) * (0.5 * d + 0.5 * d2)
            y = y_next
        x = a[-1] * y
    return x, D.nfe


#: sampler configuration label -> hand loop (called with the configuration's options)
HAND_LOOPS: dict[str, HandLoop] = {
    "sde euler": hand_sde_euler,
    "ode euler": hand_ode,
    "ode rk4": hand_ode,
    "ddim": hand_ddim,
    "dpm_solver 2M": hand_dpm_solver_2m,
    "heun": hand_edm_heun,
}
