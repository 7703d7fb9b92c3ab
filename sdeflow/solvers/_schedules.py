"""Step schedules of the fast ODE samplers (DDIM, DPM-Solver++, UniPC, EDM Heun) for any Gaussian-marginal process.

Everything goes through the process's ``marginal`` (``alpha_t``, ``sigma_t``), ``log_snr`` and
``t_from_log_snr``, never through a specific process class. Grids are built once, before the
sampling loop, in float64 on the host. Notation: ``log_snr(t) = log(alpha_t^2 / sigma_t^2)`` (Kingma
et al. 2021, Eq. 2); DPM-Solver's ``lambda_t = log(alpha_t / sigma_t)`` is half of it (Lu et al. 2022,
Sec. 3.1); EDM's noise level of ``x / alpha_t`` is ``sigma_t / alpha_t = exp(-log_snr / 2)``
(Karras et al. 2022, Eq. 4 with ``s(t) = alpha_t``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..core.noise_levels import EDM_SIGMA_MAX, EDM_SIGMA_MIN, host_marginal, scaled_sigma, t_from_scaled_sigma
from ..core.process import ForwardProcess
from ..errors import OptionError
from ._grids import reverse_grid, uniform_log_snr_times

#: step schedules: uniform in ``t``, uniform in log-SNR, uniform in log-SNR over EDM's levels and
#: sparser outside them, uniform in ``sqrt(t)`` (DPM-Solver's ``time_quadratic``), EDM's rho = 7
#: levels, or the process's own discrete times (DDPM's chain, NCSN's levels); a sequence of noise
#: levels is accepted too (:func:`check_schedule`)
SCHEDULES: tuple[str, ...] = ("time_uniform", "logSNR", "logSNR_edm", "time_quadratic", "edm", "chain")


def last_finite_time(process: ForwardProcess, t_start: float, t_end: float) -> float:
    """``t_end`` if its noise level ``sigma_t / alpha_t`` is at least EDM's ``sigma_min = 0.002``
    (Karras et al. 2022, Table 1), else the time where the level equals 0.002: where a log-SNR
    schedule ends before one last step to a ``t_end`` with ``sigma = 0`` (``docs/solvers.md``)."""
    ends = torch.tensor([t_start, t_end], dtype=torch.float64)
    lam = host_marginal(process, ends)[2]
    if not math.isfinite(float(lam[0])):
        raise OptionError(f"{type(process).__name__} has log-SNR {float(lam[0])} at t={t_start:g}; a log-SNR or "
                          "EDM schedule needs a finite log-SNR at the start")
    if math.exp(-0.5 * float(lam[1])) >= EDM_SIGMA_MIN:
        return float(t_end)
    t = float(t_from_scaled_sigma(process, torch.tensor([EDM_SIGMA_MIN], dtype=torch.float64))[0])
    if not t_end < t < t_start:
        raise OptionError(f"cannot place the last noise level of {type(process).__name__}: "
                          f"sigma/alpha = {EDM_SIGMA_MIN} maps to t={t:g}, outside ({t_end:g}, {t_start:g})")
    return t


def check_schedule(schedule: str | Sequence[float]) -> str | tuple[float, ...]:
    """A schedule name of :data:`SCHEDULES`, or a sequence of noise levels ``sigma_t / alpha_t``
    (descending, >= 0, at least two) returned as a tuple; else :class:`OptionError`."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise OptionError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}, or a sequence of "
                              "noise levels sigma/alpha")
        return schedule
    try:
        levels = tuple(float(v) for v in schedule)
    except (TypeError, ValueError):
        raise OptionError(f"schedule must be a name ({', '.join(SCHEDULES)}) or a sequence of noise levels "
                          f"sigma/alpha, got {schedule!r}") from None
    if len(levels) < 2 or not all(math.isfinite(v) and v >= 0 for v in levels) or \
            not all(b < a for a, b in zip(levels, levels[1:])):
        raise OptionError(f"a schedule of noise levels must hold at least two finite values >= 0 in strictly "
                          f"decreasing order (sigma/alpha at t_max first, at t_end last); got {list(levels)}")
    return levels


