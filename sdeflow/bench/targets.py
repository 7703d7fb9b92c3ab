"""Benchmark targets: distributions with a known density and an exact score under every process.

A target is what a ``target`` component's factory returns (hook ``sdeflow_register_targets``):
any object with

* ``dim`` (int), ``sample(n, generator) -> (n, dim)``, ``log_prob(x) -> (n,)`` (nats),
* ``score_model(process) -> sdeflow.ScoreModel``: the EXACT score of ``p_t`` under ``process``
  (whose ``prior_sample`` draws the exact ``p_{t_max}``, so a sampler's error is its own),
* optionally ``mean() -> (dim,)``, ``covariance() -> (dim, dim)``, ``entropy() -> float`` (closed
  forms; without ``entropy`` the suite estimates ``H = -E log p`` by Monte Carlo) and
  ``to(device=..., dtype=...)``.

:class:`sdeflow.GaussianMixture` qualifies (its ``p_t`` under any Gaussian-marginal process is a
mixture again: ``sum_k w_k N(alpha_t mu_k, alpha_t^2 Sigma_k + sigma_t^2 I)``). The built-in
targets (registered by the ``bench_suite`` plugin) are :data:`BUILTIN_TARGETS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..data import GaussianMixture
from ..data.datasets import anisotropic_mixture, gaussian_1d, nine_gaussians
from ..data.metrics import gaussian_entropy
from ..errors import OptionError

#: name -> (factory, one-line description): the suite's built-in targets
BUILTIN_TARGETS: dict[str, tuple[Callable[[], Any], str]] = {
    "gauss1d": (lambda: gaussian_1d(dtype=torch.float64), "1-D N(5, 2^2)"),
    "nine_gaussians": (lambda: nine_gaussians(dtype=torch.float64),
                       "2-D nine Gaussians: means {-2,0,2}^2, covariance I/16, seeded weights"),
    "aniso16": (lambda: anisotropic_mixture(16, dtype=torch.float64),
                "16-D mixture of 4 rotated anisotropic Gaussians, eigenvalues 0.05..1"),
    "aniso64": (lambda: anisotropic_mixture(64, dtype=torch.float64),
                "64-D mixture of 4 rotated anisotropic Gaussians, eigenvalues 0.05..1"),
}

class ConditionedTarget:
    """One class of a Gaussian mixture as a benchmark target: the truth is the component
    ``mixture.condition(component=k)``; the score model is the exact mixture's conditioned view
    ``mixture.score_model(process).given(k)``, the path every class-conditional sampler run takes
    (the view's score is exactly the component's, its prior the component at ``t_max``).

    Args:
        mixture: the mixture.
        component: the class (component index).
    """

    def __init__(self, mixture: GaussianMixture, component: int) -> None:
        self.mixture, self.component = mixture, int(component)
        self.truth = mixture.condition(component=self.component)

    @property
    def dim(self) -> int:
        """Data dimension."""
        return self.truth.dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact draws of the class."""
        return self.truth.sample(n, generator)

    def log_prob(self, x: Tensor) -> Tensor:
        """The class's log-density."""
        return self.truth.log_prob(x)

    def mean(self) -> Tensor:
        """The class's mean."""
        return self.truth.mean()

    def covariance(self) -> Tensor:
        """The class's covariance."""
        return self.truth.covariance()

    def entropy(self) -> float:
        """The class's entropy (a Gaussian's, closed form)."""
        return gaussian_entropy(self.truth.covs[0])

    def score_model(self, process: Any) -> Any:
        """The exact mixture score conditioned on the class: ``mixture.score_model(process).given(k)``."""
        return self.mixture.score_model(process).given(self.component)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ConditionedTarget":
        """A copy on ``device`` in ``dtype``."""
        return ConditionedTarget(self.mixture.to(device=device, dtype=dtype), self.component)


BUILTIN_TARGETS["nine_gaussians_class4"] = (
    lambda: ConditionedTarget(nine_gaussians(dtype=torch.float64), 4),
    "the nine Gaussians' centre component N((0, 0), I/16), through the exact conditioned view given(4)")

_REQUIRED = ("dim", "sample", "log_prob", "score_model")


