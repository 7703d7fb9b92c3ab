"""The conformance kit itself (:mod:`sdeflow.testing`): every built-in sampler and model passes
it, its reference process passes the process checks, each check catches the bug it is meant
for (a component with exactly that bug fails it, with a message naming it), and the pytest
plugin selects, runs and skips as documented.

(Every registered process is run through the process checks by tests/test_process_conformance.py.)
"""

from __future__ import annotations

import functools
import math
import textwrap
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from common import unobserved_repaint
from torch import Tensor, nn

import sdeflow
from sdeflow import testing as kit
from sdeflow.plugins.manager import get_manager
from sdeflow.solvers import GridCoefficients, GridRun, GridSampler, solver_times
from sdeflow.testing.pytest_plugin import ComponentSpec, model_shape, parse_component_line
from sdeflow.testing.samplers import PROCESS_CHECKS_OF_SAMPLERS
from sdeflow_plugins.sde.sampler import SDESampler

pytest_plugins = ["pytester"]

F64 = torch.float64


def builtin(kind: str) -> list[str]:
    """Components of ``kind`` registered by sdeflow's own distribution (the built-in plugins)."""
    mgr = get_manager()
    return sorted(n for n in sdeflow.list_components()[kind]
                  if mgr.plugins[mgr.registry.get(kind, n).source].distribution == "sdeflow")


# ---------------------------------------------------------------------------------- built-ins pass
#: options giving each built-in sampler a bias below the kit's tol (0.05) on the reference OU
#: process at a small cost; others run with their defaults
SAMPLER_OPTIONS = {
    "ancestral": dict(steps=200),  # 100 steps: posterior-variance under-dispersion 0.09 in the covariance
    "ddim": dict(steps=100), "dpm_solver": dict(steps=20), "heun": dict(steps=18), "ode": dict(),
    "pc": dict(steps=100), "sde": dict(steps=100),
    "langevin": dict(num_scales=10, n_steps_each=20, step_size=5e-3),
    "repaint": dict(steps=300, jump_length=10, resample=2),  # the ancestral step's bias, plus the jumps
}
#: annealed Langevin's step is eps sigma_i^2 / sigma_L^2 (Song & Ermon 2019, Alg. 1): a step size
#: that mixes when the last level is t_min (sigma_L = 0.1) barely moves when it is t_end = 0.3
#: (sigma_L = 0.95, no annealing left), and one that mixes there diverges at the top levels
#: when the last level is t_min. So the t_end check gets its own.
CHECK_OPTIONS = {("langevin", "t_end"): dict(num_scales=10, n_steps_each=20, step_size=0.1),
                 # the configurations that run without Gaussian marginals (no final denoising)
                 ("sde", "no_gaussian_marginals"): dict(steps=100, denoise=False),
                 ("pc", "no_gaussian_marginals"): dict(steps=100, predictor="euler_maruyama", corrector="none",
                                                       denoise=False),
                 # a fixed-step method: the order check varies the steps
                 ("ode", "order"): dict(method="rk4")}


def sampler_factory(name: str, options: dict) -> Callable[..., sdeflow.Sampler]:
    """The built-in sampler ``name`` with ``options`` (repaint, an imputation sampler, given no observed value)."""
    if name == "repaint":
        return functools.partial(unobserved_repaint, **options)
    return functools.partial(sdeflow.create_sampler, name, **options)


def run_check(check: Callable[[], None]) -> None:
    """Run a check; one that does not apply to the component is a skip, with its reason."""
    try:
        check()
    except kit.CheckNotApplicable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("check", list(kit.SAMPLER_CHECKS))
@pytest.mark.parametrize("name", builtin("sampler"))
def test_builtin_samplers_pass_the_kit(name: str, check: str) -> None:
    options = CHECK_OPTIONS.get((name, check), SAMPLER_OPTIONS.get(name, {}))
    run_check(lambda: kit.SAMPLER_CHECKS[check](sampler_factory(name, options)))


#: under every registered process (the kit's --sdeflow-every-process switch): options and
#: tolerances where a process needs other ones than the reference OU process
#: 18 EDM steps from VDM's sigma/alpha = 22026 or rectified_flow's 999 at t_max: biased
PROCESS_OPTIONS = {("heun", "vdm"): dict(steps=40), ("heun", "rectified_flow"): dict(steps=40)}
#: NCSN's default chain has 10 levels, and ancestral and pc walk the chain: a 10-step bias
PROCESS_TOL = {("ancestral", "ncsn"): 0.2, ("pc", "ncsn"): 0.2}


@pytest.mark.slow
@pytest.mark.parametrize("process", builtin("process"))
@pytest.mark.parametrize("name", [n for n in builtin("sampler") if n not in ("langevin", "repaint")])
def test_builtin_samplers_pass_under_every_process(name: str, process: str) -> None:
    """The process-dependent sampler checks under every built-in process. Left out: annealed Langevin
    (with 10 levels of 20 steps it does not reach the kit's tolerance of 0.05 on the VP-type
    processes, and on VE a log-SNR grid cannot end at t_min = 0, where sigma = 0) and RePaint (its
    steps are the ancestral sampler's, checked here, with jumps back; 300 steps resampled twice under
    every process take two minutes; measured: it passes, with NCSN's 10-level chain at tol 0.2)."""
    options = PROCESS_OPTIONS.get((name, process), SAMPLER_OPTIONS.get(name, {}))
    factory = sampler_factory(name, options)
    p = sdeflow.create_process(process)
    tol = PROCESS_TOL.get((name, process), 0.05)
    for check in PROCESS_CHECKS_OF_SAMPLERS:
        kwargs = {"tol": tol} if check in ("t_end", "recovers_gaussian") else {}
        kit.SAMPLER_CHECKS[check](factory, process=p, **kwargs)