def schedule_steps(schedule: str | tuple[float, ...], steps: int, default_steps: int) -> int:
    """The number of steps: ``steps``, or for a schedule of noise levels their number less one (then
    ``steps`` must be left at ``default_steps`` or agree)."""
    if isinstance(schedule, str):
        return int(steps)
    k = len(schedule) - 1
    if int(steps) not in (k, default_steps):
        raise OptionError(f"steps={steps} disagrees with the schedule of {len(schedule)} noise levels ({k} steps); "
                          "leave steps out")
    return k


def schedule_label(schedule: str | tuple[float, ...]) -> str:
    """A short name of a schedule for messages: its name, or ``levels(K steps)``."""
    return repr(schedule) if isinstance(schedule, str) else f"levels({len(schedule) - 1} steps)"


def times_of_levels(process: ForwardProcess, t_start: float, t_end: float, levels: Sequence[float]) -> Tensor:
    """Times of the noise levels ``levels`` (a schedule given as ``sigma_t / alpha_t``, as
    :func:`sdeflow.calibrate_schedule` returns). Its first
    and last levels must be the process's at ``t_start`` and ``t_end`` (relative tolerance 1e-6), the
    others lie strictly between."""
    ends = scaled_sigma(process, torch.tensor([t_start, t_end], dtype=torch.float64)).tolist()
    first, last = float(levels[0]), float(levels[-1])
    if not (math.isclose(first, ends[0], rel_tol=1e-6) and math.isclose(last, ends[1], rel_tol=1e-6, abs_tol=1e-12)):
        raise OptionError(f"the schedule's noise levels run from {first:.6g} to {last:.6g}, but "
                          f"{type(process).__name__}'s run from {ends[0]:.6g} (t={t_start:g}) to {ends[1]:.6g} "
                          f"(t={t_end:g}): a schedule of levels "
                          "is made for one process and t_end (sdeflow.calibrate_schedule)")
    times = torch.empty(len(levels), dtype=torch.float64)
    times[0], times[-1] = t_start, t_end
    if len(levels) > 2:
        times[1:-1] = t_from_scaled_sigma(process, torch.tensor(levels[1:-1], dtype=torch.float64))
    return times


def solver_times(process: ForwardProcess, t_start: float, t_end: float, steps: int,
                 schedule: str | Sequence[float]) -> Tensor:
    """Descending times ``t_start = t_0 > ... > t_K = t_end`` (float64, ``K = steps``).

    * ``"time_uniform"``: uniform in ``t`` (DDIM's "linear" skip, Song et al. 2021a, App. C.2).
    * ``"logSNR"``: uniform in log-SNR (DPM-Solver, Lu et al. 2022, Sec. 3.3), the grid of
      :func:`reverse_grid` with ``spacing="log_snr"``; where the level at ``t_end`` is 0 (VE at ``t = 0``,
      log-SNR infinite) the levels stop at EDM's 0.002 and one last step goes to ``t_end``.
    * ``"logSNR_edm"``: uniform in log-SNR inside EDM's levels ``sigma_t / alpha_t`` in ``[0.002, 80]``
      (Karras et al. 2022, Table 1), four times sparser outside them (:func:`log_snr_levels`), with
      the same end; the default of ``dpm_solver`` and ``unipc`` (measured in ``docs/solvers.md``).
    * ``"time_quadratic"``: uniform in ``sqrt(t)`` (DPM-Solver's code, ``t_order = 2``; DDIM's
      "quadratic" skip).
    * ``"edm"``: EDM's ``sigma^(1/rho)``-uniform levels with ``rho = 7`` (Karras et al. 2022, Eq. 5),
      from the level at ``t_start`` to that at ``t_end`` or to 0.002 and a last step to ``t_end``
      (:func:`edm_times`).
    * ``"chain"``: the process's own discrete times (DDPM's chain, NCSN's levels) evenly strided
      (:func:`reverse_grid`); it may hold fewer than ``steps`` steps
      when the chain is shorter.
    * a sequence of noise levels ``sigma_t / alpha_t``: those levels (:func:`times_of_levels`;
      ``steps`` must be one less than their number).
    """
    schedule = check_schedule(schedule)
    k = int(steps)
    if not isinstance(schedule, str):
        if len(schedule) != k + 1:
            raise OptionError(f"a schedule of {len(schedule)} noise levels has {len(schedule) - 1} steps, not {k}")
        return times_of_levels(process, t_start, t_end, schedule)
    if schedule == "chain":
        if process.discrete_times() is None:
            raise OptionError(f"schedule 'chain' needs a process with its own discrete times (ddpm, ncsn); "
                              f"{type(process).__name__} has none: use one of "
                              f"{', '.join(s for s in SCHEDULES if s != 'chain')}")
        return reverse_grid(process, t_start, t_end, k, default_steps=k)
    if schedule == "edm":
        bottom = float(scaled_sigma(process, torch.tensor([t_end], dtype=torch.float64))[0])
        return edm_times(process, t_start, t_end, k, sigma_min=max(bottom, EDM_SIGMA_MIN))[0]
    if schedule == "time_uniform":
        grid = torch.linspace(t_start, t_end, k + 1, dtype=torch.float64)
    elif schedule == "time_quadratic":
        grid = torch.linspace(math.sqrt(t_start), math.sqrt(t_end), k + 1, dtype=torch.float64) ** 2
    else:
        grid = _log_snr_times(process, t_start, t_end, k, uniform=schedule == "logSNR")
    grid[0], grid[-1] = t_start, t_end
    return grid


