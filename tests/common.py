"""Helpers shared by the test modules: seeded generators, moment checks of 1-D Gaussians, and the
command line run in-process (``invoke``).

Imported as ``from common import ...`` (pytest puts ``tests/`` on ``sys.path``; there is no
package ``__init__``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from click.testing import CliRunner, Result
from torch import Tensor

from sdeflow import ForwardProcess


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def gaussian_marginal_moments(process: ForwardProcess, t: float, mu: float, sigma: float) -> tuple[float, float]:
    """Mean and std of ``p_t`` for ``p_0 = N(mu, sigma^2)`` under ``x_t = alpha x_0 + s eps``:
    ``N(alpha mu, alpha^2 sigma^2 + s^2)``."""
    a, s = process.marginal(torch.tensor([float(t)], dtype=torch.float64))
    a, s = float(a[0]), float(s[0])
    return a * mu, math.sqrt(a * a * sigma**2 + s * s)


def assert_moments(x: Tensor, mean: float, std: float, what: str, k_se: float) -> None:
    """Sample mean and std of the 1-D samples ``x`` within ``k_se`` standard errors of ``mean``
    and ``std``: ``std / sqrt(n)`` for the mean, ``std / sqrt(2 (n - 1))`` for the std (normal data)."""
    n = x.shape[0]
    x = x.double().reshape(n)
    tol_m, tol_s = k_se * std / math.sqrt(n), k_se * std / math.sqrt(2 * (n - 1))
    assert abs(float(x.mean()) - mean) < tol_m, f"{what}: mean {float(x.mean()):.4f} vs {mean:.4f} (tol {tol_m:.3f})"
    assert abs(float(x.std()) - std) < tol_s, f"{what}: std {float(x.std()):.4f} vs {std:.4f} (tol {tol_s:.3f})"


def invoke(*args: str, ok: bool = True) -> Result:
    """Run ``sdeflow ARGS...`` in-process (click's ``CliRunner``); with ``ok``, assert exit status 0,
    showing the output and exception otherwise."""
    from sdeflow.cli import main

    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def unobserved_repaint(**options: object) -> Any:
    """The ``repaint`` sampler on any score model, conditioned on nothing: it samples
    ``score_model.given(mask=all False, values=0)``, i.e. ancestral steps with RePaint's jumps back
    (exact forward transitions), whose law is the model's own; the generic sampler checks run
    ``repaint`` this way (it refuses a model without observed values)."""
    import sdeflow
    from sdeflow_plugins.repaint import RePaintSampler

    class UnobservedRePaint(RePaintSampler):
        def check_compatible(self, score_model: sdeflow.ScoreModel) -> None:
            sdeflow.Sampler.check_compatible(self, score_model)

        def _sample(self, score_model, shape, generator, callback, progress, return_trajectory,  # type: ignore[no-untyped-def]
                    x_T=None):
            view = score_model.given(mask=torch.zeros(shape[1:], dtype=torch.bool),
                                     values=torch.zeros(shape[1:], dtype=score_model.dtype))
            return super()._sample(view, shape, generator, callback, progress, return_trajectory, x_T=x_T)

    UnobservedRePaint.__name__ = "UnobservedRePaint"
    return UnobservedRePaint(**options)  # type: ignore[arg-type]
