"""One conformance suite for every registered forward process.

The suite is parametrized over ``sdeflow.list_plugins()["process"]`` at collection time, each
process built with its default options, so a process plugin added later (built-in or
third-party) is tested automatically. What a process must satisfy (Song et al. 2021, Eq. 5-7,
13 and Appendix B):

* its drift and diffusion generate its stated marginals ``x_t = a_t x_0 + s_t eps``
  (deterministic moment equations and a Monte-Carlo simulation of the forward SDE with
  torchsde);
* its prior is the marginal at ``t_max`` with ``a_{t_max} x_0`` replaced by 0;
* the exact score of a Gaussian mixture diffused by it equals autograd of ``log p_t``, both of
  the closed form and of an independent ``torch.distributions`` reference;
* its probability-flow ODE transports ``p_{t1}`` to ``p_{t0}``;
* log-SNR monotonicity and inversion, time-range validation, and shapes for vectors and images.

Every statistical tolerance is ``K_SE`` standard errors computed from the sample itself, plus
the exactly computed bias of the discretisation where one is used.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
import torchsde
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal, Normal

import sdeflow
from sdeflow.errors import TimeRangeError
from sdeflow.targets.gaussian_mixture import ExactMixtureScoreModel

PROCESS_NAMES = sorted(sdeflow.list_plugins()["process"])
F64 = torch.float64
#: number of standard errors allowed in every Monte-Carlo comparison
K_SE = 4.0


# ---------------------------------------------------------------------------------- helpers
def make_process(name: str) -> sdeflow.ForwardProcess:
    """The process ``name`` with default options, in float64."""
    return sdeflow.create_process(name).to(F64)


def time_grid(process: sdeflow.ForwardProcess, n: int) -> Tensor:
    """``n`` equally spaced times from ``t_min`` to ``t_max`` (float64)."""
    return torch.linspace(float(process.t_min), float(process.t_max), n, dtype=F64)


def frac_time(process: sdeflow.ForwardProcess, frac: float) -> float:
    """The time a fraction ``frac`` of the way from ``t_min`` to ``t_max``."""
    lo, hi = float(process.t_min), float(process.t_max)
    return lo + frac * (hi - lo)


def coeffs(process: sdeflow.ForwardProcess, t: float) -> tuple[float, float]:
    """``(a_t, s_t)`` as Python floats."""
    a, s = process.marginal(torch.tensor([t], dtype=F64))
    return float(a[0]), float(s[0])


def mixture_1d() -> sdeflow.GaussianMixture:
    return sdeflow.GaussianMixture([0.3, 0.7], [[-1.0], [2.0]], [[[0.2]], [[0.5]]], dtype=F64)


def mixture_2d() -> sdeflow.GaussianMixture:
    """Two components, one with a rotated (full) covariance."""
    c = math.cos(0.6), math.sin(0.6)
    rot = torch.tensor([[c[0], -c[1]], [c[1], c[0]]], dtype=F64)
    cov1 = rot @ torch.diag(torch.tensor([0.4, 0.05], dtype=F64)) @ rot.T
    cov0 = torch.diag(torch.tensor([0.3, 0.2], dtype=F64))
    return sdeflow.GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.5, -0.5]], torch.stack([cov0, cov1]), dtype=F64)


def mixture_5d_full() -> sdeflow.GaussianMixture:
    """Three 5-D components with random full covariances (eigenvalues in [0.1, 1.1])."""
    g = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(3, 5, 5, generator=g, dtype=F64))
    lam = 0.1 + torch.rand(3, 5, generator=g, dtype=F64)
    covs = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    means = 1.5 * torch.randn(3, 5, generator=g, dtype=F64)
    return sdeflow.GaussianMixture([0.2, 0.5, 0.3], means, covs, dtype=F64)


MIXTURES = {"1d": mixture_1d, "2d": mixture_2d, "5d_full": mixture_5d_full}


def reference_marginal(gmm: sdeflow.GaussianMixture, a: float, s: float) -> MixtureSameFamily:
    """``p_t = sum_k w_k N(a mu_k, a^2 Sigma_k + s^2 I)`` built from torch.distributions alone."""
    eye = torch.eye(gmm.dim, dtype=F64)
    comps = MultivariateNormal(a * gmm.means, covariance_matrix=a * a * gmm.covs + s * s * eye)
    return MixtureSameFamily(Categorical(probs=gmm.weights), comps)


def marginal_moments(gmm: sdeflow.GaussianMixture, a: float, s: float) -> tuple[Tensor, Tensor]:
    """Mean ``a m`` and covariance ``a^2 C + s^2 I`` of ``a x_0 + s eps``."""
    return a * gmm.mean(), a * a * gmm.covariance() + s * s * torch.eye(gmm.dim, dtype=F64)


def assert_moments(x: Tensor, mean: Tensor, cov: Tensor, what: str, mean_slack: Tensor | float = 0.0,
                   cov_slack: Tensor | float = 0.0, k: float = K_SE) -> None:
    """Sample mean and covariance of ``x`` (n, d) within ``k`` standard errors (estimated from
    the sample: ``std / sqrt(n)`` for means, ``std((x_i - m_i)(x_j - m_j)) / sqrt(n)`` for
    covariances) plus a known deterministic slack (a discretisation bias)."""
    n = x.shape[0]
    m = x.mean(0)
    d = x - m
    prods = d[:, :, None] * d[:, None, :]
    c = prods.sum(0) / (n - 1)
    se_m = x.std(0) / math.sqrt(n)
    se_c = prods.std(0) / math.sqrt(n)
    tol_m = k * se_m + torch.as_tensor(mean_slack, dtype=x.dtype).abs()
    tol_c = k * se_c + torch.as_tensor(cov_slack, dtype=x.dtype).abs()
    assert torch.all((m - mean).abs() <= tol_m), f"{what}: mean {m.tolist()} vs {mean.tolist()} (tol {tol_m.tolist()})"
    assert torch.all((c - cov).abs() <= tol_c), f"{what}: cov {c.tolist()} vs {cov.tolist()} (tol {tol_c.tolist()})"


def linear_drift_coefficient(process: sdeflow.ForwardProcess, t: Tensor) -> Tensor:
    """``c(t)`` with ``f(x, t) = -c(t) x``, after checking that the drift is linear in ``x``.

    Gaussian marginals ``a_t x_0 + s_t eps`` for every ``x_0`` force a drift linear in ``x``
    with coefficient ``d log a_t / dt`` (Song et al. 2021, Appendix B; Kingma et al. 2021, A.4).
    """
    n = t.shape[0]
    c = -process.drift(torch.ones(n, 1, dtype=F64), t)[:, 0]
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    torch.testing.assert_close(process.drift(x, t), -c[:, None] * x, rtol=1e-10, atol=1e-12,
                               msg="the drift of a process with Gaussian marginals must be linear in x")
    return c


def cumtrapz(y: Tensor, t: Tensor) -> Tensor:
    """Cumulative trapezoid rule ``int_{t_0}^{t_i} y``, starting at 0."""
    inc = 0.5 * (y[1:] + y[:-1]) * (t[1:] - t[:-1])
    return torch.cat([torch.zeros(1, dtype=y.dtype), torch.cumsum(inc, 0)])


def sde_moment_factors(process: sdeflow.ForwardProcess, t: Tensor) -> tuple[Tensor, Tensor]:
    """Moments of the forward SDE itself, from its drift and diffusion alone, on the grid ``t``.

    For ``f = -c(t) x`` the mean and variance obey ``m' = -c m`` and ``V' = -2 c V + g^2``
    (Sarkka & Solin 2019, Eq. 6.2-6.3), solved by an integrating factor:
    ``m(t) = phi(t) m(t_0)`` and ``V(t) = phi(t)^2 V(t_0) + q(t)`` with
    ``phi = exp(-int c)`` and ``q = phi^2 int g^2 / phi^2`` (trapezoid rule on ``t``).
    """
    log_phi = cumtrapz(-linear_drift_coefficient(process, t), t)
    phi = torch.exp(log_phi)
    return phi, phi * phi * cumtrapz(process.g2(t) * torch.exp(-2 * log_phi), t)


class ForwardSDEStepTime(torch.nn.Module):
    """The forward SDE ``dx = f dt + g dw`` in step time ``u = (t - t0) / h`` for torchsde.

    ``dy = h f(y, t0 + u h) du + sqrt(h) g(t0 + u h) dW_u``: with ``dt = 1`` and integer output
    times every step lands exactly on the grid (no interpolated outputs, no sliver steps).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, process: sdeflow.ForwardProcess, t0: float, h: float, batch: int) -> None:
        super().__init__()
        self.process, self.t0, self.h, self.sqrt_h, self.batch = process, t0, h, math.sqrt(h), batch

    def time(self, u: Tensor) -> Tensor:
        return self.process.clamp_time(self.t0 + u * self.h).reshape(()).expand(self.batch)

    def f(self, u: Tensor, y: Tensor) -> Tensor:
        return self.h * self.process.drift(y, self.time(u))

    def g(self, u: Tensor, y: Tensor) -> Tensor:
        return (self.sqrt_h * self.process.diffusion(self.time(u)))[:, None].expand_as(y)


