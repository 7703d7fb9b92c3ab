"""The ``sde`` and ``ode`` samplers (issue 2): every method, exact NFE, reproducibility, dtypes,
images, callbacks and trajectories, step counts from ``dt``, evaluation times never outside
``[t_min, t_max]``, NaN reporting, final denoising and the Brownian sources.

Ground truth is the exact score of a Gaussian (mixture) target under each process (closed form,
:class:`sdeflow.GaussianMixture`). Moment checks use ``K_SE`` standard errors computed from the
sample size ``n``: ``sigma / sqrt(n)`` for a mean and ``sigma / sqrt(2 (n - 1))`` for a standard
deviation, with step counts chosen so that the discretisation bias is well below that.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from fractions import Fraction

import pytest
import torch
from common import assert_moments as check_moments
from common import gaussian_marginal_moments, gen
from torch import Tensor, nn
from torchdiffeq import odeint

import sdeflow
from sdeflow import ForwardProcess, GaussianMixture, ScoreModel, append_dims
from sdeflow.data.datasets import gaussian_1d, nine_gaussians
from sdeflow.errors import NonFiniteError
from sdeflow.solvers import ADAPTIVE_METHODS, ODE_METHODS, SDE_METHODS, FlowField, ScaledBrownian

pytestmark = pytest.mark.usefixtures("single_thread")

PROCESSES = ("vp", "subvp", "ve")
MU, SIGMA = 5.0, 2.0  # N(5, 2^2), the target of reference texts 000 and 001
K_SE = 4.0


# ---------------------------------------------------------------------------- helpers
class ExactNet(nn.Module):
    """A "network" returning the exact score of ``p_t`` (parametrization ``score``) that counts
    its calls and, optionally, returns NaN for every time below ``nan_below``.

    It counts independently of the samplers' own NFE bookkeeping.
    """

    def __init__(self, gmm: GaussianMixture, process: ForwardProcess, nan_below: float | None = None) -> None:
        super().__init__()
        self.exact = gmm.score_model(process)
        self.calls = 0
        self.times: list[float] = []
        self.nan_below = nan_below

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        self.calls += 1
        self.times.append(float(t_cond[0]))
        out = self.exact.network_output(x, t_cond)
        if self.nan_below is not None:
            bad = append_dims(t_cond < self.nan_below, x.ndim)
            out = torch.where(bad, torch.full_like(out, float("nan")), out)
        return out


def counting_model(gmm: GaussianMixture, process: ForwardProcess, **kw) -> tuple[ScoreModel, ExactNet]:
    net = ExactNet(gmm, process, **kw)
    return ScoreModel(net, process, parametrization="score"), net


def exact_moments(process: ForwardProcess, t: float) -> tuple[float, float]:
    """Mean and std of ``p_t`` for ``p_0 = N(MU, SIGMA^2)``."""
    return gaussian_marginal_moments(process, t, MU, SIGMA)


def assert_moments(x: Tensor, mean: float, std: float, what: str) -> None:
    check_moments(x, mean, std, what, K_SE)


#: steps giving a discretisation bias well below K_SE standard errors at n = 2000 on N(5, 4)
SDE_STEPS = {"srk": 50}
SDE_DEFAULT_STEPS = 200
ODE_STEPS = {"euler": 1000, "midpoint": 200, "heun2": 200}
ODE_DEFAULT_STEPS = 50


def ode_kwargs(method: str, process: str) -> dict:
    if method in ADAPTIVE_METHODS:
        return {}
    kw = {"steps": ODE_STEPS.get(method, ODE_DEFAULT_STEPS)}
    if method == "explicit_adams" and process == "ve":
        # torchdiffeq's default max_order=12 (Adams-Bashforth of order up to 11) has a tiny
        # stability region: it diverges on the stiff VE field at 100 to 1000 steps
        kw["options"] = {"max_order": 4}
    return kw


# ---------------------------------------------------------------------------- every method
@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("method", list(SDE_METHODS))
def test_sde_every_method_samples_target(process_name: str, method: str) -> None:
    process = sdeflow.create_process(process_name)
    sm = gaussian_1d().score_model(process)
    n = 2000
    sampler = sdeflow.create_sampler("sde", method=method, steps=SDE_STEPS.get(method, SDE_DEFAULT_STEPS),
                                     denoise=False)
    res = sampler.sample(sm, (n, 1), gen(1))
    assert res.samples.shape == (n, 1) and res.samples.dtype == torch.float32
    assert torch.isfinite(res.samples).all()
    assert_moments(res.samples, *exact_moments(process, process.t_min), f"sde/{method}/{process_name}")


@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("method", list(ODE_METHODS))
def test_ode_every_method_samples_target(process_name: str, method: str) -> None:
    process = sdeflow.create_process(process_name)
    sm = gaussian_1d().score_model(process)
    n = 2000
    sampler = sdeflow.create_sampler("ode", method=method, **ode_kwargs(method, process_name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit_adams: "Functional iteration did not converge"
        res = sampler.sample(sm, (n, 1), gen(1))
    assert res.samples.shape == (n, 1) and res.samples.dtype == torch.float32
    assert torch.isfinite(res.samples).all()
    assert_moments(res.samples, *exact_moments(process, process.t_min), f"ode/{method}/{process_name}")


# ---------------------------------------------------------------------------- exact NFE
#: score evaluations per step (and before the first step) of each torchsde method, from the
#: methods' definitions: drift once (Euler, Milstein, Euler-Heun: the second Heun stage only
#: re-evaluates the diffusion), twice (Heun, midpoint, log-ODE midpoint), SRID2's 4 stages with
#: the earlier stages' drifts recomputed (1 + 2 + 3 + 4 = 10), reversible Heun once per step plus
#: once at the initial state.
SDE_NFE = {"euler": (1, 0), "milstein": (1, 0), "srk": (10, 0), "euler_heun": (1, 0), "heun": (2, 0),
           "midpoint": (2, 0), "reversible_heun": (1, 1), "log_ode": (2, 0)}
ODE_NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


@pytest.mark.parametrize("denoise", [False, True])
@pytest.mark.parametrize("method", list(SDE_METHODS))
def test_sde_nfe_is_exact(method: str, denoise: bool) -> None:
    process = sdeflow.create_process("vp")
    sm, net = counting_model(gaussian_1d(), process)
    n_steps = 7
    res = sdeflow.create_sampler("sde", method=method, steps=n_steps, denoise=denoise).sample(sm, (16, 1), gen())
    per, setup = SDE_NFE[method]
    assert net.calls == per * n_steps + setup + int(denoise)
    assert res.nfe == net.calls
    assert res.steps == n_steps


@pytest.mark.parametrize("denoise", [False, True])
@pytest.mark.parametrize("method", list(ODE_METHODS))
def test_ode_nfe_is_exact(method: str, denoise: bool) -> None:
    process = sdeflow.create_process("vp")
    sm, net = counting_model(gaussian_1d(), process)
    kw = {} if method in ADAPTIVE_METHODS else {"steps": 9}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sdeflow.create_sampler("ode", method=method, denoise=denoise, **kw).sample(sm, (16, 1), gen())
    assert res.nfe == net.calls
    if method in ODE_NFE_PER_STEP:
        assert net.calls == ODE_NFE_PER_STEP[method] * 9 + int(denoise)
        assert res.steps == 9
    if method == "dopri5":  # 6 new stages per attempted step (FSAL), at least one step
        assert net.calls >= 6 * res.steps + int(denoise) and res.steps >= 1


# ---------------------------------------------------------------------------- reproducibility, dtype
@pytest.mark.parametrize("name,kw", [("sde", {"method": "euler"}), ("sde", {"method": "srk"}),
                                     ("sde", {"method": "euler", "brownian": "interval"}),
                                     ("sde", {"method": "log_ode"}), ("ode", {"method": "dopri5"}),
                                     ("ode", {"method": "rk4", "steps": 20})])
def test_seed_reproducible(name: str, kw: dict) -> None:
    sm = nine_gaussians().score_model(sdeflow.create_process("subvp"))
    kw = {"steps": 20, **kw} if name == "sde" else kw
    sampler = sdeflow.create_sampler(name, **kw)
    a = sampler.sample(sm, (64, 2), gen(5)).samples
    b = sampler.sample(sm, (64, 2), gen(5)).samples
    c = sampler.sample(sm, (64, 2), gen(6)).samples
    assert torch.equal(a, b)
    assert (a - c).abs().min() > 0  # every sample differs


@pytest.mark.parametrize("name,kw", [("sde", {"method": "euler", "steps": 20}),
                                     ("sde", {"method": "srk", "steps": 10}),
                                     ("sde", {"method": "reversible_heun", "steps": 20}),
                                     ("sde", {"method": "log_ode", "steps": 10}),
                                     ("sde", {"method": "heun", "steps": 16, "brownian": "interval"}),
                                     ("ode", {"method": "dopri5"}), ("ode", {"method": "rk4", "steps": 20})])
def test_float64_model_keeps_dtype(name: str, kw: dict) -> None:
    sm = gaussian_1d().score_model(sdeflow.create_process("vp")).to(torch.float64)
    assert sm.dtype == torch.float64
    res = sdeflow.create_sampler(name, **kw).sample(sm, (32, 1), gen(), return_trajectory=True)
    assert res.samples.dtype == torch.float64
    assert res.trajectory.dtype == torch.float64 and res.times.dtype == torch.float64
    assert torch.isfinite(res.samples).all()


# ---------------------------------------------------------------------------- images
@pytest.mark.parametrize("name,kw", [("sde", {"method": "euler", "steps": 20}),
                                     ("sde", {"method": "srk", "steps": 5}),
                                     ("sde", {"method": "heun", "steps": 8, "brownian": "interval"}),
                                     ("ode", {"method": "rk4", "steps": 10}), ("ode", {"method": "dopri5"})])
def test_images_shape_matches_flat(name: str, kw: dict) -> None:
    """(batch, 1, 4, 4) images sample exactly like the same data flattened to (batch, 16)."""
    g = torch.Generator().manual_seed(0)
    gmm = GaussianMixture([0.5, 0.5], torch.randn(2, 16, generator=g), 0.5, dtype=torch.float64)
    sm = gmm.score_model(sdeflow.create_process("vp"))
    sampler = sdeflow.create_sampler(name, **kw)
    img = sampler.sample(sm, (8, 1, 4, 4), gen(3), return_trajectory=True)
    flat = sampler.sample(sm, (8, 16), gen(3))
    assert img.samples.shape == (8, 1, 4, 4) and img.samples.dtype == torch.float64
    assert img.trajectory.shape == (img.steps + 1, 8, 1, 4, 4)
    assert torch.isfinite(img.samples).all()
    torch.testing.assert_close(img.samples.reshape(8, 16), flat.samples, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- callbacks, trajectories
CALLBACK_CASES = [("sde", {"method": "euler", "steps": 12}), ("sde", {"method": "reversible_heun", "steps": 12}),
                  ("sde", {"method": "srk", "steps": 4}), ("ode", {"method": "rk4", "steps": 12}),
                  ("ode", {"method": "dopri5"})]


@pytest.mark.parametrize("name,kw", CALLBACK_CASES)
def test_callback_and_trajectory(name: str, kw: dict) -> None:
    process = sdeflow.create_process("vp")
    sm = gaussian_1d(dtype=torch.float64).score_model(process)
    shape = (10, 1)
    sampler = sdeflow.create_sampler(name, denoise=False, **kw)
    calls: list[tuple[int, float, Tensor]] = []

    def callback(step: int, t: Tensor, x: Tensor) -> None:
        calls.append((step, float(t), x.clone()))

    res = sampler.sample(sm, shape, gen(2), callback=callback, return_trajectory=True, progress=True)
    plain = sampler.sample(sm, shape, gen(2))
    assert torch.equal(res.samples, plain.samples), "a callback changed the samples"
    assert res.nfe == plain.nfe
    n = res.steps
    assert n >= 1 and len(calls) == n + 1
    assert [c[0] for c in calls] == list(range(n + 1))
    ts = [c[1] for c in calls]
    assert all(b < a for a, b in zip(ts, ts[1:])), f"times not decreasing: {ts}"
    assert ts[0] == pytest.approx(process.t_max) and ts[-1] == pytest.approx(process.t_min, abs=1e-12)
    assert res.trajectory.shape == (n + 1, *shape) and res.times.shape == (n + 1,)
    torch.testing.assert_close(res.times, torch.tensor(ts, dtype=torch.float64))
    for k, (_, _, x) in enumerate(calls):
        assert torch.equal(res.trajectory[k], x)
    assert torch.equal(res.trajectory[-1], res.samples)  # denoise=False: the last state is the output
    if kw.get("steps"):  # fixed steps: equal spacing
        torch.testing.assert_close(res.times.diff(), torch.full((n,), -(process.t_max - process.t_min) / n,
                                                                dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_progress_bar_runs() -> None:
    sm = gaussian_1d().score_model(sdeflow.create_process("ve"))
    for name, kw in (("sde", {"steps": 5}), ("ode", {"method": "bosh3"})):
        res = sdeflow.create_sampler(name, **kw).sample(sm, (8, 1), gen(), progress=True)
        assert torch.isfinite(res.samples).all()


# ---------------------------------------------------------------------------- steps from dt
SPANS = {"vp": Fraction(999, 1000), "ve": Fraction(1)}  # t_max - t_min, exactly
DTS = {"1e-3": Fraction(1, 1000), "0.3": Fraction(3, 10), "0.07": Fraction(7, 100), "1/3": Fraction(1, 3),
       "0.05": Fraction(1, 20)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("process_name", list(SPANS))
def test_dt_gives_ceil_equal_steps_and_never_hangs(process_name: str, dtype: torch.dtype) -> None:
    """``dt`` -> exactly ``ceil(span / dt)`` equal steps (exact rational arithmetic as the oracle),
    even where ``span / dt`` is an integer that floating point misses by an ulp (1 / 0.05)."""
    process = sdeflow.create_process(process_name)
    sm = gaussian_1d(dtype=dtype).score_model(process)
    for label, dt in DTS.items():
        expected = math.ceil(SPANS[process_name] / dt)
        start = time.perf_counter()
        res = sdeflow.create_sampler("sde", dt=float(dt), denoise=False).sample(sm, (4, 1), gen(),
                                                                                return_trajectory=True)
        elapsed = time.perf_counter() - start
        assert res.steps == expected, f"dt={label}: {res.steps} steps, expected {expected}"
        assert res.nfe == expected and res.times.shape == (expected + 1,) and res.times.dtype == dtype
        h = float(SPANS[process_name]) / expected
        eps = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(res.times.diff().double(), torch.full((expected,), -h, dtype=torch.float64),
                                   rtol=0, atol=eps)
        assert torch.isfinite(res.samples).all()
        assert elapsed < 20.0, f"dt={label} took {elapsed:.1f} s"


def test_dt_with_interval_brownian_and_odd_steps_finishes() -> None:
    sm = gaussian_1d(dtype=torch.float64).score_model(sdeflow.create_process("vp"))
    for kw in ({"dt": 0.07}, {"dt": 1 / 3}, {"steps": 13}):
        start = time.perf_counter()
        res = sdeflow.create_sampler("sde", brownian="interval", **kw).sample(sm, (4, 1), gen())
        assert torch.isfinite(res.samples).all() and time.perf_counter() - start < 20.0


# ---------------------------------------------------------------------------- never outside [t_min, t_max]
class StrictSubVP(ForwardProcess):
    """The sub-VP SDE (Song et al. 2021, Eq. 17 and 34) written as a third party might: every
    coefficient refuses times outside ``[t_min, t_max]`` (raises, or returns NaN)."""

    def __init__(self, mode: str = "raise", beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        super().__init__()
        self.mode, self.beta_min, self.beta_max, self.t_min = mode, beta_min, beta_max, 1e-3
        self.outside: list[float] = []

    def _guard(self, t: Tensor, out: Tensor) -> Tensor:
        bad = (t < self.t_min) | (t > self.t_max)
        if bool(bad.any()):
            self.outside.append(float(t[bad].min()))
            if self.mode == "raise":
                raise ValueError(f"StrictSubVP: t={float(t[bad].min()):g} outside [{self.t_min}, {self.t_max}]")
            return torch.where(append_dims(bad, out.ndim), torch.full_like(out, float("nan")), out)
        return out

    def _b(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.beta_min + t * (self.beta_max - self.beta_min), self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        beta, _ = self._b(t)
        return self._guard(t, -0.5 * append_dims(beta, x.ndim) * x)

    def diffusion(self, t: Tensor) -> Tensor:
        beta, big_b = self._b(t)
        return self._guard(t, torch.sqrt(beta * -torch.expm1(-2.0 * big_b)))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        _, big_b = self._b(t)
        return self._guard(t, torch.exp(-0.5 * big_b)), self._guard(t, -torch.expm1(-big_b))


def test_raw_torchdiffeq_dopri5_leaves_the_interval() -> None:
    """The issue's bug, reproduced without sdeflow's clamp: torchdiffeq's dopri5 integrating the
    sub-VP probability-flow ODE from 1 down to 1e-3 evaluates the field at negative times; with
    the clamp into [t_min, t_max] the same raw call succeeds."""
    process = StrictSubVP("raise").double()
    sm = nine_gaussians(dtype=torch.float64).score_model(process)
    x0 = sm.prior_sample((256, 2), gen())
    flow = process.probability_flow(lambda x, t: sm.score(x, t, check=False))
    t = torch.tensor([1.0, process.t_min], dtype=torch.float64)

    def field(clamp: bool):
        def f(tt: Tensor, x: Tensor) -> Tensor:
            tt = process.clamp_time(tt) if clamp else tt
            return flow.velocity(x, tt.reshape(()).expand(x.shape[0]))
        return f

    with pytest.raises(ValueError, match="outside"):
        odeint(field(False), x0, t, method="dopri5", rtol=1e-5, atol=1e-5)
    assert min(process.outside) < 0.0  # it went below t = 0, where sub-VP's sigma_t is negative
    out = odeint(field(True), x0, t, method="dopri5", rtol=1e-5, atol=1e-5)[-1]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mode", ["raise", "nan"])
@pytest.mark.parametrize("name,kw", [("ode", {"method": m}) for m in ADAPTIVE_METHODS]
                         + [("ode", {"method": "dopri5", "options": {"step_t": [0.5]}}),
                            ("ode", {"method": "rk4", "steps": 30})]
                         + [("sde", {"method": m, "steps": 40}) for m in ("euler", "srk", "heun", "midpoint",
                                                                          "reversible_heun", "log_ode")])
def test_strict_process_never_evaluated_outside(mode: str, name: str, kw: dict) -> None:
    process = StrictSubVP(mode).double()
    gmm = nine_gaussians(dtype=torch.float64)
    sm = gmm.score_model(process)
    n = 400
    res = sdeflow.create_sampler(name, **kw).sample(sm, (n, 2), gen(4))
    assert process.outside == []
    assert torch.isfinite(res.samples).all()
    # samples land on the mixture: mean within K_SE standard errors of the mixture mean
    sd = gmm.covariance().diagonal().sqrt()
    assert ((res.samples.mean(0) - gmm.mean()).abs() < K_SE * sd / math.sqrt(n)).all(), (res.samples.mean(0), gmm.mean())


def test_flow_field_clamps_probes_outside_the_interval() -> None:
    """The vector field handed to torchdiffeq clamps any evaluation time (initial step-size
    probes, overshooting steps) into [t_min, t_max]: asking it at t = -0.01 or 1.5 is harmless."""
    process = StrictSubVP("raise").double()
    sm = nine_gaussians(dtype=torch.float64).score_model(process)
    field = FlowField(process.probability_flow(lambda x, t: sm.score(x, t, check=False)), process, 5)
    x = torch.randn(5, 2, dtype=torch.float64, generator=gen())
    for t, inside in ((-0.01, process.t_min), (1.5, process.t_max)):
        out = field(torch.tensor(t, dtype=torch.float64), x)
        torch.testing.assert_close(out, field(torch.tensor(inside, dtype=torch.float64), x))
    assert process.outside == []


# ---------------------------------------------------------------------------- NaN mid-sampling
#: evaluation times of one step of each method, as fractions of the step (in order)
STAGES = {"euler": [0.0], "heun": [0.0, 1.0], "midpoint": [0.0, 0.5], "reversible_heun": [1.0],
          "rk4": [0.0, 1 / 3, 2 / 3, 1.0], "midpoint_ode": [0.0, 0.5]}


def first_bad_step(stages: list[float], n: int, t0: float, t1: float, threshold: float) -> tuple[int, float]:
    """The first (step, time) at which a method with these stage fractions evaluates below ``threshold``."""
    h = (t0 - t1) / n
    for k in range(1, n + 1):
        for c in stages:
            t = t0 - (k - 1 + c) * h
            if t < threshold:
                return k, t
    raise AssertionError("never below the threshold")


def parse_error(msg: str) -> tuple[int | None, int | None, float]:
    step = re.search(r"step (\d+) of (\d+)", msg)
    t = re.search(r"\bt=([-+0-9.eE]+)", msg)
    assert t is not None, msg
    return (int(step.group(1)) if step else None, int(step.group(2)) if step else None, float(t.group(1)))


@pytest.mark.parametrize("name,method", [("sde", "euler"), ("sde", "heun"), ("sde", "midpoint"),
                                         ("sde", "reversible_heun"), ("ode", "rk4"), ("ode", "midpoint")])
def test_nan_mid_sampling_names_step_and_time(name: str, method: str) -> None:
    process = sdeflow.create_process("vp")
    sm, net = counting_model(gaussian_1d(), process, nan_below=0.5)
    n = 10
    with pytest.raises(NonFiniteError) as info:
        sdeflow.create_sampler(name, method=method, steps=n).sample(sm, (8, 1), gen())
    msg = str(info.value)
    step, of, t = parse_error(msg)
    stages = STAGES[method + ("_ode" if name == "ode" and method == "midpoint" else "")]
    want_step, want_t = first_bad_step(stages, n, process.t_max, process.t_min, 0.5)
    assert (step, of) == (want_step, n), msg
    assert t == pytest.approx(want_t, rel=1e-5), msg
    assert t == pytest.approx(next(tt for tt in net.times if tt < 0.5), rel=1e-5), msg  # the network's view


@pytest.mark.parametrize("name", ["sde", "ode"])
def test_nan_in_final_denoising_is_named(name: str) -> None:
    """Euler evaluates at the start of each step only, so with t_end = 0.04 and NaN below 0.05
    the only bad evaluation is the final denoising at t_end."""
    process = sdeflow.create_process("vp")
    sm, net = counting_model(gaussian_1d(), process, nan_below=0.05)
    with pytest.raises(NonFiniteError, match=r"final denoising after step 10 of 10, t=0\.04\b"):
        sdeflow.create_sampler(name, method="euler", steps=10, t_end=0.04, denoise=True).sample(sm, (8, 1), gen())
    assert [t for t in net.times if t < 0.05] == [pytest.approx(0.04)]


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_nan_mid_sampling_adaptive_ode_names_time(method: str) -> None:
    process = sdeflow.create_process("vp")
    sm, net = counting_model(gaussian_1d(), process, nan_below=0.5)
    with pytest.raises(NonFiniteError) as info:
        sdeflow.create_sampler("ode", method=method).sample(sm, (8, 1), gen())
    _, _, t = parse_error(str(info.value))
    first_bad = next(tt for tt in net.times if tt < 0.5)
    assert t == pytest.approx(first_bad, rel=1e-5) and process.t_min <= t < 0.5


# ---------------------------------------------------------------------------- final denoising
@pytest.mark.parametrize("name,kw", [("sde", {"method": "euler", "steps": 40}), ("sde", {"method": "heun", "steps": 20}),
                                     ("ode", {"method": "rk4", "steps": 20}), ("ode", {"method": "dopri5"})])
def test_denoise_is_the_exact_posterior_mean(name: str, kw: dict) -> None:
    """denoise=True maps the last state x to E[x_0 | x_t] = MU + a SIGMA^2 (x - a MU) / (a^2 SIGMA^2 + s^2)
    (Gaussian conditioning, Tweedie) at one extra score evaluation."""
    process = sdeflow.create_process("vp")
    t_end = 0.1
    sm, net = counting_model(gaussian_1d(dtype=torch.float64), process)
    n = 4000
    raw = sdeflow.create_sampler(name, denoise=False, t_end=t_end, **kw).sample(sm, (n, 1), gen(8))
    calls_raw = net.calls
    den = sdeflow.create_sampler(name, denoise=True, t_end=t_end, **kw).sample(sm, (n, 1), gen(8))
    assert den.nfe == raw.nfe + 1 and net.calls - calls_raw == den.nfe
    a, s = (float(v[0]) for v in process.marginal(torch.tensor([t_end], dtype=torch.float64)))
    var = a * a * SIGMA**2 + s * s
    posterior_mean = MU + a * SIGMA**2 * (raw.samples - a * MU) / var
    torch.testing.assert_close(den.samples, posterior_mean, rtol=1e-10, atol=1e-10)
    # and the denoised samples have the law of E[x_0 | x_t]: mean MU, std a SIGMA^2 / sqrt(var)
    assert_moments(den.samples, MU, a * SIGMA**2 / math.sqrt(var), f"{name} denoised")


def test_denoise_defaults() -> None:
    assert sdeflow.create_sampler("sde").denoise is True  # Song et al. 2021 denoise the SDE samples
    assert sdeflow.create_sampler("ode").denoise is False


# ---------------------------------------------------------------------------- Brownian sources
def test_brownian_default_is_fast() -> None:
    assert sdeflow.create_sampler("sde").brownian == "fast"
    assert sdeflow.component_options("sampler", "sde")["brownian"] == "fast"


@pytest.mark.parametrize("coarse,fine", [(4, 8), (3, 6), (5, 20)])
def test_scaled_brownian_same_path_at_every_step_count(coarse: int, fine: int) -> None:
    """W at the shared grid points (and the increments' space-time Levy areas summed the right
    way) are the same whatever the step count; in step time W_u(u) = sqrt(N) B(u / N)."""
    kw = dict(span=0.999, shape=(3, 2), seed=11, dtype=torch.float64, device=torch.device("cpu"))
    bc, bf = ScaledBrownian(steps=coarse, **kw), ScaledBrownian(steps=fine, **kw)
    r = fine // coarse
    wc = torch.stack([bc(torch.tensor(float(k)), torch.tensor(float(k + 1))) / math.sqrt(coarse)
                      for k in range(coarse)]).cumsum(0)
    wf = torch.stack([bf(torch.tensor(float(k)), torch.tensor(float(k + 1))) / math.sqrt(fine)
                      for k in range(fine)]).cumsum(0)
    torch.testing.assert_close(wc, wf[r - 1::r], rtol=0, atol=1e-12)


def test_interval_brownian_strong_error_shrinks_fast_does_not() -> None:
    """With brownian="interval" one seed is one Brownian path, so Euler's pathwise error against
    a fine solution of the same path halves with each doubling of the steps; with the default
    "fast" source every step count draws a new path and the error stays O(1)."""
    sm = gaussian_1d(dtype=torch.float64).score_model(sdeflow.create_process("vp"))
    n = 64

    def run(steps: int, brownian: str) -> Tensor:
        s = sdeflow.create_sampler("sde", method="euler", steps=steps, brownian=brownian, denoise=False)
        return s.sample(sm, (n, 1), gen(9)).samples

    ref = run(256, "interval")
    err = {k: float((run(k, "interval") - ref).pow(2).mean().sqrt()) for k in (16, 32, 64)}
    assert err[16] > err[32] > err[64] and err[64] < err[16] / 2.5, err
    fast_err = float((run(64, "fast") - ref).pow(2).mean().sqrt())
    assert fast_err > 10 * err[64], (fast_err, err)
