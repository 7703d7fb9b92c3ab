"""The ``ancestral`` and ``langevin`` samplers with exact scores, and DDPM's chain <-> VP SDE embedding.

For the Gaussian target ``N(MU, V) = N(5, 2^2)`` (reference texts 000/001) every step of both
samplers is a linear-Gaussian map of the state: the exact model's ``x0_hat(x) = MU + kappa (x - a MU)``,
``kappa = a V / (a^2 V + s^2)``, and its score ``-(x - a MU) / (a^2 V + s^2)`` are affine in ``x``.
So the law the sampler produces on its own time grid (read back through the per-step callback)
is computable exactly by a mean/variance recursion (:func:`ancestral_law`, :func:`langevin_law`).
Each test checks two things:

* the Monte-Carlo samples against that law, within 4.5 standard errors from n
  (``se(mean) = sd / sqrt(n)``, ``se(sd) = sd / sqrt(2 (n - 1))``): the sampler does what its
  equations say, step for step;
* the law against N(5, 2^2) itself, within a stated discretisation tolerance: the equations
  are the right ones.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import sdeflow
from sdeflow.data.datasets import gaussian_1d
from sdeflow.errors import NonFiniteError, OptionError

F64 = torch.float64
MU, V = 5.0, 4.0
K_SE = 4.5
N = 4000  # samples per Monte-Carlo check


def exact_model(process: str, **options) -> sdeflow.ScoreModel:
    return gaussian_1d(MU, math.sqrt(V), dtype=F64).score_model(sdeflow.create_process(process, **options).to(F64))


def run(sampler: sdeflow.Sampler, model: sdeflow.ScoreModel, n: int = N, seed: int = 1):
    """Samples, the result, and the time of every step as the sampler reported it."""
    times: list[float] = []
    res = sampler.sample(model, (n, 1), torch.Generator().manual_seed(seed),
                         callback=lambda k, t, x: times.append(float(t)))
    return res.samples.reshape(-1), res, times


def marginal(process: sdeflow.ForwardProcess, times: list[float]) -> tuple[Tensor, Tensor]:
    return process.marginal(torch.tensor(times, dtype=F64))


def ancestral_law(process: sdeflow.ForwardProcess, times: list[float], variance: str, clip_free: bool = True,
                  denoise: bool = True) -> tuple[float, float]:
    """Mean and std of the output of q(x_s | x_t, x0 = x0_hat(x_t)) steps on ``times`` (Ho et al. 2020, Eq. 6-7,
    in alpha/sigma form: alpha_{t|s} = a_t / a_s, sigma_{t|s}^2 = s_t^2 - alpha_{t|s}^2 s_s^2), from p_{t_max}."""
    a, s = marginal(process, times)
    m, var = a[0] * MU, a[0] ** 2 * V + s[0] ** 2
    for k in range(len(times) - 1):
        at, st, a_s, s_s = a[k], s[k], a[k + 1], s[k + 1]
        a_ts = at / a_s
        v_ts = st**2 - a_ts**2 * s_s**2
        coef_x, coef_x0 = a_ts * s_s**2 / st**2, a_s * v_ts / st**2
        kappa = at * V / (at**2 * V + st**2)
        c = coef_x + coef_x0 * kappa
        m = c * m + coef_x0 * (MU - kappa * at * MU)
        var = c**2 * var + (v_ts * s_s**2 / st**2 if variance == "posterior" else v_ts)
    if denoise:
        at, st = a[-1], s[-1]
        kappa = at * V / (at**2 * V + st**2)
        return float(kappa * m + MU - kappa * at * MU), float(kappa * torch.sqrt(var))
    return float(m), float(torch.sqrt(var))


def langevin_law(process: sdeflow.ForwardProcess, step_times: list[float], step_size: float) -> tuple[float, float]:
    """Mean and std after x <- x + alpha/2 score + sqrt(alpha) z at every reported step (alpha = eps sigma^2 /
    sigma_L^2, Song & Ermon 2019, Alg. 1) from p_{t_max}, then the Tweedie denoising x0 = (x + sigma_L^2 score) / a."""
    a0, s0 = marginal(process, [float(process.t_max)])
    m, var = a0[0] * MU, a0[0] ** 2 * V + s0[0] ** 2
    a, s = marginal(process, step_times)
    sig_l2 = s[-1] ** 2
    for k in range(len(step_times)):
        alpha = step_size * s[k] ** 2 / sig_l2
        c = alpha / (2 * (a[k] ** 2 * V + s[k] ** 2))
        m = (1 - c) * m + c * a[k] * MU
        var = (1 - c) ** 2 * var + alpha
    keep = 1 - sig_l2 / (a[-1] ** 2 * V + sig_l2)  # x + sigma_L^2 score, affine in x
    return float((keep * m + (1 - keep) * a[-1] * MU) / a[-1]), float(keep * torch.sqrt(var) / a[-1])


def assert_matches_law(x: Tensor, law: tuple[float, float]) -> None:
    n = x.numel()
    mean, sd = float(x.mean()), float(x.std())
    assert abs(mean - law[0]) <= K_SE * law[1] / math.sqrt(n), (mean, law)
    assert abs(sd - law[1]) <= K_SE * law[1] / math.sqrt(2 * (n - 1)), (sd, law)


# --------------------------------------------------------------------------- ancestral
ANCESTRAL = [
    # process, options, sampler options, tolerance of the law's std against 2 (discretisation)
    ("ddpm", {}, {"variance": "posterior"}, 0.01),  # Ho et al.'s own chain: 1000 steps
    ("ddpm", {}, {"variance": "forward", "steps": 100}, 0.03),  # respaced
    ("ddpm", {"schedule": "cosine"}, {"variance": "posterior", "steps": 100}, 0.05),
    ("ddpm", {}, {"variance": "posterior", "steps": 50}, 0.15),  # beta-tilde underestimates at 50 steps
    ("vp", {}, {"variance": "posterior", "steps": 200}, 0.05),
    ("vp", {}, {"variance": "forward", "steps": 200}, 0.05),
    ("subvp", {}, {"variance": "posterior", "steps": 200}, 0.05),
    ("ve", {}, {"variance": "posterior", "steps": 200}, 0.05),
    ("ve", {}, {"variance": "forward", "steps": 200}, 0.05),
]


@pytest.mark.parametrize("process,options,sampler_options,tol", ANCESTRAL)
def test_ancestral_with_exact_score(process: str, options: dict, sampler_options: dict, tol: float) -> None:
    model = exact_model(process, **options)
    sampler = sdeflow.create_sampler("ancestral", **sampler_options)
    x, res, times = run(sampler, model)
    law = ancestral_law(model.process, times, sampler_options["variance"])
    assert_matches_law(x, law)
    assert abs(law[0] - MU) <= 1e-9  # the exact posterior mean keeps the mean exactly
    assert abs(law[1] - 2.0) <= tol, law
    steps = sampler_options.get("steps")
    assert res.steps == len(times) - 1 == (steps if steps is not None else model.process.num_steps - 1)
    assert res.nfe == res.steps + 1  # one x0 prediction per transition, plus the final denoising


def test_ddpm_default_grid_is_the_chain_with_n_evaluations() -> None:
    """Algorithm 2 of Ho et al.: t = N/N, ..., 1/N, N evaluations (N - 1 transitions + x0 at t = 1/N)."""
    model = exact_model("ddpm", num_steps=200, beta_start=5e-4, beta_end=0.1)
    x, res, times = run(sdeflow.create_sampler("ancestral"), model, n=8)
    assert res.nfe == 200 and res.steps == 199
    assert times == pytest.approx([i / 200 for i in range(200, 0, -1)], abs=1e-15)
    _, res_nd, _ = run(sdeflow.create_sampler("ancestral", denoise=False), model, n=8)
    assert res_nd.nfe == 199


@pytest.mark.parametrize("steps", [1, 7, 50, 998, 999, 5000])
def test_respacing_strides_the_chain(steps: int) -> None:
    model = exact_model("ddpm")
    _, res, times = run(sdeflow.create_sampler("ancestral", steps=steps), model, n=2)
    expected = min(steps, 999)
    assert len(times) == expected + 1 and res.nfe == expected + 1
    assert times[0] == pytest.approx(1.0) and times[-1] == pytest.approx(1e-3)
    assert all(b < a for a, b in zip(times, times[1:]))
    assert all(abs(t * 1000 - round(t * 1000)) < 1e-9 for t in times)  # only the chain's own times i/N


def test_clip_x0() -> None:
    model = exact_model("ddpm")
    sampler = sdeflow.create_sampler("ancestral", steps=50)
    plain = sampler.sample(model, (500, 1), torch.Generator().manual_seed(0)).samples
    clipped = sdeflow.create_sampler("ancestral", steps=50, clip_x0=1.0).sample(
        model, (500, 1), torch.Generator().manual_seed(0)).samples
    inactive = sdeflow.create_sampler("ancestral", steps=50, clip_x0=1e6).sample(
        model, (500, 1), torch.Generator().manual_seed(0)).samples
    assert float(clipped.abs().max()) <= 1.0  # the final x0 prediction is clipped
    assert float(plain.max()) > 5.0
    assert torch.equal(inactive, plain)  # a bound never reached changes nothing
    with pytest.raises(OptionError, match="clip_x0"):
        sdeflow.create_sampler("ancestral", clip_x0=0.0)
    with pytest.raises(OptionError, match="variance must be one of"):
        sdeflow.create_sampler("ancestral", variance="learned")


# --------------------------------------------------------------------------- langevin
def test_langevin_on_ncsn_with_exact_score() -> None:
    """NCSN's levels 1 .. 0.01 (L = 10), T = 100, eps = 2e-5, final denoising (Song & Ermon 2019)."""
    model = exact_model("ncsn")
    sampler = sdeflow.create_sampler("langevin")
    x, res, times = run(sampler, model)
    step_times = times[1:]  # the callback also reports the initial state
    assert res.nfe == 10 * 100 + 1 and len(step_times) == 1000
    levels = sorted(set(step_times), reverse=True)
    sig = model.process.marginal(torch.tensor(levels, dtype=F64))[1]
    torch.testing.assert_close(sig, torch.logspace(0, -2, 10, dtype=F64), rtol=1e-12, atol=0)
    law = langevin_law(model.process, step_times, 2e-5)
    assert_matches_law(x, law)
    # annealed Langevin with a finite T leaves the top level's extra variance partly in place
    assert abs(law[0] - MU) <= 1e-9 and abs(law[1] - 2.0) <= 0.1, law