class GeneratorBrownian(torchsde.BaseBrownian):
    """Independent Gaussian increments drawn from a ``torch.Generator`` (each interval queried once)."""

    def __init__(self, shape: tuple[int, int], generator: torch.Generator) -> None:
        self._shape, self._generator = shape, generator

    def __call__(self, ta, tb=None, return_U=False, return_A=False):  # type: ignore[no-untyped-def] # noqa: N803
        assert tb is not None and not return_U and not return_A
        return torch.randn(self._shape, generator=self._generator, dtype=F64) * math.sqrt(float(tb - ta))

    def __repr__(self) -> str:
        return f"GeneratorBrownian({self._shape})"

    dtype = property(lambda self: F64)
    device = property(lambda self: torch.device("cpu"))
    shape = property(lambda self: torch.Size(self._shape))
    levy_area_approximation = property(lambda self: "none")


# ---------------------------------------------------------------------------------- the suite
pytestmark = pytest.mark.parametrize("name", PROCESS_NAMES)


def test_registry_has_the_builtin_processes(name: str) -> None:
    assert {"vp", "subvp", "ve"} <= set(PROCESS_NAMES)
    assert isinstance(make_process(name), sdeflow.ForwardProcess)


def test_shapes_vectors_and_images(name: str) -> None:
    """drift/diffusion/marginal/perturb and the derived dynamics keep the documented shapes,
    and an image is treated exactly like its flattened vector."""
    p = make_process(name)
    t = torch.tensor([frac_time(p, 0.1), frac_time(p, 0.5), frac_time(p, 1.0)], dtype=F64)
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(3, 16, generator=gen, dtype=F64)
    img = vec.reshape(3, 1, 4, 4)
    for x in (vec, img):
        assert p.drift(x, t).shape == x.shape
        xt, eps = p.perturb(x, t, generator=gen)
        assert xt.shape == x.shape and eps.shape == x.shape
        zero_score = lambda y, tt: torch.zeros_like(y)  # noqa: E731
        assert p.reverse_sde(zero_score).drift(x, t).shape == x.shape
        assert p.probability_flow(zero_score).velocity(x, t).shape == x.shape
    torch.testing.assert_close(p.drift(img, t).reshape(3, 16), p.drift(vec, t), rtol=0, atol=0)
    assert p.diffusion(t).shape == (3,)
    a, s = p.marginal(t)
    assert a.shape == (3,) and s.shape == (3,)
    noise = torch.randn(3, 1, 4, 4, generator=gen, dtype=F64)
    xt, _ = p.perturb(img, t, noise=noise)
    torch.testing.assert_close(xt, a[:, None, None, None] * img + s[:, None, None, None] * noise)


