"""The sampler grid: each configuration's sampler, options and NFE-budget mapping.

An NFE budget ``B`` maps to a sampler's own options exactly (``docs/solvers.md``, "Budget
mapping"); the NFE a run actually used is recorded next to the budget.

* ``ode euler`` ``steps = B``; ``ode heun2``/``ode midpoint`` ``B // 2`` (2 evaluations a step);
  ``ode rk4`` ``B // 4``.
* ``dpm_solver`` (2M/3M, log-SNR or time-uniform steps), ``unipc`` (UniPC-2/3, log-SNR or time-uniform
  steps) and ``ddim`` (eta 0 or 1): ``steps = B``.
* ``heun`` (EDM): ``B // 2`` steps (two evaluations a step); ``(B + 1) // 2`` when the last step
  goes to ``sigma = 0`` (VE at ``t = 0``), which costs one evaluation.
* ``sde euler``: ``B - 1`` steps plus the final denoising; ``sde heun``: ``(B - 1) // 2`` steps
  (two drift evaluations a step) plus denoising.
* ``pc`` reverse diffusion + Langevin: ``(B - 1) // 2`` steps plus denoising; ``pc`` Euler-Maruyama
  alone: ``B - 1`` plus denoising.
* ``ancestral``: ``B - 1`` steps plus DDPM's noiseless last step.
* ``langevin`` (annealed): ``L = max(2, (B - 1) // 5)`` levels of ``(B - 1) // L`` steps (+1
  denoising), default step size, ending where ``sigma_t / alpha_t = 0.01`` (NCSN's ``sigma_min``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..core.process import ForwardProcess
from ..errors import OptionError
from ..solvers import scaled_sigma, t_from_scaled_sigma

#: (budget, process) -> sampler options, or None when the budget is too small for the configuration
OptionsFn = Callable[[int, ForwardProcess], "dict[str, Any] | None"]


@dataclass(frozen=True)
class SamplerConfig:
    """One row of the grid.

    Attributes:
        label: the name used in tables, ``--samplers`` and plots.
        sampler: registered sampler name.
        options: the budget mapping (module docstring).
        path_consistent: the sampler can share one Brownian path across step counts
            (``brownian="interval"``), so its strong error against a fine-step reference on the
            same path is measured.
    """

    label: str
    sampler: str
    options: OptionsFn
    path_consistent: bool = False


def heun_steps(budget: int, process: ForwardProcess) -> int:
    """EDM steps within ``budget``: 2 evaluations a step, one less when the last goes to ``sigma = 0``."""
    zero_end = float(scaled_sigma(process, torch.tensor([float(process.t_min)]))[0]) == 0.0
    return (budget + 1) // 2 if zero_end else budget // 2


def langevin_t_end(process: ForwardProcess) -> float | None:
    """Where ``sigma_t / alpha_t = 0.01`` (NCSN's ``sigma_min``), if ``t_min`` lies below it."""
    if float(scaled_sigma(process, torch.tensor([float(process.t_min)]))[0]) >= 0.01:
        return None
    return float(t_from_scaled_sigma(process, torch.tensor([0.01]))[0])


def langevin_levels(budget: int) -> int:
    """Noise levels of annealed Langevin within ``budget``: ``max(2, (B - 1) // 5)`` (about 5 steps a level;
    ``levels x (B - 1) // levels`` steps plus the final denoising stay within ``B``)."""
    return max(2, (budget - 1) // 5)


def _at_least(minimum: int, fn: OptionsFn) -> OptionsFn:
    def options(b: int, p: ForwardProcess) -> dict[str, Any] | None:
        return fn(b, p) if b >= minimum else None
    return options


BUILTIN_CONFIGS: list[SamplerConfig] = [
    SamplerConfig("ode euler", "ode", lambda b, p: dict(method="euler", steps=b)),
    SamplerConfig("ode heun2", "ode", _at_least(2, lambda b, p: dict(method="heun2", steps=b // 2))),
    SamplerConfig("ode rk4", "ode", _at_least(4, lambda b, p: dict(method="rk4", steps=b // 4))),
    SamplerConfig("dpm_solver 2M", "dpm_solver", _at_least(2, lambda b, p: dict(steps=b))),
    SamplerConfig("dpm_solver 3M", "dpm_solver", _at_least(3, lambda b, p: dict(steps=b, order=3))),
    SamplerConfig("dpm_solver 3M authors_code", "dpm_solver",
                  _at_least(3, lambda b, p: dict(steps=b, order=3, order3_rule="authors_code"))),
    SamplerConfig("dpm_solver 2M time_uniform", "dpm_solver",
                  _at_least(2, lambda b, p: dict(steps=b, schedule="time_uniform"))),
    SamplerConfig("dpm_solver 2M time_uniform no LOF", "dpm_solver",
                  _at_least(2, lambda b, p: dict(steps=b, schedule="time_uniform", lower_order_final=False))),
    SamplerConfig("unipc-2", "unipc", _at_least(2, lambda b, p: dict(steps=b))),
    SamplerConfig("unipc-3", "unipc", _at_least(3, lambda b, p: dict(steps=b, order=3))),
    SamplerConfig("unipc-2 time_uniform", "unipc", _at_least(2, lambda b, p: dict(steps=b, schedule="time_uniform"))),
    SamplerConfig("ddim", "ddim", lambda b, p: dict(steps=b)),
    SamplerConfig("ddim eta=1", "ddim", lambda b, p: dict(steps=b, eta=1.0)),
    SamplerConfig("heun", "heun", _at_least(3, lambda b, p: dict(steps=heun_steps(b, p)))),
    SamplerConfig("sde euler", "sde", _at_least(2, lambda b, p: dict(method="euler", steps=b - 1)),
                  path_consistent=True),
    SamplerConfig("sde heun", "sde", _at_least(3, lambda b, p: dict(method="heun", steps=(b - 1) // 2)),
                  path_consistent=True),
    SamplerConfig("pc rd+langevin", "pc", _at_least(3, lambda b, p: dict(steps=(b - 1) // 2,
                                                                         schedule="time_uniform"))),
    SamplerConfig("pc euler_maruyama", "pc", _at_least(2, lambda b, p: dict(
        steps=b - 1, predictor="euler_maruyama", corrector="none", schedule="time_uniform"))),
    SamplerConfig("ancestral", "ancestral", _at_least(2, lambda b, p: dict(steps=b - 1))),
    SamplerConfig("langevin", "langevin", _at_least(10, lambda b, p: dict(
        num_scales=langevin_levels(b), n_steps_each=(b - 1) // langevin_levels(b), t_end=langevin_t_end(p)))),
]

def resolve_config(label: str) -> SamplerConfig:
    """The built-in configuration called ``label``, or, for the name of any registered sampler with a
    ``steps`` option (a third-party one included), ``steps = B``.

    Raises:
        OptionError: neither; the message lists the valid labels.
    """
    for c in BUILTIN_CONFIGS:
        if c.label == label:
            return c
    from ..plugins.api import component_options, list_plugins

    if label in list_plugins()["sampler"] and "steps" in component_options("sampler", label):
        return SamplerConfig(label, label, lambda b, p: dict(steps=b))
    raise OptionError(f"unknown sampler configuration {label!r}; valid: {', '.join(c.label for c in BUILTIN_CONFIGS)}, "
                      "or the name of a registered sampler that takes steps=")
