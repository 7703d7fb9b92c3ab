"""Sampling and likelihoods where the process has no noise at ``t_min`` (``sigma_{t_min} = 0``: VE at
``t = 0``, or a third party's process), with networks predicting ``eps``, ``x0`` or ``v``.

Their score ``-eps / sigma_t`` is infinite at ``t_min``. :attr:`sdeflow.ScoreModel.score_t_min` is
where the noise level ``sigma_t / alpha_t`` reaches the model's ``noise_floor`` (0.002); the
integrators stop there and take one exact data-prediction step to ``t_end``, and
``log_likelihood`` evaluates ``log p_{score_t_min}``. Ground truth:

* untrained MLPs: every sampler and every ode/sde method returns finite samples, the network is
  called exactly ``result.nfe`` times (the per-step counts of the methods' definitions plus one
  for the final step), never below ``score_t_min`` for the integrators that stop there, and at
  ``sigma = 0`` by no sampler except for a final denoising (a data prediction, finite there);
* a network whose output is the exact mixture's ``eps = -sigma_t * score`` (closed form): its run
  equals the exact-score model's run stopped at ``score_t_min`` followed by Tweedie's formula, its
  samples have the data's moments, and ``log_likelihood`` reproduces the closed-form
  ``log p_{t_start}`` (0.01 nats at ``rtol = atol = 1e-7``, the tolerance of
  ``tests/test_likelihood.py``, whose docstring gives its derivation).

Exact-score models keep their behaviour: ``tests/test_samplers.py`` and ``tests/test_likelihood.py``
run them unchanged.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from common import gen
from test_samplers import ODE_NFE_PER_STEP, SDE_NFE  # the methods' per-step evaluation counts
from torch import Tensor, nn

import sdeflow
from sdeflow import ForwardProcess, GaussianMixture, ScoreModel, append_dims
from sdeflow.core.likelihood import log_likelihood
from sdeflow.data.datasets import gaussian_1d, nine_gaussians
from sdeflow.errors import NonFiniteError, OptionError, TimeRangeError
from sdeflow.solvers import ADAPTIVE_METHODS, EDM_SIGMA_MIN, FIXED_GRID_METHODS, SDE_METHODS

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
PARAMS = ("eps", "x0", "v")
N = 4  # steps of every stepping sampler (kept tiny: these runs check finiteness and counts)
K_SE = 4.0


# ---------------------------------------------------------------------------- models and processes
class Counting(nn.Module):
    """Wraps a network ``net(x, t_cond)``: counts its calls and records the first time of each
    (``t_cond`` is the time itself for the processes here); ``nan_below`` turns its output NaN at
    earlier times."""

    def __init__(self, net: nn.Module, nan_below: float | None = None) -> None:
        super().__init__()
        self.net, self.nan_below = net, nan_below
        self.calls = 0
        self.times: list[float] = []

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        self.calls += 1
        self.times.append(float(t_cond[0]))
        out = self.net(x, t_cond)
        if self.nan_below is not None:
            out = torch.where(append_dims(t_cond < self.nan_below, x.ndim), torch.full_like(out, float("nan")), out)
        return out


class ExactEps(nn.Module):
    """The exact mixture's noise prediction ``eps = -sigma_t grad log p_t`` as a network (``t_cond = t``)."""

    def __init__(self, gmm: GaussianMixture, process: ForwardProcess) -> None:
        super().__init__()
        self.exact = gmm.score_model(process)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        s = append_dims(self.exact.process.marginal(t)[1], x.ndim)
        return -s * self.exact.network_output(x, t)


class ExactPriorModel(ScoreModel):
    """A ScoreModel of any network that draws from, and scores, the exact ``p_{t_max}`` of ``exact``
    (so that only the network and the solver are tested)."""

    def __init__(self, network: nn.Module, exact: ScoreModel, parametrization: str) -> None:
        super().__init__(network, exact.process, parametrization)
        self.exact = exact

    def prior_sample(self, shape, generator=None, device=None, dtype=None):  # type: ignore[no-untyped-def]
        return self.exact.prior_sample(shape, generator, device, dtype)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        return self.exact.prior_log_prob(x)


