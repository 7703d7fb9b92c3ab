"""The fast samplers of issue 5: ``dpm_solver`` (DPM-Solver++ 2M/3M), ``ddim`` and ``heun`` (EDM), their
generality over processes (built-in and third-party), capabilities, options and error messages.

Ground truth is the exact score of a Gaussian mixture under each process (closed form). Two
metrics:

* the mean log-density gap ``E_p[log p] - mean(log p(samples))`` of 8,000 samples under the
  mixture ``p`` (:func:`sdeflow.data.metrics.log_density_gap`), with ``E_p[log p]`` from 200,000
  reference draws. Its noise floor is its standard error, ``sd(log p) / sqrt(n)``: about 0.012
  nats for the nine Gaussians and 0.034 for the 16-D mixture at ``n = 8000``;
* the *paired* bias of a deterministic sampler: the same gap measured against the
  probability-flow ODE solved tightly (dopri5) from the same initial noise. Its noise is the
  standard error of the paired differences (~0.001 nats), so a solver's own error is resolved
  far below the floor of the unpaired metric.

Measured (``benchmarks/few_step.py``, ``docs/solvers.md``): DPM-Solver++ 2M (the default ``"logSNR"``
levels over EDM's range) has a paired bias of 0.29-1.0 nats at 10 NFE, 0.08-0.38 at 20 and 0.02-0.09
at 50, falling monotonically; 3M at 100 NFE and UniPC-3 at 50 are below 0.02 on all eight problems.
The issue's hope of "the noise floor from 10 NFE up" does not hold on these narrow mixtures with a
fixed schedule (component std 0.25, and down to 0.22 along the 16-D mixture's narrow axes; the
reasons and the calibrated schedules that reach it from 20 NFE: ``docs/solvers.md``), so the floor
is asserted where it is reached.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from common import gen, unobserved_repaint
from torch import Tensor, nn

import sdeflow
from sdeflow import ForwardProcess, GaussianMixture, ScoreModel, append_dims
from sdeflow.data.datasets import anisotropic_mixture, gaussian_1d, nine_gaussians
from sdeflow.errors import IncompatibleError, NonFiniteError, OptionError, UnknownComponentError
from sdeflow.solvers import EDM_SIGMA_MIN, GridCoefficients, edm_times, scaled_sigma, solver_times
from sdeflow.testing import ReferenceOUProcess

pytestmark = pytest.mark.usefixtures("single_thread")

PROCESSES = ("vp", "subvp", "ve", "ddpm")
N = 8000  # samples for the log-density metric (issue 5)
N_PAIRED = 2000  # samples (a prefix of the same initial noise) for the paired bias
K_SE = 2.0  # one-sided comparisons: standard errors of margin


@functools.lru_cache(maxsize=None)
def mixture(name: str) -> GaussianMixture:
    if name == "nine_gaussians":
        return nine_gaussians(dtype=torch.float64)
    return anisotropic_mixture(16, dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def expected_log_p(name: str) -> tuple[float, float]:
    """``E_p[log p]`` from 200,000 draws and its standard error."""
    gmm = mixture(name)
    lp = gmm.log_prob(gmm.sample(200_000, gen(12345)))
    return float(lp.mean()), float(lp.std() / math.sqrt(lp.numel()))


def with_fixed_prior(sm: ScoreModel, x_T: Tensor) -> ScoreModel:
    """Make ``sm`` start every run from the first rows of ``x_T`` (so runs of different sizes pair up)."""

    def prior_sample(shape, generator=None, device=None, dtype=None):  # type: ignore[no-untyped-def]
        assert shape[0] <= x_T.shape[0]
        return x_T[: shape[0]].reshape(tuple(shape)).clone()

    sm.prior_sample = prior_sample  # type: ignore[method-assign]
    return sm


# ---------------------------------------------------------------------------- accuracy on exact mixtures
@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("data", ["nine_gaussians", "aniso16"])
def test_dpm_solver_accuracy_on_exact_mixtures(data: str, process_name: str) -> None:
    """DPM-Solver++ on exact scores: its error falls as NFE grows (10 -> 20 -> 50), it beats Euler-Maruyama
    on the reverse SDE at 50 NFE, 3M at 100 NFE is within 0.03 nats of the truth (the metric's
    noise floor at 8,000 samples is 0.012 / 0.034 nats), and so is UniPC-3 at 50 NFE."""
    gmm = mixture(data)
    d = gmm.dim
    process = sdeflow.create_process(process_name)
    x_T = gmm.score_model(process).prior_sample((N, d), gen(0))
    sm = with_fixed_prior(gmm.score_model(process), x_T)
    e_lp, e_se = expected_log_p(data)

    ref = sdeflow.create_sampler("ode", method="dopri5", rtol=1e-6, atol=1e-6).sample(sm, (N_PAIRED, d))
    lp_ref = gmm.log_prob(ref.samples)

    def paired_bias(samples: Tensor) -> tuple[float, float]:
        diff = lp_ref - gmm.log_prob(samples[:N_PAIRED])
        return float(diff.mean()), float(diff.std() / math.sqrt(N_PAIRED))

    # error does not grow with NFE (the default: 2M, log-SNR steps, lower-order final step)
    bias = {}
    for k in (10, 20, 50):
        res = sdeflow.create_sampler("dpm_solver", steps=k).sample(sm, (N_PAIRED, d))
        assert res.nfe == k and res.steps == k
        bias[k] = paired_bias(res.samples)
    for lo, hi in ((10, 20), (20, 50)):
        slack = 3.0 * max(bias[lo][1], bias[hi][1])
        assert abs(bias[hi][0]) <= abs(bias[lo][0]) + slack, \
            f"{data}/{process_name}: error grew from {lo} to {hi} NFE: {bias}"
    assert abs(bias[50][0]) < 0.5 * abs(bias[10][0]), f"{data}/{process_name}: no convergence: {bias}"

    # beats Euler-Maruyama on the reverse SDE at 50 NFE (49 steps + the final denoising)
    euler = sdeflow.create_sampler("sde", method="euler", steps=49).sample(gmm.score_model(process), (N, d), gen(1))
    assert euler.nfe == 50
    lp_e = gmm.log_prob(euler.samples)
    gap_e = e_lp - float(lp_e.mean())
    se_e = math.hypot(float(lp_e.std()) / math.sqrt(N), e_se)
    if (data, process_name) == ("aniso16", "ve"):
        # Euler's bias on 16-D VE is ~0.07 nats (64,000 samples: 0.0725 +- 0.012), 2M's 0.073: a
        # tie, not resolvable with 8,000 samples; assert only that DPM-Solver is not worse
        assert bias[50][0] < gap_e + K_SE * se_e, f"dpm 2M bias {bias[50]} vs euler gap {gap_e:.4f} +- {se_e:.4f}"
    else:
        assert bias[50][0] < gap_e - K_SE * se_e, f"dpm 2M bias {bias[50]} vs euler gap {gap_e:.4f} +- {se_e:.4f}"

    # the noise floor: 3M with 100 steps, 8,000 samples, the metric
    res = sdeflow.create_sampler("dpm_solver", steps=100, order=3).sample(sm, (N, d))
    b3, b3_se = paired_bias(res.samples)
    assert abs(b3) < 0.03, f"{data}/{process_name}: 3M/100 bias {b3:.4f}"
    lp = gmm.log_prob(res.samples)
    gap = e_lp - float(lp.mean())  # = sdeflow.data.metrics.log_density_gap with the cached reference mean
    se = math.hypot(float(lp.std()) / math.sqrt(N), e_se)
    assert abs(gap) < 0.03 + 3.0 * se, f"{data}/{process_name}: 3M/100 gap {gap:.4f} +- {se:.4f}"

    # UniPC-3 (UniP-3 + UniC-3, fourth order) reaches it at 50 NFE (measured paired bias <= 0.02)
    res = sdeflow.create_sampler("unipc", steps=50, order=3).sample(sm, (N_PAIRED, d))
    assert res.nfe == 50
    b_u, _ = paired_bias(res.samples)
    assert abs(b_u) < 0.03, f"{data}/{process_name}: UniPC-3/50 bias {b_u:.4f}"


def _slope(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(1 / steps)``: the empirical order."""
    return float(np.polyfit(np.log(1.0 / np.asarray(steps, float)), np.log(np.asarray(errors)), 1)[0])


