"""The ``langevin`` sampler: annealed Langevin dynamics over decreasing noise levels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sdeflow.errors import OptionError
from sdeflow.solvers import GridRun, GridSampler, check_positive_int, reverse_grid

#: the default relative step ``alpha_i / sigma_i^2``: NCSN's ``eps / sigma_L^2 = 2e-5 / 0.01^2``
#: (Song & Ermon 2019, Sec. 5), kept for every last level ``sigma_L``
DEFAULT_RELATIVE_STEP = 0.2
STEP_RULES = ("ncsn", "ncsnv2")


@dataclass(frozen=True)
class LangevinPlan:
    """The levels' step sizes ``alpha_i`` and noise scales ``sqrt(alpha_i)`` on the model's device."""

    levels: int
    step_size: Tensor
    noise_scale: Tensor


def ncsnv2_relative_step(n_steps_each: int, gamma: float) -> float:
    """NCSNv2's step (Song & Ermon 2020, Technique 4): the relative step ``u = eps / sigma_L^2`` that
    brings the variance ratio after ``T`` Langevin steps at a level, started from the previous
    level's distribution (their Eq. 4, with ``2 u / (1 - (1 - u)^2) = 1 / (1 - u / 2)``),

        s_T^2 / sigma_i^2 = (1 - u)^(2T) (gamma^2 - 1 / (1 - u/2)) + 1 / (1 - u/2),

    closest to 1; ``gamma = sigma_{i-1} / sigma_i`` is the levels' ratio.

    Args:
        n_steps_each: ``T``.
        gamma: the ratio of consecutive levels (> 1).

    Returns:
        ``u`` in ``(0, 1)`` (found on a log grid of ``u`` refined by golden-section search).
    """

    def miss(log_u: float) -> float:
        u = math.exp(log_u)
        stationary = 1.0 / (1.0 - 0.5 * u)
        return abs((1.0 - u) ** (2 * n_steps_each) * (gamma * gamma - stationary) + stationary - 1.0)

    logs = [math.log(1e-8) + i * (math.log(0.999) - math.log(1e-8)) / 4000 for i in range(4001)]
    i = min(range(len(logs)), key=lambda j: miss(logs[j]))
    lo, hi = logs[max(i - 1, 0)], logs[min(i + 1, len(logs) - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, b) if miss(a) < miss(b) else (a, hi)
    return math.exp(0.5 * (lo + hi))


class AnnealedLangevinSampler(GridSampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For noise levels ``sigma_1 > ... > sigma_L`` (the marginal std at the level times), with
    step ``alpha_i = eps sigma_i^2 / sigma_L^2``, run ``T`` steps of

        x <- x + alpha_i / 2 score(x, t_i) + sqrt(alpha_i) z,   z ~ N(0, I)

    per level, then optionally denoise once (``x + sigma_L^2 score``, Tweedie's formula;
    Jolicoeur-Martineau et al. 2021). Levels: the process's own (NCSN) or ``num_scales`` times
    uniform in log-SNR (geometric sigmas for VE).

    The step relative to the level, ``alpha_i / sigma_i^2 = eps / sigma_L^2``, is what decides
    stability (for ``p_t`` of variance ``V_i >= sigma_i^2`` the chain contracts only while
    ``alpha_i < 4 V_i``). A fixed ``eps`` makes it grow without bound as ``sigma_L`` falls: NCSN's
    ``2e-5`` is 0.2 at ``sigma_L = 0.01`` but 1650 on sub-VP at ``t_min`` (``sigma_L = 1.1e-4``),
    where the top levels diverge. So the default ``eps`` is ``0.2 sigma_L^2``
    (:data:`DEFAULT_RELATIVE_STEP`): exactly NCSN's 2e-5 on NCSN's levels, stable for any
    ``sigma_L``. ``step_rule="ncsnv2"`` chooses the relative step by NCSNv2's Technique 4
    (:func:`ncsnv2_relative_step`) from ``T`` and the levels' ratio.

    Args:
        step_size: ``eps``; default ``None``: ``0.2 sigma_L^2`` (``"ncsn"`` rule) or NCSNv2's
            (``"ncsnv2"``; giving ``step_size`` too is an error).
        n_steps_each: ``T`` (100 in the paper).
        num_scales: number of levels for continuous processes (default 10); for a discrete
            process (NCSN), an evenly strided subset of its own levels.
        denoise: final denoising step.
        t_end: time of the last level (default ``t_min``; must have a finite log-SNR for
            continuous processes, so ``ve`` needs ``t_end > 0`` with an exact score). For an
            ``eps``/``x0``/``v`` network whose score is infinite at ``t_end`` (``sigma = 0``) the last
            level is at ``score_model.score_t_min`` and the final evaluation there is the denoising
            (or, with ``denoise=False``, the exact data-prediction step to ``t_end``).
        check_finite: raise on NaN/Inf, naming the level.
        step_rule: ``"ncsn"`` (default) or ``"ncsnv2"`` (see above).
    """

    name = "langevin"
    stochastic = True
    requires_gaussian_marginals = True
    scores_at_end = True  # every level, the last included, evaluates the score

    def __init__(self, step_size: float | None = None, n_steps_each: int = 100, num_scales: int | None = None,
                 denoise: bool = True, t_end: float | None = None, check_finite: bool = True,
                 step_rule: str = "ncsn") -> None:
        if step_size is not None and not step_size > 0:
            raise OptionError(f"step_size must be positive or None, got {step_size!r}")
        if step_rule not in STEP_RULES:
            raise OptionError(f"step_rule must be one of {', '.join(STEP_RULES)}, got {step_rule!r}")
        if step_rule == "ncsnv2" and step_size is not None:
            raise OptionError("step_rule='ncsnv2' chooses the step size itself (Technique 4); drop step_size, "
                              "or use step_rule='ncsn'")
        check_positive_int("n_steps_each", n_steps_each)
        if num_scales is not None and (int(num_scales) != num_scales or num_scales < 2):
            raise OptionError(f"num_scales must be an integer >= 2, got {num_scales!r}")
        self.step_size = None if step_size is None else float(step_size)
        self.step_rule, self.n_steps_each, self.num_scales = step_rule, int(n_steps_each), num_scales
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, LangevinPlan]:
        """The levels, each repeated ``T`` times (step ``k`` runs at level ``k // T``: the grid point
        after it), and the step sizes ``alpha_i``."""
        process = run.process
        steps = None if self.num_scales is None else self.num_scales - 1
        if process.discrete_times() is None and steps is None:
            steps = 9
        levels = reverse_grid(process, t_start, t_end, steps, default_steps=9, spacing="log_snr")
        sig = process.marginal(levels.to(device=run.device, dtype=run.dtype))[1]
        if self.step_size is not None:
            alphas = self.step_size * sig * sig / (sig[-1] * sig[-1])
        else:
            alphas = self.relative_step(sig.tolist()) * sig * sig
        grid = torch.cat([levels[:1], levels.repeat_interleave(self.n_steps_each)])
        return grid, LangevinPlan(levels.numel(), alphas, alphas.sqrt())

    def relative_step(self, sigmas: list[float]) -> float:
        """The default ``alpha_i / sigma_i^2`` for the levels ``sigmas`` (descending)."""
        if self.step_rule == "ncsn":
            return DEFAULT_RELATIVE_STEP
        gamma = (sigmas[0] / sigmas[-1]) ** (1.0 / (len(sigmas) - 1))
        return ncsnv2_relative_step(self.n_steps_each, gamma)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``x + alpha_i / 2 score(x, t_i) + sqrt(alpha_i) z`` at level ``i = k // T``."""
        i = k // self.n_steps_each
        alpha_i = run.plan.step_size[i]
        return x + 0.5 * alpha_i * run.score(x, run.at(k + 1)) + run.plan.noise_scale[i] * run.noise()

    def describe(self, run: GridRun) -> str:
        return f"{run.plan.levels} levels x {self.n_steps_each} steps"

    def step_label(self, run: GridRun, step: int) -> str:
        return f"noise level {(step - 1) // self.n_steps_each + 1} of {run.plan.levels}"
