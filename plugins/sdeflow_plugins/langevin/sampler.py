"""The ``langevin`` sampler: annealed Langevin dynamics over decreasing noise levels."""

from __future__ import annotations

import torch

from sdeflow import SampleResult, Sampler, ScoreModel
from sdeflow.errors import OptionError
from sdeflow.integrators.common import StepObserver, check_positive_int, denoise, resolve_interval
from sdeflow.integrators.evaluator import ScoreEvaluator
from sdeflow.integrators.grids import reverse_grid
from sdeflow.shapes import randn


class AnnealedLangevinSampler(Sampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For noise levels ``sigma_1 > ... > sigma_L`` (the marginal std at the level times), with
    step ``alpha_i = eps sigma_i^2 / sigma_L^2``, run ``T`` steps of

        x <- x + alpha_i / 2 score(x, t_i) + sqrt(alpha_i) z,   z ~ N(0, I)

    per level, then optionally denoise once (``x + sigma_L^2 score``, Tweedie's formula;
    Jolicoeur-Martineau et al. 2021). Levels: the process's own (NCSN) or ``num_scales`` times
    uniform in log-SNR (geometric sigmas for VE).

    Args:
        step_size: ``eps`` (2e-5 in the paper).
        n_steps_each: ``T`` (100 in the paper).
        num_scales: number of levels for continuous processes (default 10); for a discrete
            process (NCSN), an evenly strided subset of its own levels.
        denoise: final denoising step.
        t_end: time of the last level (default ``t_min``; must have a finite log-SNR for
            continuous processes, so ``ve`` needs ``t_end > 0``).
        check_finite: raise on NaN/Inf, naming the level.
    """

    name = "langevin"
    stochastic = True
    requires_gaussian_marginals = True

    def __init__(self, step_size: float = 2e-5, n_steps_each: int = 100, num_scales: int | None = None,
                 denoise: bool = True, t_end: float | None = None, check_finite: bool = True) -> None:
        if not step_size > 0:
            raise OptionError(f"step_size must be positive, got {step_size!r}")
        check_positive_int("n_steps_each", n_steps_each)
        if num_scales is not None and (int(num_scales) != num_scales or num_scales < 2):
            raise OptionError(f"num_scales must be an integer >= 2, got {num_scales!r}")
        self.step_size, self.n_steps_each, self.num_scales = float(step_size), int(n_steps_each), num_scales
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback, progress: bool, return_trajectory: bool) -> SampleResult:  # type: ignore[no-untyped-def]
        process = score_model.process
        t_start, t_end = resolve_interval(process, self.t_end)
        device, dtype = score_model.device, score_model.dtype
        steps = None if self.num_scales is None else self.num_scales - 1
        if process.discrete_times() is None and steps is None:
            steps = 9
        grid = reverse_grid(process, t_start, t_end, steps, default_steps=9, spacing="log_snr")
        levels = grid.to(device=device, dtype=dtype)
        sig = process.marginal(levels)[1]
        alphas = self.step_size * sig * sig / (sig[-1] * sig[-1])
        evaluator = ScoreEvaluator(score_model, self.check_finite)
        total = levels.numel() * self.n_steps_each
        observer = None
        if callback is not None or progress or return_trajectory:
            observer = StepObserver(callback, progress, return_trajectory, total=total, desc="langevin")
        k = 0
        with torch.no_grad():
            x = score_model.prior_sample(shape, generator, device, dtype)
            if observer is not None:
                observer.observe(0, levels[0], x)
            for i in range(levels.numel()):
                t = levels[i].expand(shape[0])
                a = alphas[i]
                root = torch.sqrt(a)
                for _ in range(self.n_steps_each):
                    x = x + 0.5 * a * evaluator(x, t) + root * randn(shape, generator, device, dtype)
                    k += 1
                    if observer is not None:
                        observer.observe(k, levels[i], x)
            if observer is not None:
                observer.close()
            if self.denoise:
                x = denoise(score_model, evaluator, x, float(levels[-1]))
        lv = grid.tolist()

        def level_of(t: float) -> str:
            i = min(range(len(lv)), key=lambda j: abs(lv[j] - t))
            return f"noise level {i + 1} of {len(lv)}"

        evaluator.raise_if_nonfinite(f"sampler 'langevin' ({len(lv)} levels x {self.n_steps_each} steps)",
                                     level_of, samples=x)
        traj, tt = observer.trajectory() if observer is not None else (None, None)
        return SampleResult(samples=x, nfe=evaluator.nfe, steps=total, trajectory=traj, times=tt)
