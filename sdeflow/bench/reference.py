"""Reference solutions from the same initial noise: the probability-flow ODE at tight tolerance and
the reverse SDE on a shared Brownian path at fine steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..core.score_model import ScoreModel
from ..plugins.api import create_sampler


def fix_prior(score_model: ScoreModel, x_T: Tensor) -> ScoreModel:
    """Make every run of ``score_model`` start from the rows of ``x_T`` (its first ``batch`` rows).

    Deterministic samplers then pair up exactly across budgets and with the reference; the
    generator passed to ``sample`` is left untouched by the prior draw.
    """

    def prior_sample(shape: Sequence[int], generator: torch.Generator | None = None, device=None,  # type: ignore[no-untyped-def]
                     dtype=None) -> Tensor:
        return x_T[: shape[0]].reshape(tuple(shape)).clone()

    score_model.prior_sample = prior_sample  # type: ignore[method-assign]
    return score_model


def rms_path_error(x: Tensor, ref: Tensor) -> float:
    """``sqrt(mean_i ||x_i - ref_i||^2)`` over the rows of ``ref`` (the first rows of ``x``)."""
    n = ref.shape[0]
    d = (x[:n].reshape(n, -1) - ref.reshape(n, -1)).double()
    return float(torch.sqrt((d * d).sum(1).mean()))


@dataclass
class Reference:
    """A reference end state and a bound on its error.

    Attributes:
        x: ``(paths, d)`` reference samples.
        error_bound: RMS distance to the same solution at a looser setting (``100 x`` the ODE
            tolerance, half the SDE steps): an upper bound on the reference's own error, and the
            floor under which a pathwise error is not resolved.
        nfe: evaluations the reference took.
        how: a description.
    """

    x: Tensor
    error_bound: float
    nfe: int
    how: str


def ode_reference(score_model: ScoreModel, shape: tuple[int, ...], tol: float, x_T: Tensor | None = None,
                  method: str = "dopri8") -> Reference:
    """The probability-flow ODE by ``method`` (dopri8) at ``rtol = atol = tol`` (checked against ``100 tol``),
    from ``x_T`` when given (else the model's own prior draw)."""
    tight = create_sampler("ode", method=method, rtol=tol, atol=tol).sample(score_model, shape, x_T=x_T)
    loose = create_sampler("ode", method=method, rtol=100 * tol, atol=100 * tol).sample(score_model, shape, x_T=x_T)
    return Reference(tight.samples, rms_path_error(loose.samples, tight.samples), tight.nfe,
                     f"ode {method} rtol=atol={tol:g}")


def strong_reference(score_model: ScoreModel, shape: tuple[int, ...], steps: int, seed: int,
                     denoise: bool, method: str = "euler") -> Reference:
    """The reverse SDE by ``method`` with ``steps`` (a power of two: grid points are nodes of the
    Brownian tree) on the dyadic Brownian path of ``seed`` (``brownian="interval"``: the path every
    step count of the ``sde`` sampler sees with that seed), checked against ``steps / 2``.

    Euler-Maruyama has strong order 1 on the reverse SDE's additive noise; its error at
    ``steps`` is ``steps / N`` times smaller than a run's at ``N`` steps (SRK's order 1.5 costs ten
    evaluations a step and, through torchsde's Levy-area queries, was slower for the same bound)."""
    def run(k: int) -> tuple[Tensor, int]:
        r = create_sampler("sde", method=method, steps=k, brownian="interval", denoise=denoise).sample(
            score_model, shape, torch.Generator().manual_seed(seed))
        return r.samples, r.nfe

    fine, nfe = run(steps)
    half, _ = run(max(1, steps // 2))
    return Reference(fine, rms_path_error(half, fine), nfe, f"sde {method} {steps} steps, shared Brownian path")


def strong_steps(max_steps: int, factor: int = 16) -> int:
    """The power of two at least ``factor x max_steps``."""
    return 2 ** max(4, math.ceil(math.log2(factor * max(1, max_steps))))