@pytest.mark.parametrize("process_name", PROCESSES)
def test_heun_and_ddim_converge_at_their_order(process_name: str) -> None:
    """Pathwise error against the probability-flow ODE solved by dopri8 (rtol = atol = 1e-10) from the
    same initial noise: EDM's Heun converges at order 2, DDIM (eta = 0) at order 1.

    Measured slopes between consecutive step counts 16..128 (nine Gaussians): Heun 2.02-2.34
    (2.02 from 128 to 256 steps: the wobble is pre-asymptotic), DDIM 0.86-1.08; least-squares fits
    over the four step counts must lie within 0.3 of the order.
    """
    gmm = mixture("nine_gaussians")
    process = sdeflow.create_process(process_name)
    n = 256
    x_T = gmm.score_model(process).prior_sample((n, 2), gen(2))
    sm = with_fixed_prior(gmm.score_model(process), x_T)
    ref = sdeflow.create_sampler("ode", method="dopri8", rtol=1e-10, atol=1e-10).sample(sm, (n, 2)).samples
    for name, steps, order in (("heun", [16, 32, 64, 128], 2.0), ("ddim", [16, 32, 64, 128], 1.0)):
        errors = []
        for k in steps:
            res = sdeflow.create_sampler(name, steps=k).sample(sm, (n, 2))
            errors.append(float((res.samples - ref).norm(dim=1).mean()))
        assert all(b < a for a, b in zip(errors, errors[1:])), f"{name}/{process_name}: {errors}"
        p = _slope(steps, errors)
        assert abs(p - order) < 0.3, f"{name}/{process_name}: slope {p:.2f}, expected {order}: {errors}"
        assert sdeflow.create_sampler(name).order == order


