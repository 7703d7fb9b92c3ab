"""``sdeflow.GaussianMixture``: the analytic target behind every exact-score test and benchmark.

``p(x) = sum_k w_k N(x; mu_k, Sigma_k)``; its diffused version under ``a x + s eps`` is
``sum_k w_k N(a mu_k, a^2 Sigma_k + s^2 I)`` (DESIGN.md, "Exact scores"). Checked against
torch.distributions and autograd, with sampling tolerances of a few standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

import sdeflow
from sdeflow.errors import OptionError, ShapeError

F64 = torch.float64
K_SE = 4.0


def random_spd(k: int, d: int, seed: int) -> Tensor:
    """``k`` random ``d x d`` covariances with eigenvalues in ``[0.1, 1.1]``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(k, d, d, generator=g, dtype=F64))
    c = q @ torch.diag_embed(0.1 + torch.rand(k, d, generator=g, dtype=F64)) @ q.transpose(-1, -2)
    return 0.5 * (c + c.transpose(-1, -2))


def full_mixture(d: int = 3, seed: int = 0) -> sdeflow.GaussianMixture:
    g = torch.Generator().manual_seed(seed + 100)
    means = 2.0 * torch.randn(3, d, generator=g, dtype=F64)
    return sdeflow.GaussianMixture([1.0, 2.0, 1.5], means, random_spd(3, d, seed), dtype=F64)


def diag_mixture(d: int = 3) -> sdeflow.GaussianMixture:
    means = torch.tensor([[-2.0] * d, [0.5] * d, [2.0] * d], dtype=F64)
    diag = torch.linspace(0.2, 1.0, 3 * d, dtype=F64).reshape(3, d)
    return sdeflow.GaussianMixture([0.2, 0.5, 0.3], means, diag, dtype=F64)


def reference(gmm: sdeflow.GaussianMixture, a: float = 1.0, s: float = 0.0) -> MixtureSameFamily:
    """torch.distributions version of the mixture of ``a x + s eps``."""
    eye = torch.eye(gmm.dim, dtype=gmm.dtype)
    comp = MultivariateNormal(a * gmm.means, covariance_matrix=a * a * gmm.covs + s * s * eye)
    return MixtureSameFamily(Categorical(probs=gmm.weights), comp)