@dataclass
class PreparedTarget:
    """A target with everything the metrics need, computed once per run.

    Attributes:
        name: registered name.
        dist: the target object.
        dim: data dimension.
        reference: ``n`` target samples (set A): what samples are compared with.
        reference_b: ``n`` more, independent (set B): ``metric(B, A)`` is the noise floor.
        mean, cov: exact mean ``(d,)`` and covariance ``(d, d)`` (``None`` when unknown).
        entropy: ``H(p) = -E_p log p`` in nats; ``entropy_se`` its Monte-Carlo standard error
            (0 for a closed form).
        log_prob_sd: standard deviation of ``log p`` under ``p`` (for the log-density gap's noise).
        description: one line.
        extras: metric parameters fixed for this target (e.g. the MMD bandwidth), by metric name.
    """

    name: str
    dist: Any
    dim: int
    reference: Tensor
    reference_b: Tensor
    mean: Tensor | None
    cov: Tensor | None
    entropy: float
    entropy_se: float
    log_prob_sd: float
    description: str = ""
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` of the target, in chunks (bounded memory)."""
        return chunked_log_prob(self.dist, x)


def check_target(name: str, obj: Any) -> None:
    """Raise :class:`OptionError` unless ``obj`` has the target interface (module docstring)."""
    missing = [a for a in _REQUIRED if not hasattr(obj, a)]
    if missing:
        raise OptionError(f"target {name!r} returned {type(obj).__name__}, which lacks {', '.join(missing)}; a "
                          f"benchmark target needs {', '.join(_REQUIRED)} (e.g. a sdeflow.GaussianMixture)")


def chunked_log_prob(dist: Any, x: Tensor, chunk: int = 50_000) -> Tensor:
    """``dist.log_prob`` over ``x`` in chunks of ``chunk`` rows."""
    flat = x.reshape(x.shape[0], -1)
    return torch.cat([dist.log_prob(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)])


def _sample(dist: Any, n: int, seed: int, device: torch.device) -> Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return dist.sample(n, gen)


def target_entropy(dist: Any, n_mc: int, seed: int, device: torch.device) -> tuple[float, float, float]:
    """``(H, standard error, sd of log p)``: closed form where the target offers ``entropy()`` or is a
    single Gaussian (``H = 1/2 log det(2 pi e Sigma)``), else Monte Carlo ``-mean log p(x_i)`` over
    ``n_mc`` draws (standard error ``sd(log p) / sqrt(n_mc)``)."""
    lp = chunked_log_prob(dist, _sample(dist, n_mc, seed, device))
    sd = float(lp.double().std())
    if hasattr(dist, "entropy") and callable(dist.entropy):
        return float(dist.entropy()), 0.0, sd
    if isinstance(dist, GaussianMixture) and dist.n_components == 1:
        return gaussian_entropy(dist.covs[0]), 0.0, sd
    return float(-lp.double().mean()), sd / math.sqrt(n_mc), sd


def _truth(dist: Any, attr: str) -> Tensor | None:
    v = getattr(dist, attr, None)
    v = v() if callable(v) else v
    return v if isinstance(v, Tensor) else None


def prepare_target(name: str, dist: Any, n: int, seed: int, entropy_samples: int, device: torch.device | str,
                   dtype: torch.dtype, description: str = "") -> PreparedTarget:
    """Move ``dist`` to ``device``/``dtype``, draw the two reference sets and the truth.

    Args:
        name: target name.
        dist: the target object (module docstring).
        n: size of each reference set (= samples per sampler run).
        seed: reference set A uses ``seed``, B ``seed + 1``, the entropy estimate ``seed + 2``.
        entropy_samples: Monte-Carlo draws for ``H`` when there is no closed form.
        device, dtype: where the run happens.
        description: one line for the outputs.
    """
    check_target(name, dist)
    device = torch.device(device)
    if hasattr(dist, "to"):
        dist = dist.to(device=device, dtype=dtype)
    ref_a = _sample(dist, n, seed, device).reshape(n, -1)
    ref_b = _sample(dist, n, seed + 1, device).reshape(n, -1)
    mean, cov = _truth(dist, "mean"), _truth(dist, "covariance")
    mean = mean.reshape(-1) if mean is not None else None
    h, h_se, sd = target_entropy(dist, entropy_samples, seed + 2, device)
    return PreparedTarget(name, dist, int(dist.dim), ref_a, ref_b, mean, cov, h, h_se, sd, description)
