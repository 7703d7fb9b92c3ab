"""The ``sde`` sampler: the reverse-time SDE integrated by torchsde with fixed steps."""

from __future__ import annotations

import torch

from sdeflow import SampleResult, Sampler, ScoreModel
from sdeflow.errors import OptionError
from sdeflow.solvers.brownian import ScaledBrownian, StepNoise
from sdeflow.solvers.common import (check_positive_int, final_step_label, resolve_interval, resolve_steps,
                                       stop_time)
from sdeflow.solvers.evaluator import ScoreEvaluator
from sdeflow.solvers.run import SamplingRun
from sdeflow.solvers.sde import SDE_METHODS, SDE_STRONG_ORDER, ReverseSDEStepTime, integrate_sde

BROWNIAN = ("fast", "interval")
#: score evaluations per step of each torchsde method on this SDE (diagonal noise; drift
#: evaluations only: the diffusion needs no score). SRK (SRID2) re-evaluates the drift at its
#: earlier stages inside every later stage: 1 + 2 + 3 + 4 = 10 evaluations per step.
NFE_PER_STEP = {"euler": 1, "milstein": 1, "srk": 10, "euler_heun": 1, "heun": 2, "midpoint": 2,
                "reversible_heun": 1, "log_ode": 2}
#: evaluations before the first step (reversible Heun evaluates the drift at the initial state)
NFE_SETUP = {"reversible_heun": 1}


