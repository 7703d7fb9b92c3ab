"""Sample-quality metrics of the benchmark suite (components of kind ``metric``).

A metric is a callable ``metric(samples, reference, target) -> float``: ``samples`` ``(n, d)``
from a sampler, ``reference`` ``(n, d)`` independent draws from the target (set A), ``target`` a
:class:`~sdeflow.bench.targets.PreparedTarget` (exact mean, covariance, entropy, density). Lower
is better; the suite reports each with its *noise floor*, the same metric between two independent
target sample sets of the same size (``metric(B, A, target)``). A metric may define
``setup(target) -> dict`` to fix parameters once per target (returned values are recorded in the
outputs, e.g. the MMD kernel's bandwidth) and ``formula`` (a one-line statement for the docs).

Built-in metrics (:data:`BUILTIN_METRICS`, registered by the ``bench_suite`` plugin):

* ``sw2``: sliced Wasserstein-2 (Rabin et al. 2011), ``sqrt(E_theta W_2^2(theta.x, theta.y))`` over
  ``n_projections = 128`` fixed random directions (one seed for every cell); the exact ``W_2`` of the
  sorted coupling in 1-D.
* ``mmd``: unbiased squared MMD (Gretton et al. 2012, Eq. 3) with the Gaussian kernel
  ``k(a, b) = exp(-|a - b|^2 / (2 h^2))``, ``h`` fixed per target to the median pairwise distance
  of the target's reference set, on the first ``max_samples`` rows of each set.
* ``mean_err``: ``||mean(samples) - E_p[x]||_2``; ``cov_err``: ``||Cov(samples) - Cov_p||_F``.
* ``logp_gap``: ``-mean_i log p(x_i) - H(p)``, the mean negative log-density of the samples under
  the target minus the target's entropy (cross-entropy minus entropy, nats): 0 for exact samples,
  positive when they spread between the modes, negative when they collapse onto them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..data.metrics import covariance_error, mean_error, sliced_wasserstein
from ..errors import OptionError
from .targets import PreparedTarget


class Metric:
    """Base class of the built-in metrics (a third-party metric may be any callable with this signature)."""

    #: one-line statement of what is computed (for tables and docs)
    formula: str = ""

    def setup(self, target: PreparedTarget) -> dict[str, Any]:
        """Fix parameters for ``target`` once; returns what the outputs record (default: nothing)."""
        return {}

    def __call__(self, samples: Tensor, reference: Tensor, target: PreparedTarget) -> float:  # pragma: no cover
        raise NotImplementedError


class SlicedW2(Metric):
    """Sliced Wasserstein-2 distance (Rabin et al. 2011; :func:`sdeflow.data.metrics.sliced_wasserstein`),
    exact ``W_2`` in 1-D.

    Args:
        n_projections: random unit directions (the same, from ``seed``, in every cell).
        seed: seed of the directions.
    """

    formula = "sqrt(mean over 128 fixed directions theta of W2^2(theta.x, theta.y)); exact W2 in 1-D"

    def __init__(self, n_projections: int = 128, seed: int = 0) -> None:
        if int(n_projections) < 1:
            raise OptionError(f"n_projections must be >= 1, got {n_projections!r}")
        self.n_projections, self.seed = int(n_projections), int(seed)
        self.formula = (f"sqrt(mean over {self.n_projections} fixed directions theta of W2^2(theta.x, theta.y)); "
                        "exact W2 in 1-D")

    def __call__(self, samples: Tensor, reference: Tensor, target: PreparedTarget) -> float:
        return sliced_wasserstein(samples, reference, self.n_projections, torch.Generator().manual_seed(self.seed))


class MMD(Metric):
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012, Eq. 3),
    bandwidth fixed per target:

        MMD_u^2 = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i,j} k(x_i, y_j)

    The reference set's own term is computed once per target (the estimator equals
    :func:`sdeflow.data.metrics.mmd_rbf` with the same bandwidth; tested).

    Args:
        max_samples: rows of each set used (the estimator costs ``O(m^2 d)``).
        bandwidth: ``h``; default: the median pairwise distance of the target's reference rows.
    """

    formula = "unbiased MMD^2, k(a,b) = exp(-|a-b|^2 / (2 h^2)), h = median pairwise distance of the target"

    def __init__(self, max_samples: int = 1000, bandwidth: float | None = None) -> None:
        if int(max_samples) < 2:
            raise OptionError(f"max_samples must be >= 2, got {max_samples!r}")
        self.max_samples, self.bandwidth = int(max_samples), bandwidth
        self._h: dict[str, float] = {}
        self._self_term: dict[tuple[str, int], float] = {}

    def setup(self, target: PreparedTarget) -> dict[str, Any]:
        if self.bandwidth is not None:
            h = float(self.bandwidth)
        else:
            d = torch.pdist(target.reference[: self.max_samples].double())
            h = float(torch.median(d[d > 0]))
        self._h[target.name] = h
        return {"kernel": "exp(-|a-b|^2 / (2 h^2))", "bandwidth": h,
                "samples": min(self.max_samples, target.reference.shape[0])}

    def _kernel(self, a: Tensor, b: Tensor, h: float) -> Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2.0 * h * h))

    def _within(self, a: Tensor, h: float) -> float:
        k = self._kernel(a, a, h)
        m = a.shape[0]
        return float((k.sum() - k.diagonal().sum()) / (m * (m - 1)))

    def __call__(self, samples: Tensor, reference: Tensor, target: PreparedTarget) -> float:
        if target.name not in self._h:
            self.setup(target)
        h, m = self._h[target.name], self.max_samples
        x, y = samples[:m].reshape(min(m, samples.shape[0]), -1).double(), reference[:m].reshape(
            min(m, reference.shape[0]), -1).double()
        key = (target.name, id(reference))
        if reference is target.reference:
            if key not in self._self_term:
                self._self_term[key] = self._within(y, h)
            yy = self._self_term[key]
        else:
            yy = self._within(y, h)
        return self._within(x, h) + yy - 2.0 * float(self._kernel(x, y, h).mean())