#: relative density of the log-SNR schedule's steps outside EDM's levels ``[0.002, 80]`` (see
#: :func:`log_snr_levels`)
OUTER_DENSITY = 0.25


def log_snr_levels(top: float, bottom: float, k: int, outer: float = OUTER_DENSITY) -> list[float]:
    """``k + 1`` noise levels ``sigma / alpha`` from ``top`` down to ``bottom`` (both > 0), uniform in
    ``lambda = -log(sigma / alpha)`` inside EDM's range ``[0.002, 80]`` (Karras et al. 2022, Table 1)
    and ``outer`` times as dense outside it: the points where the cumulative density
    ``C(lambda) = int rho`` (``rho = 1`` inside, ``outer`` outside) takes ``k + 1`` equally spaced
    values (the ``"logSNR_edm"`` schedule; why: ``docs/solvers.md``)."""
    lam0, lam1 = -math.log(top), -math.log(bottom)
    a, b = -math.log(EDM_SIGMA_MAX), -math.log(EDM_SIGMA_MIN)
    # breakpoints of the piecewise-linear cumulative density on [lam0, lam1]
    knots = sorted({lam0, lam1, *(v for v in (a, b) if lam0 < v < lam1)})
    cum = [0.0]
    for lo, hi in zip(knots, knots[1:]):
        cum.append(cum[-1] + (hi - lo) * (1.0 if a <= 0.5 * (lo + hi) <= b else outer))
    out = []
    for i in range(k + 1):
        q = cum[-1] * i / k
        j = min(max(next((j for j in range(1, len(cum)) if q <= cum[j]), len(cum) - 1), 1), len(cum) - 1)
        span = cum[j] - cum[j - 1]
        frac = 0.0 if span == 0 else (q - cum[j - 1]) / span
        out.append(math.exp(-(knots[j - 1] + frac * (knots[j] - knots[j - 1]))))
    out[0], out[-1] = top, bottom
    return out


def _log_snr_times(process: ForwardProcess, t_start: float, t_end: float, k: int, uniform: bool) -> Tensor:
    """The ``"logSNR"`` (``uniform``) or ``"logSNR_edm"`` schedule from the level at ``t_start`` to the
    level at ``t_end``, or to 0.002 and one last step to ``t_end`` where that level is 0."""
    t_fin = last_finite_time(process, t_start, t_end)
    top, bottom = scaled_sigma(process, torch.tensor([t_start, t_end], dtype=torch.float64)).tolist()
    zero = t_fin != t_end and bottom == 0.0
    n = k - 1 if zero else k
    if n < 1:
        return torch.tensor([t_start, t_end], dtype=torch.float64)
    if uniform:
        inner = uniform_log_snr_times(process, t_start, t_fin if zero else t_end, n)
    else:
        levels = log_snr_levels(top, EDM_SIGMA_MIN if zero else bottom, n)
        inner = t_from_scaled_sigma(process, torch.tensor(levels, dtype=torch.float64))
        inner[0], inner[-1] = t_start, (t_fin if zero else t_end)
    grid = torch.cat([inner, torch.tensor([t_end], dtype=torch.float64)]) if zero else inner
    grid[0], grid[-1] = t_start, t_end
    return grid