def test_marginal_finite_and_positive(name: str) -> None:
    p = make_process(name)
    t = time_grid(p, 401)
    a, s = p.marginal(t)
    g = p.diffusion(t)
    for what, v in (("a_t", a), ("s_t", s), ("g(t)", g)):
        assert torch.isfinite(v).all(), f"{name}: {what} not finite on [t_min, t_max]"
    assert (a > 0).all() and (s >= 0).all() and (g >= 0).all()
    assert (s[1:] > 0).all(), f"{name}: s_t must be positive after t_min"


def test_check_time_rejects_out_of_range(name: str) -> None:
    p = make_process(name)
    lo, hi = float(p.t_min), float(p.t_max)
    ok = p.check_time(torch.tensor([lo, 0.5 * (lo + hi), hi], dtype=F64), 3)
    assert ok.shape == (3,)
    assert p.check_time(0.5 * (lo + hi), 4).shape == (4,)
    for bad in (lo - 0.01, hi + 0.01, float("nan")):
        with pytest.raises(TimeRangeError, match="t_min"):
            p.check_time(torch.tensor([0.5 * (lo + hi), bad], dtype=F64))
    sm = mixture_1d().score_model(p)
    with pytest.raises(TimeRangeError):
        sm.score(torch.zeros(2, 1, dtype=F64), torch.tensor([hi + 0.01, hi + 0.01], dtype=F64))


