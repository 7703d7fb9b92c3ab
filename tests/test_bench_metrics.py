"""The benchmark suite's metrics against closed forms (issue 6): W2 of Gaussians, MMD, entropy, noise floors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from scipy.stats import norm

import sdeflow
from sdeflow import GaussianMixture
from sdeflow.bench.metrics import MMD, LogDensityGap, MeanError, SlicedW2
from sdeflow.bench.targets import prepare_target, target_entropy
from sdeflow.data.datasets import gaussian_1d
from sdeflow.data.metrics import (
    gaussian_entropy,
    gaussian_mmd2_rbf,
    gaussian_w2,
    mmd_rbf,
    sliced_wasserstein,
    wasserstein_1d,
)

K_SE = 4.0  # tolerances are 4 standard errors


def quantiles(mean: float, std: float, n: int) -> torch.Tensor:
    """``n`` evenly spaced quantiles of ``N(mean, std^2)``: an empirical law within ``O(1/n)`` of it."""
    u = (np.arange(n) + 0.5) / n
    return torch.tensor(mean + std * norm.ppf(u), dtype=torch.float64)


def test_gaussian_w2_closed_form() -> None:
    # diagonal covariances commute: W2^2 = |dm|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    m1, m2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    expect = math.sqrt(1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2)
    assert gaussian_w2(m1, torch.diag(a), m2, torch.diag(b)) == pytest.approx(expect, rel=1e-12)
    # non-commuting full covariances: against scipy's matrix square root
    g = torch.Generator().manual_seed(0)
    q1, q2 = torch.randn(3, 3, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    c1, c2 = q1 @ q1.T + 0.1 * torch.eye(3), q2 @ q2.T + 0.1 * torch.eye(3)
    r2 = sqrtm(c2.numpy())
    ref = float(((m1 - m2) ** 2).sum()) + np.trace(c1.numpy() + c2.numpy() - 2 * np.real(sqrtm(r2 @ c1.numpy() @ r2)))
    assert gaussian_w2(m1, c1, m2, c2) == pytest.approx(math.sqrt(ref), rel=1e-8)
    assert gaussian_w2(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-6)


def test_exact_w2_in_1d_matches_the_closed_form() -> None:
    # quantile sets: the sorted coupling of two quantile sets is the quantile coupling, exact up to the
    # discretisation of N(0,1) by n points (O(log n / n) in the squared distance)
    n = 20_000
    x, y = quantiles(0.0, 1.0, n), quantiles(1.0, 2.0, n)
    exact = gaussian_w2(torch.tensor([0.0]), torch.tensor([[1.0]]), torch.tensor([1.0]), torch.tensor([[4.0]]))
    assert exact == pytest.approx(math.sqrt(2.0))
    assert wasserstein_1d(x, y) == pytest.approx(exact, rel=2e-3)
    # the bench metric in 1-D is that exact W2 (no projections)
    tgt = prepare_target("g", gaussian_1d(0.0, 1.0, dtype=torch.float64), 100, 0, 1000, "cpu", torch.float64)
    assert SlicedW2()(y[:, None], x[:, None], tgt) == pytest.approx(wasserstein_1d(x, y), rel=1e-12)


def test_sliced_w2_of_isotropic_gaussians() -> None:
    """For N(m1, s1^2 I) and N(m2, s2^2 I) in d dimensions, the projection on a unit theta is
    N(theta.m, s^2): SW2^2 = E_theta (theta.dm)^2 + (s1 - s2)^2 = |dm|^2 / d + (s1 - s2)^2."""
    d, n = 3, 3000
    g = torch.Generator().manual_seed(1)
    # (a) equal means: every projection has W2 = |s1 - s2| exactly, only sampling noise remains
    x = 1.0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    sw = sliced_wasserstein(x, y, 64, torch.Generator().manual_seed(0))
    # the quantile coupling of n draws: the error of each empirical quantile function is O(1/sqrt(n)) in L2
    assert sw == pytest.approx(1.0, abs=K_SE * math.sqrt(5.0 / n))
    # (b) shifted means, equal spread: SW2^2 = |dm|^2 / d; with P projections the average of
    # (theta.dm)^2 / |dm|^2 ~ Beta(1/2, (d-1)/2) (mean 1/d, variance 2(d-1)/(d^2 (d+2))) has standard error
    # sqrt(2(d-1)/(d^2(d+2)) / P)
    dm = torch.tensor([1.5, 0.0, 0.0], dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = dm + torch.randn(n, d, generator=g, dtype=torch.float64)
    p = 512
    sw2sq = sliced_wasserstein(x, y, p, torch.Generator().manual_seed(0)) ** 2
    expect = float(dm @ dm) / d
    se = float(dm @ dm) * math.sqrt(2 * (d - 1) / (d * d * (d + 2)) / p) + 4.0 / math.sqrt(n)
    assert sw2sq == pytest.approx(expect, abs=K_SE * se)


def test_mmd_of_identical_sets_is_near_zero() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1000, 2, generator=g, dtype=torch.float64)
    m = x.shape[0]
    # the same set twice: MMD_u^2 = 2 (S_off / (m^2 (m - 1)) - 1/m), in [-2/m, 0]
    v = mmd_rbf(x, x, bandwidth=1.0)
    assert -2.0 / m <= v <= 0.0
    # two independent sets of one law: under H0 the U-statistic's kernel h lies in [-2, 2], so its
    # variance is at most 2 * 4 / (m (m - 1)): |MMD_u^2| < 4 * sqrt(8) / m
    y = torch.randn(m, 2, generator=g, dtype=torch.float64)
    assert abs(mmd_rbf(x, y, bandwidth=1.0)) < K_SE * math.sqrt(8.0) / m


def test_mmd_of_shifted_gaussians_matches_the_closed_form() -> None:
    """MMD^2 of N(0, I) and N(dm, I) with k = exp(-|a-b|^2 / (2 h^2)) in closed form
    (:func:`sdeflow.data.metrics.gaussian_mmd2_rbf`), against the mean of R independent estimates; the
    tolerance is K_SE standard errors of that mean, estimated from the R estimates themselves."""
    h, dm, m, reps = 1.5, torch.tensor([1.0, 0.0], dtype=torch.float64), 1000, 8
    truth = gaussian_mmd2_rbf(torch.zeros(2), dm, 1.0, h)
    assert truth == pytest.approx(2 * (h * h / (h * h + 2)) * (1 - math.exp(-1 / (2 * (h * h + 2)))))
    g = torch.Generator().manual_seed(3)
    tgt = prepare_target("z", GaussianMixture([1.0], [[0.0, 0.0]], 1.0, dtype=torch.float64), m, 0, 1000, "cpu",
                         torch.float64)
    metric = MMD(max_samples=m, bandwidth=h)
    metric.setup(tgt)
    est = []
    for _ in range(reps):
        x = torch.randn(m, 2, generator=g, dtype=torch.float64) + dm
        y = torch.randn(m, 2, generator=g, dtype=torch.float64)
        est.append(mmd_rbf(x, y, bandwidth=h))
    est = np.array(est)
    assert abs(est.mean() - truth) < K_SE * est.std(ddof=1) / math.sqrt(reps)
    # the bench metric (reference term cached per target) is the same estimator
    x = torch.randn(m, 2, generator=g, dtype=torch.float64) + dm
    assert metric(x, tgt.reference, tgt) == pytest.approx(mmd_rbf(x, tgt.reference, bandwidth=h), rel=1e-9, abs=1e-12)
    assert metric(x, tgt.reference, tgt) == pytest.approx(mmd_rbf(x, tgt.reference, bandwidth=h), rel=1e-9, abs=1e-12)


def test_known_entropies() -> None:
    # one Gaussian: closed form 1/2 log det(2 pi e Sigma)
    h, se, _ = target_entropy(gaussian_1d(dtype=torch.float64), 1000, 0, torch.device("cpu"))
    assert se == 0.0 and h == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 4.0), rel=1e-12)
    cov = torch.tensor([[2.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    assert gaussian_entropy(cov) == pytest.approx(0.5 * math.log((2 * math.pi * math.e) ** 2 * float(torch.det(cov))))
    # a mixture of well-separated components (overlap ~ e^-200): H = H(w) + sum_k w_k H_k, estimated by
    # Monte Carlo within K_SE of its own standard error
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    gmm = GaussianMixture(w, [[-20.0], [20.0]], [1.0, 4.0], dtype=torch.float64)
    exact = float(-(w * w.log()).sum()) + 0.3 * 0.5 * math.log(2 * math.pi * math.e) + 0.7 * 0.5 * math.log(
        2 * math.pi * math.e * 4.0)
    h, se, _ = target_entropy(gmm, 200_000, 1, torch.device("cpu"))
    assert se > 0 and abs(h - exact) < K_SE * se


def test_noise_floors_are_at_the_sampling_scale() -> None:
    """Floors are metric(B, A) for two independent target sets of size n: the log-density gap of B is
    -mean log p(B) - H with standard error sqrt(sd(log p)^2 / n + se_H^2); the mean error's square has
    expectation tr(Cov) / n."""
    n = 4000
    tgt = prepare_target("nine", sdeflow.data.datasets.nine_gaussians(dtype=torch.float64), n, 5, 200_000, "cpu",
                         torch.float64)
    gap = LogDensityGap()(tgt.reference_b, tgt.reference, tgt)
    assert abs(gap) < K_SE * math.sqrt(tgt.log_prob_sd ** 2 / n + tgt.entropy_se ** 2)
    # E ||mean_B - m||^2 = tr(C)/n; for these 2-D sets the squared error is a weighted chi^2 with 2 degrees
    # of freedom, so the error itself lies within a factor 20 below (P = 0.0025) and 3 above (P < 0.01)
    err = MeanError()(tgt.reference_b, tgt.reference, tgt)
    scale = math.sqrt(float(torch.trace(tgt.cov)) / n)
    assert scale / 20 < err < 3 * scale
