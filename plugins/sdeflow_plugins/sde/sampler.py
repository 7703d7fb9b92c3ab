"""The ``sde`` sampler: the reverse-time SDE integrated by torchsde with fixed steps."""

from __future__ import annotations

import torch

from sdeflow import Sampler, SampleResult, ScoreModel
from sdeflow.errors import OptionError
from sdeflow.solvers import (
    SDE_METHODS,
    SDE_STRONG_ORDER,
    ReverseSDEStepTime,
    SamplingRun,
    ScaledBrownian,
    StepNoise,
    check_positive_int,
    integrate_sde,
    resolve_interval,
    resolve_steps,
    stop_time,
)

BROWNIAN = ("fast", "interval")


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

    Score evaluations per step: 1 (``euler``, ``milstein``, ``euler_heun``, ``reversible_heun``, which
    also evaluates once before the first step), 2 (``heun``, ``midpoint``, ``log_ode``) and 10 (``srk``,
    whose later stages re-evaluate the earlier ones: 1 + 2 + 3 + 4). Strong order on
    this additive noise: :data:`sdeflow.solvers.SDE_STRONG_ORDER`. ``reversible_heun``
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
                callback, progress: bool, return_trajectory: bool,  # type: ignore[no-untyped-def]
                x_T: torch.Tensor | None = None) -> SampleResult:
        with SamplingRun(score_model, shape, generator, check_finite=self.check_finite, callback=callback,
                         progress=progress, return_trajectory=return_trajectory, x_T=x_T) as run:
            t_start, t_end = resolve_interval(run.process, self.t_end)
            t_stop = stop_time(score_model, t_end)
            n = resolve_steps(self.steps, self.dt, t_start - t_stop, default=1000)
            batch, dim = shape[0], int(torch.Size(shape[1:]).numel())
            sde = ReverseSDEStepTime(run.process.reverse_sde(run.score), run.process, shape, t_start, t_stop, n,
                                     SDE_METHODS[self.method])
            run.observe_steps(n, f"sde/{self.method}")
            x = run.prior()
            bm = self._brownian((batch, dim), generator, run.dtype, run.device, t_start - t_stop, n)
            on_step = None
            if run.observing:
                run.observe(0, t_start, x)

                def on_step(k: int, y: torch.Tensor) -> None:
                    run.observe(k + 1, t_stop if k + 1 == n else t_start - (k + 1) * sde.h, y.reshape(shape))

            y = integrate_sde(sde, x.reshape(batch, dim), self.method, bm, on_step, steps=run.steps(n))
            x = run.finish(y.reshape(shape), t_stop, t_end, self.denoise)
        return run.result(x, f"sampler 'sde' (method={self.method!r}, steps={n})", steps=n,
                          step_label=lambda step: f"step {step} of {n}")

    def _brownian(self, size: tuple[int, int], generator: torch.Generator | None, dtype: torch.dtype,
                  device: torch.device, span: float, n: int):  # type: ignore[no-untyped-def]
        if self.brownian == "fast" and self.method != "log_ode":
            return StepNoise(size, generator, dtype, device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu"))
        levy = "foster" if self.method == "log_ode" else "space-time"
        # log_ode needs Levy area (StepNoise has none): a plain interval unless the path must be shared
        return ScaledBrownian(span, n, size, seed, dtype, device, levy, consistent=self.brownian == "interval")

