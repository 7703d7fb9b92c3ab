"""The ``ancestral`` sampler: the reverse Gaussian chain ``p(x_s | x_t)`` for any Gaussian-marginal process."""

from __future__ import annotations

import torch
from torch import Tensor

from sdeflow import SampleResult, Sampler, ScoreModel, append_dims
from sdeflow.errors import OptionError
from sdeflow.integrators.common import StepObserver, check_positive_int, denoise, resolve_interval
from sdeflow.integrators.evaluator import ScoreEvaluator
from sdeflow.integrators.grids import reverse_grid
from sdeflow.shapes import randn

VARIANCES = ("posterior", "forward")


class AncestralSampler(Sampler):
    """Ancestral sampling ``x_s ~ q(x_s | x_t, x_0 = x0_theta(x_t, t))`` (Ho et al. 2020, Algorithm 2;
    Kingma et al. 2021, Eq. 26-27).

    With ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``:

        mean = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0_theta
        var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2   ("posterior": DDPM's beta-tilde)
             = sigma_{t|s}^2                         ("forward": DDPM's beta)

    Written through ``alpha_t`` and ``sigma_t`` only, it runs on every process with Gaussian
    marginals (DDPM, VP, sub-VP, VE, VDM, third-party). On DDPM's own grid it is exactly Ho et
    al.'s sampler: ``N - 1`` transitions then ``x_0 = x0_theta(x_1)``: ``N`` evaluations.

    Args:
        steps: transitions; default: the process's own chain (DDPM), or 1000 uniform in time.
            Fewer steps than the chain stride it evenly (respacing).
        variance: ``"posterior"`` or ``"forward"``.
        clip_x0: clip the predicted ``x_0`` to ``[-clip_x0, clip_x0]`` (images in [-1, 1]: 1.0).
        denoise: finish with ``x0_theta(x_{t_end})`` (DDPM's noiseless last step).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "ancestral"
    stochastic = True
    requires_gaussian_marginals = True
    order = 1.0

    def __init__(self, steps: int | None = None, variance: str = "posterior", clip_x0: float | None = None,
                 denoise: bool = True, t_end: float | None = None, check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if variance not in VARIANCES:
            raise OptionError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
        if clip_x0 is not None and not clip_x0 > 0:
            raise OptionError(f"clip_x0 must be positive or None, got {clip_x0!r}")
        self.steps, self.variance, self.clip_x0 = steps, variance, clip_x0
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    def _x0(self, score_model: ScoreModel, evaluator: ScoreEvaluator, x: Tensor, t: Tensor) -> Tensor:
        evaluator.nfe += 1
        out = score_model.x0(x, t, check=False)
        if evaluator.check_finite:
            evaluator.watch(out, t[0])
        return out.clamp(-self.clip_x0, self.clip_x0) if self.clip_x0 is not None else out

    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback, progress: bool, return_trajectory: bool) -> SampleResult:  # type: ignore[no-untyped-def]
        process = score_model.process
        t_start, t_end = resolve_interval(process, self.t_end)
        device, dtype = score_model.device, score_model.dtype
        grid = reverse_grid(process, t_start, t_end, self.steps, default_steps=1000)
        times = grid.to(device=device, dtype=dtype)
        a_all, s_all = process.marginal(times)
        n = times.numel() - 1
        evaluator = ScoreEvaluator(score_model, self.check_finite)
        observer = None
        if callback is not None or progress or return_trajectory:
            observer = StepObserver(callback, progress, return_trajectory, total=n, desc="ancestral")
        with torch.no_grad():
            x = score_model.prior_sample(shape, generator, device, dtype)
            if observer is not None:
                observer.observe(0, times[0], x)
            for k in range(n):
                t, a_t, s_t, a_s, s_s = times[k], a_all[k], s_all[k], a_all[k + 1], s_all[k + 1]
                x0 = self._x0(score_model, evaluator, x, t.expand(shape[0]))
                a_ts = a_t / a_s
                var_ts = s_t * s_t - a_ts * a_ts * s_s * s_s
                mean = (a_ts * s_s * s_s / (s_t * s_t)) * x + (a_s * var_ts / (s_t * s_t)) * x0
                var = var_ts * s_s * s_s / (s_t * s_t) if self.variance == "posterior" else var_ts
                x = mean + torch.sqrt(var.clamp_min(0)) * randn(shape, generator, device, dtype)
                if observer is not None:
                    observer.observe(k + 1, times[k + 1], x)
            if observer is not None:
                observer.close()
            if self.denoise:
                x = self._x0(score_model, evaluator, x, times[-1].expand(shape[0]))
        grid_list = grid.tolist()

        def step_of(t: float) -> str:
            k = min(range(n + 1), key=lambda i: abs(grid_list[i] - t))
            return f"step {k + 1} of {n}" if k < n else "the final denoising step"

        evaluator.raise_if_nonfinite(f"sampler 'ancestral' (steps={n})", step_of, samples=x)
        traj, tt = observer.trajectory() if observer is not None else (None, None)
        return SampleResult(samples=x, nfe=evaluator.nfe, steps=n, trajectory=traj, times=tt)