def autograd_score(fn, x: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


@pytest.mark.parametrize("make", [full_mixture, diag_mixture], ids=["full", "diag"])
def test_sample_moments(make) -> None:  # type: ignore[no-untyped-def]
    """Sample mean and covariance within ``K_SE`` standard errors (estimated from the sample)."""
    gmm = make()
    n = 40_000
    x = gmm.sample(n, torch.Generator().manual_seed(0))
    assert x.shape == (n, gmm.dim) and x.dtype == F64
    m = x.mean(0)
    d = x - m
    prods = d[:, :, None] * d[:, None, :]
    torch.testing.assert_close(m, gmm.mean(), rtol=0, atol=float(K_SE * x.std(0).max() / math.sqrt(n)))
    err = (prods.sum(0) / (n - 1) - gmm.covariance()).abs()
    assert torch.all(err <= K_SE * prods.std(0) / math.sqrt(n)), err
    # mean()/covariance() themselves: against the law of total expectation/variance
    w, mu, covs = gmm.weights, gmm.means, gmm.covs
    torch.testing.assert_close(gmm.mean(), (w[:, None] * mu).sum(0))
    dm = mu - gmm.mean()
    torch.testing.assert_close(gmm.covariance(), (w[:, None, None] * (covs + dm[:, :, None] * dm[:, None, :])).sum(0))


def test_sampling_reproducible_and_component_frequencies() -> None:
    gmm = diag_mixture(2)
    a = gmm.sample(5000, torch.Generator().manual_seed(4))
    b = gmm.sample(5000, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, gmm.sample(5000, torch.Generator().manual_seed(5)))
    # the means are far apart: nearest mean identifies the component
    nearest = torch.cdist(a, gmm.means).argmin(1)
    freq = torch.bincount(nearest, minlength=3).to(F64) / a.shape[0]
    se = torch.sqrt(gmm.weights * (1 - gmm.weights) / a.shape[0])
    assert torch.all((freq - gmm.weights).abs() <= K_SE * se + 0.01), freq
    with pytest.raises(OptionError):
        gmm.sample(0)
    with pytest.raises(OptionError):
        gmm.sample(2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [full_mixture, diag_mixture], ids=["full", "diag"])
def test_log_prob_and_score_against_torch_distributions(make) -> None:  # type: ignore[no-untyped-def]
    gmm = make()
    x = torch.cat([gmm.sample(200, torch.Generator().manual_seed(1)),
                   6.0 * torch.randn(20, gmm.dim, generator=torch.Generator().manual_seed(2), dtype=F64)])
    ref = reference(gmm)
    torch.testing.assert_close(gmm.log_prob(x), ref.log_prob(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gmm.score(x), autograd_score(ref.log_prob, x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gmm.score(x), autograd_score(gmm.log_prob, x), rtol=1e-9, atol=1e-9)
    # diffused versions, with (a, s) scalars and per sample
    for a, s in ((0.6, 0.8), (1.0, 3.0), (0.05, 1.0)):
        ref = reference(gmm, a, s)
        torch.testing.assert_close(gmm.marginal_log_prob(x, a, s), ref.log_prob(x), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(gmm.marginal_score(x, a, s), autograd_score(ref.log_prob, x),
                                   rtol=1e-9, atol=1e-9)
        at = gmm.at(a, s)
        torch.testing.assert_close(at.log_prob(x), ref.log_prob(x), rtol=1e-10, atol=1e-10)
    a = torch.linspace(0.1, 1.0, x.shape[0], dtype=F64)
    s = torch.linspace(2.0, 0.1, x.shape[0], dtype=F64)
    per_sample = gmm.marginal_score(x, a, s)
    for i in (0, 57, x.shape[0] - 1):
        torch.testing.assert_close(per_sample[i], gmm.marginal_score(x[i:i + 1], float(a[i]), float(s[i]))[0])


def test_log_prob_normalised_in_1d() -> None:
    """``int p = 1`` on a fine grid (1-D): the density, not just its gradient, is right."""
    gmm = sdeflow.GaussianMixture([0.3, 0.7], [[-1.0], [2.0]], [0.2, 0.5], dtype=F64)
    x = torch.linspace(-10, 12, 40_001, dtype=F64)[:, None]
    mass = torch.trapezoid(gmm.log_prob(x).exp(), x[:, 0])
    assert float(mass) == pytest.approx(1.0, abs=1e-9)


def test_diagonal_and_full_code_paths_agree() -> None:
    """The diagonal path (O(n K d)) and the rotated full path (O(n K d^2)) give the same numbers.

    A mixture with covariances ``Q D_k Q^T`` and means ``Q mu_k`` is the image of the diagonal
    mixture under the rotation ``Q``: ``log p_full(Q x) = log p_diag(x)`` and
    ``score_full(Q x) = Q score_diag(x)``.
    """
    d = 4
    diag = diag_mixture(d)
    assert diag.diagonal
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(9), dtype=F64))
    full = sdeflow.GaussianMixture(diag.weights, diag.means @ q.T, q @ torch.diag_embed(diag.eigvals) @ q.T,
                                   dtype=F64)
    assert not full.diagonal
    x = 2.0 * torch.randn(100, d, generator=torch.Generator().manual_seed(10), dtype=F64)
    for a, s in ((1.0, 0.0), (0.7, 0.5)):
        torch.testing.assert_close(full.marginal_log_prob(x @ q.T, a, s), diag.marginal_log_prob(x, a, s))
        torch.testing.assert_close(full.marginal_score(x @ q.T, a, s), diag.marginal_score(x, a, s) @ q.T)
    # the same diagonal covariances given as (K, d), (K, d, d) and, for isotropic ones, (K,) / float
    as_full = sdeflow.GaussianMixture(diag.weights, diag.means, torch.diag_embed(diag.eigvals), dtype=F64)
    torch.testing.assert_close(as_full.log_prob(x), diag.log_prob(x))
    iso = sdeflow.GaussianMixture([1.0, 1.0], [[0.0] * d, [1.0] * d], [0.3, 0.3], dtype=F64)
    iso_float = sdeflow.GaussianMixture([1.0, 1.0], [[0.0] * d, [1.0] * d], 0.3, dtype=F64)
    torch.testing.assert_close(iso.log_prob(x), iso_float.log_prob(x))
    torch.testing.assert_close(iso.log_prob(x), reference(iso).log_prob(x))


def test_weights_normalised_and_zero_weight_component() -> None:
    gmm = sdeflow.GaussianMixture([2.0, 6.0, 0.0], [[0.0], [1.0], [50.0]], [1.0, 0.5, 1.0], dtype=F64)
    torch.testing.assert_close(gmm.weights, torch.tensor([0.25, 0.75, 0.0], dtype=F64))
    two = sdeflow.GaussianMixture([0.25, 0.75], [[0.0], [1.0]], [1.0, 0.5], dtype=F64)
    x = torch.linspace(-3, 4, 50, dtype=F64)[:, None]
    torch.testing.assert_close(gmm.log_prob(x), two.log_prob(x))
    torch.testing.assert_close(gmm.score(x), two.score(x))
    assert torch.isfinite(gmm.score(x)).all()
    assert (gmm.sample(2000, torch.Generator().manual_seed(0)) < 20).all()


def test_to_moves_dtype_and_device() -> None:
    gmm = full_mixture()
    g32 = gmm.to(dtype=torch.float32)
    assert g32.dtype == torch.float32 and gmm.dtype == F64  # a copy, the original unchanged
    assert g32.weights.dtype == g32.means.dtype == g32.eigvals.dtype == g32.eigvecs.dtype == torch.float32
    assert g32.sample(10, torch.Generator().manual_seed(0)).dtype == torch.float32
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(g32.log_prob(x.float()).double(), gmm.log_prob(x), rtol=1e-4, atol=1e-4)
    cpu = gmm.to("cpu")
    assert cpu.device == torch.device("cpu")
    torch.testing.assert_close(cpu.log_prob(x), gmm.log_prob(x), rtol=0, atol=0)


@pytest.mark.parametrize("mix_dtype,x_dtype", [(torch.float32, F64), (F64, torch.float32)])
def test_mixed_dtypes(mix_dtype: torch.dtype, x_dtype: torch.dtype) -> None:
    """A mixture evaluated at ``x`` of another dtype computes in ``x``'s dtype and matches
    the float64 result to the precision of the lower dtype."""
    base = full_mixture()
    gmm = base.to(dtype=mix_dtype)
    x = base.sample(50, torch.Generator().manual_seed(3)).to(x_dtype)
    for out, want in ((gmm.log_prob(x), base.log_prob(x.double())), (gmm.score(x), base.score(x.double())),
                      (gmm.marginal_score(x, 0.5, 0.7), base.marginal_score(x.double(), 0.5, 0.7))):
        assert out.dtype == x_dtype
        torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-4)
    # the exact score model follows its own dtype, and .to(float64) switches it
    sm = gmm.score_model(sdeflow.create_process("vp"))
    assert sm.dtype == mix_dtype
    sm64 = sm.to(F64)
    assert sm64.dtype == F64
    t = torch.full((50,), 0.5, dtype=F64)
    torch.testing.assert_close(sm64.score(x.double(), t),
                               base.score_model(sdeflow.create_process("vp")).score(x.double(), t),
                               rtol=1e-4, atol=1e-4)


def test_image_shaped_inputs() -> None:
    """A 16-dimensional mixture evaluated on ``(n, 1, 4, 4)`` images: same numbers as on vectors."""
    gmm = full_mixture(d=16, seed=3)
    x = gmm.sample(20, torch.Generator().manual_seed(0))
    img = x.reshape(20, 1, 4, 4)
    assert gmm.log_prob(img).shape == (20,)
    torch.testing.assert_close(gmm.log_prob(img), gmm.log_prob(x))
    assert gmm.score(img).shape == img.shape
    torch.testing.assert_close(gmm.score(img).reshape(20, 16), gmm.score(x))
    torch.testing.assert_close(gmm.marginal_score(img, 0.3, 0.9).reshape(20, 16), gmm.marginal_score(x, 0.3, 0.9))
    sm = gmm.score_model(sdeflow.create_process("ve"))
    t = torch.full((20,), 0.3, dtype=F64)
    assert sm.score(img, t).shape == img.shape
    torch.testing.assert_close(sm.score(img, t).reshape(20, 16), sm.score(x, t))
    with pytest.raises(ShapeError, match="16"):
        gmm.log_prob(torch.zeros(4, 1, 3, 3, dtype=F64))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(weights=[0.5, -0.1], means=[[0.0], [1.0]], covs=[1.0, 1.0]), OptionError, "non-negative"),
        (dict(weights=[0.0, 0.0], means=[[0.0], [1.0]], covs=[1.0, 1.0]), OptionError, "not all zero"),
        (dict(weights=[1.0, float("nan")], means=[[0.0], [1.0]], covs=[1.0, 1.0]), OptionError, "finite"),
        (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[1.0, 2.0], [2.0, 1.0]]]), OptionError, "positive definite"),
        (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[[1.0, 0.5], [0.0, 1.0]]]), OptionError, "symmetric"),
        (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[1.0, -1.0]]), OptionError, "positive"),
        (dict(weights=[1.0, 1.0], means=[[0.0, 0.0]], covs=1.0), ShapeError, "means"),
        (dict(weights=[1.0, 1.0], means=[[0.0, 0.0], [1.0, 1.0]], covs=[[[1.0]], [[1.0]]]), ShapeError, "covs"),
        (dict(weights=[1.0], means=[[0.0, 0.0]], covs=[[1.0, 1.0, 1.0]]), ShapeError, "covs"),
    ],
    ids=["negative-weight", "zero-weights", "nan-weight", "not-pd", "asymmetric", "negative-diag",
         "means-vs-weights", "cov-dim", "diag-dim"],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        sdeflow.GaussianMixture(**kwargs)


def test_wrong_sample_shape_raises() -> None:
    gmm = full_mixture(d=3)
    with pytest.raises(ShapeError, match=r"\(n, 3\)"):
        gmm.log_prob(torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ShapeError):
        gmm.score(torch.zeros(3, dtype=F64))
