"""Toy data sets made by code (nothing is downloaded).

The analytic ones are :class:`sdeflow.GaussianMixture` objects, so their exact scores under
any process are available for tests and solver benchmarks.
"""

from __future__ import annotations

import itertools
import math

import torch

from .gaussian_mixture import GaussianMixture


def gaussian_1d(mean: float = 5.0, std: float = 2.0, dtype: torch.dtype | None = None) -> GaussianMixture:
    """``N(mean, std^2)`` in one dimension (default ``N(5, 2^2)``: the 1-D case whose score under VE and VP
    is closed-form, ``p_t = N(5 alpha_t, 4 alpha_t^2 + sigma_t^2)``, used to check the reverse SDE)."""
    return GaussianMixture([1.0], [[float(mean)]], [[[float(std) ** 2]]], dtype=dtype)


def nine_gaussians(seed: int = 23, dtype: torch.dtype | None = None) -> GaussianMixture:
    """The "nine Gaussians" 2-D mixture, a grid of well-separated modes for checking mode coverage.

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


# ---------------------------------------------------------------------------------------------
# Sample-based 2-D toy sets (no closed-form score): point clouds for training demos.
# Each is centred and scaled by ONE factor (the shape is kept) so that the average per-axis
# variance, trace(Cov) / 2, is exactly 1 in expectation; the moments used are analytic.


def _check_n(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _check_noise(noise: float) -> float:
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    return float(noise)


def _finish(x: torch.Tensor, mean: tuple[float, float], var: tuple[float, float],
            dtype: torch.dtype | None) -> torch.Tensor:
    """Centre by the analytic ``mean`` and divide by ``sqrt((var_x + var_y) / 2)``."""
    scale = math.sqrt(0.5 * (var[0] + var[1]))
    out = (x - torch.tensor(mean, dtype=torch.float64)) / scale
    return out.to(dtype or torch.get_default_dtype())


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.1,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """Two interleaving half circles (the scikit-learn "moons"), shape ``(n, 2)``.

    Each point picks a moon with probability 1/2 and ``theta ~ U[0, pi]``: the upper moon is
    ``(cos theta, sin theta)``, the lower ``(1 - cos theta, 1/2 - sin theta)``; then
    ``N(0, noise^2 I)`` is added (``noise`` in these raw units). With ``E cos = 0``,
    ``E sin = 2/pi`` and ``E cos^2 = E sin^2 = 1/2`` the raw mean is ``(1/2, 1/4)`` and the raw
    variances are ``3/4 + noise^2`` and ``9/16 - 1/pi + noise^2``; the output is centred and
    scaled by one factor so that ``trace(Cov) / 2 = 1`` (per axis about 1.49 and 0.51).

    Args:
        n: number of points.
        generator: random source (same seed, same points).
        noise: standard deviation of the added Gaussian noise, raw units.
        dtype: output dtype (default: the torch default dtype).
    """
    n, noise = _check_n(n), _check_noise(noise)
    lower = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    theta = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    c, s = torch.cos(theta), torch.sin(theta)
    x = torch.where(lower, 1.0 - c, c)
    y = torch.where(lower, 0.5 - s, s)
    pts = torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return _finish(pts, (0.5, 0.25), (0.75 + noise**2, 9.0 / 16.0 - 1.0 / math.pi + noise**2), dtype)


def _swiss_roll_moments(t0: float, t1: float, m: int = 20001) -> tuple[tuple[float, float], tuple[float, float]]:
    """Mean and variance of ``(t cos t, t sin t)`` for ``t ~ U[t0, t1]`` (composite Simpson's rule, float64;
    the error is far below any Monte-Carlo resolution)."""
    t = torch.linspace(t0, t1, m, dtype=torch.float64)
    w = torch.ones(m, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w = w / w.sum()
    x, y = t * torch.cos(t), t * torch.sin(t)
    mx, my = float((w * x).sum()), float((w * y).sum())
    return (mx, my), (float((w * x * x).sum()) - mx * mx, float((w * y * y).sum()) - my * my)


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.5,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """The 2-D swiss roll (the spiral of scikit-learn's ``make_swiss_roll`` seen from above), shape ``(n, 2)``.

    ``t = 3 pi / 2 (1 + 2 u)``, ``u ~ U[0, 1]``, point ``(t cos t, t sin t) + N(0, noise^2 I)``
    (``noise`` in these raw units, where the roll spans about ``[-10, 13]``). The output is
    centred by the analytic mean and scaled so that ``trace(Cov) / 2 = 1``.

    Args:
        n: number of points.
        generator: random source (same seed, same points).
        noise: standard deviation of the added Gaussian noise, raw units.
        dtype: output dtype (default: the torch default dtype).
    """
    n, noise = _check_n(n), _check_noise(noise)
    t0, t1 = 1.5 * math.pi, 4.5 * math.pi
    t = t0 + (t1 - t0) * torch.rand(n, generator=generator, dtype=torch.float64)
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1)
    pts = pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    mean, var = _swiss_roll_moments(t0, t1)
    return _finish(pts, mean, (var[0] + noise**2, var[1] + noise**2), dtype)


def checkerboard(n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform points on the 8 dark squares of a 4 x 4 checkerboard, shape ``(n, 2)``.

    The board is ``[-2, 2]^2`` with unit cells; cell ``(i, j)`` (``i, j = 0..3`` from the
    lower left) is filled when ``i + j`` is even. A point picks a filled cell uniformly and a
    uniform position in it. Each coordinate is then marginally ``U[-2, 2]`` (mean 0, variance
    ``4/3``); the output is divided by ``sqrt(4/3)``, so each axis has unit variance (the
    coordinates are correlated: ``Cov_xy = 3/16`` after scaling, from the diagonal cells).

    Args:
        n: number of points.
        generator: random source (same seed, same points).
        dtype: output dtype (default: the torch default dtype).
    """
    n = _check_n(n)
    cell = torch.randint(0, 8, (n,), generator=generator)
    i = cell // 2  # row 0..3
    j = 2 * (cell % 2) + (i % 2)  # the two filled columns of row i: i + j even
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    pts = torch.stack([j.to(torch.float64), i.to(torch.float64)], 1) + u - 2.0
    return _finish(pts, (0.0, 0.0), (4.0 / 3.0, 4.0 / 3.0), dtype)