@pytest.mark.parametrize("check", list(kit.MODEL_CHECKS))
@pytest.mark.parametrize("name", builtin("model"))
def test_builtin_models_pass_the_kit(name: str, check: str) -> None:
    """With the options every model takes (``dim``, or ``in_channels`` and ``image_size``)."""
    known = sdeflow.component_options("model", name)
    options = dict(dim=3) if "dim" in known else dict(in_channels=1, image_size=8)
    if check == "conditional":  # class-conditional networks take num_classes
        options["num_classes"] = 4
    shapes = [model_shape(ComponentSpec("model", name, options))]
    if "dim" in known:
        shapes.append((2, 1, 3))  # vector models also take (batch, *dims) with prod(dims) == dim
    for shape in shapes:
        kit.MODEL_CHECKS[check](functools.partial(sdeflow.create_model, name, **options), shape)


def test_reference_process_passes_every_process_check() -> None:
    kit.check_process(kit.ReferenceOUProcess())
    a, s = kit.ReferenceOUProcess(theta=2.0).marginal(torch.tensor([0.5], dtype=F64))
    assert float(a) == pytest.approx(math.exp(-1.0)) and float(s) ** 2 == pytest.approx(1 - math.exp(-2.0))


# ---------------------------------------------------------------------------------- processes with bugs
class ScaledStdOU(kit.ReferenceOUProcess):
    """Claims a marginal std 4% too large for its SDE."""

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, s = super().marginal(t)
        return a, 1.04 * s


class WeakDriftOU(kit.ReferenceOUProcess):
    """Its drift is 10% weaker than its marginal says."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.9 * super().drift(x, t)


class NonlinearDriftOU(kit.ReferenceOUProcess):
    """Claims Gaussian marginals with a drift that is not linear in x."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return super().drift(x, t) - 0.01 * x**3


class WidePriorOU(kit.ReferenceOUProcess):
    def prior_std(self, device=None, dtype=torch.float32) -> Tensor:  # type: ignore[no-untyped-def]
        return 1.1 * super().prior_std(device, dtype)


class NoTimeCheckOU(kit.ReferenceOUProcess):
    def check_time(self, t, batch=None, *, like=None):  # type: ignore[no-untyped-def]
        t = torch.as_tensor(t, dtype=like.dtype if like is not None else None)
        return t.expand(batch) if t.ndim == 0 else t


class WrongInverseOU(kit.ReferenceOUProcess):
    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        return super().t_from_log_snr(lam) * 1.001


class TrainsOutsideItsInterval(kit.ReferenceOUProcess):
    """Declares t_min = 0.05 but draws training times from U[0, 1]."""

    def __init__(self) -> None:
        super().__init__(t_min=0.05)

    def sample_training_time(self, n, generator=None, device=None, dtype=torch.float32):  # type: ignore[no-untyped-def]
        return torch.rand(n, generator=generator, dtype=dtype)


class ReversedInterval(kit.ReferenceOUProcess):
    """Declares t_min above t_max."""

    t_max = 1e-4


class ChainOutsideItsInterval(kit.ReferenceOUProcess):
    """A discrete chain reaching below the declared t_min."""

    def discrete_times(self) -> Tensor:
        return torch.linspace(1.0, 0.0, 11, dtype=F64)


class NarrowPriorDensity(kit.NonGaussianProcess):
    """Its prior_log_prob is the (normalised) density of a narrower mixture than the one prior_sample draws."""

    def prior_log_prob(self, x: Tensor) -> Tensor:
        narrow = kit.NonGaussianProcess()
        narrow.v = 0.2
        return narrow.prior_log_prob(x)


class UnnormalisedPrior(kit.NonGaussianProcess):
    def prior_log_prob(self, x: Tensor) -> Tensor:
        return super().prior_log_prob(x) + 0.05


class WrongDerivativeOU(kit.ReferenceOUProcess):
    """Its closed-form ``sigma_t'`` is 1% off (the marginal, drift and diffusion are right)."""

    def marginal_and_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a, s, da, ds = super().marginal_and_derivatives(t)
        return a, s, da, 1.01 * ds


class BiasedScoreOU(kit.ReferenceOUProcess):
    """Its probability-flow ODE adds 1% of the state: the flow no longer is the velocity."""

    def probability_flow(self, score_fn):  # type: ignore[no-untyped-def]
        ode = super().probability_flow(score_fn)
        field = ode.velocity
        ode.velocity = lambda x, t: field(x, t) + 0.01 * x  # type: ignore[method-assign]
        return ode


