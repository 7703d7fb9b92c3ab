"""``sdeflow.log_likelihood``: probability-flow ODE + instantaneous change of variables.

Ground truth: an exact-score Gaussian mixture (``GaussianMixture.score_model``, float64, exact
prior ``p_T``). With the exact score and the exact prior the only error is the ODE solver's, so
``log_likelihood`` must reproduce the closed-form ``log p_{t_start}(x)`` (the density at the time
where the integration starts, ``t_min`` of the process by default).

Tolerance choice: rtol = atol = 1e-7 (dopri5). Measured on 200 samples, the largest per-sample
error against ``log p_{t_start}`` is <= 2e-4 nats for vp, subvp, ve, ddpm and ncsn (2-D nine
Gaussians and a 3-D anisotropic mixture); the default 1e-5 gave up to 8.6e-3, too close to the
0.01 target to be a robust test. Against ``p_0`` itself: VE and NCSN start at ``t = 0`` (the data
density); vp and subvp are built with ``t_min = 1e-5`` (sigma_{t_min}^2 ~ 1e-6, a change of
log p below 1e-4 nats for the 1/16 component variances); DDPM's chain starts at
``t_min = 1/N`` (sigma^2 = beta_1 = 1e-4), where ``|log p_{t_min} - log p_0|`` reaches 0.006-0.0096
nats on these samples, so DDPM is compared with ``p_{t_min}`` only.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import sdeflow
from sdeflow import ForwardProcess, append_dims
from sdeflow.core.likelihood import LikelihoodResult, bits_per_dim, dequantize, log_likelihood
from sdeflow.data.datasets import anisotropic_mixture, nine_gaussians
from sdeflow.errors import NonFiniteError, OptionError, ShapeError, TimeRangeError

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = dict(rtol=1e-7, atol=1e-7)
F64 = torch.float64

# processes whose t_start can be (nearly) 0, so log p_{t_start} ~ log p_0 within 1e-4 nats
NEAR_ZERO = {"vp": dict(t_min=1e-5), "subvp": dict(t_min=1e-5), "ve": {}, "ncsn": {}}


def _mixture(kind: str) -> sdeflow.GaussianMixture:
    return nine_gaussians(dtype=F64) if kind == "nine" else anisotropic_mixture(3, dtype=F64)


@pytest.mark.parametrize("mixture", ["nine", "3d"])
@pytest.mark.parametrize("process", ["vp", "subvp", "ve", "ddpm"])
def test_exact_divergence_matches_mixture(process: str, mixture: str) -> None:
    gm = _mixture(mixture)
    x = gm.sample(100, torch.Generator().manual_seed(1))
    proc = sdeflow.create_process(process, **NEAR_ZERO.get(process, {}))
    sm = gm.score_model(proc).to(F64)
    res = log_likelihood(sm, x, estimator="exact", **TOL)
    assert isinstance(res, LikelihoodResult)
    assert res.log_prob.shape == (100,) and res.log_prob.dtype == F64
    assert res.estimator == "exact" and res.stderr is None and res.n_dims == gm.dim
    truth = sm.marginal_log_prob(x, res.t_start)
    assert float((res.log_prob - truth).abs().max()) < 0.01
    if process in NEAR_ZERO:
        assert float((res.log_prob - gm.log_prob(x)).abs().max()) < 0.01
    # the decomposition log p = log p_T(x_T) + int div
    torch.testing.assert_close(res.log_prob, res.prior_log_prob + res.delta_logp)
    torch.testing.assert_close(res.prior_log_prob, sm.marginal_log_prob(res.latent, proc.t_max))
    assert res.nfe > 0 and res.steps > 0


@pytest.mark.parametrize("process", sorted(set(sdeflow.list_plugins()["process"]) - {"vp", "subvp", "ve", "ddpm"}))
def test_every_other_registered_process(process: str) -> None:
    gm = nine_gaussians(dtype=F64)
    x = gm.sample(32, torch.Generator().manual_seed(2))
    sm = gm.score_model(sdeflow.create_process(process)).to(F64)
    res = log_likelihood(sm, x, **TOL)
    with torch.no_grad():  # a learned schedule (vdm) has parameters; the analytic density needs no graph
        exact = sm.marginal_log_prob(x, res.t_start)
    assert float((res.log_prob - exact).abs().max()) < 0.01


class OUProcess(ForwardProcess):
    """A third-party-style process defining only drift, diffusion and marginal:
    ``dx = -3 x dt + sqrt(6) dw`` (Ornstein-Uhlenbeck): ``alpha_t = e^{-3t}``, ``sigma_t^2 = 1 - e^{-6t}``."""

    t_min = 1e-4

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -3.0 * x

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.full_like(t, math.sqrt(6.0))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(-3.0 * t), torch.sqrt(-torch.expm1(-6.0 * t))


def test_third_party_process() -> None:
    gm = anisotropic_mixture(3, dtype=F64)
    x = gm.sample(32, torch.Generator().manual_seed(3))
    sm = gm.score_model(OUProcess()).to(F64)
    res = log_likelihood(sm, x, **TOL)
    with torch.no_grad():  # a learned schedule (vdm) has parameters; the analytic density needs no graph
        exact = sm.marginal_log_prob(x, res.t_start)
    assert float((res.log_prob - exact).abs().max()) < 0.01


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_unbiased_within_stderr(probe: str) -> None:
    """K probes per sample give K i.i.d. unbiased estimates; the reported standard error is their
    sample std / sqrt(K). Over n samples (independent probes), the pooled statistic
    ``sum(h - exact) / sqrt(sum stderr^2)`` is ~N(0, 1): |Z| < 4. The standard errors must also be
    calibrated: the mean of ``z_i^2`` is ~chi^2_n / n (mean 1, sd sqrt(2/n) = 0.25 for n = 32, with
    K = 128 the t-tails are negligible); bounds [0.3, 2.2] fail when the stderr is off by 1.5x."""
    gm = nine_gaussians(dtype=F64)
    x = gm.sample(32, torch.Generator().manual_seed(4))
    sm = gm.score_model(sdeflow.create_process("vp", t_min=1e-5)).to(F64)
    exact = log_likelihood(sm, x, estimator="exact", **TOL)
    h = log_likelihood(sm, x, estimator="hutchinson", n_probes=128, probe=probe,
                       generator=torch.Generator().manual_seed(5), rtol=1e-6, atol=1e-6)
    assert h.estimator == "hutchinson" and h.n_probes == 128 and h.per_probe.shape == (32, 128)
    assert h.stderr is not None and bool((h.stderr > 0).all())
    diff = h.log_prob - exact.log_prob
    pooled = float(diff.sum() / h.stderr.pow(2).sum().sqrt())
    assert abs(pooled) < 4.0, pooled
    z2 = float((diff / h.stderr).pow(2).mean())
    assert 0.3 < z2 < 2.2, z2
    torch.testing.assert_close(h.log_prob, h.per_probe.mean(1))
    # same generator seed, same result; another seed, another estimate
    h2 = log_likelihood(sm, x, estimator="hutchinson", n_probes=128, probe=probe,
                        generator=torch.Generator().manual_seed(5), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h.log_prob, h2.log_prob, rtol=0, atol=0)


def test_single_probe_has_no_stderr() -> None:
    gm = nine_gaussians(dtype=F64)
    sm = gm.score_model(sdeflow.create_process("vp")).to(F64)
    res = log_likelihood(sm, gm.sample(4, torch.Generator().manual_seed(0)), estimator="hutchinson",
                         generator=torch.Generator().manual_seed(0))
    assert res.stderr is None and res.n_probes == 1 and res.per_probe.shape == (4, 1)


def test_works_under_no_grad_and_inference_mode() -> None:
    gm = nine_gaussians(dtype=F64)
    x = gm.sample(16, torch.Generator().manual_seed(6))
    sm = gm.score_model(sdeflow.create_process("ve")).to(F64)
    ref = log_likelihood(sm, x)
    with torch.no_grad():
        a = log_likelihood(sm, x)
    with torch.inference_mode():
        xi = x.clone()
        b = log_likelihood(sm, xi)
    torch.testing.assert_close(a.log_prob, ref.log_prob, rtol=0, atol=0)
    torch.testing.assert_close(b.log_prob, ref.log_prob, rtol=0, atol=0)
    assert not ref.log_prob.requires_grad


class TinyConv(nn.Module):
    """A small time-conditioned conv net for (batch, 1, s, s) images (eps parametrization)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        tt = append_dims(t, x.ndim).expand(x.shape[0], 1, *x.shape[2:])
        return self.c2(torch.tanh(self.c1(torch.cat([x, tt], 1))))