def test_langevin_on_ve_with_exact_score() -> None:
    """VE needs t_end > 0 (finite log-SNR); levels uniform in log-SNR = geometric sigmas. The step is
    scaled to the range: sigma runs from 50 down to sigma_L = 0.128 (t_end = 0.3), and eps = 1e-2 keeps
    alpha = eps sigma^2 / sigma_L^2 below the stability limit 2 (V + sigma^2) while mixing the top levels."""
    model = exact_model("ve")
    t_end = 0.3
    sampler = sdeflow.create_sampler("langevin", t_end=t_end, num_scales=10, n_steps_each=50, step_size=1e-2)
    x, res, times = run(sampler, model)
    step_times = times[1:]
    assert res.nfe == 10 * 50 + 1
    levels = torch.tensor(sorted(set(step_times), reverse=True), dtype=F64)
    sig = model.process.marginal(levels)[1]
    ratios = sig[1:] / sig[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, float(ratios[0])), rtol=1e-9, atol=0)
    assert float(levels[0]) == pytest.approx(1.0) and float(levels[-1]) == pytest.approx(t_end)
    law = langevin_law(model.process, step_times, 1e-2)
    assert_matches_law(x, law)
    assert abs(law[0] - MU) <= 1e-9 and abs(law[1] - 2.0) <= 0.1, law