@pytest.mark.parametrize("process, check, message", [
    (TrainsOutsideItsInterval(), kit.check_process_time_range, r"sample_training_time draws times outside the declared"),
    (ReversedInterval(), kit.check_process_time_range, r"must satisfy 0 <= t_min < t_max"),
    (ChainOutsideItsInterval(), kit.check_process_time_range, r"discrete_times\(\) spans \[0, 1\], outside"),
    (NarrowPriorDensity(), kit.check_process_prior_density, r"prior samples and prior_log_prob disagree"),
    (UnnormalisedPrior(), kit.check_process_prior_density, r"integrates to 1\.05\d+ in 1-D, not 1"),
    (WrongDerivativeOU(), kit.check_process_marginal_derivatives, "sigma_t' vs central differences"),
    (ScaledStdOU(), kit.check_process_marginal_derivatives, "vs 2 sigma sigma' - 2 f sigma"),
    (BiasedScoreOU(), kit.check_process_velocity, "score / 2 vs the velocity"),
    (ScaledStdOU(), kit.check_process_moment_equations, "variance from drift and diffusion"),
    (ScaledStdOU(), kit.check_process_forward_simulation, "forward SDE simulated"),
    (WeakDriftOU(), kit.check_process_moment_equations, "mean from the drift"),
    (NonlinearDriftOU(), kit.check_process_moment_equations, "must be linear in x"),
    (WidePriorOU(), kit.check_process_prior, "prior_std()"),
    (NoTimeCheckOU(), kit.check_process_time_validation, "expected TimeRangeError"),
    (WrongInverseOU(), kit.check_process_log_snr, "t_from_log_snr(log_snr(t)) vs t"),
], ids=lambda v: getattr(v, "__name__", type(v).__name__) if not isinstance(v, str) else "")
def test_process_checks_catch_their_bug(process: sdeflow.ForwardProcess, check: Callable[..., None],
                                        message: str) -> None:
    escaped = message if "\\" in message else message.replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(AssertionError, match=escaped):
        check(process)


def test_gaussian_checks_do_not_apply_without_gaussian_marginals() -> None:
    p = kit.NonGaussianProcess()
    for name in ("exact_score_2d", "moment_equations", "prior"):
        with pytest.raises(kit.CheckNotApplicable, match="gaussian_marginals=False"):
            kit.PROCESS_CHECKS[name](p)
    for name in ("shapes", "time_validation", "time_range", "prior_density"):
        kit.PROCESS_CHECKS[name](p)
    assert not p.gaussian_calls


def test_the_kits_processes_are_what_they_say() -> None:
    """The order checks' reference passes every process check; the non-Gaussian process keeps its
    stationary law under its own SDE (Euler-Maruyama, 200 steps of 1e-3 from samples of q) and
    refuses to give alpha_t, sigma_t."""
    kit.check_process(kit.LinearLogSNRProcess())
    p = kit.NonGaussianProcess().to(F64)
    g = torch.Generator().manual_seed(0)
    x = p.prior_sample((20_000, 1), g, dtype=F64)
    t = torch.zeros(20_000, dtype=F64)
    for _ in range(200):
        x = x + 1e-3 * p.drift(x, t) + math.sqrt(2e-3) * torch.randn(x.shape, generator=g, dtype=F64)
    var, fourth = p.stationary_moments()
    kit.assert_moments(x, torch.zeros(1, dtype=F64), torch.full((1, 1), var, dtype=F64), "Langevin from q",
                       mean_slack=0.01, cov_slack=0.01)
    assert float((x**4).mean()) == pytest.approx(fourth, abs=0.1)
    with pytest.raises(kit.GaussianQuantityUsed, match="has no Gaussian marginals"):
        p.marginal(t)
    assert p.gaussian_calls == ["marginal(t) (alpha_t, sigma_t)"]


# ---------------------------------------------------------------------------------- samplers with bugs
class EulerSampler(sdeflow.Sampler):
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6), written plainly; the
    subclasses below each break one rule."""

    name = "kit-euler"
    stochastic = True
    order = 1.0  # weak order 1 (strong order 1 on this additive noise)

    def __init__(self, steps: int = 100, t_end: float | None = None) -> None:
        self.steps, self.t_end = steps, t_end

    def noise(self, shape, generator, like):  # type: ignore[no-untyped-def]
        return torch.randn(shape, generator=generator, dtype=like.dtype)

    def end_time(self, process: sdeflow.ForwardProcess) -> float:
        return float(process.t_min) if self.t_end is None else float(self.t_end)

    def _sample(self, score_model, shape, generator, callback, progress,  # type: ignore[no-untyped-def]
                return_trajectory, x_T=None):
        process, nfe = score_model.process, 0
        t0, t1 = float(process.t_max), self.end_time(process)
        times = torch.linspace(t0, t1, self.steps + 1, dtype=score_model.dtype)
        h = (t0 - t1) / self.steps
        x = self.start(score_model, shape, generator, x_T)
        states, stamps = [x], [times[0]]
        if callback is not None:
            callback(0, times[0], x)
        for k in range(self.steps):
            t = times[k].expand(shape[0])
            nfe += 1
            drift = process.reverse_sde(lambda y, tt: score_model.score(y, tt, check=False)).drift(x, t)
            g = sdeflow.append_dims(process.diffusion(t), x.ndim)
            x = x - h * drift + g * math.sqrt(h) * self.noise(shape, generator, x)
            states.append(x)
            stamps.append(times[k + 1])
            if callback is not None:
                callback(k + 1, times[k + 1], x)
        traj = (torch.stack(states), torch.stack(stamps)) if return_trajectory else (None, None)
        return sdeflow.SampleResult(samples=self.finish(x), nfe=self.report(nfe), steps=self.steps,
                                    trajectory=traj[0], times=traj[1])

    def start(self, score_model, shape, generator, x_T):  # type: ignore[no-untyped-def]
        return score_model.prior_sample(shape, generator) if x_T is None else x_T

    def finish(self, x: Tensor) -> Tensor:
        return x

    def report(self, nfe: int):  # type: ignore[no-untyped-def]
        return nfe


class TensorNFE(EulerSampler):
    def report(self, nfe):  # type: ignore[no-untyped-def]
        return torch.tensor(nfe)


class MiscountedNFE(EulerSampler):
    def report(self, nfe):  # type: ignore[no-untyped-def]
        return nfe - 1


class UncountedDenoising(EulerSampler):
    """Ends with Tweedie's posterior mean, an evaluation it does not count."""

    def finish(self, x: Tensor) -> Tensor:
        sm = self.score_model
        return sm.x0(x, torch.full((x.shape[0],), float(sm.process.t_min), dtype=x.dtype), check=False)

    def _sample(self, score_model, shape, generator, callback, progress, return_trajectory,  # type: ignore[no-untyped-def]
                x_T=None):
        self.score_model = score_model
        return super()._sample(score_model, shape, generator, callback, progress, return_trajectory, x_T)


