"""Training objectives built from the process's marginal and the model's parametrization."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import parametrization as P
from .errors import OptionError
from .shapes import append_dims, rand, randn

if TYPE_CHECKING:  # pragma: no cover
    from .score_model import ScoreModel


def denoising_score_matching(
    score_model: "ScoreModel",
    x0: Tensor,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Denoising score matching with ``t ~ U[t_min, t_max]`` (Song et al. 2021, Eq. 7).

    The regression target is the model's own parametrization (``eps``: the simple loss of
    Ho et al. 2020, Eq. 14; ``x0``, ``v``); a ``score`` model is trained on
    ``|| sigma_t s_theta + eps ||^2``, i.e. Eq. 7 with ``lambda(t) = sigma_t^2``.

    Args:
        score_model: the model to train.
        x0: data batch, shape ``(batch, *dims)``.
        generator: random source for ``t`` and ``eps``.
        reduction: ``"mean"`` or ``"sum"`` over data dimensions (always mean over the batch).

    Returns:
        Scalar loss.
    """
    if reduction not in ("mean", "sum"):
        raise OptionError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    process = score_model.process
    n = x0.shape[0]
    t0, t1 = float(process.t_min), float(process.t_max)
    t = t0 + (t1 - t0) * rand((n,), generator, x0.device, x0.dtype)
    eps = randn(x0.shape, generator, x0.device, x0.dtype)
    xt, _ = process.perturb(x0, t, noise=eps)
    out = score_model.network_output(xt, t)
    a, s = (append_dims(v, x0.ndim) for v in process.marginal(t))
    kind = score_model.parametrization
    if kind == "score":
        err = s * out + eps
    else:
        err = out - P.target(kind, x0, eps, a, s)
    per_sample = err.pow(2).reshape(n, -1)
    per_sample = per_sample.mean(1) if reduction == "mean" else per_sample.sum(1)
    return per_sample.mean()