class LinearNoiseProcess(ForwardProcess):
    """A third party's process with no noise at ``t_min = 0``: ``alpha_t = e^{-b t}``, ``sigma_t = c t``
    (EDM's ``sigma(t) = t``, scaled), i.e. ``f = -b x`` and ``g^2 = d sigma^2/dt - 2 (d log alpha/dt)
    sigma^2 = 2 c^2 t (1 + b t)``; no ``t_from_log_snr`` of its own (the base class's bisection)."""

    t_min = 0.0
    b, c = 0.5, 3.0

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.b * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.c * torch.sqrt(2.0 * t * (1.0 + self.b * t))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(-self.b * t), self.c * t


def ve_floor_time(process: Any, level: float = EDM_SIGMA_MIN) -> float:
    """Closed form: ``sigma_t = sigma_min sqrt(r^{2t} - 1) = level`` at ``t = log1p(level^2/sigma_min^2) / (2 log r)``."""
    return math.log1p(level**2 / process.sigma_min**2) / (2.0 * math.log(process.sigma_max / process.sigma_min))


def mlp_model(process: ForwardProcess, parametrization: str, seed: int = 0, **kw: Any) -> tuple[ScoreModel, Counting]:
    torch.manual_seed(seed)
    net = Counting(sdeflow.create_model("mlp", dim=2, hidden=16, depth=1, embed_dim=8), **kw)
    return ScoreModel(net, process, parametrization), net


def exact_eps_model(gmm: GaussianMixture, process: ForwardProcess) -> tuple[ScoreModel, Counting]:
    net = Counting(ExactEps(gmm, process))
    exact = gmm.score_model(process)
    return ExactPriorModel(net, exact, "eps").to(gmm.dtype), net


# ---------------------------------------------------------------------------- the rule
def test_score_t_min_rule() -> None:
    assert torch.get_num_threads() == 1  # the single_thread fixture (tests/conftest.py) is active
    ve = sdeflow.create_process("ve")
    net = sdeflow.create_model("mlp", dim=2)
    for kind in PARAMS:
        assert ScoreModel(net, ve, kind).score_t_min == pytest.approx(ve_floor_time(ve), rel=1e-9)
    assert ScoreModel(net, ve, "eps", noise_floor=0.01).score_t_min == pytest.approx(ve_floor_time(ve, 0.01), rel=1e-9)
    # where the score is finite at t_min, t_min itself
    assert ScoreModel(net, ve, "score").score_t_min == 0.0
    assert nine_gaussians().score_model(ve).score_t_min == 0.0
    assert ScoreModel(net, sdeflow.create_process("ve", t_min=1e-5), "eps").score_t_min == 1e-5
    for name in ("vp", "subvp", "ncsn", "ddpm", "vdm"):
        p = sdeflow.create_process(name)
        assert ScoreModel(net, p, "eps").score_t_min == float(p.t_min), name
    # a third party's process (bisection of its log-SNR): sigma/alpha = c t e^{b t} = 0.002 there
    p = LinearNoiseProcess()
    t = ScoreModel(net, p, "v").score_t_min
    a, s = p.marginal(torch.tensor([t], dtype=F64))
    assert float(s[0] / a[0]) == pytest.approx(EDM_SIGMA_MIN, rel=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_noise_floor(bad: Any) -> None:
    with pytest.raises(OptionError, match="noise_floor must be a positive finite noise level"):
        ScoreModel(sdeflow.create_model("mlp", dim=2), sdeflow.create_process("ve"), noise_floor=bad)


def test_noise_floor_out_of_the_process_range() -> None:
    sm = ScoreModel(sdeflow.create_model("mlp", dim=2), sdeflow.create_process("ve"), noise_floor=100.0)
    with pytest.raises(OptionError, match=r"sigma/alpha = 100 \(noise_floor\) is not reached inside \(0, 1\)"):
        _ = sm.score_t_min
    with pytest.raises(OptionError, match="pass a smaller noise_floor"):
        sdeflow.create_sampler("ode", method="euler", steps=2).sample(sm, (4, 2))


# ---------------------------------------------------------------------------- every sampler, untrained
#: (name, options, expected evaluations or None, stops at score_t_min)
CASES: list[tuple[str, dict, int | None, bool]] = (
    [("sde", {"method": m, "steps": N}, SDE_NFE[m][0] * N + SDE_NFE[m][1] + 1, True) for m in SDE_METHODS]
    + [("sde", {"method": "euler", "steps": N, "denoise": False}, N + 1, True)]
    + [("ode", {"method": m, "steps": N}, ODE_NFE_PER_STEP[m] * N + 1 if m in ODE_NFE_PER_STEP else None, True)
       for m in FIXED_GRID_METHODS]
    + [("ode", {"method": m, "rtol": 1e-3, "atol": 1e-3}, None, True) for m in ADAPTIVE_METHODS]
    + [("ode", {"method": "rk4", "steps": N, "denoise": True}, 4 * N + 1, True),
       ("langevin", {"n_steps_each": 2, "num_scales": 3}, 3 * 2 + 1, True),
       ("langevin", {"n_steps_each": 2, "num_scales": 3, "denoise": False}, 3 * 2 + 1, True),
       ("ddim", {"steps": N}, N, False), ("ddim", {"steps": N, "eta": 1.0}, N, False),
       ("dpm_solver", {"steps": N}, N, False), ("unipc", {"steps": N}, N, False),
       ("heun", {"steps": N}, 2 * N - 1, False), ("ancestral", {"steps": N}, N + 1, False),
       ("pc", {"steps": N}, 2 * N + 1, False)]
)


def _label(case: tuple[str, dict, int | None, bool]) -> str:
    name, kw = case[0], case[1]
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "steps")


