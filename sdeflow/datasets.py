"""Toy data sets made by code (nothing is downloaded).

The analytic ones are :class:`sdeflow.GaussianMixture` objects, so their exact scores under
any process are available for tests and solver benchmarks.
"""

from __future__ import annotations

import itertools

import torch

from .targets import GaussianMixture


def gaussian_1d(mean: float = 5.0, std: float = 2.0, dtype: torch.dtype | None = None) -> GaussianMixture:
    """``N(mean, std^2)`` in one dimension; the default ``N(5, 2^2)`` is reference texts 000/001's."""
    return GaussianMixture([1.0], [[float(mean)]], [[[float(std) ** 2]]], dtype=dtype)


def nine_gaussians(seed: int = 23, dtype: torch.dtype | None = None) -> GaussianMixture:
    """The "nine Gaussians" 2-D mixture of reference text 004.

    Means on the grid ``{-2, 0, 2}^2``, covariances ``I / 16``, and mixture weights drawn
    uniformly at random (seeded) and normalised.
    """
    grid = [-2.0, 0.0, 2.0]
    means = torch.tensor(list(itertools.product(grid, grid)), dtype=torch.float64)
    weights = torch.rand(9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return GaussianMixture(weights / weights.sum(), means, torch.full((9,), 1.0 / 16.0, dtype=torch.float64),
                           dtype=dtype)


def anisotropic_mixture(dim: int, n_components: int = 4, seed: int = 0, scale: float = 2.0,
                        dtype: torch.dtype | None = None) -> GaussianMixture:
    """A ``dim``-dimensional mixture with random means and random full (anisotropic) covariances.

    Covariances are ``Q diag(lambda) Q^T`` with random rotations ``Q`` and eigenvalues spread
    log-uniformly over ``[0.05, 1]``; means are ``N(0, scale^2 I)``; weights are random.
    """
    g = torch.Generator().manual_seed(seed)
    means = scale * torch.randn(n_components, dim, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(n_components, dim, dim, generator=g, dtype=torch.float64))
    lam = torch.exp(torch.empty(n_components, dim, dtype=torch.float64).uniform_(
        float(torch.log(torch.tensor(0.05))), 0.0, generator=g))
    covs = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    w = 0.5 + torch.rand(n_components, generator=g, dtype=torch.float64)
    return GaussianMixture(w / w.sum(), means, covs, dtype=dtype)