def test_dpm_solver_converges_at_its_order() -> None:
    """Pathwise order of DPM-Solver++ with log-SNR steps on the nine Gaussians under VP, against dopri8
    (rtol = atol = 1e-12), steps 80 -> 160 -> 320. Measured: order 1: 1.12, 1.07; 2M: 1.73, 1.87
    (approaching 2 from below); 3M: 3.02, 3.10; the authors' 3M rule: 2.02, 2.07 (second order:
    see :func:`sdeflow_plugins.dpm_solver.sampler.multistep_weights`)."""
    gmm = mixture("nine_gaussians")
    process = sdeflow.create_process("vp")
    n = 64
    x_T = gmm.score_model(process).prior_sample((n, 2), gen(3))
    sm = with_fixed_prior(gmm.score_model(process), x_T)
    ref = sdeflow.create_sampler("ode", method="dopri8", rtol=1e-12, atol=1e-12).sample(sm, (n, 2)).samples
    steps = [80, 160, 320]
    slopes = {}
    for order, rule in ((1, "taylor"), (2, "taylor"), (3, "taylor"), (3, "authors_code")):
        errors = [float((sdeflow.create_sampler("dpm_solver", steps=k, order=order, order3_rule=rule)
                         .sample(sm, (n, 2)).samples - ref).norm(dim=1).mean()) for k in steps]
        slopes[(order, rule)] = _slope(steps, errors)
    for order in (1, 2, 3):
        assert abs(slopes[(order, "taylor")] - order) < 0.3, slopes
    assert abs(slopes[(3, "authors_code")] - 2.0) < 0.3, slopes


