"""The ``vdm`` plugin: learned monotone schedule, VDM process, VDM bound, samplers on VDM.

Ground truths (Kingma et al. 2021, "Variational Diffusion Models"):

* the schedule network is strictly increasing for every parameter value and hits its endpoints
  exactly (property test over seeded random parameter draws, extreme scales included);
* ``gamma'`` in closed form equals autograd; drift and diffusion equal ``d log alpha / dt`` and
  ``d sigma^2/dt - 2 f sigma^2`` by autograd of the marginal;
* the diffusion term of Gaussian data ``N(mu, v I_d)`` under the exact denoiser has the closed
  form ``d/2 [log(1 + v SNR(0)) - log(1 + v SNR(1))]``, whatever the schedule's interior;
* the whole bound for discrete data with the exact denoiser equals
  ``H(q) + E_{z_0} KL(q(x | z_0) || p(x | z_0)) + KL(q(z_1) || p(z_1))``, computed independently by
  quadrature with scipy;
* the discretised decoder sums to one over its bins;
* exact Gaussian-mixture scores under every sampler recover the mixture's ``p_{t_min}``.

Every Monte-Carlo comparison allows ``K_SE`` standard errors estimated from the sample itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from common import gen
from scipy import stats
from torch import Tensor

import sdeflow
from sdeflow import ScoreModel
from sdeflow.core.losses import denoising_score_matching
from sdeflow.data.images import levels_to_signed, load_digits_levels, signed_to_levels
from sdeflow.errors import IncompatibleError, OptionError
from sdeflow.testing.mixtures import mixture_1d
from sdeflow_plugins.vdm import (
    LearnedGamma,
    LinearGamma,
    VDMProcess,
    decode_levels,
    decoder_log_probs,
    diffusion_loss,
    discretized_gaussian_log_prob,
    prior_loss,
    reconstruction_loss,
    vdm_loss,
    vlb_breakdown,
    vlb_terms,
)
from sdeflow_plugins.vdm.monotone_net import monotone_sums

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
K_SE = 4.0


def randomize(schedule: LearnedGamma, g: torch.Generator, w_scale: float, b_scale: float,
              endpoints: bool = True, range_scale: float = 3.0) -> None:
    """Overwrite the schedule's parameters with a random draw (weights' raw values ~ N(0, w_scale^2),
    biases ~ N(0, b_scale^2), gamma_min ~ U(-15, 5), raw range ~ N(2, range_scale^2))."""
    h = schedule.hidden
    with torch.no_grad():
        for p, shape, scale in ((schedule.rho1, (), w_scale), (schedule.rho2, (h,), w_scale),
                                (schedule.rho3, (h,), w_scale), (schedule.b1, (), b_scale), (schedule.b2, (h,), b_scale)):
            p.copy_(torch.randn(shape, generator=g, dtype=F64) * scale)
        if endpoints:
            ep = schedule.endpoints_module
            ep.gamma_min.copy_(-15.0 + 20.0 * torch.rand((), generator=g, dtype=F64))
            ep.raw_range.copy_(2.0 + range_scale * torch.randn((), generator=g, dtype=F64))


def random_vdm(seed: int, w_scale: float = 1.5, b_scale: float = 3.0, hidden: int = 64, **options) -> VDMProcess:
    """A float64 VDM process whose learned schedule has random (untrained) parameters."""
    p = sdeflow.create_process("vdm", hidden=hidden, **options).to(F64)
    randomize(p.schedule, gen(seed), w_scale, b_scale, endpoints=False)
    return p


# ---------------------------------------------------------------------------------- schedule
def test_registered_with_the_contract_options() -> None:
    assert "vdm" in sdeflow.list_plugins()["process"]
    p = sdeflow.create_process("vdm", gamma_min=-10.0, gamma_max=20.0)
    assert isinstance(p, VDMProcess) and isinstance(p.schedule, LearnedGamma)  # the default: learned
    g0, g1 = p.endpoints(torch.zeros((), dtype=F64))
    g0, g1 = g0.detach(), g1.detach()
    assert float(g0) == -10.0 and float(g1) == 20.0
    assert float(p.t_min) == 0.0 and float(p.t_max) == 1.0
    lin = sdeflow.create_process("vdm", schedule="linear", gamma_min=-5.0, gamma_max=7.0)
    assert isinstance(lin.schedule, LinearGamma) and not list(lin.parameters())  # fixed: nothing learned
    t = torch.linspace(0, 1, 5, dtype=F64)
    torch.testing.assert_close(lin.gamma(t), -5.0 + 12.0 * t, rtol=0, atol=1e-14)
    torch.testing.assert_close(lin.network_condition(t), t, rtol=0, atol=1e-15)
    learned_ends = sdeflow.create_process("vdm", schedule="linear", learn_endpoints=True)
    assert len(list(learned_ends.parameters())) == 2


@pytest.mark.parametrize("bad, match", [
    (dict(schedule="cosine"), "schedule"), (dict(gamma_min=3.0, gamma_max=1.0), "gamma_min < gamma_max"),
    (dict(gamma_max=float("inf")), "finite"), (dict(bins=1), "bins"), (dict(bins=2.5), "bins"),
    (dict(data_range=(1.0, -1.0)), "lo < hi"), (dict(data_range=3.0), "pair"), (dict(hidden=0), "hidden"),
])
def test_bad_options_are_rejected(bad: dict, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        sdeflow.create_process("vdm", **bad)


def test_learned_schedule_is_monotone_for_any_parameters() -> None:
    """Seeded property test: 160 random draws of every schedule parameter, raw weights up to
    N(0, 300^2), biases up to N(0, 1000^2) (softplus underflows and saturates) and raw ranges up to
    N(2, 30^2) (``gamma_max - gamma_min`` down to 1e-30, below float64 resolution), float64.

    For every draw: ``gamma(0) = gamma_min`` and ``gamma(1) = gamma_max`` bitwise, ``gamma'(t) > 0``
    everywhere (closed form), ``gamma`` never decreases on a 257-point grid, and it strictly
    increases between neighbours wherever its guaranteed increase ``(gamma_max - gamma_min)
    w1 / D * dt`` (``gamma~' >= w1``) exceeds 8 ulps; for the moderate draws that is everywhere.
    """
    sched = LearnedGamma(hidden=32).to(F64)
    t = torch.linspace(0, 1, 257, dtype=F64)
    g = gen(2024)
    scales = [(0.3, 0.3, 3.0), (1.0, 3.0, 3.0), (3.0, 10.0, 3.0), (30.0, 100.0, 30.0), (300.0, 1000.0, 30.0)]
    unresolved = 0
    for draw in range(160):
        w_scale, b_scale, r_scale = scales[draw % len(scales)]
        randomize(sched, g, w_scale, b_scale, range_scale=r_scale)
        with torch.no_grad():
            gamma, dgamma = sched.gamma_and_derivative(t)
            g0, g1 = (v.detach() for v in sched.endpoints(t))
            w1 = sched.positive_weights(t)[0]
            r_one = sched.interior(torch.ones(1, dtype=F64))[0]
        what = f"draw {draw} (w_scale={w_scale}, b_scale={b_scale})"
        assert torch.isfinite(gamma).all() and torch.isfinite(dgamma).all(), what
        assert float(gamma[0]) == float(g0) and float(gamma[-1]) == float(g1), what
        assert float(r_one[0]) == 1.0, what
        assert (dgamma > 0).all(), f"{what}: gamma' min {float(dgamma.min())}"
        steps = gamma[1:] - gamma[:-1]
        assert (steps >= 0).all(), f"{what}: gamma decreases by {float(-steps.min())}"
        # guaranteed increase per grid step: span * w1 / D * dt, D = N(1) = gamma~(1) - gamma~(0)
        w1_, a, d, c = sched.features(t)
        n1, _ = monotone_sums(torch.ones(1, dtype=F64), w1_, a, d, c)
        bound = (g1 - g0) * w1 / n1[0] * (t[1] - t[0])
        ulp = 8 * torch.finfo(F64).eps * gamma.abs().clamp_min(1.0)
        resolvable = bound > ulp[1:]
        assert (steps[resolvable] > 0).all(), f"{what}: not strictly increasing where resolvable"
        unresolved += int(not resolvable.all())
        if w_scale <= 3.0:
            assert bool(resolvable.all()) and (steps > 0).all(), what
    assert unresolved > 0  # the extreme draws do reach below float64 resolution


def test_learned_schedule_float32_endpoints_and_order() -> None:
    """The default schedule in float32: exact endpoints, non-decreasing, positive derivative."""
    p = sdeflow.create_process("vdm")
    t = torch.linspace(0, 1, 1001)
    with torch.no_grad():
        gamma, dgamma = p.gamma_and_derivative(t)
    assert gamma.dtype == torch.float32
    assert float(gamma[0]) == -10.0 and float(gamma[-1]) == 20.0
    assert (gamma[1:] >= gamma[:-1]).all() and (dgamma > 0).all()


@pytest.mark.parametrize("schedule", ["learned", "linear"])
def test_derivative_matches_autograd_and_sde_coefficients(schedule: str) -> None:
    """Closed-form ``gamma'`` = autograd; ``f = d log alpha/dt`` and ``g^2 = d sigma^2/dt - 2 f sigma^2``
    (Kingma et al. 2021, Appendix A.4) by autograd of the marginal; log-SNR = -gamma."""
    p = random_vdm(3, schedule=schedule) if schedule == "learned" else sdeflow.create_process("vdm", schedule=schedule)
    t = torch.linspace(0, 1, 41, dtype=F64).requires_grad_(True)
    gamma, dgamma = p.gamma_and_derivative(t)
    (auto,) = torch.autograd.grad(gamma.sum(), t)
    torch.testing.assert_close(dgamma, auto, rtol=1e-12, atol=1e-12)
    a, s = p.marginal(t)
    (da,) = torch.autograd.grad(a.sum(), t, retain_graph=True)
    (ds2,) = torch.autograd.grad((s * s).sum(), t)
    f = da / a
    with torch.no_grad():
        x = torch.ones(41, 1, dtype=F64)
        torch.testing.assert_close(p.drift(x, t)[:, 0], f, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(p.g2(t), ds2 - 2 * f * s * s, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(p.diffusion(t) ** 2, p.g2(t), rtol=1e-12, atol=0)
        torch.testing.assert_close(p.log_snr(t), -gamma, rtol=0, atol=0)
        torch.testing.assert_close(a * a + s * s, torch.ones_like(a), rtol=1e-14, atol=1e-14)


def test_monotone_sums_gradcheck() -> None:
    """The blocked sums' hand-written backward against finite differences (float64), with blocks
    forced small so that several blocks are used."""
    import sdeflow_plugins.vdm.monotone_net as mn

    g = gen(1)
    h = 6
    args = (torch.rand(23, generator=g, dtype=F64), 0.1 + torch.rand((), generator=g, dtype=F64),
            3 * torch.rand(h, generator=g, dtype=F64), 2 * torch.randn(h, generator=g, dtype=F64),
            torch.rand(h, generator=g, dtype=F64))
    old = mn.BLOCK_ELEMENTS
    mn.BLOCK_ELEMENTS = 4 * h  # 4 rows per block
    try:
        assert torch.autograd.gradcheck(monotone_sums, tuple(a.requires_grad_(True) for a in args))
    finally:
        mn.BLOCK_ELEMENTS = old


@pytest.mark.parametrize("schedule", ["learned", "linear"])
def test_t_from_log_snr_inverts(schedule: str) -> None:
    """Newton (learned) and closed form (linear) invert log-SNR to 1e-12; out-of-range values clip."""
    p = random_vdm(5) if schedule == "learned" else sdeflow.create_process("vdm", schedule="linear")
    t = torch.linspace(0, 1, 301, dtype=F64)
    lam = p.log_snr(t).detach()
    torch.testing.assert_close(p.t_from_log_snr(lam), t, rtol=0, atol=1e-12)
    ends = p.t_from_log_snr(torch.tensor([float(lam[0]) + 5.0, float(lam[-1]) - 5.0], dtype=F64))
    assert ends.tolist() == [0.0, 1.0]


def test_no_grad_float64_and_parameters() -> None:
    """Same values with and without gradients and for expanded (sampler-style) times; float64 times
    with float32 parameters evaluate in float64; the schedule is part of ScoreModel.parameters()."""
    p = random_vdm(7, hidden=1024)
    t = torch.rand(50, generator=gen(0), dtype=F64)
    with torch.no_grad():
        ng = p.gamma_and_derivative(t)
    gr = p.gamma_and_derivative(t)
    for u, v in zip(ng, gr):
        torch.testing.assert_close(u, v.detach(), rtol=1e-14, atol=1e-13)
    one = torch.tensor(0.37, dtype=F64).expand(9)
    assert torch.equal(p.gamma(one), p.gamma(torch.full((9,), 0.37, dtype=F64)))
    p32 = sdeflow.create_process("vdm")
    g64 = p32.gamma(t)
    assert g64.dtype == F64
    torch.testing.assert_close(g64.float(), p32.gamma(t.float()), rtol=1e-6, atol=1e-5)
    model = ScoreModel(sdeflow.create_model("mlp", dim=2), p32)
    names = {n for n, _ in model.named_parameters()}
    assert {"process.schedule.rho1", "process.schedule.rho2", "process.schedule.endpoints_module.gamma_min",
            "process.schedule.endpoints_module.raw_range"} <= names


def test_antithetic_training_times() -> None:
    """``t_i = (u + i/n) mod 1``: evenly spaced by 1/n modulo 1 and uniform over draws."""
    p = sdeflow.create_process("vdm")
    t = p.sample_training_time(64, gen(0), dtype=F64)
    gaps = torch.sort(t).values.diff()
    torch.testing.assert_close(gaps, torch.full_like(gaps, 1 / 64), rtol=0, atol=1e-12)
    first = torch.stack([p.sample_training_time(8, gen(s), dtype=F64)[0] for s in range(2000)])
    # mean of U(0, 1): 0.5 +- K_SE sqrt(1/12 / 2000)
    assert abs(float(first.mean()) - 0.5) < K_SE * math.sqrt(1 / 12 / 2000)
    iid = sdeflow.create_process("vdm", antithetic=False).sample_training_time(64, gen(0), dtype=F64)
    assert not torch.allclose(torch.sort(iid).values.diff(), torch.full((63,), 1 / 64, dtype=F64))


# ---------------------------------------------------------------------------------- decoder and bound
@pytest.mark.parametrize("bins", [2, 17, 256])
def test_discretized_decoder_sums_to_one_and_matches_scipy(bins: int) -> None:
    """Over all ``bins`` levels the bin masses sum to one (means far outside the range, scales from
    1e-4 to 20 included: tails and the narrow-bin midpoint rule), and each mass equals scipy's
    ``Phi(upper) - Phi(lower)`` (open end bins)."""
    levels = levels_to_signed(torch.arange(bins), bins - 1, F64)
    g = gen(bins)
    means = torch.cat([1.5 * torch.randn(300, generator=g, dtype=F64), torch.tensor([-40.0, 40.0, 0.0], dtype=F64)])
    scales = torch.exp(-9.0 + 12.0 * torch.rand(means.shape[0], generator=g, dtype=F64))
    x = levels[None, :].expand(means.shape[0], bins)
    logp = discretized_gaussian_log_prob(x, means[:, None], scales[:, None], bins)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp.exp().sum(1), torch.ones_like(means), rtol=0, atol=1e-10)
    half = 1.0 / (bins - 1)
    up = stats.norm.cdf(((x + half - means[:, None]) / scales[:, None]).numpy())
    lo = stats.norm.cdf(((x - half - means[:, None]) / scales[:, None]).numpy())
    up[:, -1], lo[:, 0] = 1.0, 0.0
    ref = up - lo
    ok = ref > 1e-200
    np.testing.assert_allclose(logp.exp().numpy()[ok], ref[ok], rtol=1e-7, atol=1e-14)
    assert torch.equal(signed_to_levels(levels, bins - 1), torch.arange(bins))


def test_decoder_categorical_mode_and_samples() -> None:
    """``decoder_log_probs`` is the categorical distribution of the discretised Gaussian (sums to one,
    equals ``discretized_gaussian_log_prob`` level by level); ``decode_levels`` takes its argmax, or
    draws from it: over n = 40,000 draws each level's frequency is within ``K_SE`` binomial standard
    errors ``sqrt(p (1 - p) / n)`` of its probability (a mean between two levels, a scale of one bin)."""
    bins, g = 5, gen(8)
    levels = levels_to_signed(torch.arange(bins), bins - 1, F64)
    means = torch.cat([2.0 * torch.randn(200, generator=g, dtype=F64), torch.tensor([-0.8, 0.8], dtype=F64)])
    logp = decoder_log_probs(means, 0.3, bins)
    assert logp.shape == (202, bins)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(202, dtype=F64), rtol=0, atol=1e-12)
    by_level = discretized_gaussian_log_prob(levels.expand(202, bins), means[:, None], 0.3, bins)
    torch.testing.assert_close(logp, by_level, rtol=0, atol=0)
    assert torch.equal(decode_levels(means, 0.3, bins), logp.argmax(-1))
    # interior means with a small scale decode to the nearest level; an open end bin wins beyond its
    # half-width: -0.74 is nearest level 1 (-0.5), but at scale 0.5 level 0 has mass Phi(-0.02) = 0.49
    # against Phi(0.98) - Phi(-0.02) = 0.34 for level 1
    interior = means.abs() < 0.7
    edge = torch.tensor([-0.74, 0.74], dtype=F64)
    assert decode_levels(edge, 0.5, bins).tolist() == [0, 4] and signed_to_levels(edge, bins - 1).tolist() == [1, 3]
    assert torch.equal(decode_levels(means, 0.05, bins)[interior], signed_to_levels(means, bins - 1)[interior])
    n, m = 40_000, torch.full((40_000,), 0.2, dtype=F64)
    draws = decode_levels(m, 0.5, bins, generator=gen(9), sample=True)
    freq = torch.bincount(draws, minlength=bins).to(F64) / n
    prob = decoder_log_probs(m[:1], 0.5, bins)[0].exp()
    assert (freq - prob).abs().max() < K_SE * float((prob * (1 - prob) / n).sqrt().max())
    assert torch.equal(draws, decode_levels(m, 0.5, bins, generator=gen(9), sample=True))  # seeded


def test_process_decode_is_p_x_given_z0() -> None:
    """``VDMProcess.decode`` decodes ``z_0`` with ``N(z_0 / alpha_0, e^{gamma_0})`` onto the level grid
    (mode, or seeded draws); the base class (continuous data) returns its input."""
    p = sdeflow.create_process("vdm", gamma_min=-4.0, gamma_max=6.0, bins=17).to(F64)
    z = 1.2 * torch.randn(6, 64, generator=gen(10), dtype=F64)
    with torch.no_grad():
        a0 = float(p.marginal(torch.zeros(1, dtype=F64))[0])
    x = p.decode(z)
    k = decode_levels(z / a0, math.exp(-2.0), 17)
    assert x.dtype == F64 and x.shape == z.shape
    torch.testing.assert_close(x, levels_to_signed(k, 16, F64), rtol=0, atol=0)
    drawn = p.decode(z, gen(11), sample=True)
    assert torch.equal(drawn, p.decode(z, gen(11), sample=True)) and not torch.equal(drawn, x)
    assert torch.equal(signed_to_levels(drawn, 16), decode_levels(z / a0, math.exp(-2.0), 17, generator=gen(11), sample=True))
    vp = sdeflow.create_process("vp")
    assert vp.decode(z) is z


def test_ancestral_then_decode_recovers_discrete_data() -> None:
    """The whole generative model on discrete data: the exact denoiser of 4 levels with weights ``w``
    (a mixture of very narrow Gaussians), VDM's ancestral chain without the final denoising (its state
    is ``z_0``) and the decoder. With ``gamma_min = -8`` the decoder's confusion between levels
    2/3 apart is below 1e-30, so the decoded levels have frequencies ``w``, each within ``K_SE``
    binomial standard errors at n = 4,000; the raw ``z_0`` are not on the grid."""
    w = [0.1, 0.4, 0.3, 0.2]
    p = sdeflow.create_process("vdm", schedule="linear", gamma_min=-8.0, gamma_max=12.0, bins=4).to(F64)
    values = levels_to_signed(torch.arange(4), 3, F64)
    sm = sdeflow.GaussianMixture(w, values[:, None].tolist(), 1e-12, dtype=F64).score_model(p)
    n = 4000
    z0 = sdeflow.create_sampler("ancestral", steps=200, clip_x0=1.0, denoise=False).sample(sm, (n, 1), gen(12)).samples
    x = p.decode(z0)
    assert not torch.isin(z0, values).all() and torch.isin(x, values).all()
    freq = torch.bincount(signed_to_levels(x[:, 0], 3), minlength=4).to(F64) / n
    wt = torch.tensor(w, dtype=F64)
    assert ((freq - wt).abs() < K_SE * (wt * (1 - wt) / n).sqrt()).all(), freq


def test_prior_and_reconstruction_terms() -> None:
    """Prior: ``KL(N(alpha_1 x, sigma_1^2) || N(0, sigma_1^2))`` by torch.distributions. Reconstruction:
    ``-sum log p(x | z_0)`` with ``z_0 = alpha_0 x + sigma_0 eps_0``, recomputed with scipy."""
    p = sdeflow.create_process("vdm", gamma_min=-4.0, gamma_max=3.0, bins=17).to(F64)
    k = torch.randint(0, 17, (6, 5), generator=gen(0))
    x = levels_to_signed(k, 16, F64)
    with torch.no_grad():
        a1, s1 = p.marginal(torch.ones(1, dtype=F64))
        ref = torch.distributions.kl_divergence(torch.distributions.Normal(a1 * x, s1), torch.distributions.Normal(0.0, s1))
        torch.testing.assert_close(prior_loss(p, x), ref.sum(1), rtol=1e-12, atol=1e-14)
        eps = torch.randn(x.shape, generator=gen(1), dtype=F64)
        rec = reconstruction_loss(p, x, noise=eps)
        a0, s0 = (float(v) for v in p.marginal(torch.zeros(1, dtype=F64)))
        z0 = a0 * x + s0 * eps
        m, sd, half = (z0 / a0).numpy(), s0 / a0, 1.0 / 16
    up = np.where(k.numpy() == 16, 1.0, stats.norm.cdf((x.numpy() + half - m) / sd))
    lo = np.where(k.numpy() == 0, 0.0, stats.norm.cdf((x.numpy() - half - m) / sd))
    np.testing.assert_allclose(rec.numpy(), -np.log(up - lo).sum(1), rtol=1e-9)


@pytest.mark.parametrize("schedule", ["learned", "linear"])
def test_diffusion_term_of_gaussian_data_has_its_closed_form(schedule: str) -> None:
    """For ``x ~ N(mu, v I_d)`` and the exact denoiser, ``E||eps - eps_hat||^2 = d alpha^2 v / (alpha^2 v + sigma^2)``
    and ``L_inf = 1/2 int gamma' d SNR v / (SNR v + 1) dt = d/2 [log(1 + v e^{-gamma_0}) - log(1 + v e^{-gamma_1})]``
    (substitute ``gamma``): independent of the schedule's interior (Kingma et al. 2021's invariance),
    so a random learned schedule must give it too. i.i.d. times (``antithetic=False``) make the
    standard error ``std / sqrt(n)`` exact. It is also half the core's likelihood-weighted DSM."""
    opts = dict(gamma_min=-6.0, gamma_max=8.0, antithetic=False)
    p = random_vdm(11, **opts) if schedule == "learned" else sdeflow.create_process("vdm", schedule="linear", **opts)
    mu, v, d = torch.tensor([0.5, -1.0, 2.0], dtype=F64), 0.3, 3
    gmm = sdeflow.GaussianMixture([1.0], mu[None], v, dtype=F64)
    sm = gmm.score_model(p)
    n = 20_000
    x = gmm.sample(n, gen(1))
    with torch.no_grad():
        per = diffusion_loss(sm, x, gen(2))
        core = denoising_score_matching(sm, x, gen(2), weighting="likelihood", reduction="sum")
    exact = d / 2 * (math.log1p(v * math.exp(6.0)) - math.log1p(v * math.exp(-8.0)))
    se = float(per.std()) / math.sqrt(n)
    assert abs(float(per.mean()) - exact) < K_SE * se, f"{float(per.mean()):.4f} vs {exact:.4f} (se {se:.4f})"
    torch.testing.assert_close(2 * per.mean(), core, rtol=1e-10, atol=0)


