"""Models trained elsewhere as sdeflow score models (optional extra ``sdeflow[diffusers]``).

* :func:`from_diffusers`: a diffusers pipeline or model folder (``UNet2DModel`` +
  ``scheduler_config.json``), or live diffusers objects, as a :class:`~sdeflow.ScoreModel` of the
  ``ddpm`` process with the scheduler's betas; :func:`save_diffusers` writes one back in diffusers'
  layout.
* :func:`from_function`: an EDM / k-diffusion denoiser ``D(x, sigma)`` or a score_sde score function
  ``s(x, t)`` (or an ``eps``, ``x0``, ``v`` predictor) as a :class:`~sdeflow.ScoreModel`.
* :func:`network_timestep`: the one map from continuous time to a discrete-time network's timestep,
  ``(t - 1/N) N``; :func:`timestep_schedule`: sampler options that walk a diffusers scheduler's timesteps.

diffusers is imported by the functions that need it, never by ``import sdeflow``.
"""

from .dependency import diffusers_available, require_diffusers
from .diffusers_io import DiffusersNetwork, from_diffusers, is_diffusers_folder, save_diffusers
from .function import FunctionNetwork, FunctionScoreModel, from_function
from .scheduler_config import (
                               BETA_SCHEDULES,
                               DDPM_FAMILY,
                               PREDICTION_TYPES,
                               SchedulerSpec,
                               parse_scheduler_config,
                               read_scheduler_config,
)
from .timesteps import network_timestep, time_of_timestep, timestep_schedule

__all__ = ["BETA_SCHEDULES", "DDPM_FAMILY", "DiffusersNetwork", "FunctionNetwork", "FunctionScoreModel",
           "PREDICTION_TYPES", "SchedulerSpec", "diffusers_available", "from_diffusers", "from_function",
           "is_diffusers_folder", "network_timestep", "parse_scheduler_config", "read_scheduler_config",
           "require_diffusers", "save_diffusers", "time_of_timestep", "timestep_schedule"]