def test_step_orders_warm_up_lower_order_final_and_infinite_steps() -> None:
    """Warm-up with lower orders, lower-order final steps, and order 1 for a step to sigma = 0."""
    from sdeflow.solvers import step_orders

    lam = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert step_orders(lam, 3, lower_order_final=False) == [1, 2, 3, 3, 3]
    assert step_orders(lam, 3, lower_order_final=True) == [1, 2, 3, 2, 1]
    assert step_orders(lam, 2, lower_order_final=True) == [1, 2, 2, 2, 1]
    assert step_orders(lam[:-1] + [math.inf], 3, lower_order_final=False) == [1, 2, 3, 3, 1]


def test_final_step_to_sigma_zero() -> None:
    """VE at ``t_end = 0`` (sigma = 0, infinite log-SNR): every schedule's last step is the first-order
    step ``x = alpha x0_theta`` (no NaN from h = inf), log-SNR and EDM schedules stop at
    sigma/alpha = 0.002 before it, and heun's last step is EDM's Euler step (2N - 1 evaluations)."""
    process = sdeflow.create_process("ve")
    assert process.t_min == 0.0
    for schedule in ("logSNR", "time_uniform", "time_quadratic"):
        grid = solver_times(process, 1.0, 0.0, 10, schedule)
        assert grid.numel() == 11 and grid[0] == 1.0 and grid[-1] == 0.0
        assert bool((grid[1:] < grid[:-1]).all())
    grid = solver_times(process, 1.0, 0.0, 10, "logSNR")
    assert float(scaled_sigma(process, grid[-2:-1])[0]) == pytest.approx(EDM_SIGMA_MIN, rel=1e-9)
    co = GridCoefficients.of(process, grid)
    assert co.sigma[-1] == 0.0 and math.isinf(co.half_log_snr[-1])
    times, sig = edm_times(process, 1.0, 0.0, 18)
    assert sig[-1] == 0.0 and float(sig[-2]) == pytest.approx(EDM_SIGMA_MIN) and times[-1] == 0.0
    assert float(sig[0]) == pytest.approx(float(scaled_sigma(process, torch.tensor([1.0]))[0]))

    gmm = nine_gaussians(dtype=torch.float64)
    sm = gmm.score_model(process)
    for name, kw, nfe in (("dpm_solver", dict(steps=10), 10), ("dpm_solver", dict(steps=10, order=3), 10),
                          ("ddim", dict(steps=10), 10), ("heun", dict(steps=10), 19)):
        res = sdeflow.create_sampler(name, **kw).sample(sm, (500, 2), gen(4))
        assert res.nfe == nfe and torch.isfinite(res.samples).all()
    # the last step returns alpha * x0_theta at the previous grid time exactly
    x_T = gmm.score_model(process).prior_sample((64, 2), gen(4))
    sm = with_fixed_prior(gmm.score_model(process), x_T)
    traj = sdeflow.create_sampler("dpm_solver", steps=10, order=2).sample(sm, (64, 2), return_trajectory=True)
    t_prev = torch.full((64,), float(traj.times[-2]), dtype=torch.float64)
    torch.testing.assert_close(traj.samples, sm.x0(traj.trajectory[-2], t_prev))
    # VP ends at sigma(t_min) > 0: every heun step is a Heun step
    assert sdeflow.create_sampler("heun", steps=10).sample(gmm.score_model(sdeflow.create_process("vp")),
                                                          (10, 2), gen(4)).nfe == 20


