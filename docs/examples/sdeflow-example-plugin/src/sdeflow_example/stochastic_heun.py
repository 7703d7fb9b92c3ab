"""A stochastic Heun sampler for the reverse-time SDE, written from sdeflow's building blocks.

The reverse SDE ``dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar`` (Song et al. 2021,
Eq. 6) has additive noise (``g`` depends on time only). Written in the reverse time
``u = t_max - t`` with the drift ``F(x, t) = -(f - g^2 score)``, one step from ``t`` to
``t' = t - h`` with one Brownian increment ``dW ~ N(0, h I)`` is

    predictor  x* = x + h F(x, t) + g(t) dW
    corrector  x' = x + h/2 [F(x, t) + F(x*, t')] + 1/2 [g(t) + g(t')] dW,

the stochastic Heun (trapezoidal predictor-corrector) scheme for Stratonovich SDEs, which for
additive noise equal their Ito form (Kloeden & Platen 1992, Sec. 11.1, Eq. 11.1.13; Rumelin 1982).
Strong order 1 for additive noise; with ``g = 0`` it is Heun's second-order method. Two score
evaluations per step, plus one for the optional final denoising. With ``brownian="interval"`` the
increments come from one Brownian path per seed, the same at every step count (a dyadic torchsde
``BrownianInterval``), so its strong error can be measured against a finer run.
"""

from __future__ import annotations

import torch
from torch import Tensor

import sdeflow
from sdeflow.errors import OptionError
from sdeflow.solvers.brownian import ScaledBrownian
from sdeflow.solvers.common import StepObserver, check_positive_int, finish, resolve_interval, stop_time
from sdeflow.solvers.denoiser import Denoiser
from sdeflow.solvers.evaluator import ScoreEvaluator
from sdeflow.core.sampler import StepCallback
from sdeflow.utils.shapes import randn


class StochasticHeunSampler(sdeflow.Sampler):
    """Stochastic Heun steps on the reverse SDE (Kloeden & Platen 1992, Eq. 11.1.13; Song et al.
    2021, Eq. 6), uniform in time from ``t_max`` to ``t_end``.

    Args:
        steps: number of equal steps.
        brownian: ``"fast"`` draws each increment from the generator; ``"interval"`` takes them from
            one Brownian path per generator seed, the same at every step count (strong-error studies).
        denoise: finish with ``E[x_0 | x_{t_end}]`` (Tweedie's formula, one evaluation; it needs
            ``alpha_t`` and ``sigma_t``, so it requires a process with Gaussian marginals).
        t_end: final time (default: the process's ``t_min``).
        check_finite: raise :class:`sdeflow.errors.NonFiniteError` naming the step and time
            where the score first became NaN/Inf.
    """

    name = "stochastic_heun"
    stochastic = True
    order = 1.0  # strong order for the reverse SDE's additive noise

    def __init__(self, steps: int = 100, brownian: str = "fast", denoise: bool = True, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if brownian not in ("fast", "interval"):
            raise OptionError(f"brownian must be 'fast' or 'interval', got {brownian!r}")
        self.steps, self.brownian, self.denoise = int(steps), brownian, bool(denoise)
        self.t_end, self.check_finite = t_end, bool(check_finite)

    @property
    def requires_gaussian_marginals(self) -> bool:  # type: ignore[override]
        """Only with ``denoise``: the steps use drift, diffusion and score alone."""
        return self.denoise

    def _sample(self, score_model: sdeflow.ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback: StepCallback | None, progress: bool, return_trajectory: bool) -> sdeflow.SampleResult:
        process = score_model.process
        t_start, t_end = resolve_interval(process, self.t_end)
        # the corrector evaluates the score at the end of each step: stop where it is finite (later
        # than t_end only for an eps/x0/v network at sigma = 0, VE at t = 0), then finish() below
        t_stop = stop_time(score_model, t_end)
        device, dtype = score_model.device, score_model.dtype
        n, batch = self.steps, shape[0]
        h = (t_start - t_stop) / n
        # the grid and g(t) on it, computed once before the loop (no host sync inside it)
        times = torch.linspace(t_start, t_stop, n + 1, dtype=torch.float64).to(device=device, dtype=dtype)
        g = process.diffusion(times)
        evaluator = ScoreEvaluator(score_model, self.check_finite)
        rsde = process.reverse_sde(evaluator)  # every drift evaluation is one counted score evaluation
        observer = None
        if callback is not None or progress or return_trajectory:
            observer = StepObserver(callback, progress, return_trajectory, total=n, desc=self.name)

        def reverse_drift(x: Tensor, k: int) -> Tensor:
            return -rsde.drift(x, times[k].expand(batch))

        with torch.no_grad():
            x = score_model.prior_sample(shape, generator, device, dtype)
            path = None
            if self.brownian == "interval":
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                path = ScaledBrownian(t_start - t_stop, n, (batch, x[0].numel()), seed, dtype, device)
            if observer is not None:
                observer.observe(0, times[0], x)
            for k in range(n):
                z = randn(shape, generator, device, dtype) if path is None else path(k, k + 1).reshape(shape)
                dw = z * (h ** 0.5)
                drift = reverse_drift(x, k)
                pred = x + h * drift + g[k] * dw
                x = x + (0.5 * h) * (drift + reverse_drift(pred, k + 1)) + (0.5 * (g[k] + g[k + 1])) * dw
                if observer is not None:
                    observer.observe(k + 1, times[k + 1], x)
            if observer is not None:
                observer.close()
            # the posterior mean (denoise), or the exact data-prediction step on to t_end if stopped early
            x = finish(Denoiser(evaluator), x, t_stop, t_end, self.denoise)

        def step_of(t: float) -> str:
            k = min(n, max(1, round((t_start - t) / h + 0.5)))
            return f"step {k} of {n}"

        evaluator.raise_if_nonfinite(f"sampler {self.name!r} (steps={n})", step_of, samples=x)
        traj, tt = observer.trajectory() if observer is not None else (None, None)
        return sdeflow.SampleResult(samples=x, nfe=evaluator.nfe, steps=n, trajectory=traj, times=tt)
