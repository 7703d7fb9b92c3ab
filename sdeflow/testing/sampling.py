"""What every sampler check shares: building the sampler, its targets and one run from a given start."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..core.sampler import Sampler, SampleResult
from ..core.score_model import ScoreModel
from ..data import GaussianMixture
from .common import F64, as_float64
from .reference import ReferenceOUProcess

#: builds a sampler from keyword options
SamplerFactory = Callable[..., Sampler]

#: mean and covariance of the 2-D Gaussian target (correlated, unequal variances)
TARGET_MEAN = (1.0, -0.5)
TARGET_COV = ((0.5, 0.2), (0.2, 0.3))


def gaussian_target(dim: int = 2) -> GaussianMixture:
    """The Gaussian target ``N(m, C)`` of the sampler checks (float64): for ``dim = 2`` the
    correlated :data:`TARGET_MEAN`, :data:`TARGET_COV`; otherwise ``N(0.5, 0.4 I)``."""
    if dim == 2:
        return GaussianMixture([1.0], [list(TARGET_MEAN)], [[list(r) for r in TARGET_COV]], dtype=F64)
    return GaussianMixture([1.0], [[0.5] * dim], 0.4, dtype=F64)


def order_targets() -> dict[str, GaussianMixture]:
    """The targets of the order checks (float64): ``N(0.5, 0.3)`` in 1-D and an anisotropic 2-D
    Gaussian whose covariance has eigenvalues 0.6 and 0.05 along axes rotated by 0.5 rad."""
    c, s = math.cos(0.5), math.sin(0.5)
    rot = torch.tensor([[c, -s], [s, c]], dtype=F64)
    cov = rot @ torch.diag(torch.tensor([0.6, 0.05], dtype=F64)) @ rot.T
    return {"1-D Gaussian N(0.5, 0.3)": GaussianMixture([1.0], [[0.5]], [[[0.3]]], dtype=F64),
            "anisotropic 2-D Gaussian": GaussianMixture([1.0], [[1.0, -0.5]], cov[None], dtype=F64)}


def process_or_reference(process: ForwardProcess | None) -> ForwardProcess:
    """A float64 copy of ``process``, or the kit's :class:`~sdeflow.testing.reference.ReferenceOUProcess`."""
    return as_float64(process) if process is not None else ReferenceOUProcess().to(F64)


def build(factory: SamplerFactory, **options: Any) -> Sampler:
    """``factory(**options)``, checked to be a :class:`sdeflow.Sampler`."""
    sampler = factory(**options)
    assert isinstance(sampler, Sampler), f"the factory returned {type(sampler).__name__}, not a sdeflow.Sampler"
    return sampler


def label(sampler: Sampler) -> str:
    """``sampler 'name'`` for messages."""
    return f"sampler {sampler.name or type(sampler).__name__!r}"


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def no_denoise(sampler: Sampler) -> dict[str, Any]:
    """``{"denoise": False}`` when the sampler has a ``denoise`` option (the checks compare the
    state at ``t_end`` itself, not its posterior mean)."""
    return {"denoise": False} if "denoise" in sampler.options() else {}


def takes_x_T(sampler: Sampler) -> bool:
    """Whether the sampler starts from a given ``x_T`` (``sample(..., x_T=...)``, passed on to a
    ``_sample`` that takes it)."""
    params = inspect.signature(sampler._sample).parameters
    return "x_T" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def sample_from(sampler: Sampler, score_model: ScoreModel, shape: Sequence[int], generator: torch.Generator,
                x_T: Tensor, **kwargs: Any) -> SampleResult:
    """``sampler.sample(score_model, shape, generator, x_T=x_T)``: one run from the given prior draw.

    For a sampler that cannot take ``x_T`` (checked by :func:`~sdeflow.testing.check_sampler_contract`)
    the start is given through the model instead, so that the other checks still measure it: its
    ``prior_sample`` returns ``x_T`` for this call (samplers start from ``score_model.prior_sample``).
    """
    if takes_x_T(sampler):
        return sampler.sample(score_model, shape, generator, x_T=x_T, **kwargs)
    score_model.prior_sample = lambda *a, **k: x_T.clone()  # type: ignore[method-assign]
    try:
        return sampler.sample(score_model, shape, generator, **kwargs)
    finally:
        del score_model.prior_sample


__all__ = ["SamplerFactory", "TARGET_COV", "TARGET_MEAN", "build", "process_or_reference", "gaussian_target",
           "gen", "label", "no_denoise", "order_targets", "sample_from", "takes_x_T"]