def test_lower_order_final_step() -> None:
    """Time-uniform steps towards sub-VP's ``t_min`` (sigma = 1e-4): the last step's log-SNR increment
    is several times the previous one, and a second-order last step extrapolates the data
    prediction linearly in log-SNR where it saturates. Implementations that lower the final order
    only below 10-15 steps do this from 15-20 steps on: measured paired log-density error at 20
    steps 0.32 nats without, 0.08 with the lower-order final step (at 10 steps, with it: 0.05)."""
    gmm = mixture("nine_gaussians")
    process = sdeflow.create_process("subvp")
    x_T = gmm.score_model(process).prior_sample((N_PAIRED, 2), gen(0))
    sm = with_fixed_prior(gmm.score_model(process), x_T)
    ref = sdeflow.create_sampler("ode", method="dopri5", rtol=1e-6, atol=1e-6).sample(sm, (N_PAIRED, 2)).samples
    lp_ref = gmm.log_prob(ref)

    def bias(steps: int, lof: bool) -> tuple[float, float]:
        s = sdeflow.create_sampler("dpm_solver", steps=steps, schedule="time_uniform", lower_order_final=lof)
        diff = lp_ref - gmm.log_prob(s.sample(sm, (N_PAIRED, 2)).samples)
        return float(diff.mean()), float(diff.std() / math.sqrt(N_PAIRED))

    (with_lof, se1), (without, se2) = bias(20, True), bias(20, False)
    assert abs(without) > 2.0 * abs(with_lof) + 3.0 * math.hypot(se1, se2), (with_lof, without)


# ---------------------------------------------------------------------------- a third-party process
class OUProcess(ReferenceOUProcess):
    """Ornstein-Uhlenbeck ``dx = -theta x dt + sqrt(2 theta) dw``: ``alpha_t = exp(-theta t)``,
    ``sigma_t^2 = 1 - exp(-2 theta t)`` (the conformance kit's reference process). Only drift,
    diffusion and marginal: log-SNR and its inverse (bisection) come from the base class."""

    def __init__(self, theta: float = 4.0) -> None:
        super().__init__(theta=theta, t_min=1e-4)


class OUPlugin:
    @sdeflow.hookimpl
    def sdeflow_register_processes(self, registry):  # type: ignore[no-untyped-def]
        registry.add("test-ou", OUProcess)


@pytest.fixture()
def ou_plugin():
    sdeflow.register_plugin(OUPlugin(), name="test-ou-plugin")
    yield
    sdeflow.unregister_plugin("test-ou-plugin")


#: options making each sampler's bias well below 4 standard errors at n = 2000 on N(5, 2^2)
THIRD_PARTY_OPTIONS = {
    "ancestral": dict(steps=200), "ddim": dict(steps=100), "dpm_solver": dict(steps=20), "heun": dict(steps=18),
    "langevin": dict(step_size=2e-3, num_scales=20), "ode": dict(), "pc": dict(steps=200), "sde": dict(steps=200),
    "repaint": dict(steps=300, jump_length=10, resample=2),
}


def test_third_party_process_gets_every_sampler(ou_plugin) -> None:
    """An OU process registered by a plugin runs under every registered sampler (and the fast samplers'
    schedules), and each reproduces the exact ``p_{t_end}`` of N(5, 2^2) to 4 standard errors."""
    process = sdeflow.create_process("test-ou")
    assert type(process).log_snr is ForwardProcess.log_snr  # nothing process-specific
    sm = gaussian_1d(dtype=torch.float64).score_model(process)
    a, s = process.marginal(torch.tensor([process.t_min], dtype=torch.float64))
    mean, std = 5.0 * float(a), math.sqrt(4.0 * float(a) ** 2 + float(s) ** 2)
    n = 2000
    runs = {name: THIRD_PARTY_OPTIONS.get(name, {}) for name in sdeflow.list_plugins()["sampler"]}
    runs.update({"dpm_solver/3M time_quadratic": dict(steps=30, order=3, schedule="time_quadratic"),
                 "ddim/eta=1": dict(steps=200, eta=1.0), "heun/churn": dict(steps=30, S_churn=5.0),
                 "pc/ancestral+langevin": dict(steps=200, predictor="ancestral"),
                 "pc/euler_maruyama": dict(steps=200, predictor="euler_maruyama", corrector="none")})
    for what, options in runs.items():
        name = what.split("/")[0]
        # repaint imputes: given no observed value it samples the model itself
        smp = unobserved_repaint(**options) if name == "repaint" else sdeflow.create_sampler(name, **options)
        res = smp.sample(sm, (n, 1), gen(6))
        x = res.samples.reshape(n)
        assert torch.isfinite(x).all() and res.nfe > 0, what
        tol_m, tol_s = 4.0 * std / math.sqrt(n), 4.0 * std / math.sqrt(2 * (n - 1))
        assert abs(float(x.mean()) - mean) < tol_m, f"{what}: mean {float(x.mean()):.3f} vs {mean:.3f}"
        assert abs(float(x.std()) - std) < tol_s, f"{what}: std {float(x.std()):.3f} vs {std:.3f}"


