"""The ``pc`` sampler: predictor-corrector sampling (Song et al. 2021, Alg. 1-2) with registered components."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import sdeflow
from sdeflow import ScoreModel
from sdeflow.errors import IncompatibleError, OptionError, PluginError
from sdeflow.solvers import (
    SCHEDULES,
    Corrector,
    GridRun,
    GridSampler,
    PCContext,
    Predictor,
    check_positive_int,
    reverse_grid,
    solver_times,
)


def _build(kind: str, name: str, options: dict[str, Any]) -> Any:
    obj = sdeflow.create_component(kind, name, **options)  # at construction time, never while plugins load
    base = Predictor if kind == "predictor" else Corrector
    if not isinstance(obj, base):
        raise PluginError(f"{kind} {name!r} built a {type(obj).__name__}, not a sdeflow.solvers.{base.__name__}")
    return obj


class PCSampler(GridSampler):
    """Predictor-corrector sampling (Song et al. 2021, Sec. 4.2, Alg. 1-2): on a grid
    ``t_max = t_0 > ... > t_K = t_end``, at every ``t_k`` run ``n_corrector_steps`` corrector
    steps at ``t_k`` then one predictor step to ``t_{k+1}`` (the order of Song et al.'s code);
    finish with the posterior mean ``E[x_0 | x_{t_end}]`` when ``denoise``.

    Predictors and correctors are registered components (hooks ``sdeflow_register_predictors``
    and ``sdeflow_register_correctors``; built with :func:`sdeflow.create_component`), so a plugin
    can add one. Built-in predictors: ``euler_maruyama``, ``reverse_diffusion``, ``ancestral``,
    ``none``; correctors: ``langevin`` (option ``snr``), ``none``.

    Score evaluations: one per predictor step (``none``: zero), one per corrector step, one for
    the final denoising.

    Args:
        predictor: registered predictor name (default ``"reverse_diffusion"``).
        corrector: registered corrector name (default ``"langevin"``).
        snr: the Langevin corrector's signal-to-noise ratio (default: the corrector's own, 0.16);
            an error for a corrector without an ``snr`` option.
        n_corrector_steps: corrector steps per grid time (default 1; 0 turns the corrector off).
        steps: predictor steps (default 1000, Song et al.'s ``N``; or the whole chain of a
            discrete process when ``schedule`` is left ``None``).
        schedule: ``None`` (default): the process's own chain (DDPM, NCSN; fewer ``steps`` stride
            it evenly, more are capped at the chain), else ``steps`` uniform in time; or one of
            ``"time_uniform"``, ``"logSNR"``, ``"logSNR_edm"``, ``"time_quadratic"``, ``"chain"``
            (:func:`sdeflow.solvers.solver_times`).
        predictor_options: further options of the predictor.
        corrector_options: further options of the corrector.
        denoise: finish with ``E[x_0 | x_{t_end}]`` (one evaluation).
        t_end: final time (default ``t_min``).
        check_finite: raise on NaN/Inf, naming the step.
    """

    name = "pc"

    def __init__(self, predictor: str = "reverse_diffusion", corrector: str = "langevin", snr: float | None = None,
                 n_corrector_steps: int = 1, steps: int | None = None, schedule: str | None = None,
                 predictor_options: dict[str, Any] | None = None,
                 corrector_options: dict[str, Any] | None = None, denoise: bool = True, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        check_positive_int("steps", steps)
        if schedule is not None and (not isinstance(schedule, str) or schedule not in SCHEDULES):
            raise OptionError(f"unknown schedule {schedule!r}; valid: None (the process's chain or uniform time), "
                              f"{', '.join(SCHEDULES)}")
        if isinstance(n_corrector_steps, bool) or int(n_corrector_steps) != n_corrector_steps or n_corrector_steps < 0:
            raise OptionError(f"n_corrector_steps must be an integer >= 0, got {n_corrector_steps!r}")
        copts = dict(corrector_options or {})
        if snr is not None:
            if "snr" not in sdeflow.component_options("corrector", corrector):
                raise OptionError(f"snr={snr!r} is an option of the Langevin corrector; corrector {corrector!r} "
                                  "does not take it (drop snr, or use corrector='langevin')")
            if "snr" in copts:
                raise OptionError("snr given twice: as snr= and in corrector_options")
            copts["snr"] = snr
        self.predictor_step: Predictor = _build("predictor", predictor, dict(predictor_options or {}))
        self.corrector_step: Corrector = _build("corrector", corrector, copts)
        self.predictor, self.corrector, self.snr = predictor, corrector, snr
        self.n_corrector_steps, self.steps, self.schedule = int(n_corrector_steps), steps, schedule
        self.predictor_options, self.corrector_options = predictor_options, corrector_options
        if predictor == "none" and (corrector == "none" or self.n_corrector_steps == 0):
            raise OptionError("predictor='none' with no corrector steps would return the prior sample unchanged; "
                              "choose a predictor or a corrector")
        self.denoise, self.t_end, self.check_finite = bool(denoise), t_end, bool(check_finite)

    # capabilities follow the chosen components
    @property
    def _active(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [(f"predictor {self.predictor!r}", self.predictor_step)]
        if self.n_corrector_steps > 0:
            out.append((f"corrector {self.corrector!r}", self.corrector_step))
        return out

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        """True when the predictor or an active corrector injects noise."""
        return any(c.stochastic for _, c in self._active)

    @property
    def requires_gaussian_marginals(self) -> bool:  # type: ignore[override]
        """True when the predictor or an active corrector uses ``alpha_t``, ``sigma_t``, or with
        ``denoise`` (the posterior mean ``E[x_0 | x_t]`` needs them)."""
        return self.denoise or any(c.requires_gaussian_marginals for _, c in self._active)

    @property
    def order(self) -> float | None:  # type: ignore[override]
        """The predictor's order."""
        return self.predictor_step.order

    def check_compatible(self, score_model: ScoreModel) -> None:
        """Raise :class:`IncompatibleError` naming the component that cannot run ``score_model``'s process."""
        if isinstance(score_model, ScoreModel) and not getattr(score_model.process, "gaussian_marginals", False):
            needs = [what for what, c in self._active if c.requires_gaussian_marginals]
            if self.denoise:
                needs.append("final denoising (denoise=True)")
            if needs:
                raise IncompatibleError(
                    f"sampler 'pc': the {' and the '.join(needs)} need(s) a process with Gaussian marginals "
                    f"(alpha_t, sigma_t), but {type(score_model.process).__name__} declares gaussian_marginals=False; "
                    "use predictor='euler_maruyama' with corrector='none' and denoise=False"
                )
        super().check_compatible(score_model)

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, PCContext]:
        """The grid and the components' :class:`~sdeflow.solvers.PCContext`."""
        if self.schedule is None:
            grid = reverse_grid(run.process, t_start, t_end, self.steps, default_steps=1000)
        else:
            grid = solver_times(run.process, t_start, t_end, self.steps or 1000, self.schedule)
        return grid, PCContext(run.process, run.score, run.shape, run.generator, torch.device(run.device), run.dtype)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        """``n_corrector_steps`` corrector steps at ``t_k``, then the predictor step to ``t_{k+1}``."""
        ctx, t, t_next = run.plan, run.times[k], run.times[k + 1]
        for _ in range(self.n_corrector_steps):
            x, _ = self.corrector_step.step(ctx, x, t, t_next)
        x, _ = self.predictor_step.step(ctx, x, t, t_next)
        return x

    def describe(self, run: GridRun) -> str:
        return f"predictor={self.predictor!r}, corrector={self.corrector!r}, steps={run.n}"