def test_image_shaped_data() -> None:
    # exact-score 16-D mixture, evaluated on (batch, 1, 4, 4) images
    g = torch.Generator().manual_seed(7)
    gm = sdeflow.GaussianMixture([0.3, 0.7], torch.randn(2, 16, generator=g, dtype=F64), [0.2, 0.5], dtype=F64)
    x = gm.sample(8, torch.Generator().manual_seed(8)).reshape(8, 1, 4, 4)
    sm = gm.score_model(sdeflow.create_process("vp")).to(F64)
    res = log_likelihood(sm, x, **TOL)  # auto: exact for D = 16
    assert res.estimator == "exact" and res.n_dims == 16 and res.latent.shape == x.shape
    assert float((res.log_prob - sm.marginal_log_prob(x.reshape(8, 16), res.t_start)).abs().max()) < 0.01
    # a network on images: Hutchinson runs, exact agrees with the looped (unvectorised) VJPs
    torch.manual_seed(0)
    net = TinyConv().double()
    model = sdeflow.ScoreModel(net, sdeflow.create_process("vp"), parametrization="eps")
    xi = torch.randn(4, 1, 4, 4, generator=g, dtype=F64)
    e1 = log_likelihood(model, xi, estimator="exact", rtol=1e-6, atol=1e-6)
    e2 = log_likelihood(model, xi, estimator="exact", rtol=1e-6, atol=1e-6, vectorize=False)
    torch.testing.assert_close(e1.log_prob, e2.log_prob, rtol=0, atol=1e-8)
    h = log_likelihood(model, xi, estimator="hutchinson", n_probes=4, generator=torch.Generator().manual_seed(9),
                       rtol=1e-6, atol=1e-6)
    assert h.log_prob.shape == (4,) and bool(torch.isfinite(h.log_prob).all()) and h.stderr.shape == (4,)
    assert all(p.grad is None for p in net.parameters())
    bpd = h.bits_per_dim()
    assert bpd.shape == (4,)


