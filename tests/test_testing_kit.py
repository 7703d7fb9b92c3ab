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
from typing import Callable

import pytest
import torch
from torch import Tensor, nn

import sdeflow
from sdeflow import testing as kit
from sdeflow.plugins.manager import get_manager
from sdeflow.testing.pytest_plugin import ComponentSpec, model_shape, parse_component_line

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
}
#: annealed Langevin's step is eps sigma_i^2 / sigma_L^2 (Song & Ermon 2019, Alg. 1): a step size
#: that mixes when the last level is t_min (sigma_L = 0.1) barely moves when it is t_end = 0.3
#: (sigma_L = 0.95, no annealing left), and one that mixes there diverges at the top levels
#: when the last level is t_min. So the t_end check gets its own.
CHECK_OPTIONS = {("langevin", "t_end"): dict(num_scales=10, n_steps_each=20, step_size=0.1)}


@pytest.mark.parametrize("check", list(kit.SAMPLER_CHECKS))
@pytest.mark.parametrize("name", builtin("sampler"))
def test_builtin_samplers_pass_the_kit(name: str, check: str) -> None:
    options = CHECK_OPTIONS.get((name, check), SAMPLER_OPTIONS.get(name, {}))
    kit.SAMPLER_CHECKS[check](functools.partial(sdeflow.create_sampler, name, **options))


@pytest.mark.parametrize("check", list(kit.MODEL_CHECKS))
@pytest.mark.parametrize("name", builtin("model"))
def test_builtin_models_pass_the_kit(name: str, check: str) -> None:
    """With the options every model takes (``dim``, or ``in_channels`` and ``image_size``)."""
    known = sdeflow.component_options("model", name)
    options = dict(dim=3) if "dim" in known else dict(in_channels=1, image_size=8)
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
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(process)


def test_gaussian_checks_do_not_apply_without_gaussian_marginals() -> None:
    p = kit.NonGaussianProcess()
    for name in ("exact_score_2d", "moment_equations", "prior"):
        with pytest.raises(kit.CheckNotApplicable, match="gaussian_marginals=False"):
            kit.PROCESS_CHECKS[name](p)
    kit.check_process_shapes(p)
    kit.check_process_time_validation(p)


# ---------------------------------------------------------------------------------- samplers with bugs
class EulerSampler(sdeflow.Sampler):
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6), written plainly; the
    subclasses below each break one rule."""

    name = "kit-euler"
    stochastic = True

    def __init__(self, steps: int = 100, t_end: float | None = None) -> None:
        self.steps, self.t_end = steps, t_end

    def noise(self, shape, generator, like):  # type: ignore[no-untyped-def]
        return torch.randn(shape, generator=generator, dtype=like.dtype)

    def end_time(self, process: sdeflow.ForwardProcess) -> float:
        return float(process.t_min) if self.t_end is None else float(self.t_end)

    def _sample(self, score_model, shape, generator, callback, progress,  # type: ignore[no-untyped-def]
                return_trajectory):
        process, nfe = score_model.process, 0
        t0, t1 = float(process.t_max), self.end_time(process)
        times = torch.linspace(t0, t1, self.steps + 1, dtype=score_model.dtype)
        h = (t0 - t1) / self.steps
        x = score_model.prior_sample(shape, generator)
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


def test_a_plain_network_passes() -> None:
    kit.check_model(TinyNet, (4, 3))


@pytest.mark.parametrize("net, check, message", [
    (WrongShape, "output_contract", "must return x's shape"),
    (IgnoresTime, "output_contract", "does not depend on t_cond"),
    (MixesTheBatch, "batch_independence", "depends on other samples"),
    (Float32Inside, "float64", "a float64 network returned torch.float32"),
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
    result.assert_outcomes(passed=len(kit.SAMPLER_CHECKS))
    result.stdout.fnmatch_lines(["*sdeflow kit: sampler:dpm_solver*", "*sampler:dpm_solver::recovers_gaussian*PASSED*"])


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
    # mlp: 3 checks; kit-global-rng: reproducible fails; kit-nongauss: shapes and time checks pass,
    # prior and exact_mixture_prior skip (no Gaussian marginals)
    assert (outcomes.get("passed"), outcomes.get("failed"), outcomes.get("skipped")) == (5, 1, 2), outcomes
    result.stdout.fnmatch_lines(["*AssertionError: sampler 'kit-global-rng': two runs with generator seed 5*",
                                 "FAILED *sampler:kit-global-rng::reproducible*",
                                 "*SKIPPED*check_process_prior needs a process with Gaussian marginals*"])


def test_plugin_usage_errors_and_no_selection(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, "[pytest]\n", "--sdeflow-plugin", "no-such-plugin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no-such-plugin*no sdeflow plugin of that name*installed:*vp*"])
    result = run_kit(pytester, "[pytest]\nsdeflow_components = model:mlp\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot tell the input shape of model:mlp*"])
    result = run_kit(pytester, "[pytest]\n")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no sdeflow components selected*"])
