"""Gaussian-mixture targets the checks use, and an independent reference for their marginals."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from ..data import GaussianMixture
from .common import F64


def mixture_1d() -> GaussianMixture:
    """Two 1-D components: ``0.3 N(-1, 0.2) + 0.7 N(2, 0.5)`` (float64)."""
    return GaussianMixture([0.3, 0.7], [[-1.0], [2.0]], [[[0.2]], [[0.5]]], dtype=F64)


def mixture_2d() -> GaussianMixture:
    """Two 2-D components, one with a rotated (full) covariance (float64)."""
    c = math.cos(0.6), math.sin(0.6)
    rot = torch.tensor([[c[0], -c[1]], [c[1], c[0]]], dtype=F64)
    cov1 = rot @ torch.diag(torch.tensor([0.4, 0.05], dtype=F64)) @ rot.T
    cov0 = torch.diag(torch.tensor([0.3, 0.2], dtype=F64))
    return GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.5, -0.5]], torch.stack([cov0, cov1]), dtype=F64)


def mixture_5d_full() -> GaussianMixture:
    """Three 5-D components with random full covariances (eigenvalues in [0.1, 1.1]; float64)."""
    g = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(3, 5, 5, generator=g, dtype=F64))
    lam = 0.1 + torch.rand(3, 5, generator=g, dtype=F64)
    covs = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    means = 1.5 * torch.randn(3, 5, generator=g, dtype=F64)
    return GaussianMixture([0.2, 0.5, 0.3], means, covs, dtype=F64)


#: the mixtures of the exact-score check, by name
MIXTURES = {"1d": mixture_1d, "2d": mixture_2d, "5d_full": mixture_5d_full}


def reference_marginal(gmm: GaussianMixture, a: float, s: float) -> MixtureSameFamily:
    """``p_t = sum_k w_k N(a mu_k, a^2 Sigma_k + s^2 I)`` built from ``torch.distributions`` alone,
    independently of :class:`sdeflow.GaussianMixture`'s closed forms (Song et al. 2021, Eq. 7)."""
    eye = torch.eye(gmm.dim, dtype=F64)
    comps = MultivariateNormal(a * gmm.means, covariance_matrix=a * a * gmm.covs + s * s * eye)
    return MixtureSameFamily(Categorical(probs=gmm.weights), comps)


def marginal_moments(gmm: GaussianMixture, a: float, s: float) -> tuple[Tensor, Tensor]:
    """Mean ``a m`` and covariance ``a^2 C + s^2 I`` of ``a x_0 + s eps`` for ``x_0 ~ gmm``."""
    return a * gmm.mean(), a * a * gmm.covariance() + s * s * torch.eye(gmm.dim, dtype=F64)


def reference_posterior_mean(gmm: GaussianMixture, x: Tensor, a: float, s: float) -> Tensor:
    """``E[x_0 | x_t = x]`` for ``x_t = a x_0 + s eps``, ``x_0 ~ gmm``, from ``torch.distributions`` and
    dense linear algebra alone: ``sum_k r_k(x) (mu_k + a Sigma_k C_k^{-1} (x - a mu_k))`` with
    ``C_k = a^2 Sigma_k + s^2 I`` and the responsibilities ``r_k`` of ``x`` under ``p_t`` (the Gaussian
    conditional of each component, Bishop 2006, Eq. 2.116, weighted by Bayes' rule).

    Args:
        gmm: the data distribution (float64).
        x: points, shape ``(n, d)``.
        a: ``alpha_t`` at one time.
        s: ``sigma_t`` at the same time.

    Returns:
        ``(n, d)``.
    """
    eye = torch.eye(gmm.dim, dtype=F64)
    cov_t = a * a * gmm.covs + s * s * eye  # (K, d, d)
    comps = MultivariateNormal(a * gmm.means, covariance_matrix=cov_t)
    logits = torch.log(gmm.weights)[None] + comps.log_prob(x[:, None, :])  # (n, K)
    resp = torch.softmax(logits, dim=1)
    resid = x[:, None, :] - a * gmm.means[None]  # (n, K, d)
    solved = torch.linalg.solve(cov_t[None], resid.unsqueeze(-1)).squeeze(-1)  # C_k^{-1} (x - a mu_k)
    cond = gmm.means[None] + a * torch.einsum("kde,nke->nkd", gmm.covs, solved)
    return (resp[:, :, None] * cond).sum(1)