def test_vlb_of_discrete_data_matches_quadrature() -> None:
    """Discrete data ``q = sum_k w_k delta(x_k)`` on 4 levels, the exact denoiser (a mixture of very
    narrow Gaussians), a random learned schedule with ``gamma`` from -4 to 1 (every term matters).
    With the exact denoiser ``E[L_inf] = I(x; z_0) - I(x; z_1)`` (the Gaussian case above), so

        E[VLB] = H(q) + E_{z_0} KL(q(x | z_0) || p(x | z_0)) + KL(q(z_1) || p(z_1)),

    each computed here by quadrature on a fine ``z`` grid with scipy's normal CDF for the decoder.
    The Monte-Carlo VLB (20,000 i.i.d. draws) must match within ``K_SE`` standard errors."""
    w = np.array([0.1, 0.4, 0.3, 0.2])
    levels = np.array([-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0])
    p = random_vdm(13, gamma_min=-4.0, gamma_max=1.0, bins=4, antithetic=False)
    gmm = sdeflow.GaussianMixture(w.tolist(), levels[:, None].tolist(), 1e-12, dtype=F64)
    sm = gmm.score_model(p)
    n = 20_000
    k = torch.multinomial(torch.tensor(w), n, replacement=True, generator=gen(3))
    x = levels_to_signed(k[:, None], 3, F64)
    with torch.no_grad():
        terms = vlb_terms(sm, x, gen(4))
    total = terms.total.numpy()
    # quadrature
    a0, s0 = math.sqrt(1 / (1 + math.exp(-4.0))), math.sqrt(1 / (1 + math.exp(4.0)))
    a1, s1 = math.sqrt(1 / (1 + math.exp(1.0))), math.sqrt(1 / (1 + math.exp(-1.0)))
    z = np.linspace(-2.5, 2.5, 100_001)  # q(z_0) beyond +-2.5: below e^-60
    joint0 = w[:, None] * stats.norm.pdf(z[None], a0 * levels[:, None], s0)  # q(x_k, z_0)
    assert joint0[:, [0, -1]].sum() < 1e-20 * joint0.max()
    post = joint0 / joint0.sum(0)
    m, sd, half = z / a0, s0 / a0, 1.0 / 3.0
    mass = []
    for j in range(4):
        a = -np.inf if j == 0 else (levels[j] - half - m) / sd
        b = np.inf if j == 3 else (levels[j] + half - m) / sd
        mass.append(np.where(a > 0, stats.norm.sf(a) - stats.norm.sf(b), stats.norm.cdf(b) - stats.norm.cdf(a)))
    log_mass = np.log(np.stack(mass))
    gap = np.trapezoid((joint0 * (np.log(post) - log_mass)).sum(0), z)
    recon = -np.trapezoid((joint0 * log_mass).sum(0), z)
    z1 = np.linspace(-12.0, 12.0, 200_001)
    joint1 = w[:, None] * stats.norm.pdf(z1[None], a1 * levels[:, None], s1)
    q1 = joint1.sum(0)
    prior_kl = np.trapezoid(q1 * (np.log(q1) - stats.norm.logpdf(z1, 0.0, s1)), z1)
    mi0 = np.trapezoid((joint0 * np.log(post / w[:, None])).sum(0), z)  # I(x; z_0)
    mi1 = np.trapezoid((joint1 * np.log(joint1 / q1 / w[:, None])).sum(0), z1)  # I(x; z_1)
    expected = -(w * np.log(w)).sum() + gap + prior_kl
    se = total.std() / math.sqrt(n)
    assert abs(total.mean() - expected) < K_SE * se, f"VLB {total.mean():.5f} vs {expected:.5f} (se {se:.5f})"
    # term by term (each with its own, smaller, standard error)
    for what, mc, ref in (("diffusion", terms.diffusion, mi0 - mi1), ("reconstruction", terms.reconstruction, recon),
                          ("prior", terms.prior, 0.5 * math.exp(-1.0) * (w * levels**2).sum())):
        mean, err = float(mc.mean()), float(mc.std()) / math.sqrt(n)
        assert abs(mean - ref) < K_SE * err, f"{what}: {mean:.5f} vs {ref:.5f} (se {err:.5f})"
    assert abs(mi0 - mi1 + 0.5 * math.exp(-1.0) * (w * levels**2).sum() + recon - expected) < 1e-6  # the identity
    assert gap > 0.03 and prior_kl > 0.003  # both non-trivial