class CountingScore(sdeflow.ScoreModel):
    calls = 0

    def score(self, x, t, *, check=True):  # type: ignore[no-untyped-def]
        CountingScore.calls += 1
        return super().score(x, t, check=check)


@pytest.mark.parametrize("method,opts", [("dopri5", {}), ("rk4", dict(steps=20)), ("euler", dict(steps=50))])
def test_nfe_counts_score_evaluations(method: str, opts: dict) -> None:
    gm = nine_gaussians(dtype=F64)
    proc = sdeflow.create_process("vp")
    exact = gm.score_model(proc).to(F64)
    net = sdeflow.create_model("mlp", dim=2).double()
    model = CountingScore(net, proc, parametrization="eps")
    x = gm.sample(8, torch.Generator().manual_seed(10))
    CountingScore.calls = 0
    res = log_likelihood(model, x, method=method, **opts)
    assert res.nfe == CountingScore.calls > 0
    if method == "rk4":
        assert res.nfe == 4 * 20 and res.steps == 20
    if method == "euler":
        assert res.nfe == 50
    # fixed-grid methods on the exact score converge to the truth too
    if method == "rk4":
        r = log_likelihood(exact, x, method="rk4", steps=200)
        assert float((r.log_prob - exact.marginal_log_prob(x, r.t_start)).abs().max()) < 0.01


def test_t_start_option() -> None:
    gm = nine_gaussians(dtype=F64)
    sm = gm.score_model(sdeflow.create_process("vp")).to(F64)
    x = gm.sample(16, torch.Generator().manual_seed(11))
    res = log_likelihood(sm, x, t_start=0.3, **TOL)
    assert res.t_start == 0.3
    assert float((res.log_prob - sm.marginal_log_prob(x, 0.3)).abs().max()) < 0.01