def test_log_snr_decreasing_and_inverted(name: str) -> None:
    """``lambda_t = log(a_t^2 / s_t^2)`` is strictly decreasing (Kingma et al. 2021, Eq. 2) and
    ``t_from_log_snr`` inverts it (the process's own inverse and the generic bisection agree)."""
    p = make_process(name)
    t = time_grid(p, 201)
    lam = p.log_snr(t)
    assert not torch.isnan(lam).any()
    assert torch.isfinite(lam[1:]).all()
    assert (lam[1:] < lam[:-1]).all(), f"{name}: log-SNR is not strictly decreasing"
    a, s = p.marginal(t[1:])
    torch.testing.assert_close(lam[1:], 2 * torch.log(a / s), rtol=1e-9, atol=1e-9)
    inner = t[1:-1]
    span = float(p.t_max) - float(p.t_min)
    torch.testing.assert_close(p.t_from_log_snr(p.log_snr(inner)), inner, rtol=0, atol=1e-7 * span)
    generic = sdeflow.ForwardProcess.t_from_log_snr(p, p.log_snr(inner))
    torch.testing.assert_close(generic, inner, rtol=0, atol=1e-7 * span)


def test_moment_equations_reproduce_marginal(name: str) -> None:
    """Deterministic check that drift and diffusion generate the marginal.

    For ``f = -c(t) x`` the moments of the forward SDE obey ``m' = -c m`` and
    ``V' = -2 c V + g^2`` (Sarkka & Solin 2019, Eq. 6.2-6.3). Solved by quadrature from the
    marginal at ``t_min``, they must equal ``a_t m_0`` and ``a_t^2 V_0 + s_t^2`` everywhere.
    """
    p = make_process(name)
    t = time_grid(p, 20001)
    phi, q = sde_moment_factors(p, t)
    a, s = p.marginal(t)
    m0, v0 = 1.5, 0.7
    torch.testing.assert_close(phi * a[0] * m0, a * m0, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(phi**2 * (a[0] ** 2 * v0 + s[0] ** 2) + q, a * a * v0 + s * s, rtol=1e-5, atol=1e-9)


def test_forward_sde_monte_carlo_matches_marginal(name: str) -> None:
    """Simulate ``dx = f dt + g dw`` with torchsde (Euler-Maruyama, 500 steps) from
    ``x_{t_min} = a x_0 + s eps`` and compare mean and covariance with the closed form
    ``a_t m_0``, ``a_t^2 C_0 + s_t^2 I`` at four times.

    Tolerance: ``K_SE`` standard errors of the 10,000 samples plus the Euler bias: the exact
    moments of the Euler scheme (recursion ``m <- (1 - c h) m``, ``V <- (1 - c h)^2 V + g^2 h``)
    minus those of the SDE itself (:func:`sde_moment_factors`), both from drift and diffusion
    only, so the slack never absorbs a wrong marginal.
    """
    p = make_process(name)
    gmm = mixture_2d()
    n, steps, fine = 10_000, 500, 40
    t0 = float(p.t_min)
    h = (float(p.t_max) - t0) / steps
    gen = torch.Generator().manual_seed(1234)
    a0, s0 = coeffs(p, t0)
    y0 = a0 * gmm.sample(n, gen) + s0 * torch.randn(n, 2, generator=gen, dtype=F64)
    marks = [0, steps // 4, steps // 2, steps]
    ys = torchsde.sdeint(ForwardSDEStepTime(p, t0, h, n), y0, torch.tensor(marks, dtype=F64), method="euler",
                         dt=1.0, bm=GeneratorBrownian((n, 2), gen))
    # exact moments of the Euler scheme (the drift is linear, checked) and of the SDE itself
    tj = t0 + h * torch.arange(steps, dtype=F64)
    shrink = 1.0 - h * linear_drift_coefficient(p, tj)
    g2h = p.g2(tj) * h
    prod, q = [1.0], [0.0]
    for j in range(steps):
        prod.append(prod[-1] * float(shrink[j]))
        q.append(float(shrink[j]) ** 2 * q[-1] + float(g2h[j]))
    phi, q_sde = sde_moment_factors(p, t0 + (h / fine) * torch.arange(steps * fine + 1, dtype=F64))
    m_start, c_start = marginal_moments(gmm, a0, s0)
    eye = torch.eye(2, dtype=F64)
    for k, y in zip(marks, ys):
        t = t0 + k * h
        mean, cov = marginal_moments(gmm, *coeffs(p, t))
        f_k, q_k = float(phi[k * fine]), float(q_sde[k * fine])
        bias_mean = (prod[k] - f_k) * m_start
        bias_cov = (prod[k] ** 2 - f_k**2) * c_start + (q[k] - q_k) * eye
        assert_moments(y, mean, cov, f"{name} forward SDE at t={t:.4g}", mean_slack=bias_mean, cov_slack=bias_cov)


def test_prior_is_marginal_at_t_max(name: str) -> None:
    """The data-free prior is ``N(0, s_{t_max}^2 I)`` and its log-density is that Gaussian's."""
    p = make_process(name)
    _, s_t = coeffs(p, float(p.t_max))
    assert float(p.prior_std(dtype=F64)) == pytest.approx(s_t, rel=1e-12)
    n = 20_000
    x = p.prior_sample((n, 2), torch.Generator().manual_seed(7), dtype=F64)
    assert x.shape == (n, 2) and x.dtype == F64
    assert_moments(x, torch.zeros(2, dtype=F64), s_t**2 * torch.eye(2, dtype=F64), f"{name} prior")
    again = p.prior_sample((n, 2), torch.Generator().manual_seed(7), dtype=F64)
    assert torch.equal(x, again)
    img = p.prior_sample((5, 1, 4, 4), torch.Generator().manual_seed(8), dtype=F64)
    assert img.shape == (5, 1, 4, 4)
    ref = Normal(torch.tensor(0.0, dtype=F64), torch.tensor(s_t, dtype=F64))
    for v in (x[:50], img):
        torch.testing.assert_close(p.prior_log_prob(v), ref.log_prob(v).flatten(1).sum(1), rtol=1e-12, atol=1e-10)


def test_exact_mixture_prior_is_p_t_max(name: str) -> None:
    """``exact_prior=True`` draws from and scores the exact ``p_{t_max}``; ``False`` is the process prior."""
    p = make_process(name)
    gmm = mixture_2d()
    a, s = coeffs(p, float(p.t_max))
    sm = gmm.score_model(p, exact_prior=True)
    x = sm.prior_sample((20_000, 2), torch.Generator().manual_seed(3))
    assert x.dtype == F64
    assert_moments(x, *marginal_moments(gmm, a, s), f"{name} exact prior")
    ref = reference_marginal(gmm, a, s)
    torch.testing.assert_close(sm.prior_log_prob(x[:100]), ref.log_prob(x[:100]), rtol=1e-10, atol=1e-10)
    free = gmm.score_model(p, exact_prior=False)
    torch.testing.assert_close(free.prior_log_prob(x[:100]), p.prior_log_prob(x[:100]))
    y = free.prior_sample((1000, 2), torch.Generator().manual_seed(4))
    assert torch.equal(y, p.prior_sample((1000, 2), torch.Generator().manual_seed(4), dtype=F64))


@pytest.mark.parametrize("mixture", sorted(MIXTURES))
def test_exact_score_equals_autograd_of_log_density(name: str, mixture: str) -> None:
    """``GaussianMixture.score_model(process).score`` = grad of the closed-form ``log p_t``
    = grad of an independent torch.distributions ``log p_t`` (float64, several t)."""
    p = make_process(name)
    gmm = MIXTURES[mixture]()
    sm = gmm.score_model(p)
    assert isinstance(sm, ExactMixtureScoreModel)
    gen = torch.Generator().manual_seed(21)
    for frac in (0.0, 0.02, 0.3, 0.7, 1.0):
        t = frac_time(p, frac)
        a, s = coeffs(p, t)
        pt = sm.marginal_mixture(t)
        x = torch.cat([pt.sample(64, gen), 3.0 * (a + s) * torch.randn(8, gmm.dim, generator=gen, dtype=F64)])
        tt = torch.full((x.shape[0],), t, dtype=F64)
        x = x.requires_grad_(True)
        closed = sm.marginal_log_prob(x, tt)
        ref = reference_marginal(gmm, a, s).log_prob(x)
        (g_closed,) = torch.autograd.grad(closed.sum(), x)
        (g_ref,) = torch.autograd.grad(ref.sum(), x)
        score = sm.score(x.detach(), tt)
        scale = float(g_ref.abs().max())
        torch.testing.assert_close(closed.detach(), ref.detach(), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(score, g_closed, rtol=1e-9, atol=1e-9 * scale)
        torch.testing.assert_close(score, g_ref, rtol=1e-8, atol=1e-8 * scale)


def integrate_pf(p: sdeflow.ForwardProcess, sm: sdeflow.ScoreModel, x: Tensor, t1: float, t0: float,
                 tol: float) -> Tensor:
    """Integrate the probability-flow ODE ``dx/dt = f - 1/2 g^2 score`` (Song et al. 2021,
    Eq. 13) from ``t1`` down to ``t0`` with torchdiffeq's dopri5 (``rtol = atol = tol``),
    through ``process.probability_flow``. Evaluation times are clamped into ``[t0, t1]``:
    dopri5 probes outside the interval.
    """
    ode = p.probability_flow(lambda y, t: sm.score(y, t, check=False))
    batch = x.shape[0]

    def field(t: Tensor, y: Tensor) -> Tensor:
        return ode.velocity(y, p.clamp_time(t.clamp(t0, t1)).reshape(()).expand(batch))

    ts = torch.tensor([t1, t0], dtype=F64)
    return torchdiffeq.odeint(field, x, ts, method="dopri5", rtol=tol, atol=tol)[-1]


def test_probability_flow_maps_gaussian_exactly(name: str) -> None:
    """For ``p_0 = N(mu, v_0)`` the PF ODE keeps ``z = (x - a_t mu) / sqrt(v_t)`` constant
    (Song et al. 2021, Eq. 13), so every sample moves to ``a_0 mu + z sqrt(v_0)``: a pointwise,
    noise-free check from ``t_max`` down to ``t_min``."""
    p = make_process(name)
    mu, var0 = 1.5, 0.5
    sm = sdeflow.GaussianMixture([1.0], [[mu]], [[[var0]]], dtype=F64).score_model(p)
    t1, t0 = float(p.t_max), float(p.t_min)
    a1, s1 = coeffs(p, t1)
    a0, s0 = coeffs(p, t0)
    v1, v0 = a1 * a1 * var0 + s1 * s1, a0 * a0 * var0 + s0 * s0
    z = torch.linspace(-3, 3, 13, dtype=F64)[:, None]
    x0 = integrate_pf(p, sm, a1 * mu + z * math.sqrt(v1), t1, t0, tol=1e-10)
    torch.testing.assert_close(x0, a0 * mu + z * math.sqrt(v0), rtol=1e-6, atol=1e-6)


def test_probability_flow_transports_marginals(name: str) -> None:
    """The PF ODE carries exact ``p_{t1}`` samples to ``p_{t0}``, in mean and covariance.

    Two legs: ``t_max -> t_mid`` through the ``ode`` sampler (dopri5, exact prior,
    ``t_end=t_mid``: samplers always start at ``t_max``), and ``t_mid -> t_min`` through
    :func:`integrate_pf` (torchdiffeq directly on ``process.probability_flow``).
    """
    p = make_process(name)
    gmm = mixture_2d()
    sm = gmm.score_model(p, exact_prior=True)
    n = 4000
    t_mid = frac_time(p, 0.4)
    sampler = sdeflow.create_sampler("ode", method="dopri5", rtol=1e-6, atol=1e-6, t_end=t_mid)
    res = sampler.sample(sm, (n, 2), torch.Generator().manual_seed(31))
    assert res.samples.dtype == F64 and res.nfe > 0
    assert_moments(res.samples, *marginal_moments(gmm, *coeffs(p, t_mid)), f"{name} PF ODE t_max->{t_mid:.3g}")

    x1 = sm.marginal_mixture(t_mid).sample(n, torch.Generator().manual_seed(32))
    t0 = float(p.t_min)
    x0 = integrate_pf(p, sm, x1, t_mid, t0, tol=1e-7)
    assert_moments(x0, *marginal_moments(gmm, *coeffs(p, t0)), f"{name} PF ODE {t_mid:.3g}->t_min")
