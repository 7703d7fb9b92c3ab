"""sdeflow: score-based diffusion models built on one forward SDE.

Give a :class:`ForwardProcess` and a :class:`ScoreModel`; sdeflow derives the reverse-time SDE
and the probability-flow ODE and integrates them with torchsde and torchdiffeq. Methods,
architectures and samplers are pluggy plugins discovered through the ``sdeflow`` entry points.
"""

from __future__ import annotations

from .plugins.hookspecs import hookimpl
from .core.process import ForwardProcess
from .core.sampler import SampleResult, Sampler
from .core.score_model import ScoreModel
from .utils.shapes import append_dims
from .core.marginal_process import MarginalDefinedProcess

from .plugins.api import (component_options, create_component, create_model, create_process, create_sampler,
                  list_components, list_plugins)  # noqa: E402
from .plugins.manager import register_plugin, reload_plugins, unregister_plugin  # noqa: E402
from .data import GaussianMixture  # noqa: E402
from .core.likelihood import LikelihoodResult, bits_per_dim, log_likelihood  # noqa: E402
from .training.model_spec import load_score_model  # noqa: E402
from .training.calibration import ScheduleCalibration, calibrate_schedule  # noqa: E402
from . import interop  # noqa: E402  (pretrained models; imports diffusers only when used)

__version__ = "0.1.0"

__all__ = [
    "ForwardProcess",
    "GaussianMixture",
    "LikelihoodResult",
    "MarginalDefinedProcess",
    "SampleResult",
    "ScheduleCalibration",
    "Sampler",
    "ScoreModel",
    "append_dims",
    "bits_per_dim",
    "calibrate_schedule",
    "component_options",
    "create_component",
    "list_components",
    "create_model",
    "create_process",
    "create_sampler",
    "hookimpl",
    "interop",
    "list_plugins",
    "load_score_model",
    "log_likelihood",
    "register_plugin",
    "reload_plugins",
    "unregister_plugin",
    "__version__",
]