class IgnoresXT(EulerSampler):
    """Takes x_T but draws its own start."""

    def start(self, score_model, shape, generator, x_T):  # type: ignore[no-untyped-def]
        return score_model.prior_sample(shape, generator)


class NoXT(EulerSampler):
    """A loop of its own that cannot start from a given x_T."""

    def _sample(self, score_model, shape, generator, callback, progress, return_trajectory):  # type: ignore[no-untyped-def]
        return super()._sample(score_model, shape, generator, callback, progress, return_trajectory)


class GlobalRNG(EulerSampler):
    def noise(self, shape, generator, like):  # type: ignore[no-untyped-def]
        return torch.randn(shape, dtype=like.dtype)  # ignores the generator


class IgnoresTEnd(EulerSampler):
    def end_time(self, process):  # type: ignore[no-untyped-def]
        return float(process.t_min)


class AlwaysFloat32(EulerSampler):
    def finish(self, x):  # type: ignore[no-untyped-def]
        return x.float()


class Overdispersed(EulerSampler):
    def finish(self, x):  # type: ignore[no-untyped-def]
        return 1.15 * x


class UncheckedGaussianNeed(EulerSampler):
    requires_gaussian_marginals = True

    def check_compatible(self, score_model):  # type: ignore[no-untyped-def]
        return None


class NoTEndOption(EulerSampler):
    def __init__(self, steps: int = 100) -> None:
        super().__init__(steps)


def test_the_plain_euler_sampler_passes() -> None:
    kit.check_sampler(EulerSampler)