class MeanError(Metric):
    """Euclidean error of the sample mean against the target's exact mean."""

    formula = "||mean(x) - E_p[x]||_2"

    def __call__(self, samples: Tensor, reference: Tensor, target: PreparedTarget) -> float:
        if target.mean is None:
            return math.nan
        return mean_error(samples, target.mean)


class CovError(Metric):
    """Frobenius error of the sample covariance against the target's exact covariance."""

    formula = "||Cov(x) - Cov_p||_F"

    def __call__(self, samples: Tensor, reference: Tensor, target: PreparedTarget) -> float:
        if target.cov is None:
            return math.nan
        return covariance_error(samples, target.cov)


class LogDensityGap(Metric):
    """``-mean log p(samples) - H(p)`` (nats): cross-entropy of the samples under the target minus the
    target's entropy (closed form, or Monte Carlo from many target draws)."""

    formula = "-mean_i log p(x_i) - H(p)  (nats)"

    def __call__(self, samples: Tensor, reference: Tensor, target: PreparedTarget) -> float:
        lp = target.log_prob(samples.to(target.reference.dtype))
        return float(-lp.double().mean()) - target.entropy


#: name -> (factory, description): the suite's built-in metrics
BUILTIN_METRICS: dict[str, tuple[type[Metric], str]] = {
    "sw2": (SlicedW2, "sliced Wasserstein-2 (exact W2 in 1-D)"),
    "mmd": (MMD, "unbiased squared MMD, Gaussian kernel with the target's median-distance bandwidth"),
    "mean_err": (MeanError, "error of the mean, Euclidean norm"),
    "cov_err": (CovError, "error of the covariance, Frobenius norm"),
    "logp_gap": (LogDensityGap, "mean negative log-density of the samples minus the target's entropy"),
}


def metric_formula(metric: Any) -> str:
    """The metric's stated formula, or its docstring's first line."""
    f = getattr(metric, "formula", "") or ""
    if f:
        return f
    doc = (getattr(metric, "__doc__", "") or "").strip()
    return doc.splitlines()[0] if doc else type(metric).__name__
