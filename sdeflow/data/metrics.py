"""Sample-quality metrics against a known target.

All take samples ``(n, d)`` (or ``(n, *dims)``, flattened) and return Python floats or tensors
on the samples' device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .gaussian_mixture import GaussianMixture


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def log_density_gap(target: GaussianMixture, samples: Tensor, reference: Tensor) -> float:
    """``E_ref[log p] - E_samples[log p]`` under the target density ``p`` (nats).

    With ``reference`` drawn from the target, ``E_ref[log p]`` estimates ``-H(p)``; a sampler
    that misses mass in the modes' centres (too much spread) or collapses onto them shows a
    positive or negative gap. Its noise floor is the standard error of the two means.
    """
    lp_s = target.log_prob(_flat(samples).to(target.dtype))
    lp_r = target.log_prob(_flat(reference).to(target.dtype))
    return float(lp_r.mean() - lp_s.mean())


def log_density_gap_stderr(target: GaussianMixture, samples: Tensor, reference: Tensor) -> float:
    """Standard error of :func:`log_density_gap` (independent sets: ``sqrt(var_s/n_s + var_r/n_r)``)."""
    lp_s = target.log_prob(_flat(samples).to(target.dtype))
    lp_r = target.log_prob(_flat(reference).to(target.dtype))
    return float(torch.sqrt(lp_s.var() / lp_s.numel() + lp_r.var() / lp_r.numel()))


def wasserstein_1d(x: Tensor, y: Tensor) -> float:
    """Exact ``W_2`` between two 1-D empirical distributions of equal size (sorted coupling)."""
    xs = torch.sort(x.reshape(-1))[0]
    ys = torch.sort(y.reshape(-1))[0]
    if xs.numel() != ys.numel():
        raise ValueError(f"wasserstein_1d needs equal sample sizes, got {xs.numel()} and {ys.numel()}")
    return float(torch.sqrt(((xs - ys) ** 2).mean()))


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-2 distance: ``sqrt(E_theta W_2^2(theta^T x, theta^T y))`` over random unit
    directions ``theta`` (Rabin et al. 2011); exact ``W_2`` in 1-D."""
    xf, yf = _flat(x).double(), _flat(y).double()
    d = xf.shape[1]
    if d == 1:
        return wasserstein_1d(xf, yf)
    n = min(xf.shape[0], yf.shape[0])
    xf, yf = xf[:n], yf[:n]
    theta = torch.randn(d, n_projections, generator=generator, dtype=torch.float64).to(xf.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px = torch.sort(xf @ theta, dim=0)[0]
    py = torch.sort(yf @ theta, dim=0)[0]
    return float(torch.sqrt(((px - py) ** 2).mean()))


def mode_coverage(target: GaussianMixture, samples: Tensor, n_std: float = 3.0) -> tuple[float, Tensor]:
    """Fraction of samples within ``n_std`` standard deviations (Mahalanobis) of their nearest
    component mean, and the count of samples assigned to each component.

    Returns:
        ``(fraction_near_a_mode, counts)`` with ``counts`` of shape ``(K,)``.
    """
    x = _flat(samples).to(target.dtype)
    diff = x[:, None, :] - target.means[None]
    y = diff if target.diagonal else torch.einsum("nkd,kde->nke", diff, target.eigvecs)
    maha = torch.sqrt((y * y / target.eigvals[None]).sum(-1))  # (n, K)
    best, idx = maha.min(dim=1)
    near = best <= n_std
    counts = torch.bincount(idx[near], minlength=target.n_components)
    return float(near.float().mean()), counts


def mmd_rbf(x: Tensor, y: Tensor, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with a Gaussian kernel ``exp(-|a-b|^2 / (2 h^2))`` (Gretton et al. 2012, Eq. 3);
    ``h`` defaults to the median pairwise distance of the pooled samples."""
    xf, yf = _flat(x).double(), _flat(y).double()
    z = torch.cat([xf, yf])
    d2 = torch.cdist(z, z).pow(2)
    if bandwidth is None:
        bandwidth = float(torch.sqrt(torch.median(d2[d2 > 0]) / 2.0))
    k = torch.exp(-d2 / (2.0 * bandwidth**2))
    n, m = xf.shape[0], yf.shape[0]
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    term = (kxx.sum() - kxx.diag().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
    return float(term - 2.0 * kxy.mean())


def gaussian_entropy(cov: Tensor) -> float:
    """Differential entropy ``1/2 log det(2 pi e Sigma)`` of a Gaussian (nats)."""
    d = cov.shape[0]
    return 0.5 * (d * math.log(2 * math.pi * math.e) + float(torch.logdet(cov.double())))


def mean_error(samples: Tensor, mean: Tensor) -> float:
    """Euclidean error of the sample mean, ``||mean(samples) - m||_2``."""
    x = _flat(samples).double()
    return float(torch.linalg.vector_norm(x.mean(0) - mean.reshape(-1).to(x)))


def covariance_error(samples: Tensor, cov: Tensor) -> float:
    """Frobenius error of the sample covariance (``n - 1`` normalisation), ``||Cov(samples) - C||_F``."""
    x = _flat(samples).double()
    c = torch.atleast_2d(torch.cov(x.T))
    return float(torch.linalg.matrix_norm(c - cov.to(c).reshape(c.shape)))


def _sqrtm_psd(a: Tensor) -> Tensor:
    lam, u = torch.linalg.eigh(0.5 * (a + a.T))
    return (u * lam.clamp_min(0).sqrt()) @ u.T


def gaussian_w2(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """Closed-form ``W_2`` between ``N(m1, C1)`` and ``N(m2, C2)`` (Dowson & Landau 1982; Givens &
    Shortt 1984): ``W_2^2 = |m1 - m2|^2 + tr(C1 + C2 - 2 (C2^{1/2} C1 C2^{1/2})^{1/2})``."""
    m1, m2 = mean1.double().reshape(-1), mean2.double().reshape(-1)
    c1, c2 = torch.atleast_2d(cov1.double()), torch.atleast_2d(cov2.double())
    r2 = _sqrtm_psd(c2)
    cross = _sqrtm_psd(r2 @ c1 @ r2)
    w2sq = float(((m1 - m2) ** 2).sum() + torch.trace(c1 + c2 - 2.0 * cross))
    return math.sqrt(max(w2sq, 0.0))


def gaussian_mmd2_rbf(mean1: Tensor, mean2: Tensor, var: float, bandwidth: float) -> float:
    """Closed-form squared MMD between ``N(m1, v I)`` and ``N(m2, v I)`` in ``d`` dimensions for the
    kernel ``k(a, b) = exp(-|a - b|^2 / (2 h^2))`` of :func:`mmd_rbf`.

    With ``X - X' ~ N(0, 2 v I)`` and ``X - Y ~ N(m1 - m2, 2 v I)``, the Gaussian integral
    ``E exp(-|Z|^2 / (2 h^2)) = (h^2 / (h^2 + 2v))^{d/2} exp(-|mu_Z|^2 / (2 (h^2 + 2v)))`` gives
    ``MMD^2 = E k(X,X') + E k(Y,Y') - 2 E k(X,Y)
    = 2 (h^2 / (h^2 + 2v))^{d/2} (1 - exp(-|m1 - m2|^2 / (2 (h^2 + 2v))))`` (Gretton et al. 2012, Eq. 2).
    """
    m1, m2 = mean1.double().reshape(-1), mean2.double().reshape(-1)
    d = m1.numel()
    h2 = float(bandwidth) ** 2
    c = (h2 / (h2 + 2.0 * float(var))) ** (d / 2.0)
    return 2.0 * c * (1.0 - math.exp(-float(((m1 - m2) ** 2).sum()) / (2.0 * (h2 + 2.0 * float(var)))))