class SDESampler(Sampler):
    """Sample by integrating ``dx = [f - g^2 score] dt + g dw_bar`` from ``t_max`` to ``t_end``
    (Song et al. 2021, Eq. 6) with a torchsde method.

    Args:
        method: any torchsde method for diagonal noise: ``euler``, ``milstein``, ``srk``,
            ``euler_heun``, ``heun``, ``midpoint``, ``reversible_heun``, ``log_ode``.
        steps: number of equal steps (default 1000 when neither ``steps`` nor ``dt`` is given).
        dt: step size instead of ``steps``; rounded so that all steps are equal.
        brownian: ``"fast"`` draws increments from the generator (cheapest); ``"interval"``
            uses a dyadic torchsde ``BrownianInterval`` so that one seed gives the same Brownian
            path at every step count (strong-error and order studies; fastest when ``steps`` is a
            power of two). ``log_ode`` needs Levy areas and always uses a ``BrownianInterval``.
        denoise: replace the final state by the posterior mean ``E[x_0 | x_{t_end}]``
            (the noise-removal step of Song et al. 2021; on by default as there).
        t_end: final time (default: the process's ``t_min``). Where the model's score is infinite
            there (an ``eps``/``x0``/``v`` network at ``sigma_t = 0``: VE at ``t = 0``), the steps end
            at ``score_model.score_t_min`` and the final evaluation is made there: the posterior mean
            (``denoise``) or the exact data-prediction step to ``t_end``.
        check_finite: raise :class:`sdeflow.errors.NonFiniteError` naming the step and time
            where the score first became NaN/Inf.

    Cost per step in score evaluations: :data:`NFE_PER_STEP` (``srk`` takes 10). Strong order on
    this additive noise: :data:`sdeflow.solvers.sde.SDE_STRONG_ORDER`. ``reversible_heun``
    is not dissipative (it can be run backwards), so on the strongly contracting reverse
    dynamics of a narrow data distribution its parasitic mode grows like
    ``exp(int |d drift / dx| dt)``: prefer ``heun``/``midpoint`` there.
    """

    name = "sde"
    stochastic = True

    def __init__(self, method: str = "euler", steps: int | None = None, dt: float | None = None,
                 brownian: str = "fast", denoise: bool = True, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        if method not in SDE_METHODS:
            raise OptionError(f"unknown sde method {method!r}; valid: {', '.join(SDE_METHODS)}")
        if brownian not in BROWNIAN:
            raise OptionError(f"brownian must be one of {', '.join(BROWNIAN)}, got {brownian!r}")
        check_positive_int("steps", steps)
        if dt is not None and not float(dt) > 0:
            raise OptionError(f"dt must be positive, got {dt!r}")
        if steps is not None and dt is not None:
            raise OptionError("give either steps or dt, not both")
        self.method, self.steps, self.dt, self.brownian = method, steps, dt, brownian
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    @property
    def requires_gaussian_marginals(self) -> bool:  # type: ignore[override]
        """True with ``denoise``: the posterior mean ``E[x_0 | x_t]`` (Tweedie's formula) needs
        ``alpha_t`` and ``sigma_t``; the integration itself uses only drift, diffusion and score."""
        return self.denoise

    @property
    def order(self) -> float:  # type: ignore[override]
        """Strong order of the method on the reverse SDE's additive noise."""
        return SDE_STRONG_ORDER[self.method]

    def _sample(self, score_model: ScoreModel, shape: tuple[int, ...], generator: torch.Generator | None,
                callback, progress: bool, return_trajectory: bool) -> SampleResult:  # type: ignore[no-untyped-def]
        run = SamplingRun(score_model, shape, generator, self.check_finite, callback, progress, return_trajectory)
        process, evaluator = run.process, run.evaluator
        t_start, t_end = resolve_interval(process, self.t_end)
        t_stop = stop_time(score_model, t_end)
        n = resolve_steps(self.steps, self.dt, t_start - t_stop, default=1000)
        batch, dim = shape[0], int(torch.Size(shape[1:]).numel())
        sde = ReverseSDEStepTime(process.reverse_sde(evaluator), process, shape, t_start, t_stop, n,
                                 SDE_METHODS[self.method])
        run.observe_steps(n, f"sde/{self.method}")
        with torch.no_grad():
            x = run.prior()
            bm = self._brownian((batch, dim), generator, run.dtype, run.device, t_start - t_stop, n)
            on_step = None
            if run.observer is not None:
                t_kw = dict(dtype=x.dtype, device=x.device)
                run.observe(0, torch.tensor(t_start, **t_kw), x)

                def on_step(k: int, y: torch.Tensor) -> None:
                    t_k = t_stop if k + 1 == n else t_start - (k + 1) * sde.h
                    run.observe(k + 1, torch.tensor(t_k, **t_kw), y.reshape(shape))

            try:
                y = integrate_sde(sde, x.reshape(batch, dim), self.method, bm, on_step)
            finally:
                run.close()
            x = run.finish(y.reshape(shape), t_stop, t_end, self.denoise)
        final = final_step_label(self.denoise, t_stop, t_end)
        return run.result(x, f"sampler 'sde' (method={self.method!r}, steps={n})",
                          lambda t: self._step_of(evaluator, sde, n, t, final), steps=n)

    def _step_of(self, evaluator: ScoreEvaluator, sde: ReverseSDEStepTime, n: int, t: float,
                 final: str = "the final denoising") -> str:
        """The step of the first non-finite score evaluation, from its evaluation number (exact:
        torchsde's fixed-step methods evaluate the drift a fixed number of times per step), or
        from its time for a method without an entry in :data:`NFE_PER_STEP`."""
        first = evaluator.first_nonfinite()
        per = NFE_PER_STEP.get(self.method)
        if first is None or per is None:
            return sde.step_of_time(t)
        j = first[1] - NFE_SETUP.get(self.method, 0)  # 1-based evaluation count within the steps
        step = max(1, (j - 1) // per + 1)
        if step > n:
            return f"{final} after step {n} of {n}"
        return f"step {step} of {n}"

    def _brownian(self, size: tuple[int, int], generator: torch.Generator | None, dtype: torch.dtype,
                  device: torch.device, span: float, n: int):  # type: ignore[no-untyped-def]
        if self.brownian == "fast" and self.method != "log_ode":
            return StepNoise(size, generator, dtype, device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu"))
        levy = "foster" if self.method == "log_ode" else "space-time"
        # log_ode needs Levy area (StepNoise has none): a plain interval unless the path must be shared
        return ScaledBrownian(span, n, size, seed, dtype, device, levy, consistent=self.brownian == "interval")