def test_bad_input() -> None:
    p = sdeflow.create_process("vdm", bins=17, hidden=16)
    sm = ScoreModel(sdeflow.create_model("mlp", dim=4), p)
    with pytest.raises(OptionError, match="levels"):
        sm.loss(torch.full((3, 4), 0.05))
    with pytest.raises(OptionError, match="levels"):
        sm.loss(torch.full((3, 4), 1.5))
    vp = ScoreModel(sdeflow.create_model("mlp", dim=4), sdeflow.create_process("vp"))
    with pytest.raises(IncompatibleError, match="vdm"):
        vdm_loss(vp, torch.zeros(3, 4))
    with pytest.raises(OptionError, match="integers"):
        levels_to_signed(torch.tensor([0, 17]), 16)
    unchecked = ScoreModel(sdeflow.create_model("mlp", dim=4), sdeflow.create_process("vdm", bins=17, check_data=False))
    assert torch.isfinite(unchecked.loss(torch.full((3, 4), 0.05)))


# ---------------------------------------------------------------------------------- gradients and training
LEARNED_INTERIOR = ("rho1", "b1", "rho2", "b2", "rho3")


@pytest.mark.parametrize("options", [dict(), dict(minimize_variance=False), dict(schedule="linear", learn_endpoints=True)])
def test_loss_gradients_reach_every_parameter(options: dict) -> None:
    """``ScoreModel.loss`` (the VDM bound in bits/dim) sends finite, non-zero gradients to the network,
    the schedule's interior and its endpoints."""
    p = sdeflow.create_process("vdm", bins=17, hidden=64, **options)
    sm = ScoreModel(sdeflow.create_model("mlp", dim=8), p)
    x = levels_to_signed(torch.randint(0, 17, (64, 8), generator=gen(0)), 16)
    loss = sm.loss(x, generator=gen(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    names = [n for n, _ in sm.named_parameters()]
    assert "process.schedule.endpoints_module.gamma_min" in names
    for name, q in sm.named_parameters():
        assert q.grad is not None and torch.isfinite(q.grad).all() and bool((q.grad != 0).any()), name


def test_variance_minimisation_gradient() -> None:
    """With ``minimize_variance`` the interior parameters get exactly the gradient of
    ``mean_i L_i^2`` (``L_i``: sample ``i``'s diffusion term in bits/dim), everything else the VLB's
    gradient, and the loss value is the VLB (same random draws throughout, float64)."""
    p = random_vdm(17, bins=17)
    sm = ScoreModel(sdeflow.create_model("mlp", dim=8).to(F64), p)
    x = levels_to_signed(torch.randint(0, 17, (32, 8), generator=gen(0)), 16, F64)

    def grads(fn) -> tuple[Tensor, dict[str, Tensor]]:  # type: ignore[no-untyped-def]
        sm.zero_grad()
        value = fn()
        value.backward()
        return value.detach(), {n: q.grad.clone() for n, q in sm.named_parameters()}

    c = 1.0 / (8 * math.log(2.0))
    loss_var, g_var = grads(lambda: vdm_loss(sm, x, gen(5)))
    p.minimize_variance = False
    loss_vlb, g_vlb = grads(lambda: vdm_loss(sm, x, gen(5)))
    _, g_sq = grads(lambda: ((vlb_terms(sm, x, gen(5)).diffusion * c) ** 2).mean())
    assert torch.equal(loss_var, loss_vlb)
    for name in g_var:
        ref = g_sq if name.rsplit(".", 1)[-1] in LEARNED_INTERIOR else g_vlb
        torch.testing.assert_close(g_var[name], ref[name], rtol=1e-9, atol=1e-12, msg=name)
    assert not torch.allclose(g_var["process.schedule.rho2"], g_vlb["process.schedule.rho2"])


def test_digits_bits_per_dim_finite_and_decreasing() -> None:
    """An MLP VDM on sklearn's 8x8 digits (17 levels, 1,500 training images) with the default
    learned schedule: the held-out bound (256 images, 2 evaluations each) is finite before and
    after 60 steps and falls by more than ``K_SE`` combined standard errors."""
    from sdeflow.training import TrainConfig, Trainer

    x = levels_to_signed(load_digits_levels().reshape(-1, 64), 16)
    train, held = x[:1500], x[1500:1756]
    torch.manual_seed(0)
    sm = ScoreModel(sdeflow.create_model("mlp", dim=64), sdeflow.create_process("vdm", bins=17))
    before = vlb_breakdown(sm, held, gen(1), repeats=2)
    Trainer(sm, train, TrainConfig(steps=60, batch_size=64, lr=3e-3, ema_decay=None, progress=False)).fit()
    after = vlb_breakdown(sm, held, gen(1), repeats=2)
    for res in (before, after):
        assert all(math.isfinite(v) for v in res.values()), res
        assert res["total"] == pytest.approx(res["diffusion"] + res["prior"] + res["reconstruction"])
    assert after["total"] < before["total"] - K_SE * math.hypot(before["total_se"], after["total_se"]), (before, after)


# ---------------------------------------------------------------------------------- samplers
#: step counts whose discretisation bias is far below 4 standard errors at n = 2000 (measured)
#: (VDM's log-SNR spans [-20, 10]: EDM's sigma/alpha reaches e^10 = 22026, so heun needs more than its 18
#: default steps, measured std error 0.33 at 18, 0.05 at 40, 0.013 at 80 steps; ddim 0.08 at 50 steps)
SAMPLERS = {"sde": dict(steps=200), "ode": dict(), "ancestral": dict(steps=200), "dpm_solver": dict(steps=30),
            "ddim": dict(steps=200), "heun": dict(steps=60), "pc": dict(steps=200)}


@pytest.mark.parametrize("schedule", ["linear", "learned-random"])
def test_samplers_recover_the_mixture_on_vdm(schedule: str) -> None:
    """The exact mixture score under every sampler reproduces ``p_0 = sum_k w_k N(a_0 mu_k, a_0^2 v_k + s_0^2)``
    in mean and standard deviation to 4 standard errors of n = 2000 samples (``std / sqrt(n)`` and
    ``std / sqrt(2 (n - 1))``), on the fixed linear schedule and an untrained random learned one."""
    p = sdeflow.create_process("vdm", schedule="linear") if schedule == "linear" else random_vdm(19)
    gmm = mixture_1d()
    sm = gmm.score_model(p)
    with torch.no_grad():
        a0, s0 = (float(v) for v in p.marginal(torch.zeros(1, dtype=F64)))
    m, var = float(gmm.mean()[0]), float(gmm.covariance()[0, 0])
    mean, std = a0 * m, math.sqrt(a0 * a0 * var + s0 * s0)
    n = 2000
    for name, options in SAMPLERS.items():
        res = sdeflow.create_sampler(name, **options).sample(sm, (n, 1), gen(6))
        x = res.samples.reshape(n)
        assert x.dtype == F64 and torch.isfinite(x).all() and res.nfe > 0, name
        tol_m, tol_s = K_SE * std / math.sqrt(n), K_SE * std / math.sqrt(2 * (n - 1))
        assert abs(float(x.mean()) - mean) < tol_m, f"{name}: mean {float(x.mean()):.4f} vs {mean:.4f}"
        assert abs(float(x.std()) - std) < tol_s, f"{name}: std {float(x.std()):.4f} vs {std:.4f}"


def test_ancestral_sampler_is_vdms_p_zs_given_zt() -> None:
    """One step of the ``ancestral`` sampler from ``t = 1`` to ``s`` equals VDM's ancestral step written
    in ``gamma`` form (the official code's: ``c = -expm1(gamma_s - gamma_t)``,
    ``z_s = sqrt(sigmoid(-gamma_s) / sigmoid(-gamma_t)) (z_t - sigma_t c eps_hat) + sqrt(sigmoid(gamma_s) c) eps``),
    i.e. ``p(z_s | z_t) = q(z_s | z_t, x = x_hat(z_t))`` with the posterior variance (Kingma et al. 2021,
    Eq. 26-27, Appendix A); with ``clip_x0=1`` it equals the reference text's eps clipping to
    ``[(z_t - alpha_t) / sigma_t, (z_t + alpha_t) / sigma_t]``."""
    p = random_vdm(23)
    torch.manual_seed(3)
    sm = ScoreModel(sdeflow.create_model("mlp", dim=3).to(F64), p)
    s = 0.6
    for clip in (None, 1.0):
        res = sdeflow.create_sampler("ancestral", steps=1, t_end=s, denoise=False, clip_x0=clip).sample(sm, (16, 3), gen(4))
        g = gen(4)
        with torch.no_grad():
            gt, gs = p.gamma(torch.ones(1, dtype=F64)), p.gamma(torch.full((1,), s, dtype=F64))
            sigma_t, alpha_t = torch.sigmoid(gt).sqrt(), torch.sigmoid(-gt).sqrt()
            z = torch.randn((16, 3), generator=g, dtype=F64) * sigma_t
            eps_hat = sm.eps(z, torch.ones(16, dtype=F64))
            if clip is not None:
                eps_hat = torch.minimum(torch.maximum(eps_hat, (z - alpha_t) / sigma_t), (z + alpha_t) / sigma_t)
            c = -torch.expm1(gs - gt)
            noise = torch.randn((16, 3), generator=g, dtype=F64)
            ref = torch.sqrt(torch.sigmoid(-gs) / torch.sigmoid(-gt)) * (z - sigma_t * c * eps_hat) \
                + torch.sqrt(torch.sigmoid(gs) * c) * noise
        torch.testing.assert_close(res.samples, ref, rtol=1e-9, atol=1e-9, msg=f"clip_x0={clip}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_vdm_on_gpu() -> None:
    """The same code on CUDA: schedule values match the CPU's, the loss trains every parameter,
    the ancestral sampler runs there."""
    import copy

    torch.manual_seed(0)
    cpu = sdeflow.create_process("vdm", bins=17)
    sm = ScoreModel(sdeflow.create_model("mlp", dim=8), copy.deepcopy(cpu)).cuda()
    t = torch.linspace(0, 1, 33)
    torch.testing.assert_close(sm.process.gamma(t.cuda()).detach().cpu(), cpu.gamma(t).detach(), rtol=1e-5, atol=1e-5)
    x = levels_to_signed(torch.randint(0, 17, (64, 8), generator=gen(0)), 16).cuda()
    loss = sm.loss(x, generator=torch.Generator("cuda").manual_seed(1))
    loss.backward()
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in sm.parameters())
    res = sdeflow.create_sampler("ancestral", steps=20, clip_x0=1.0).sample(sm, (16, 8), torch.Generator("cuda").manual_seed(2))
    assert res.samples.device.type == "cuda" and torch.isfinite(res.samples).all()