def edm_times(process: ForwardProcess, t_start: float, t_end: float, steps: int, rho: float = 7.0,
              sigma_min: float | None = None) -> tuple[Tensor, Tensor]:
    """EDM's time steps (Karras et al. 2022, Eq. 5): noise levels of ``x / alpha_t``

        sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,

    mapped to times with ``t_i = t_from_log_snr(-2 log sigma_i)``.

    ``sigma_max`` is ``sigma / alpha`` at ``t_start`` (where the prior sample lives); ``sigma_min``
    defaults to its value at ``t_end``, or EDM's 0.002 where that is 0 (VE at ``t = 0``). When ``sigma_min`` lies above
    the level at ``t_end``, ``N = steps`` levels reach ``sigma_min`` and a last step goes to
    ``t_end`` (EDM's ``sigma_N = 0``); otherwise the ``steps + 1`` levels end at ``t_end``.

    Returns:
        ``(times, sigmas)``, float64, ``steps + 1`` each, descending; ``sigmas[-1]`` may be 0.
    """
    ends = torch.tensor([t_start, t_end], dtype=torch.float64)
    lam = host_marginal(process, ends)[2]
    top, bottom = math.exp(-0.5 * float(lam[0])), math.exp(-0.5 * float(lam[1]))
    if not math.isfinite(top):
        raise OptionError(f"{type(process).__name__}: sigma/alpha is infinite at t={t_start:g} (alpha = 0); "
                          "the EDM schedule needs a finite noise level at the start")
    smax = top
    smin = (bottom if bottom > 0 else EDM_SIGMA_MIN) if sigma_min is None else float(sigma_min)
    tol = 1e-9 * top
    if not (bottom - tol <= smin < smax):
        raise OptionError(f"sigma_min must lie in the process's noise levels [{bottom:.6g}, {top:.6g}) "
                          f"(sigma/alpha at t_end={t_end:g} and t_start={t_start:g}); got sigma_min={smin:.6g}")
    to_end = smin <= bottom + tol  # the rho-schedule itself ends at t_end
    n = steps + 1 if to_end else steps
    if n < 2:
        raise OptionError(f"the EDM schedule to sigma_min={smin:.6g} > sigma(t_end)={bottom:.6g} needs steps >= 2 "
                          f"(one step to sigma_min, one to t_end); got steps={steps}")
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    sig = (smax ** (1 / rho) + i * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    times = t_from_scaled_sigma(process, sig)
    times[0] = t_start
    if to_end:
        times[-1], sig[-1] = t_end, bottom
    else:
        times = torch.cat([times, torch.tensor([t_end], dtype=torch.float64)])
        sig = torch.cat([sig, torch.tensor([bottom], dtype=torch.float64)])
    return times, sig


@dataclass(frozen=True)
class GridCoefficients:
    """The marginal of a process at the times of a grid, as float64 host tensors and Python lists (a
    step computes its coefficients from these host floats: no synchronisation inside the loop).

    Attributes:
        times: the grid (float64).
        alpha, sigma: ``alpha_t`` and ``sigma_t``.
        log_snr: ``log(alpha_t^2 / sigma_t^2)`` (Kingma et al. 2021, Eq. 2; ``inf`` where ``sigma_t = 0``).
        half_log_snr: DPM-Solver's ``lambda_t = log(alpha_t / sigma_t) = log_snr / 2`` (Lu et al. 2022, Sec. 3.1).
        scaled_sigma: EDM's noise level ``sigma_t / alpha_t`` (Karras et al. 2022, Eq. 4).
    """

    times: Tensor
    alpha: list[float]
    sigma: list[float]
    log_snr: list[float]
    half_log_snr: list[float]
    scaled_sigma: list[float]

    @classmethod
    def of(cls, process: ForwardProcess, times: Tensor) -> GridCoefficients:
        """Evaluate the process's marginal and log-SNR at ``times`` (float64, descending)."""
        a, s, ls = host_marginal(process, times.to(torch.float64))
        bad = ~torch.isfinite(a) | ~torch.isfinite(s) | (a <= 0) | (s < 0)
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0])
            raise OptionError(f"{type(process).__name__}: marginal (alpha, sigma) = ({float(a[k])}, {float(s[k])}) at "
                              f"t={float(times[k]):g} is not usable (need alpha > 0, sigma >= 0)")
        return cls(times.to(torch.float64), a.tolist(), s.tolist(), ls.tolist(), (0.5 * ls).tolist(),
                   torch.exp(-ls).sqrt().tolist())
