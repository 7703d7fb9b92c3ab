"""sdeflow: score-based diffusion models built on one forward SDE.

Give a :class:`ForwardProcess` and a :class:`ScoreModel`; sdeflow derives the reverse-time SDE
and the probability-flow ODE and integrates them with torchsde and torchdiffeq. Methods,
architectures and samplers are pluggy plugins discovered through the ``sdeflow`` entry points.

The names below are the public API; plugins import only them, :mod:`sdeflow.errors` and the
sampler-writing toolkit :mod:`sdeflow.solvers` (and :mod:`sdeflow.testing` in their tests).
"""

from __future__ import annotations

from . import interop  # noqa: E402  (pretrained models; imports diffusers only when used)
from .core.conditioning import NULL_LABEL, ConditionedScoreModel
from .core.dynamics import ProbabilityFlowODE, ReverseSDE
from .core.embeddings import LabelEmbedding, sinusoidal_embedding
from .core.likelihood import LikelihoodResult, bits_per_dim, dequantize, log_likelihood
from .core.linear_beta import LinearBeta
from .core.losses import denoising_score_matching, flow_matching_loss, logit_normal_time
from .core.marginal_process import MarginalDefinedProcess
from .core.parametrization import PARAMETRIZATIONS, to_eps, to_score, to_v, to_velocity, to_x0
from .core.process import ForwardProcess
from .core.sampler import Sampler, SampleResult
from .core.score_model import ScoreModel
from .data import GaussianMixture
from .data.images import levels_to_signed
from .plugins.api import (
    component_options,
    create_component,
    create_model,
    create_process,
    create_sampler,
    list_components,
    list_plugins,
    plugin_info,
)
from .plugins.hookspecs import hookimpl
from .plugins.manager import register_plugin, reload_plugins, unregister_plugin
from .plugins.registry import RegistryView
from .training.calibration import ScheduleCalibration, calibrate_schedule
from .training.model_spec import load_score_model
from .utils.shapes import append_dims, rand, randn

__version__ = "0.1.0"

__all__ = [
    "ConditionedScoreModel",
    "ForwardProcess",
    "GaussianMixture",
    "LabelEmbedding",
    "LikelihoodResult",
    "LinearBeta",
    "MarginalDefinedProcess",
    "NULL_LABEL",
    "PARAMETRIZATIONS",
    "ProbabilityFlowODE",
    "RegistryView",
    "ReverseSDE",
    "SampleResult",
    "ScheduleCalibration",
    "Sampler",
    "ScoreModel",
    "append_dims",
    "bits_per_dim",
    "calibrate_schedule",
    "component_options",
    "create_component",
    "create_model",
    "create_process",
    "create_sampler",
    "denoising_score_matching",
    "dequantize",
    "flow_matching_loss",
    "hookimpl",
    "interop",
    "levels_to_signed",
    "list_components",
    "list_plugins",
    "load_score_model",
    "log_likelihood",
    "logit_normal_time",
    "plugin_info",
    "rand",
    "randn",
    "register_plugin",
    "reload_plugins",
    "sinusoidal_embedding",
    "to_eps",
    "to_score",
    "to_v",
    "to_velocity",
    "to_x0",
    "unregister_plugin",
    "__version__",
]