@pytest.mark.parametrize("sampler, check, message", [
    (TensorNFE, "contract", "nfe must be a Python int, got Tensor"),
    (MiscountedNFE, "contract", "but the model was evaluated"),
    (UncountedDenoising, "contract", r"nfe=100 but the model was evaluated 101 times"),
    (GlobalRNG, "reproducible", "two runs with generator seed 5 gave different samples"),
    (IgnoresTEnd, "t_end", "the model was evaluated at t="),
    (AlwaysFloat32, "dtypes", "a torch.float64 model gave torch.float32 samples"),
    (Overdispersed, "recovers_gaussian", r"samples vs p_\(t_min\) of N\(m, C\)"),
    (UncheckedGaussianNeed, "refuses_incompatible", "expected IncompatibleError"),
    (NoTEndOption, "interface", "a sampler takes a t_end option"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_sampler_checks_catch_their_bug(sampler: type, check: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        kit.SAMPLER_CHECKS[check](sampler)


@pytest.mark.parametrize("sampler, message", [
    (IgnoresXT, r"must start from x_T, but the state at step 0 differs from it"),
    (NoXT, r"cannot start from a given x_T: its _sample\(\) takes no x_T argument"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_the_contract_check_catches_a_sampler_not_starting_from_x_T(sampler: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        kit.check_sampler_contract(sampler)


# ---------------------------------------------------------------------------------- false capability claims
class FirstOrderGrid(GridSampler):
    """DDIM / DPM-Solver-1 written on the grid-sampler base (Lu et al. 2022, Eq. 3.7 with k = 1),
    honest about its order; the subclasses below each make one false claim."""

    name = "kit-first-order"
    requires_gaussian_marginals = True
    order = 1.0

    def __init__(self, steps: int = 50, t_end: float | None = None, check_finite: bool = True) -> None:
        self.steps, self.t_end, self.check_finite = steps, t_end, check_finite

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, GridCoefficients]:
        grid = solver_times(run.process, t_start, t_end, self.steps, "logSNR")
        return grid, GridCoefficients.of(run.process, grid)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        alpha, sigma = run.plan.alpha, run.plan.sigma
        r = sigma[k + 1] / sigma[k]
        return r * x + (alpha[k + 1] - alpha[k] * r) * run.x0(x, run.at(k))


@dataclass(frozen=True)
class MidpointPlan:
    """The marginal at the grid and at the log-SNR midpoints of its steps."""

    grid: GridCoefficients
    mid: GridCoefficients
    mid_times: list[float]


class ExpMidpoint(GridSampler):
    """DPM-Solver-2 (Lu et al. 2022, Alg. 1 with r = 1/2): the exponential midpoint in log-SNR,
    written from the documented toolkit alone; the midpoint is an off-grid time put on the run's
    device with ``run.time``. Second order, two evaluations a step."""

    name = "kit-exp-midpoint"
    requires_gaussian_marginals = True
    order = 2.0

    def __init__(self, steps: int = 25, t_end: float | None = None, check_finite: bool = True) -> None:
        self.steps, self.t_end, self.check_finite = steps, t_end, check_finite

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, MidpointPlan]:
        grid = solver_times(run.process, t_start, t_end, self.steps, "logSNR")
        co = GridCoefficients.of(run.process, grid)
        mid_log_snr = torch.tensor([0.5 * (a + b) for a, b in zip(co.log_snr[:-1], co.log_snr[1:])], dtype=F64)
        mid_times = run.process.t_from_log_snr(mid_log_snr).to(F64)
        return grid, MidpointPlan(co, GridCoefficients.of(run.process, mid_times), mid_times.tolist())

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        co, mid = run.plan.grid, run.plan.mid
        h = co.half_log_snr[k + 1] - co.half_log_snr[k]
        u = (mid.alpha[k] / co.alpha[k]) * x - mid.sigma[k] * math.expm1(0.5 * h) * run.eps(x, run.at(k))
        return (co.alpha[k + 1] / co.alpha[k]) * x - co.sigma[k + 1] * math.expm1(h) * run.eps(u, self.midpoint(run, k))

    def midpoint(self, run: GridRun, k: int) -> Tensor:
        return run.time(run.plan.mid_times[k])


class WrongMidpointTime(ExpMidpoint):
    """Evaluates the midpoint's state at the step's start time: first order, declared second."""

    def midpoint(self, run: GridRun, k: int) -> Tensor:
        return run.at(k)


class ClaimsSecondOrder(FirstOrderGrid):
    """A first-order step in a sampler declaring order 2."""

    order = 2.0


class NoisyDeterministic(FirstOrderGrid):
    """Adds a little generator noise every step, but declares stochastic = False."""

    def step(self, run, k, x):  # type: ignore[no-untyped-def]
        return super().step(run, k, x) + 1e-3 * run.noise()


class ClaimsStochastic(FirstOrderGrid):
    """Declares stochastic = True and draws no noise."""

    stochastic = True


class ItemInLoop(FirstOrderGrid):
    """Reads the state's scale on the host every step (a GPU waits for it)."""

    def step(self, run, k, x):  # type: ignore[no-untyped-def]
        scale = x.abs().max().item()
        return super().step(run, k, x) * (1.0 if scale < 1e6 else 0.5)


class BoolInLoop(FirstOrderGrid):
    """Branches on a device comparison every step."""

    def step(self, run, k, x):  # type: ignore[no-untyped-def]
        out = super().step(run, k, x)
        return out if bool(torch.isfinite(out).all()) else x


class UsesAlphaSigmaUndeclared(FirstOrderGrid):
    """Uses alpha_t and sigma_t (its coefficients and the data prediction) but declares
    requires_gaussian_marginals = False."""

    requires_gaussian_marginals = False


class FlowDDIM(GridSampler):
    """DDIM (Song et al. 2021a, Eq. 12 with eta = 0) from the data prediction, time-uniform: finite where
    alpha = 0, so it starts at pure noise and declares requires_finite_start = False (and is right)."""

    name = "kit-flow-ddim"
    requires_gaussian_marginals = True
    requires_finite_start = False
    order = 1.0

    def __init__(self, steps: int = 100, t_end: float | None = None, check_finite: bool = True) -> None:
        self.steps, self.t_end, self.check_finite = steps, t_end, check_finite

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, tuple[list[float], list[float]]]:
        grid = torch.linspace(t_start, t_end, self.steps + 1, dtype=F64)
        with torch.no_grad():
            a, s = run.process.marginal(grid)
        return grid, (a.tolist(), s.tolist())

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        alpha, sigma = run.plan
        x0 = run.x0(x, run.at(k))
        return alpha[k + 1] * x0 + sigma[k + 1] * ((x - alpha[k] * x0) / sigma[k])


class SkipsTheStartCheck(FlowDDIM):
    """Declares requires_finite_start = True but never checks the process's start."""

    requires_finite_start = True

    def check_compatible(self, score_model):  # type: ignore[no-untyped-def]
        return None


class ClaimsAFreeStart(FirstOrderGrid):
    """Declares requires_finite_start = False but its coefficients need alpha > 0 everywhere."""

    requires_finite_start = False


class EulerODE(sdeflow.Sampler):
    """Euler steps on the probability-flow ODE (Song et al. 2021, Eq. 13), uniform in time: only drift,
    diffusion and score, so it declares requires_gaussian_marginals = False (and is right)."""

    name = "kit-euler-ode"
    order = 1.0

    def __init__(self, steps: int = 100, t_end: float | None = None) -> None:
        self.steps, self.t_end = steps, t_end

    def _sample(self, score_model, shape, generator, callback, progress, return_trajectory,  # type: ignore[no-untyped-def]
                x_T=None):
        process, nfe = score_model.process, 0
        t0 = float(process.t_max)
        t1 = float(process.t_min) if self.t_end is None else float(self.t_end)
        times = torch.linspace(t0, t1, self.steps + 1, dtype=score_model.dtype)
        x = score_model.prior_sample(shape, generator) if x_T is None else x_T
        if callback is not None:
            callback(0, times[0], x)
        flow = process.probability_flow(lambda y, tt: score_model.score(y, tt, check=False))
        for k in range(self.steps):
            nfe += 1
            x = x + (times[k + 1] - times[k]) * flow.velocity(x, times[k].expand(shape[0]))
            if callback is not None:
                callback(k + 1, times[k + 1], x)
        return sdeflow.SampleResult(samples=self.finish(score_model, x, times[-1]), nfe=nfe, steps=self.steps)

    def finish(self, score_model, x, t):  # type: ignore[no-untyped-def]
        return x


class DenoisesUndeclared(EulerODE):
    """Ends with Tweedie's posterior mean, which needs alpha_t and sigma_t, yet declares
    requires_gaussian_marginals = False."""

    def finish(self, score_model, x, t):  # type: ignore[no-untyped-def]
        return score_model.x0(x, t.expand(x.shape[0]), check=False)


class EulerMaruyamaClaimsSecondOrder(EulerSampler):
    """Euler-Maruyama (weak order 1) declaring order 2."""

    order = 2.0


class SDEClaimsStrongOrderTwo(SDESampler):
    """The sde sampler (Euler-Maruyama, strong order 1 on a shared Brownian path) declaring order 2."""

    @property
    def order(self) -> float:  # type: ignore[override]
        return 2.0


def test_honest_fixtures_pass() -> None:
    for check in ("order", "stochastic", "host_syncs", "refuses_incompatible"):
        kit.SAMPLER_CHECKS[check](FirstOrderGrid)
    kit.check_sampler(ExpMidpoint)  # the midpoint sampler of the toolkit's docs passes every check
    for check in ("order", "stochastic", "no_gaussian_marginals", "host_syncs"):
        kit.SAMPLER_CHECKS[check](EulerODE)
    kit.check_sampler_finite_start(FlowDDIM)
    kit.check_sampler_order(EulerSampler)


@pytest.mark.parametrize("sampler, check, message", [
    (ClaimsSecondOrder, "order", r"declares order=2 but converges at order 0\.9\d on the .*pathwise error against "
                                 r"the exact probability-flow map"),
    (WrongMidpointTime, "order", r"declares order=2 but converges at order 1\.\d+ on the .*pathwise"),
    (EulerMaruyamaClaimsSecondOrder, "order", r"declares order=2 but converges at order [01]\.\d+ .*weak error of "
                                              r"the whitened sample mean and covariance"),
    (SDEClaimsStrongOrderTwo, "order", r"declares order=2 but converges at order 1\.\d+ .*strong error on one "
                                       r"Brownian path"),
    (NoisyDeterministic, "stochastic", r"declares stochastic=False but two runs from the same x_T with generator "
                                       r"seeds 5 and 6 differ"),
    (ClaimsStochastic, "stochastic", r"declares stochastic=True but two runs from the same x_T .* gave identical"),
    (ItemInLoop, "host_syncs", r"declares host_syncs=False but its step loop converted device tensors to host values "
                               r"\d+ times.*Tensor\.item\(\) at .*test_testing_kit\.py"),
    (BoolInLoop, "host_syncs", r"declares host_syncs=False.*bool\(tensor\) at .*test_testing_kit\.py"),
    (UsesAlphaSigmaUndeclared, "no_gaussian_marginals", r"declares requires_gaussian_marginals=False but used "
                                                        r"(marginal|log_snr)"),
    (SkipsTheStartCheck, "finite_start", r"\(requires_finite_start\) on a process with alpha = 0 at t_max: expected "
                                         r"IncompatibleError"),
    (ClaimsAFreeStart, "finite_start", r"declares requires_finite_start=False but on NoiseEndProcess \(alpha = 0 at "
                                       r"t_max\) it fails"),
    (DenoisesUndeclared, "no_gaussian_marginals", r"declares requires_gaussian_marginals=False but used marginal\(t\) "
                                                  r"\(alpha_t, sigma_t\)"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_false_capability_claims_fail_their_check(sampler: type, check: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        kit.SAMPLER_CHECKS[check](sampler)


def test_host_sync_counter_tells_device_from_host_tensors() -> None:
    """Device tensors by provenance: conversions of the marked start, of what is computed from it and
    of tensors placed with device= in the model's dtype count; host-side float64 work does not."""
    from sdeflow.testing.syncs import mark_device

    counter = kit.HostSyncCounter(torch.float32, lambda: 1)
    grid = torch.linspace(1.0, 0.0, 5, dtype=F64)  # a host grid
    with counter:
        x = mark_device(torch.randn(4, 2))
        float(grid[1])
        grid.tolist()
        y = (x * grid[2].float()).abs()
        y.max().item()  # counted
        bool((y > 1).any())  # counted
        _ = y[y > 0.5]  # counted: boolean mask
        t = torch.full((4,), 0.5, dtype=torch.float32, device=x.device)  # placed on the run's device
        float(t[0])  # counted
        float(torch.zeros(1, dtype=F64, device=x.device))  # float64: a host-side value
    assert [e.op for e in counter.events] == ["Tensor.item()", "bool(tensor)", "boolean-mask indexing",
                                              "float(tensor)"]
    assert all("test_testing_kit.py" in e.where for e in counter.events)


def test_the_order_check_passes_over_what_it_cannot_measure() -> None:
    with pytest.raises(kit.CheckNotApplicable, match="declares no order"):
        kit.check_sampler_order(functools.partial(sdeflow.create_sampler, "langevin"))
    with pytest.raises(kit.CheckNotApplicable, match="steps=16 was refused"):
        kit.check_sampler_order(functools.partial(sdeflow.create_sampler, "ode"))  # adaptive: no fixed steps
    with pytest.raises(kit.CheckNotApplicable, match="declares requires_gaussian_marginals=True"):
        kit.check_sampler_without_gaussian_marginals(FirstOrderGrid)


def test_gaussian_flow_map_is_the_probability_flow() -> None:
    """The closed-form map the order check compares with equals dopri5 on the process's own
    probability-flow ODE (anisotropic 2-D Gaussian, t_max -> t_min, under the OU reference)."""
    p = kit.ReferenceOUProcess().to(F64)
    target = kit.order_targets()["anisotropic 2-D Gaussian"]
    x = target.score_model(p).prior_sample((16, 2), torch.Generator().manual_seed(0))
    exact = kit.gaussian_flow_map(p, target.means[0], target.covs[0], x, float(p.t_max), float(p.t_min))
    numeric = kit.integrate_probability_flow(p, target.score_model(p), x, float(p.t_max), float(p.t_min), tol=1e-10)
    torch.testing.assert_close(exact, numeric, rtol=1e-7, atol=1e-7)
    assert kit.fit_order([10, 20, 40], [1.0, 0.25, 0.0625]) == pytest.approx(2.0)


# ---------------------------------------------------------------------------------- models with bugs
class TinyNet(nn.Module):
    """``net(x, t_cond)``: a linear layer on the flattened ``[x, t]``."""

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.lin = nn.Linear(dim + 1, dim)

    def features(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.cat([x.flatten(1), t[:, None].to(x.dtype)], 1)

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        return self.lin(self.features(x, t_cond)).reshape(x.shape)


class WrongShape(TinyNet):
    def forward(self, x, t_cond):  # type: ignore[no-untyped-def]
        return super().forward(x, t_cond)[:, :1]


class IgnoresTime(TinyNet):
    def features(self, x, t):  # type: ignore[no-untyped-def]
        return super().features(x, torch.zeros_like(t))


class MixesTheBatch(TinyNet):
    def forward(self, x, t_cond):  # type: ignore[no-untyped-def]
        out = super().forward(x, t_cond)
        return out - out.mean(0, keepdim=True)


class Float32Inside(TinyNet):
    def forward(self, x, t_cond):  # type: ignore[no-untyped-def]
        return nn.functional.linear(self.features(x, t_cond).float(), self.lin.weight.float(), self.lin.bias.float())


class WritesIntoTime(TinyNet):
    """Scales t_cond in place: fails on the expanded view samplers pass."""

    def forward(self, x, t_cond):  # type: ignore[no-untyped-def]
        return super().forward(x, t_cond.mul_(1.0))


class FirstTimeOnly(TinyNet):
    """Conditions every sample on the first sample's time."""

    def features(self, x, t):  # type: ignore[no-untyped-def]
        return super().features(x, t[:1].expand(t.shape[0]))


class TinyClassNet(TinyNet):
    """``net(x, t_cond, labels)``: TinyNet plus a label embedding with a null row."""

    def __init__(self, dim: int = 3, num_classes: int = 3) -> None:
        super().__init__(dim)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes + 1, dim)

    def forward(self, x, t_cond, labels=None):  # type: ignore[no-untyped-def]
        idx = torch.full((x.shape[0],), self.num_classes) if labels is None else labels.clone()
        idx[idx < 0] = self.num_classes
        return super().forward(x, t_cond) + self.embed(idx).reshape(x.shape)


class IgnoresLabels(TinyClassNet):
    def forward(self, x, t_cond, labels=None):  # type: ignore[no-untyped-def]
        return super().forward(x, t_cond, None)


class NullIsNotNoLabel(TinyClassNet):
    """``net(x, t)`` is not the null label's prediction (it skips the embedding)."""

    def forward(self, x, t_cond, labels=None):  # type: ignore[no-untyped-def]
        return TinyNet.forward(self, x, t_cond) if labels is None else super().forward(x, t_cond, labels)


def test_a_plain_network_passes() -> None:
    kit.check_model(TinyNet, (4, 3))
    kit.check_model(TinyClassNet, (4, 3))
    with pytest.raises(kit.CheckNotApplicable, match="not class-conditional"):
        kit.check_model_conditional(TinyNet, (4, 3))


@pytest.mark.parametrize("net, check, message", [
    (WrongShape, "output_contract", "must return x's shape"),
    (IgnoresTime, "output_contract", "does not depend on t_cond"),
    (MixesTheBatch, "batch_independence", "depends on other samples"),
    (Float32Inside, "float64", "a float64 network returned torch.float32"),
    (WritesIntoTime, "output_contract", r"fails when t_cond is an expanded view of one time"),
    (FirstTimeOnly, "batch_independence", r"sample 3 alone \(with its own t_cond\) vs in a batch"),
    (IgnoresLabels, "conditional", "does not depend on the labels"),
    (NullIsNotNoLabel, "conditional", r"net\(x, t, None\) vs net\(x, t\)|labels -1"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_model_checks_catch_their_bug(net: type, check: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        kit.MODEL_CHECKS[check](net, (4, 3))


# ---------------------------------------------------------------------------------- the pytest plugin
def test_component_lines_parse_and_bad_ones_say_why() -> None:
    spec = parse_component_line('sampler:ddim {"steps": 20} {"tol": 0.1}')
    assert (spec.kind, spec.name, spec.options, spec.settings) == ("sampler", "ddim", {"steps": 20}, {"tol": 0.1})
    assert spec.id == 'sampler:ddim{"steps":20}{"tol":0.1}' and parse_component_line("model:mlp").options == {}
    assert model_shape(parse_component_line('model:unet {"in_channels": 3, "image_size": 8}')) == (2, 3, 8, 8)
    for bad, why in (("vp", "KIND is one of"), ("solver:x", "KIND is one of"), ("sampler:x {steps: 1}", "bad JSON"),
                     ("sampler:x [1]", "expected JSON objects"), ('sampler:x {} {"shape": [1], "speed": 2}', "speed")):
        with pytest.raises(pytest.UsageError, match=why):
            parse_component_line(bad)
    with pytest.raises(pytest.UsageError, match="input shape"):
        model_shape(parse_component_line('model:x {"width": 3}'))


CONFTEST = '''
    import sdeflow
    import torch
    from sdeflow import testing as kit


    class GlobalRNGEuler(sdeflow.Sampler):
        """Draws its prior from the global RNG: fails the reproducibility check."""

        name = "kit-global-rng"

        def __init__(self, t_end=None):
            self.t_end = t_end

        def _sample(self, score_model, shape, generator, callback, progress, return_trajectory):
            x = torch.randn(shape, dtype=score_model.dtype)
            return sdeflow.SampleResult(samples=x, nfe=0)


    class Plugin:
        @sdeflow.hookimpl
        def sdeflow_register_samplers(self, registry):
            registry.add("kit-global-rng", GlobalRNGEuler)

        @sdeflow.hookimpl
        def sdeflow_register_processes(self, registry):
            registry.add("kit-nongauss", kit.NonGaussianProcess)


    sdeflow.register_plugin(Plugin(), name="kit-test-plugin")


    def pytest_unconfigure(config):
        sdeflow.unregister_plugin("kit-test-plugin")
'''


def run_kit(pytester: pytest.Pytester, ini: str, *args: str, conftest: bool = False) -> pytest.RunResult:
    pytester.makeini(textwrap.dedent(ini))
    pytester.makepyfile(test_kit="from sdeflow.testing.suite import test_sdeflow_conformance  # noqa: F401\n")
    if conftest:
        pytester.makeconftest(textwrap.dedent(CONFTEST))
    # (the plugin module is already imported by this session, so pytest cannot rewrite its asserts)
    return pytester.runpytest_inprocess("-p", "sdeflow.testing.pytest_plugin", "-rfs", "-W",
                                        "ignore::pytest.PytestAssertRewriteWarning", *args)


def test_plugin_selects_a_plugins_components_and_runs_every_check(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "dpm_solver", "-v")
    assert result.ret == pytest.ExitCode.OK
    # dpm_solver needs Gaussian marginals: the check of running without them is a skip
    result.assert_outcomes(passed=len(kit.SAMPLER_CHECKS) - 1, skipped=1)
    result.stdout.fnmatch_lines(["*sdeflow kit: sampler:dpm_solver*", "*sampler:dpm_solver::recovers_gaussian*PASSED*",
                                 "*sampler:dpm_solver::order*PASSED*"])


def test_plugin_reports_failures_and_skips(pytester: pytest.Pytester) -> None:
    ini = """
        [pytest]
        sdeflow_components =
            model:mlp {"dim": 3}
            sampler:kit-global-rng
            process:kit-nongauss
    """
    result = run_kit(pytester, ini, "-k", "mlp or reproducible or shapes or prior or time_validation", conftest=True)
    outcomes = result.parseoutcomes()
    # mlp: 3 checks pass, the conditional one skips (no num_classes); kit-global-rng: reproducible fails;
    # kit-nongauss: shapes, time_validation and prior_density pass, prior and exact_mixture_prior skip
    # (no Gaussian marginals)
    assert (outcomes.get("passed"), outcomes.get("failed"), outcomes.get("skipped")) == (6, 1, 3), outcomes
    result.stdout.fnmatch_lines(["*AssertionError: sampler 'kit-global-rng': two runs with generator seed 5*",
                                 "FAILED *sampler:kit-global-rng::reproducible*",
                                 "*SKIPPED*check_process_prior needs a process with Gaussian marginals*"])


def test_plugin_takes_one_component_and_runs_it_under_every_process(pytester: pytest.Pytester) -> None:
    """``--sdeflow-plugin KIND:NAME`` selects one component; ``--sdeflow-every-process`` adds one
    configuration per registered Gaussian-marginal process running the process-dependent checks."""
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "sampler:ddim", "--sdeflow-every-process",
                     "-k", "contract or interface", "-v")
    assert result.ret == pytest.ExitCode.OK
    processes = sorted(n for n in sdeflow.list_plugins()["process"]
                       if sdeflow.create_process(n).gaussian_marginals)
    # interface once; contract under the kit's process and under each registered one
    result.assert_outcomes(passed=2 + len(processes))
    result.stdout.fnmatch_lines([f'*sampler:ddim{{"process":"{processes[0]}"}}::contract*PASSED*'])
    assert '"process":' not in "".join(line for line in result.outlines if "::interface" in line)


def test_plugin_checks_a_class_conditional_model(pytester: pytest.Pytester) -> None:
    ini = """
        [pytest]
        sdeflow_components =
            model:mlp {"dim": 3, "num_classes": 4}
    """
    result = run_kit(pytester, ini, "-v")
    result.assert_outcomes(passed=len(kit.MODEL_CHECKS))
    result.stdout.fnmatch_lines(['*model:mlp{"dim":3,"num_classes":4}::conditional] PASSED*'])


def test_plugin_usage_errors_and_no_selection(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "no-such-plugin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no-such-plugin*no sdeflow plugin of that name*installed plugins:*vp*"])
    # a component's name where a plugin's is expected: the error names the plugin it belongs to
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "euler_maruyama")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'euler_maruyama' is a predictor registered by the plugin 'pc'*"])
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "kit-global-rng", conftest=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'kit-global-rng' is a sampler registered by the plugin 'kit-test-plugin': pass "
                                 "--sdeflow-plugin kit-test-plugin (all its components) or --sdeflow-plugin "
                                 "sampler:kit-global-rng (this one)*"])
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "sampler:no-such-sampler")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no sampler 'no-such-sampler' is registered; registered samplers: ancestral*"])
    result = run_kit(pytester, "[pytest]\nsdeflow_components = model:mlp\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot tell the input shape of model:mlp*"])
    result = run_kit(pytester, "[pytest]\n")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no sdeflow components selected*"])