def test_bad_options() -> None:
    gm = nine_gaussians(dtype=F64)
    sm = gm.score_model(sdeflow.create_process("vp")).to(F64)
    x = gm.sample(4, torch.Generator().manual_seed(12))
    with pytest.raises(OptionError, match="unknown ode method 'rk45'.*dopri5"):
        log_likelihood(sm, x, method="rk45")
    with pytest.raises(OptionError, match="steps=10 was given to the adaptive method 'dopri5'"):
        log_likelihood(sm, x, method="dopri5", steps=10)
    with pytest.raises(OptionError, match="rtol/atol were given to the fixed-grid method 'rk4'"):
        log_likelihood(sm, x, method="rk4", rtol=1e-3)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(OptionError, match="n_probes must be an integer >= 1"):
            log_likelihood(sm, x, estimator="hutchinson", n_probes=bad)
    with pytest.raises(OptionError, match="unknown estimator 'skilling'.*exact.*hutchinson"):
        log_likelihood(sm, x, estimator="skilling")
    with pytest.raises(OptionError, match="unknown probe 'normal'.*rademacher.*gaussian"):
        log_likelihood(sm, x, estimator="hutchinson", probe="normal")
    with pytest.raises(OptionError, match="rtol must be positive"):
        log_likelihood(sm, x, rtol=0.0)
    with pytest.raises(TimeRangeError, match="t_start=1.*must lie in"):
        log_likelihood(sm, x, t_start=1.0)
    with pytest.raises(TimeRangeError, match="t_start=0.*must lie in"):
        log_likelihood(sm, x, t_start=0.0)  # vp's t_min is 1e-3
    with pytest.raises(ShapeError, match=r"shape \(n, \*dims\)"):
        log_likelihood(sm, x[0])
    with pytest.raises(NonFiniteError, match="x contains NaN"):
        log_likelihood(sm, torch.full((2, 2), float("nan"), dtype=F64))


class NaNNet(nn.Module):
    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return x * torch.where(append_dims(t, x.ndim) < 0.5, float("nan"), 1.0)


def test_nonfinite_score_is_reported() -> None:
    model = sdeflow.ScoreModel(NaNNet(), sdeflow.create_process("vp"), parametrization="eps")
    with pytest.raises(NonFiniteError, match="log_likelihood.*NaN/Inf"):
        log_likelihood(model, torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), method="rk4", steps=10)


def test_bits_per_dim_convention() -> None:
    # a uniform density on [-1, 1]^D puts mass 256^-D on each 8-bit cell: exactly 8 bits/dim
    d = 12
    lp = torch.full((3,), -d * math.log(2.0), dtype=F64)
    torch.testing.assert_close(bits_per_dim(lp, d), torch.full((3,), 8.0, dtype=F64))
    # uniform on [0, 1]^D: log p = 0, again 8 bits/dim; a 4-bit image in [-1, 1]: 4 bits/dim
    torch.testing.assert_close(bits_per_dim(torch.zeros(2, dtype=F64), d, data_range=(0.0, 1.0)),
                               torch.full((2,), 8.0, dtype=F64))
    torch.testing.assert_close(bits_per_dim(lp, d, bins=16), torch.full((3,), 4.0, dtype=F64))
    # a smooth density: the bound -(log p(z) + log Delta)/ln 2 matches -log2 P(k) of the
    # discretised density to O(Delta^2) (here 1-D N(0, 0.3^2) on [-1, 1], 256 bins)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(0.3, dtype=F64))
    k = torch.arange(64, 192, dtype=F64)
    delta = 2.0 / 256
    lo_edge, hi_edge = -1.0 + k * delta, -1.0 + (k + 1) * delta
    exact_bits = -torch.log2(normal.cdf(hi_edge) - normal.cdf(lo_edge))
    u = (torch.arange(1000, dtype=F64) + 0.5) / 1000  # midpoint rule over the dequantization noise
    z = lo_edge[:, None] + delta * u[None]
    mean_logp = normal.log_prob(z).mean(1)
    bound = bits_per_dim(mean_logp, 1)
    assert bool((bound >= exact_bits - 1e-9).all())  # Jensen: an upper bound
    assert float((bound - exact_bits).abs().max()) < 1e-3
    with pytest.raises(OptionError):
        bits_per_dim(lp, d, data_range=(1.0, -1.0))


def test_dequantize_lands_in_its_bin() -> None:
    k = torch.randint(0, 256, (5, 1, 4, 4), generator=torch.Generator().manual_seed(13))
    z = dequantize(k, generator=torch.Generator().manual_seed(14), dtype=F64)
    assert z.shape == k.shape and float(z.min()) >= -1.0 and float(z.max()) < 1.0
    assert torch.equal(torch.floor((z + 1.0) / (2.0 / 256)).long(), k)
    with pytest.raises(OptionError):
        dequantize(torch.tensor([256]))


def test_exported() -> None:
    assert sdeflow.log_likelihood is log_likelihood
    assert sdeflow.LikelihoodResult is LikelihoodResult