@pytest.mark.parametrize("parametrization", PARAMS)
@pytest.mark.parametrize("case", CASES, ids=[_label(c) for c in CASES])
def test_every_sampler_on_ve_untrained(case: tuple[str, dict, int | None, bool], parametrization: str) -> None:
    name, kw, want_nfe, stops = case
    process = sdeflow.create_process("ve")
    sm, net = mlp_model(process, parametrization)
    floor = sm.score_t_min
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit_adams: "Functional iteration did not converge"
        res = sdeflow.create_sampler(name, **kw).sample(sm, (16, 2), gen(1))
    assert res.samples.shape == (16, 2) and torch.isfinite(res.samples).all()
    assert res.nfe == net.calls
    if want_nfe is not None:
        assert res.nfe == want_nfe
    # at sigma = 0 (t = 0) at most the final denoising, a data prediction x0 = (x - sigma eps) / alpha,
    # finite there: the score is never asked for
    assert all(t > 0.0 for t in net.times[:-1]), net.times
    if stops:
        assert min(net.times) >= floor * (1 - 1e-6), "evaluated below score_t_min"
        assert net.times[-1] == pytest.approx(floor, rel=1e-6)  # the final step's evaluation


@pytest.mark.parametrize("case", [("ode", {"method": "rk4", "steps": N}), ("ode", {"method": "dopri5"}),
                                  ("sde", {"method": "heun", "steps": N}), ("langevin", {"n_steps_each": 2})])
def test_third_party_process_without_noise_at_t_min(case: tuple[str, dict]) -> None:
    name, kw = case
    process = LinearNoiseProcess()
    sm, net = mlp_model(process, "eps")
    floor = sm.score_t_min
    res = sdeflow.create_sampler(name, **kw).sample(sm, (16, 2), gen(2))
    assert torch.isfinite(res.samples).all() and res.nfe == net.calls
    assert min(net.times) >= floor * (1 - 1e-6) and net.times[-1] == pytest.approx(floor, rel=1e-6)


# ---------------------------------------------------------------------------- the exact eps network
@pytest.mark.parametrize("process_name", ["ve", "third_party"])
@pytest.mark.parametrize("name,kw", [("ode", {"method": "rk4", "steps": 12}), ("ode", {"method": "dopri5"}),
                                     ("sde", {"method": "heun", "steps": 12}),
                                     ("sde", {"method": "euler", "steps": 12, "denoise": False}),
                                     ("langevin", {"n_steps_each": 3, "num_scales": 4})])