def test_langevin_needs_a_finite_log_snr_on_ve() -> None:
    with pytest.raises(OptionError, match="t_end > t_min"):
        sdeflow.create_sampler("langevin").sample(exact_model("ve"), (4, 1))


def test_langevin_divergence_is_reported_with_its_level() -> None:
    """eps = 2e-5 is NCSN's step for sigma 1 .. 0.01; on VE down to sigma ~ 1e-3 the top levels' steps
    alpha = eps sigma_1^2 / sigma_L^2 exceed the stability limit and the chain blows up (an explicit
    step: the default scales with sigma_L, see the next test)."""
    with pytest.raises(NonFiniteError, match=r"noise level \d+ of 10"):
        sdeflow.create_sampler("langevin", step_size=2e-5, t_end=1e-3).sample(exact_model("ve"), (16, 1),
                                                                                torch.Generator().manual_seed(0))


def _level_sigmas(process: sdeflow.ForwardProcess, step_times: list[float]) -> list[float]:
    levels = sorted(set(step_times), reverse=True)
    return marginal(process, levels)[1].tolist()


@pytest.mark.parametrize("process, t_end, std_tol", [("subvp", None, None), ("ve", 1e-3, 0.25)])
def test_langevin_default_step_is_stable_far_below_sigma_001(process: str, t_end: float | None,
                                                             std_tol: float | None) -> None:
    """The default step is ``alpha_i = 0.2 sigma_i^2`` (NCSN's ``eps / sigma_L^2``) whatever ``sigma_L``: sub-VP at
    ``t_min`` (``sigma_L = 1.1e-4``) and VE at ``t = 1e-3`` (``sigma_L = 1.3e-3``), where NCSN's fixed 2e-5 gives
    ``alpha_1 / sigma_1^2`` of 1650 and 12 and diverges, run and follow their exact law. On VE the law is within
    0.25 of N(5, 2^2)'s std (measured 2.21: 100 steps a level leave some of the top levels' excess); on sub-VP
    annealed Langevin lags the moving mean ``alpha_t mu`` (law mean 2.9: a property of the method on a
    variance-preserving process, checked here only against the law)."""
    model = exact_model(process)
    kw = {} if t_end is None else {"t_end": t_end}
    x, res, times = run(sdeflow.create_sampler("langevin", **kw), model)
    assert torch.isfinite(x).all() and res.nfe == 10 * 100 + 1
    step_times = times[1:]
    sig = _level_sigmas(model.process, step_times)
    assert sig[-1] < 2e-3
    law = langevin_law(model.process, step_times, 0.2 * sig[-1] ** 2)
    assert_matches_law(x, law)
    if std_tol is not None:
        assert abs(law[0] - MU) < 1e-9 and abs(law[1] - 2.0) < std_tol, law
    with pytest.raises(NonFiniteError, match=r"noise level \d+ of 10"):
        sdeflow.create_sampler("langevin", step_size=2e-5, **kw).sample(model, (16, 1), torch.Generator().manual_seed(0))