# ---------------------------------------------------------------------------- every process, NFE, dtype
class CountingNet(nn.Module):
    """The exact score as a "network" (parametrization ``score``) counting its calls; NaN below ``nan_below``."""

    def __init__(self, gmm: GaussianMixture, process: ForwardProcess, nan_below: float | None = None) -> None:
        super().__init__()
        self.exact = gmm.score_model(process)
        self.calls = 0
        self.nan_below = nan_below

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        self.calls += 1
        out = self.exact.network_output(x, t_cond)
        if self.nan_below is not None:
            out = torch.where(append_dims(t_cond < self.nan_below, x.ndim), torch.full_like(out, float("nan")), out)
        return out


@pytest.mark.parametrize("process_name", ["vp", "subvp", "ve", "ddpm", "ncsn"])
@pytest.mark.parametrize("name, options, nfe", [
    ("dpm_solver", dict(steps=7), 7), ("dpm_solver", dict(steps=7, order=3, schedule="time_quadratic"), 7),
    ("dpm_solver", dict(steps=7, order=1, schedule="time_uniform"), 7), ("ddim", dict(steps=6), 6),
    ("ddim", dict(steps=6, eta=0.5, schedule="logSNR"), 6), ("heun", dict(steps=5), None),
    ("unipc", dict(steps=7), 7), ("unipc", dict(steps=7, order=3, schedule="edm"), 7),
])
def test_every_process_exact_nfe_and_dtype(process_name: str, name: str, options: dict, nfe: int | None) -> None:
    """Every Gaussian-marginal process runs; NFE is exact (counted by the network itself); float32
    models give float32 samples; trajectories have ``steps + 1`` states."""
    process = sdeflow.create_process(process_name)
    net = CountingNet(gaussian_1d(), process)
    sm = ScoreModel(net, process, parametrization="score")
    res = sdeflow.create_sampler(name, **options).sample(sm, (64, 1), gen(7), return_trajectory=True)
    assert res.nfe == net.calls
    if nfe is not None:
        assert res.nfe == nfe
    else:  # heun: 2 per step, one less when the last step goes to sigma = 0
        assert res.nfe == 2 * res.steps - (1 if process_name == "ve" else 0)
    assert res.samples.dtype == torch.float32 and torch.isfinite(res.samples).all()
    assert res.trajectory.shape == (res.steps + 1, 64, 1) and torch.equal(res.trajectory[-1], res.samples)
    assert float(res.times[0]) == pytest.approx(process.t_max) and float(res.times[-1]) == pytest.approx(process.t_min)


def test_chain_schedule_uses_the_process_times() -> None:
    """``schedule="chain"`` evaluates a DDPM model only at its own timesteps ``i / N``."""
    process = sdeflow.create_process("ddpm")
    times: list[float] = []

    class Recorder(CountingNet):
        def forward(self, x, t_cond):  # type: ignore[no-untyped-def]
            times.append(float(t_cond[0]))
            return super().forward(x, t_cond)

    sm = ScoreModel(Recorder(gaussian_1d(), process), process, parametrization="score")
    for name in ("ddim", "dpm_solver", "unipc"):
        times.clear()
        sdeflow.create_sampler(name, steps=10, schedule="chain").sample(sm, (8, 1), gen(8))
        assert len(times) == 10 and all(abs(t * 1000 - round(t * 1000)) < 1e-3 for t in times), times


