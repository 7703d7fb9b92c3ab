"""A diffusers scheduler configuration read as a forward process and a parametrization.

Every DDPM-family scheduler of diffusers (DDPM, DDIM, PNDM, Euler, Heun, DPM-Solver, UniPC, DEIS,
LMS, ...) discretises one and the same model: the chain ``q(x_k | x_{k-1}) = N(sqrt(1 - beta_k)
x_{k-1}, beta_k I)`` over ``num_train_timesteps`` steps (Ho et al. 2020) with a noise-prediction,
data-prediction or velocity network. The configuration's ``beta_schedule`` (or ``trained_betas``),
``beta_start``, ``beta_end``, ``num_train_timesteps`` and ``rescale_betas_zero_snr`` fix the betas;
they become sdeflow's ``ddpm`` process, whose marginal at ``t = (k + 1)/N`` is ``alphas_cumprod[k]``
(:mod:`sdeflow.interop.timesteps`). ``prediction_type`` fixes the parametrization. The rest (step
spacing, clipping, solver orders) configures diffusers' sampler, not the model, and is ignored.

Nothing here imports diffusers: a configuration is JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.process import ForwardProcess
from ..errors import CheckpointError, IncompatibleError
from ..plugins.api import create_process

#: diffusers schedulers that discretise the DDPM chain (their configurations define a ddpm process)
DDPM_FAMILY: tuple[str, ...] = (
    "DDPMScheduler", "DDIMScheduler", "DDIMInverseScheduler", "DDIMParallelScheduler", "DDPMParallelScheduler",
    "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverMultistepInverseScheduler", "DPMSolverSinglestepScheduler", "DPMSolverSDEScheduler",
    "DEISMultistepScheduler", "UniPCMultistepScheduler", "SASolverScheduler", "LCMScheduler", "TCDScheduler",
    "RePaintScheduler",
)
#: diffusers' beta_schedule names -> the ddpm process's schedule names
BETA_SCHEDULES: dict[str, str] = {"linear": "linear", "scaled_linear": "scaled_linear",
                                  "squaredcos_cap_v2": "cosine", "sigmoid": "sigmoid"}
#: diffusers' prediction_type -> sdeflow's parametrization
PREDICTION_TYPES: dict[str, str] = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
#: diffusers' variance_type values whose networks also output a variance (twice the channels)
LEARNED_VARIANCE = ("learned", "learned_range")
#: the defaults diffusers' DDPM-family schedulers take for keys a configuration leaves out
DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
                            "beta_schedule": "linear", "trained_betas": None, "prediction_type": "epsilon",
                            "rescale_betas_zero_snr": False, "variance_type": None}
CONFIG_NAME = "scheduler_config.json"


@dataclass
class SchedulerSpec:
    """What a diffusers scheduler configuration says about the model.

    Attributes:
        class_name: the scheduler class (``_class_name``), ``""`` when the configuration does not say.
        num_train_timesteps: ``N``.
        parametrization: ``"eps"``, ``"x0"`` or ``"v"``.
        process_options: the options of :func:`sdeflow.create_process` ``("ddpm", ...)``.
        learned_variance: the network also outputs a variance (``variance_type`` learned or learned_range).
        config: the whole configuration (kept to write it back next to a saved model).
    """

    class_name: str
    num_train_timesteps: int
    parametrization: str
    process_options: dict[str, Any]
    learned_variance: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def process(self) -> ForwardProcess:
        """The ``ddpm`` process of these betas (through the plugin registry)."""
        return create_process("ddpm", **self.process_options)


def read_scheduler_config(source: Any) -> dict[str, Any]:
    """A scheduler configuration as a dict, from a folder holding ``scheduler_config.json``, the JSON
    file itself, a mapping, or a diffusers scheduler (its ``config``).

    Raises:
        CheckpointError: a missing folder or file, or a file that is not a JSON object.
    """
    if isinstance(source, Mapping):
        return dict(source)
    config = getattr(source, "config", None)
    if isinstance(config, Mapping) and not isinstance(source, (str, Path)):
        return dict(config)
    if not isinstance(source, (str, Path)):
        raise CheckpointError(f"scheduler must be a folder with {CONFIG_NAME}, the JSON file, a dict or a diffusers "
                              f"scheduler; got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no scheduler configuration at {path} (a diffusers scheduler folder holds "
                              f"{CONFIG_NAME})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"scheduler configuration {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"scheduler configuration {path} must hold a JSON object, got {type(data).__name__}")
    return data


def parse_scheduler_config(config: Mapping[str, Any]) -> SchedulerSpec:
    """Check a scheduler configuration and read the model out of it (module docstring).

    Raises:
        IncompatibleError: a scheduler class outside the DDPM family (:data:`DDPM_FAMILY`), or an
            unknown ``beta_schedule``, ``prediction_type``, ``num_train_timesteps`` or ``trained_betas``;
            each message names what is supported.
    """
    cfg = {**DEFAULTS, **{k: v for k, v in dict(config).items() if v is not None or k == "trained_betas"}}
    name = str(config.get("_class_name") or "")
    if name and name not in DDPM_FAMILY:
        raise IncompatibleError(
            f"scheduler {name} does not discretise the DDPM chain (beta schedule over num_train_timesteps), so its "
            f"configuration defines no sdeflow process; supported: {', '.join(DDPM_FAMILY)}. A continuous-time "
            "or EDM model (score_sde, k-diffusion, EDM) enters through sdeflow.interop.from_function")
    n = cfg["num_train_timesteps"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise IncompatibleError(f"num_train_timesteps must be an integer >= 3, got {n!r}")
    pred = cfg["prediction_type"]
    if pred not in PREDICTION_TYPES:
        raise IncompatibleError(f"prediction_type {pred!r} is not supported; supported: "
                                + ", ".join(f"{k} (sdeflow {v!r})" for k, v in PREDICTION_TYPES.items()))
    options: dict[str, Any] = {}
    if cfg["trained_betas"] is not None:
        betas = cfg["trained_betas"]
        try:
            betas = [float(b) for b in betas]
        except (TypeError, ValueError):
            raise IncompatibleError(f"trained_betas must be a list of numbers, got {type(betas).__name__}") from None
        if len(betas) != n:
            raise IncompatibleError(f"trained_betas holds {len(betas)} values but num_train_timesteps is {n}")
        options["betas"] = betas
    else:
        sched = cfg["beta_schedule"]
        if sched not in BETA_SCHEDULES:
            raise IncompatibleError(f"beta_schedule {sched!r} is not supported; supported: "
                                    f"{', '.join(BETA_SCHEDULES)} (or trained_betas)")
        options.update(num_steps=n, schedule=BETA_SCHEDULES[sched])
        if sched != "squaredcos_cap_v2":
            options.update(beta_start=float(cfg["beta_start"]), beta_end=float(cfg["beta_end"]))
    if cfg["rescale_betas_zero_snr"]:
        options["zero_terminal_snr"] = True
    return SchedulerSpec(class_name=name, num_train_timesteps=n, parametrization=PREDICTION_TYPES[pred],
                         process_options=options, learned_variance=cfg["variance_type"] in LEARNED_VARIANCE,
                         config=dict(config))