def test_langevin_default_is_ncsns_step_on_ncsn() -> None:
    """On NCSN's levels (sigma_L = 0.01) the default is the reference's eps = 2e-5 (up to rounding)."""
    model = exact_model("ncsn")
    a = sdeflow.create_sampler("langevin", n_steps_each=20).sample(model, (256, 1), torch.Generator().manual_seed(3))
    b = sdeflow.create_sampler("langevin", n_steps_each=20, step_size=2e-5).sample(
        model, (256, 1), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-12, atol=1e-12)


def test_langevin_ncsnv2_step_rule() -> None:
    """Technique 4 of Song & Ermon 2020: the relative step ``u`` minimises ``|s_T^2 / sigma_i^2 - 1|`` of their Eq. 4,
    ``(1 - u)^(2T) (gamma^2 - 2u / (1 - (1 - u)^2)) + 2u / (1 - (1 - u)^2)``, written here as in the paper."""
    from sdeflow_plugins.langevin.sampler import ncsnv2_relative_step

    def eq4(u: float, T: int, gamma: float) -> float:
        c = 2 * u / (1 - (1 - u) ** 2)
        return (1 - u) ** (2 * T) * (gamma**2 - c) + c

    for T, gamma in ((100, 10 ** (2 / 9)), (5, 10 ** (2 / 9)), (20, 3.0)):
        u = ncsnv2_relative_step(T, gamma)
        assert 0 < u < 1
        best = abs(eq4(u, T, gamma) - 1)
        assert all(best <= abs(eq4(u * f, T, gamma) - 1) + 1e-12 for f in (0.9, 0.99, 1.01, 1.1, 0.5, 2.0))
    model = exact_model("ncsn")
    s = sdeflow.create_sampler("langevin", step_rule="ncsnv2")
    x, res, times = run(s, model)
    step_times = times[1:]
    sig = _level_sigmas(model.process, step_times)
    u = ncsnv2_relative_step(100, (sig[0] / sig[-1]) ** (1 / 9))
    assert_matches_law(x, langevin_law(model.process, step_times, u * sig[-1] ** 2))
    with pytest.raises(OptionError, match="step_rule='ncsnv2' chooses the step size itself"):
        sdeflow.create_sampler("langevin", step_rule="ncsnv2", step_size=1e-5)
    with pytest.raises(OptionError, match="step_rule must be one of ncsn, ncsnv2"):
        sdeflow.create_sampler("langevin", step_rule="ncsnv3")