def test_stochastic_variants_are_reproducible_and_differ_from_deterministic() -> None:
    gmm = nine_gaussians(dtype=torch.float64)
    sm = gmm.score_model(sdeflow.create_process("vp"))
    for name, kw in (("ddim", dict(steps=20, eta=1.0)), ("heun", dict(steps=10, S_churn=10.0))):
        s = sdeflow.create_sampler(name, **kw)
        assert s.stochastic and s.capabilities()["stochastic"]
        a, b = s.sample(sm, (32, 2), gen(9)).samples, s.sample(sm, (32, 2), gen(9)).samples
        c = sdeflow.create_sampler(name, steps=kw["steps"]).sample(sm, (32, 2), gen(9)).samples
        assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not sdeflow.create_sampler("ddim").stochastic and not sdeflow.create_sampler("heun").stochastic


def test_clip_x0_bounds_the_data_prediction() -> None:
    gmm = nine_gaussians(dtype=torch.float64)
    sm = gmm.score_model(sdeflow.create_process("vp"))
    for name in ("ddim", "dpm_solver", "unipc"):
        x = sdeflow.create_sampler(name, steps=10, clip_x0=1.0).sample(sm, (200, 2), gen(10)).samples
        a_end = float(sm.process.marginal(torch.tensor([sm.process.t_min], dtype=torch.float64))[0][0])
        # the last step to t_min mixes alpha x0 (|x0| <= 1) with a little of x; far inside the modes at +-2
        assert float(x.abs().max()) < 1.2 * a_end + 0.1


def test_nan_is_reported_with_step_and_time() -> None:
    process = sdeflow.create_process("vp")
    sm = ScoreModel(CountingNet(gaussian_1d(), process, nan_below=0.5), process, parametrization="score")
    for name in ("dpm_solver", "ddim", "heun"):
        with pytest.raises(NonFiniteError, match=rf"sampler '{name}'.*step \d+ of 10, t=0\.[0-4]"):
            s = sdeflow.create_sampler(name, steps=10, **({} if name == "heun" else {"schedule": "time_uniform"}))
            s.sample(sm, (8, 1), gen(11))


# ---------------------------------------------------------------------------- options, capabilities, errors
def test_options_and_capabilities_of_every_sampler() -> None:
    """``Sampler.options()`` lists every constructor option with its default, on the class and on an
    instance (the ``ode`` sampler's ``options`` option no longer shadows it); ``capabilities()``
    reports what the sampler declares."""
    import inspect

    for name in sdeflow.list_plugins()["sampler"]:
        sampler = sdeflow.create_sampler(name)
        cls = type(sampler)
        opts = sampler.options()
        assert opts == cls.options() == sdeflow.component_options("sampler", name)
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert list(opts) == params
        caps = sampler.capabilities()
        assert set(caps) == {"stochastic", "order", "requires_gaussian_marginals", "host_syncs"}
        assert isinstance(caps["stochastic"], bool) and isinstance(caps["requires_gaussian_marginals"], bool)
        assert caps["order"] is None or isinstance(caps["order"], float)
        assert repr(sampler).startswith(cls.__name__)
    assert sdeflow.create_sampler("ode").options()["options"] is None
    assert sdeflow.create_sampler("dpm_solver").options() == {
        "steps": 20, "order": 2, "schedule": "logSNR_edm", "lower_order_final": True, "order3_rule": "taylor",
        "clip_x0": None, "denoise": False, "t_end": None, "check_finite": True}
    assert sdeflow.create_sampler("dpm_solver", order=3).capabilities() == {
        "stochastic": False, "order": 3.0, "requires_gaussian_marginals": True, "host_syncs": False}
    assert sdeflow.create_sampler("dpm_solver", order=3, order3_rule="authors_code").capabilities()["order"] == 2.0
    assert sdeflow.create_sampler("ode").capabilities()["host_syncs"] is True
    assert sdeflow.create_sampler("heun").capabilities()["order"] == 2.0
    assert sdeflow.create_sampler("ddim", eta=1.0).capabilities()["stochastic"] is True
    with pytest.raises(AttributeError, match="reserved"):
        sdeflow.create_sampler("sde").options = {}


