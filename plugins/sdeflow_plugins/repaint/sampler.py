"""The ``repaint`` sampler: ancestral steps, fresh replacement of the observed coordinates, and jumps back."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import sdeflow
from sdeflow.errors import IncompatibleError, OptionError
from sdeflow.solvers import (
    ANCESTRAL_VARIANCES,
    GridRun,
    GridSampler,
    ancestral_step,
    check_clip_x0,
    check_positive_int,
    reverse_grid,
)


@dataclass(frozen=True)
class RePaintPlan:
    """``alpha`` and ``sigma`` at the visited times (on the model's device) and, per move, whether it
    goes back up in time (a jump)."""

    alpha: Tensor
    sigma: Tensor
    up: tuple[bool, ...]


def repaint_schedule(steps: int, jump_length: int, resample: int) -> list[int]:
    """The indices of the time grid ``t_0 = t_max > ... > t_steps = t_end`` that RePaint visits
    (Lugmayr et al. 2022, Sec. 4.2 and their ``get_schedule_jump``): one step down at a time; each
    time the walk reaches an index ``steps - m * jump_length`` (``m = 0, 1, ...``, below the first
    ``jump_length`` steps) it jumps back up ``jump_length`` steps, ``resample - 1`` times, before it goes
    on down. ``resample = 1``: no jumps, ``0, 1, ..., steps``.

    Returns:
        The visited indices, from 0 to ``steps``; consecutive entries differ by one. The down moves
        number ``steps + (resample - 1) * jump_length * ceil((steps - jump_length) / jump_length)``.
    """
    check_positive_int("steps", steps)
    check_positive_int("jump_length", jump_length)
    check_positive_int("resample", resample)
    left = {t: resample - 1 for t in range(0, steps - jump_length, jump_length)}
    t, seq = steps, [0]
    while t >= 1:
        t -= 1
        seq.append(steps - t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            for _ in range(jump_length):
                t += 1
                seq.append(steps - t)
    return seq


class RePaintSampler(GridSampler):
    """Imputation with resampling (Lugmayr et al. 2022, Algorithm 1 and Sec. 4.2) for a score model
    conditioned on observed coordinates, ``score_model.given(mask=m, values=y)``.

    Each step down from ``t`` to ``s < t`` is an ancestral step of the model (the ``ancestral``
    sampler's ``q(x_s | x_t, x0_theta(x_t, t))``, Ho et al. 2020, Alg. 2, written for any process with
    Gaussian marginals), after which the observed coordinates are replaced by a fresh draw of the
    forward marginal ``q(x_s | y) = N(alpha_s y, sigma_s^2 I)`` (Lugmayr et al. 2022, Eqs. 8-9; with
    ``resample=1`` this is the replacement method of Song et al. 2021, App. I.2). Each step up from
    ``s`` to ``t > s`` (the "jumps", RePaint's resampling) draws the whole state from the forward
    transition ``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)``, so that the unobserved
    coordinates are re-denoised in harmony with the observed ones.

    The path follows :func:`repaint_schedule` on a grid of ``steps`` intervals (uniform in time, or the
    process's own chain, strided). Score evaluations: one per step down, plus the final denoising.

    Args:
        steps: intervals of the time grid (RePaint: 250).
        jump_length: steps of each jump back (RePaint: 10).
        resample: how often every stretch of ``jump_length`` steps is traversed (RePaint: 10; 1: no
            resampling, the replacement method).
        variance: ``"posterior"`` or ``"forward"`` (as the ``ancestral`` sampler).
        clip_x0: clip the predicted ``x_0`` to ``[-clip_x0, clip_x0]``.
        denoise: finish with ``x0_theta(x_{t_end})`` (whose observed coordinates are exactly ``y``).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "repaint"
    stochastic = True
    requires_gaussian_marginals = True
    order = 1.0

    def __init__(self, steps: int = 250, jump_length: int = 10, resample: int = 10, variance: str = "posterior",
                 clip_x0: float | None = None, denoise: bool = True, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        repaint_schedule(steps, jump_length, resample)  # validates the three integers
        if variance not in ANCESTRAL_VARIANCES:
            raise OptionError(f"variance must be one of {', '.join(ANCESTRAL_VARIANCES)}, got {variance!r}")
        check_clip_x0(clip_x0)
        self.steps, self.jump_length, self.resample = int(steps), int(jump_length), int(resample)
        self.variance, self.clip_x0 = variance, clip_x0
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def check_compatible(self, score_model: sdeflow.ScoreModel) -> None:
        """Also require observed coordinates: ``score_model.given(mask=m, values=y)``."""
        super().check_compatible(score_model)
        if not isinstance(score_model, sdeflow.ConditionedScoreModel) or score_model.mask is None:
            raise IncompatibleError("sampler 'repaint' imputes observed coordinates: pass "
                                    "score_model.given(mask=m, values=y) (m: True where observed)")

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, RePaintPlan]:
        """The visited times (down and up, :func:`repaint_schedule` on the grid) and the marginal at them."""
        base = reverse_grid(run.process, t_start, t_end, self.steps, default_steps=self.steps)
        visit = repaint_schedule(base.numel() - 1, self.jump_length, self.resample)
        path = base[torch.tensor(visit)]
        alpha, sigma = run.process.marginal(path.to(device=run.device, dtype=run.dtype))
        return path, RePaintPlan(alpha, sigma, tuple(j < i for i, j in zip(visit, visit[1:])))

    def describe(self, run: GridRun) -> str:
        """The options named in messages."""
        return f"steps={self.steps}, jump_length={self.jump_length}, resample={self.resample}"

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """Down: an ancestral step and a fresh replacement of the observed coordinates; up: ``q(x_t | x_s)``."""
        a, s = run.plan.alpha, run.plan.sigma
        if run.plan.up[k]:  # a jump back: the forward transition from grid[k] to the later grid[k + 1]
            a_ts = a[k + 1] / a[k]
            var = (s[k + 1] * s[k + 1] - a_ts * a_ts * s[k] * s[k]).clamp_min(0)
            return a_ts * x + torch.sqrt(var) * run.noise()
        x, _ = ancestral_step(x, run.x0(x, run.at(k)), a[k], s[k], a[k + 1], s[k + 1], run.noise(), self.variance)
        view = run.score_model
        assert isinstance(view, sdeflow.ConditionedScoreModel)  # check_compatible made sure
        mask, values = view.observed(x)
        return torch.where(mask, a[k + 1] * values + s[k + 1] * run.noise(), x)