# --------------------------------------------------------------------------- NaN reporting
class NaNBelow(sdeflow.ScoreModel):
    """The exact model, but NaN for t < t_bad."""

    def __init__(self, inner: sdeflow.ScoreModel, t_bad: float) -> None:
        super().__init__(inner.network, inner.process, parametrization=inner.parametrization)
        self.inner, self.t_bad = inner, t_bad

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.inner.network_output(x, t)
        return torch.where((t < self.t_bad).reshape(-1, *[1] * (x.ndim - 1)), torch.nan, out)

    def prior_sample(self, *args, **kwargs):
        return self.inner.prior_sample(*args, **kwargs)


def test_ancestral_nan_names_the_step() -> None:
    model = NaNBelow(exact_model("ddpm"), 0.4995)  # t = 0.499 is the chain's step 502 (t_k = 1 - (k-1)/1000)
    with pytest.raises(NonFiniteError, match=r"sampler 'ancestral' .*step 502 of 999.*t=0\.499"):
        sdeflow.create_sampler("ancestral").sample(model, (8, 1), torch.Generator().manual_seed(0))


def test_langevin_nan_names_the_level() -> None:
    model = NaNBelow(exact_model("ncsn"), 0.5)  # NCSN levels t = 1, 8/9, ..., 5/9, 4/9: level 6 is the first below
    with pytest.raises(NonFiniteError, match=r"sampler 'langevin' .*noise level 6 of 10"):
        sdeflow.create_sampler("langevin", n_steps_each=3).sample(model, (8, 1), torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- the DDPM chain <-> VP SDE
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_marginal_is_the_chains_alpha_bar_at_the_grid(schedule: str) -> None:
    process = sdeflow.create_process("ddpm", schedule=schedule).to(F64)
    betas = process.betas.to(F64)
    abar = torch.cumprod(1 - betas, 0)  # Ho et al. 2020, Eq. 4: q(x_i | x_0) = N(sqrt(abar_i) x_0, (1 - abar_i) I)
    t = torch.arange(1, 1001, dtype=F64) / 1000
    a, s = process.marginal(t)
    torch.testing.assert_close(a * a, abar, rtol=1e-13, atol=1e-16)
    torch.testing.assert_close(s * s, 1 - abar, rtol=1e-12, atol=1e-16)
    if schedule == "linear":  # Ho et al.'s schedule: beta_i = linspace(1e-4, 0.02, 1000)
        torch.testing.assert_close(betas, torch.linspace(1e-4, 0.02, 1000, dtype=F64), rtol=0, atol=1e-18)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_beta_integrates_to_the_chains_steps(schedule: str) -> None:
    """beta(t) = -d log abar / dt, so its integral over [t_{i-1}, t_i] is -log(1 - beta_i) exactly
    (two-point Gauss-Legendre is exact: the spline's slope is quadratic on each interval)."""
    process = sdeflow.create_process("ddpm", schedule=schedule).to(F64)
    n = process.num_steps
    left = torch.arange(0, n, dtype=F64) / n
    h = 1.0 / n
    nodes = [left + h / 2 * (1 + sgn / math.sqrt(3)) for sgn in (-1.0, 1.0)]
    integral = h / 2 * (process.beta(nodes[0]) + process.beta(nodes[1]))
    torch.testing.assert_close(integral, -torch.log1p(-process.betas.to(F64)), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_beta_is_n_times_the_chains_beta(schedule: str) -> None:
    """Reference text 001: beta(t) = N beta_{tN+1} at the grid points, up to the discretisation:
    |beta(i/N) - N beta_{i+1}| <= N beta_{i+1}^2 / (2 (1 - beta_{i+1})) + N max(|beta_{i+1} - beta_i|,
    |beta_{i+2} - beta_{i+1}|): the first term bounds -log(1 - beta) - beta (the chain's exact
    per-step rate against its first-order form), the second one step of change of the piecewise-
    constant beta-bar, which a continuous beta(t) cannot follow exactly. For the linear schedule that
    is below 1.1% of beta(t) for t >= 0.1; for the cosine schedule's clamp near t = 1 it is large."""
    process = sdeflow.create_process("ddpm", schedule=schedule).to(F64)
    n = process.num_steps
    b = process.betas.to(F64)
    t = torch.arange(0, n, dtype=F64) / n
    ref = n * b
    d = n * (b[1:] - b[:-1]).abs()
    jump = torch.maximum(torch.cat([d, d[-1:]]), torch.cat([d[:1], d]))
    bound = n * b**2 / (2 * (1 - b)) + jump
    diff = (process.beta(t) - ref).abs()
    assert bool((diff <= bound).all()), float((diff / bound).max())
    if schedule == "linear":
        late = t >= 0.1
        assert float((diff[late] / ref[late]).max()) < 0.011
        # and it is the VP SDE of beta_min = N beta_1 = 0.1, beta_max = N beta_N = 20 (Song et al. 2021, Eq. 11)
        vp = sdeflow.create_process("vp").to(F64)
        assert float(((process.beta(t) - vp.diffusion(t.clamp_min(vp.t_min)) ** 2).abs() / ref)[late].max()) < 0.011


def test_ncsn_levels_and_weighting() -> None:
    process = sdeflow.create_process("ncsn").to(F64)
    torch.testing.assert_close(process.sigmas(), torch.logspace(0, -2, 10, dtype=F64), rtol=1e-13, atol=0)
    # sigma_t is the level itself and the VE SDE's g^2 = d sigma^2 / dt (Song et al. 2021, Eq. 9)
    t = torch.linspace(0, 1, 101, dtype=F64)
    sig = process.marginal(t)[1]
    dsig2 = torch.func.vmap(torch.func.grad(lambda u: process.marginal(u.reshape(1))[1][0] ** 2))(t)
    torch.testing.assert_close(process.g2(t), dsig2, rtol=1e-10, atol=0)
    draws = process.sample_training_time(20_000, torch.Generator().manual_seed(0), dtype=F64)
    assert bool(torch.isin(draws, process.discrete_times()).all())
    counts = torch.bincount(torch.round(draws * 9).long(), minlength=10).double()
    se = math.sqrt(20_000 * 0.1 * 0.9)
    assert bool(((counts - 2000).abs() <= K_SE * se).all())
    assert float(sig[0]) == pytest.approx(0.01) and float(sig[-1]) == pytest.approx(1.0)