class NonGaussianProcess(ForwardProcess):
    """A process that declares no Gaussian marginals."""

    gaussian_marginals = False

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -x * x * x

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


@pytest.mark.parametrize("name", ["dpm_solver", "ddim", "heun", "unipc"])
def test_fast_samplers_refuse_processes_without_gaussian_marginals(name: str) -> None:
    sm = ScoreModel(nn.Identity(), NonGaussianProcess(), parametrization="score")
    with pytest.raises(IncompatibleError, match=rf"sampler '{name}' needs a process with Gaussian marginals.*"
                                                r"NonGaussianProcess declares gaussian_marginals=False"):
        sdeflow.create_sampler(name).sample(sm, (4, 1))


@pytest.mark.parametrize("name, options, match", [
    ("dpm_solver", dict(steps=2, order=3), r"3M needs steps >= order = 3"),
    ("dpm_solver", dict(order=4), r"order must be one of \(1, 2, 3\)"),
    ("dpm_solver", dict(order=3, order3_rule="diffusers"), r"order3_rule must be one of taylor, authors_code"),
    ("dpm_solver", dict(schedule="karras"), r"unknown schedule 'karras'; valid: time_uniform, logSNR"),
    ("dpm_solver", dict(steps=0), r"steps must be a positive integer"),
    ("ddim", dict(eta=1.5), r"eta must lie in \[0, 1\]"),
    ("ddim", dict(clip_x0=-1.0), r"clip_x0 must be positive"),
    ("heun", dict(rho=0.0), r"rho must be positive"),
    ("heun", dict(S_tmin=2.0, S_tmax=1.0), r"need 0 <= S_tmin <= S_tmax"),
    ("heun", dict(S_churn=-1.0), r"S_churn and S_noise must be >= 0"),
    ("dpm_solver", dict(method="euler"), r"unknown option\(s\) method; valid options: steps=20, order=2"),
])
def test_bad_options_are_refused_at_construction(name: str, options: dict, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        sdeflow.create_sampler(name, **options)


def test_bad_combinations_at_sample_time() -> None:
    gmm = gaussian_1d(dtype=torch.float64)
    vp, ve = sdeflow.create_process("vp"), sdeflow.create_process("ve")
    with pytest.raises(OptionError, match=r"schedule 'chain' needs a process with its own discrete times"):
        sdeflow.create_sampler("dpm_solver", schedule="chain").sample(gmm.score_model(vp), (4, 1))
    with pytest.raises(OptionError, match=r"needs steps >= 2"):  # VE to sigma = 0: one step to 0.002, one to 0
        sdeflow.create_sampler("heun", steps=1).sample(gmm.score_model(ve), (4, 1))
    with pytest.raises(OptionError, match=r"sigma_min must lie in the process's noise levels"):
        sdeflow.create_sampler("heun", sigma_min=1e-4).sample(gmm.score_model(vp), (4, 1))  # VP's floor: 0.0105
    with pytest.raises(sdeflow.errors.TimeRangeError, match=r"t_end=2 must lie in \[t_min, t_max\)"):
        sdeflow.create_sampler("ddim", t_end=2.0).sample(gmm.score_model(vp), (4, 1))
    with pytest.raises(UnknownComponentError, match=r"unknown sampler 'dpm-solver'.*'dpm_solver'"):
        sdeflow.create_sampler("dpm-solver")