def test_exact_eps_equals_exact_score_stopped_at_the_floor(process_name: str, name: str, kw: dict) -> None:
    """The eps network's run to t_end = 0 is the exact-score run to score_t_min followed by Tweedie's
    formula ``E[x_0 | x_{t_stop}]``, which the final step is where ``sigma_{t_end} = 0``; same evaluations."""
    process = sdeflow.create_process("ve") if process_name == "ve" else LinearNoiseProcess()
    gmm = nine_gaussians(dtype=F64)
    sm, net = exact_eps_model(gmm, process)
    floor = sm.score_t_min
    got = sdeflow.create_sampler(name, **kw).sample(sm, (64, 2), gen(3))
    want = sdeflow.create_sampler(name, **{**kw, "denoise": True, "t_end": floor}).sample(
        gmm.score_model(process).to(F64), (64, 2), gen(3))
    assert got.nfe == want.nfe == net.calls
    if process_name == "third_party":  # alpha_0 = 1: the final step returns alpha_{t_end} x0 = x0
        assert float(process.marginal(torch.zeros(1))[0]) == 1.0
    torch.testing.assert_close(got.samples, want.samples, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name,kw", [("ode", {"method": "rk4", "steps": 40}), ("sde", {"method": "euler", "steps": 200})])
def test_exact_eps_samples_have_the_data_moments(name: str, kw: dict) -> None:
    """p_0 = N(5, 2^2) on VE: the final step from sigma = 0.002 shrinks the std by a factor
    4 / (4 + 0.002^2) (Gaussian Tweedie), far below the tolerance of K_SE standard errors of n = 2000
    samples (``2 / sqrt(n)`` for the mean, ``2 / sqrt(2 (n - 1))`` for the std)."""
    process = sdeflow.create_process("ve")
    sm, _ = exact_eps_model(gaussian_1d(dtype=F64), process)
    x = sdeflow.create_sampler(name, **kw).sample(sm, (2000, 1), gen(4)).samples.reshape(-1)
    n = x.numel()
    assert abs(float(x.mean()) - 5.0) < K_SE * 2.0 / math.sqrt(n)
    assert abs(float(x.std()) - 2.0) < K_SE * 2.0 / math.sqrt(2 * (n - 1))


# ---------------------------------------------------------------------------- explicit t_end
def test_explicit_t_end() -> None:
    process = sdeflow.create_process("ve")
    gmm = nine_gaussians(dtype=F64)
    sm, net = exact_eps_model(gmm, process)
    exact = gmm.score_model(process).to(F64)
    floor = sm.score_t_min
    ode = dict(method="rk4", steps=10)
    # t_end = t_min given explicitly is the default
    a = sdeflow.create_sampler("ode", **ode).sample(sm, (32, 2), gen(5))
    b = sdeflow.create_sampler("ode", t_end=0.0, **ode).sample(sm, (32, 2), gen(5))
    assert torch.equal(a.samples, b.samples) and a.nfe == b.nfe == 41
    # below the floor, with noise: the exact DDIM step x0 + sigma_{t_end} / sigma_floor (x - x0) (alpha = 1)
    t_end = 1e-3
    got = sdeflow.create_sampler("ode", t_end=t_end, **ode).sample(sm, (32, 2), gen(5))
    x_floor = sdeflow.create_sampler("ode", t_end=floor, **ode).sample(exact, (32, 2), gen(5)).samples
    s_floor, s_end = (float(process.marginal(torch.tensor([t], dtype=F64))[1][0]) for t in (floor, t_end))
    x0 = exact.x0(x_floor, floor)
    assert got.nfe == 41
    torch.testing.assert_close(got.samples, x0 + (s_end / s_floor) * (x_floor - x0), rtol=1e-7, atol=1e-7)
    # above the floor nothing is added: the same run as the exact score's, no extra evaluation
    calls = net.calls
    above = sdeflow.create_sampler("ode", t_end=0.1, **ode).sample(sm, (32, 2), gen(5))
    assert above.nfe == net.calls - calls == 40
    torch.testing.assert_close(above.samples, sdeflow.create_sampler("ode", t_end=0.1, **ode).sample(
        exact, (32, 2), gen(5)).samples, rtol=1e-7, atol=1e-7)
    assert min(net.times) >= floor * (1 - 1e-9)


# ---------------------------------------------------------------------------- errors name the final step
@pytest.mark.parametrize("name,denoise,what", [
    ("ode", False, r"the final data-prediction step from t=0\.0023\d* to t_end=0 after step 10 of 10"),
    ("sde", False, r"the final data-prediction step from t=0\.0023\d* to t_end=0 after step 10 of 10"),
    ("sde", True, r"the final denoising after step 10 of 10")])
def test_nan_in_the_final_step_is_named(name: str, denoise: bool, what: str) -> None:
    """Euler evaluates at the start of each step only: with NaN below t = 0.05 the only bad
    evaluation is the final one, at score_t_min = 0.0023 (the grid's last step starts at 0.102)."""
    sm, net = mlp_model(sdeflow.create_process("ve"), "eps", nan_below=0.05)
    with pytest.raises(NonFiniteError, match=what):
        sdeflow.create_sampler(name, method="euler", steps=10, denoise=denoise).sample(sm, (8, 2), gen())
    assert [t for t in net.times if t < 0.05] == [pytest.approx(sm.score_t_min, rel=1e-6)]


# ---------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("parametrization", PARAMS)
def test_likelihood_untrained_is_finite(parametrization: str) -> None:
    sm, net = mlp_model(sdeflow.create_process("ve"), parametrization)
    res = log_likelihood(sm, torch.randn(8, 2, generator=gen(6)), method="rk4", steps=8)
    assert torch.isfinite(res.log_prob).all() and res.nfe == net.calls == 32
    assert res.t_start == sm.score_t_min and min(net.times) >= res.t_start * (1 - 1e-6)


@pytest.mark.parametrize("process_name", ["ve", "third_party"])
def test_likelihood_of_exact_eps_matches_the_density_at_t_start(process_name: str) -> None:
    process = sdeflow.create_process("ve") if process_name == "ve" else LinearNoiseProcess()
    gmm = nine_gaussians(dtype=F64)
    sm, _ = exact_eps_model(gmm, process)
    x = gmm.sample(64, gen(7))
    res = log_likelihood(sm, x, rtol=1e-7, atol=1e-7)
    assert res.t_start == sm.score_t_min > 0
    with torch.no_grad():
        truth = sm.exact.marginal_log_prob(x, res.t_start)
    assert float((res.log_prob - truth).abs().max()) < 0.01
    # and with t_start given explicitly, above the floor
    res = log_likelihood(sm, x, rtol=1e-7, atol=1e-7, t_start=0.05)
    with torch.no_grad():
        truth = sm.exact.marginal_log_prob(x, 0.05)
    assert res.t_start == 0.05 and float((res.log_prob - truth).abs().max()) < 0.01


@pytest.mark.parametrize("t_start", [0.0, 1e-3])
def test_likelihood_t_start_below_the_floor_is_an_error(t_start: float) -> None:
    sm, net = mlp_model(sdeflow.create_process("ve"), "eps")
    with pytest.raises(TimeRangeError, match=r"below score_t_min=0\.0023\d*.*valid t_start: \[0\.0023\d*, 1\)"):
        log_likelihood(sm, torch.randn(4, 2), t_start=t_start)
    assert net.calls == 0


# ---------------------------------------------------------------------------- no host sync in the loops
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,kw", [("sde", {"method": "euler"}), ("langevin", {"num_scales": 3})])
def test_no_host_sync_per_step_on_gpu(name: str, kw: dict) -> None:
    """The host synchronisations of a run (the floor, the grid, the final NaN check) do not grow with
    the number of steps: none is inside the step loop."""
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=2, hidden=16, depth=1).cuda()
    sm = ScoreModel(net, sdeflow.create_process("ve").cuda(), "eps")

    def syncs(steps: int) -> int:
        opts = {**kw, "steps": steps} if name == "sde" else {**kw, "n_steps_each": steps}
        g = torch.Generator(device="cuda").manual_seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                sdeflow.create_sampler(name, **opts).sample(sm, (64, 2), g)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(2)  # warm-up (lazy initialisation)
    assert syncs(4) == syncs(12)
