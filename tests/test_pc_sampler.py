"""The ``pc`` sampler (Song et al. 2021, Alg. 1-2): registered predictors and correctors, their step
formulas against the paper's special cases, sampling accuracy on every process, exact NFE, a
third-party predictor, capabilities and error messages.

Ground truth: ``p_0 = N(5, 2^2)`` (reference texts 000/001), whose ``p_t`` is Gaussian under every
process. Moment checks use ``K_SE`` standard errors computed from the sample size ``n``.
"""

from __future__ import annotations

import math

import pytest
import torch
from common import assert_moments as check_moments
from common import gaussian_marginal_moments, gen
from torch import Tensor, nn

import sdeflow
from sdeflow import ForwardProcess, ScoreModel, append_dims
from sdeflow.data.datasets import gaussian_1d
from sdeflow.errors import IncompatibleError, NonFiniteError, OptionError, PluginError, UnknownComponentError
from sdeflow.solvers import Corrector, PCContext, Predictor

pytestmark = pytest.mark.usefixtures("single_thread")

K_SE = 4.0
MU, SIGMA = 5.0, 2.0


def exact_moments(process: ForwardProcess, t: float) -> tuple[float, float]:
    """Mean and std of ``p_t`` for ``p_0 = N(MU, SIGMA^2)``."""
    return gaussian_marginal_moments(process, t, MU, SIGMA)


def assert_moments(x: Tensor, mean: float, std: float, what: str) -> None:
    check_moments(x, mean, std, what, K_SE)


class CountingNet(nn.Module):
    """The exact score of N(5, 4) under ``process`` as a network (parametrization ``score``), counting calls."""

    def __init__(self, process: ForwardProcess, nan_below: float | None = None) -> None:
        super().__init__()
        self.exact = gaussian_1d(dtype=torch.float64).score_model(process)
        self.calls = 0
        self.times: list[float] = []
        self.nan_below = nan_below

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        self.calls += 1
        self.times.append(float(t_cond[0]))
        out = self.exact.network_output(x, t_cond)
        if self.nan_below is not None:
            out = torch.where(append_dims(t_cond < self.nan_below, x.ndim), torch.full_like(out, float("nan")), out)
        return out


# ---------------------------------------------------------------------------- registry
def test_builtin_components_are_registered_and_listed() -> None:
    comps = sdeflow.list_components()
    assert {"euler_maruyama", "reverse_diffusion", "ancestral", "none"} <= set(comps["predictor"])
    assert {"langevin", "none"} <= set(comps["corrector"])
    assert "pc" in sdeflow.list_plugins()["sampler"]
    assert "predictor" not in sdeflow.list_plugins()  # the contract lists three kinds
    assert sdeflow.component_options("corrector", "langevin") == {"snr": 0.16, "norm": "batch"}
    assert sdeflow.component_options("predictor", "ancestral") == {"variance": "posterior"}
    c = sdeflow.create_component("corrector", "langevin", snr=0.2)
    assert isinstance(c, Corrector) and c.snr == 0.2 and c.requires_gaussian_marginals
    p = sdeflow.create_component("predictor", "euler_maruyama")
    assert isinstance(p, Predictor) and not p.requires_gaussian_marginals and p.order == 1.0
    assert sdeflow.create_sampler("pc").options()["predictor"] == "reverse_diffusion"


# ---------------------------------------------------------------------------- step formulas
def _ctx(process: ForwardProcess, net: CountingNet, seed: int) -> PCContext:
    sm = ScoreModel(net, process, parametrization="score")
    return PCContext(process, lambda x, t: sm.score(x, t, check=False), (512, 1), gen(seed), torch.device("cpu"),
                     torch.float64)


def test_predictor_steps_match_song_et_al_special_cases() -> None:
    """The generic (alpha_t, sigma_t) forms reduce to Song et al.'s VE and VP formulas (App. F-G):
    reverse diffusion ``x + (sigma_t^2 - sigma_s^2) score`` (VE) and
    ``(2 - sqrt(1 - beta)) x + beta score`` (VP); ancestral ``x + (sigma_t^2 - sigma_s^2) score`` with
    variance ``sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2`` (VE) and ``(x + beta score) / sqrt(1 - beta)``
    with variance ``beta`` (VP, ``variance="forward"``), ``beta = 1 - alpha_t^2 / alpha_s^2``."""
    x = torch.linspace(-3.0, 9.0, 512, dtype=torch.float64)[:, None]
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.55, dtype=torch.float64)
    for name in ("ve", "vp"):
        process = sdeflow.create_process(name)
        net = CountingNet(process)
        score = net.exact.score(x, t.expand(512))
        (a_t, s_t), (a_s, s_s) = [tuple(float(v) for v in process.marginal(u.reshape(1))) for u in (t, s)]
        for pred, variance in (("reverse_diffusion", None), ("ancestral", "forward"), ("ancestral", "posterior")):
            opts = {} if variance is None else {"variance": variance}
            comp = sdeflow.create_component("predictor", pred, **opts)
            new, mean = comp.step(_ctx(process, net, 0), x, t, s)
            z = torch.randn((512, 1), generator=gen(0), dtype=torch.float64)
            if name == "ve":
                want = x + (s_t**2 - s_s**2) * score
                var = s_t**2 - s_s**2
                if pred == "ancestral" and variance == "posterior":
                    var = s_s**2 * (s_t**2 - s_s**2) / s_t**2
            else:
                beta = 1.0 - (a_t / a_s) ** 2
                if pred == "reverse_diffusion":
                    want, var = (2.0 - math.sqrt(1.0 - beta)) * x + beta * score, beta
                else:
                    want = (x + beta * score) / math.sqrt(1.0 - beta)
                    var = beta if variance == "forward" else beta * s_s**2 / s_t**2
            torch.testing.assert_close(mean, want, rtol=1e-10, atol=1e-10, msg=f"{name}/{pred}/{variance}")
            torch.testing.assert_close(new, want + math.sqrt(var) * z, rtol=1e-10, atol=1e-10)


def test_euler_maruyama_predictor_and_langevin_corrector_formulas() -> None:
    process = sdeflow.create_process("vp")
    net = CountingNet(process)
    x = torch.linspace(-3.0, 9.0, 512, dtype=torch.float64)[:, None]
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.55, dtype=torch.float64)
    score = net.exact.score(x, t.expand(512))
    tv = t.expand(512)
    beta_t = float(process.beta(t))
    dt = 0.05
    new, mean = sdeflow.create_component("predictor", "euler_maruyama").step(_ctx(process, net, 1), x, t, s)
    want = x - (-0.5 * beta_t * x - beta_t * score) * dt  # x - [f - g^2 score] dt (Song et al. 2021, Eq. 6)
    torch.testing.assert_close(mean, want, rtol=1e-10, atol=1e-10)
    z = torch.randn((512, 1), generator=gen(1), dtype=torch.float64)
    torch.testing.assert_close(new, want + math.sqrt(beta_t * dt) * z, rtol=1e-10, atol=1e-10)
    del tv
    # Alg. 5: eps = 2 alpha_i (r ||z|| / ||g||)^2 with alpha_i = 1 - beta_i; batch-mean norms (Song et al.'s code)
    a_t, a_s = float(process.marginal(t.reshape(1))[0]), float(process.marginal(s.reshape(1))[0])
    for norm in ("batch", "sample"):
        corr = sdeflow.create_component("corrector", "langevin", snr=0.2, norm=norm)
        new, mean = corr.step(_ctx(process, net, 2), x, t, s)
        z = torch.randn((512, 1), generator=gen(2), dtype=torch.float64)
        gn, zn = score.norm(dim=1), z.norm(dim=1)
        if norm == "batch":
            gn, zn = gn.mean(), zn.mean()
        eps = (2.0 * (a_t / a_s) ** 2 * (0.2 * zn / gn) ** 2).reshape(-1, 1)
        torch.testing.assert_close(mean, x + eps * score, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(new, x + eps * score + torch.sqrt(2 * eps) * z, rtol=1e-10, atol=1e-10)


def test_langevin_corrector_keeps_and_finds_p_t() -> None:
    """At a fixed time the corrector's chain leaves ``p_t`` invariant (up to its step's O(eps) bias) and
    converges to it from a wrong start."""
    process = sdeflow.create_process("ve")
    net = CountingNet(process)
    t, s = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.299, dtype=torch.float64)
    mean, std = exact_moments(process, 0.3)
    n = 4000
    corr = sdeflow.create_component("corrector", "langevin", snr=0.16)
    sm = ScoreModel(net, process, parametrization="score")
    ctx = PCContext(process, lambda x, tt: sm.score(x, tt, check=False), (n, 1), gen(3), torch.device("cpu"),
                    torch.float64)
    for start in (mean + std * torch.randn((n, 1), generator=gen(4), dtype=torch.float64),
                  torch.randn((n, 1), generator=gen(5), dtype=torch.float64)):
        x = start
        for _ in range(300):
            x, _ = corr.step(ctx, x, t, s)
        assert_moments(x, mean, std, "langevin corrector at t=0.3")


# ---------------------------------------------------------------------------- sampling accuracy
@pytest.mark.parametrize("process_name", ["vp", "subvp", "ve", "ddpm", "ncsn"])
@pytest.mark.parametrize("predictor, corrector", [
    ("reverse_diffusion", "langevin"), ("euler_maruyama", "none"), ("ancestral", "langevin"),
    ("reverse_diffusion", "none"), ("none", "langevin"),
])
def test_pc_samples_the_target_on_every_process(process_name: str, predictor: str, corrector: str) -> None:
    process = sdeflow.create_process(process_name)
    sm = gaussian_1d(dtype=torch.float64).score_model(process)
    n = 2000
    kw: dict = dict(predictor=predictor, corrector=corrector, steps=200, schedule="time_uniform", denoise=False)
    if predictor == "none":  # corrector-only: annealed Langevin over the grid (Song et al. 2021, Sec. 4.2)
        kw.update(steps=100, n_corrector_steps=5)
    res = sdeflow.create_sampler("pc", **kw).sample(sm, (n, 1), gen(6))
    assert torch.isfinite(res.samples).all()
    assert_moments(res.samples, *exact_moments(process, process.t_min), f"pc/{predictor}+{corrector}/{process_name}")


def test_pc_exact_nfe_denoise_trajectory_and_reproducibility() -> None:
    process = sdeflow.create_process("vp")
    for pred, corr, m, denoise, per_step in (("reverse_diffusion", "langevin", 2, True, 3),
                                              ("euler_maruyama", "none", 1, False, 1),
                                              ("none", "langevin", 3, True, 3),
                                              ("ancestral", "langevin", 0, False, 1)):
        net = CountingNet(process)
        sm = ScoreModel(net, process, parametrization="score")
        s = sdeflow.create_sampler("pc", predictor=pred, corrector=corr, n_corrector_steps=m, steps=20,
                                   denoise=denoise)
        res = s.sample(sm, (16, 1), gen(7), return_trajectory=True)
        assert res.nfe == net.calls == 20 * per_step + int(denoise), (pred, corr, m)
        assert res.steps == 20 and res.trajectory.shape == (21, 16, 1)
        again = s.sample(sm, (16, 1), gen(7)).samples
        assert torch.equal(res.samples, again)
        if denoise:
            torch.testing.assert_close(res.samples, sm.x0(res.trajectory[-1], torch.full((16,), process.t_min)))
        else:
            assert torch.equal(res.samples, res.trajectory[-1])


def test_euler_maruyama_predictor_equals_the_sde_sampler() -> None:
    """``pc`` with the Euler-Maruyama predictor and no corrector is Euler-Maruyama on the reverse SDE:
    with the same generator it reproduces the torchsde-based ``sde`` sampler (``brownian="fast"``
    draws one ``randn`` per step, as the predictor does) up to rounding."""
    for name in ("vp", "ve"):
        sm = gaussian_1d(dtype=torch.float64).score_model(sdeflow.create_process(name))
        a = sdeflow.create_sampler("pc", predictor="euler_maruyama", corrector="none", steps=50,
                                   schedule="time_uniform").sample(sm, (256, 1), gen(12))
        b = sdeflow.create_sampler("sde", method="euler", steps=50).sample(sm, (256, 1), gen(12))
        assert a.nfe == b.nfe == 51
        torch.testing.assert_close(a.samples, b.samples, rtol=1e-9, atol=1e-9)


def test_pc_default_grid_is_the_chain_of_a_discrete_process() -> None:
    process = sdeflow.create_process("ddpm")
    net = CountingNet(process)
    sm = ScoreModel(net, process, parametrization="score")
    res = sdeflow.create_sampler("pc", steps=50, denoise=False).sample(sm, (8, 1), gen(8))
    assert res.steps == 50 and res.nfe == 100
    assert all(abs(t * 1000 - round(t * 1000)) < 1e-3 for t in net.times)  # only DDPM's own timesteps i/N


def test_nan_is_reported_with_the_step() -> None:
    process = sdeflow.create_process("vp")
    sm = ScoreModel(CountingNet(process, nan_below=0.5), process, parametrization="score")
    with pytest.raises(NonFiniteError, match=r"sampler 'pc' \(predictor='reverse_diffusion'.*step 1[12] of 20, t=0\.4"):
        sdeflow.create_sampler("pc", steps=20, schedule="time_uniform").sample(sm, (8, 1), gen(9))


# ---------------------------------------------------------------------------- a third-party predictor
class ProbabilityFlowEulerPredictor(Predictor):
    """Euler on the probability-flow ODE, ``x - [f - g^2 score / 2] (t_next - t)``: a deterministic predictor."""

    name = "pf_euler"
    stochastic = False
    order = 1.0

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def step(self, ctx: PCContext, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        tv = t.expand(x.shape[0])
        g2 = append_dims(ctx.process.g2(tv), x.ndim)
        x = x + (ctx.process.drift(x, tv) - 0.5 * self.scale * g2 * ctx.score(x, t)) * (t_next - t)
        return x, x


class NotAPredictor:
    def __init__(self) -> None:
        pass


class PredictorPlugin:
    @sdeflow.hookimpl
    def sdeflow_register_predictors(self, registry):  # type: ignore[no-untyped-def]
        registry.add("pf_euler", ProbabilityFlowEulerPredictor)
        registry.add("not_a_predictor", NotAPredictor)


def test_a_plugin_adds_a_predictor() -> None:
    sdeflow.register_plugin(PredictorPlugin(), name="test-predictor-plugin")
    try:
        assert "pf_euler" in sdeflow.list_components()["predictor"]
        s = sdeflow.create_sampler("pc", predictor="pf_euler", corrector="none", steps=400, denoise=False,
                                   predictor_options={"scale": 1.0})
        assert not s.stochastic and not s.requires_gaussian_marginals and s.order == 1.0
        process = sdeflow.create_process("vp")
        sm = gaussian_1d(dtype=torch.float64).score_model(process)
        a = s.sample(sm, (2000, 1), gen(10))
        assert a.nfe == 400
        assert_moments(a.samples, *exact_moments(process, process.t_min), "pc/pf_euler")
        with pytest.raises(OptionError, match=r"predictor 'pf_euler' .*unknown option\(s\) bogus; valid options: scale"):
            sdeflow.create_sampler("pc", predictor="pf_euler", predictor_options={"bogus": 1})
        with pytest.raises(PluginError, match=r"predictor 'not_a_predictor' built a NotAPredictor"):
            sdeflow.create_sampler("pc", predictor="not_a_predictor")
    finally:
        sdeflow.unregister_plugin("test-predictor-plugin")
    assert "pf_euler" not in sdeflow.list_components()["predictor"]


# ---------------------------------------------------------------------------- capabilities and errors
class NonGaussianProcess(ForwardProcess):
    """A process that declares no Gaussian marginals."""

    gaussian_marginals = False

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -x * x * x

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


def test_capabilities_follow_the_components() -> None:
    caps = sdeflow.create_sampler("pc").capabilities()
    assert caps == {"stochastic": True, "order": 1.0, "requires_gaussian_marginals": True, "host_syncs": False}
    em = sdeflow.create_sampler("pc", predictor="euler_maruyama", corrector="none")
    assert em.capabilities()["requires_gaussian_marginals"]  # the final denoising uses alpha_t, sigma_t
    em = sdeflow.create_sampler("pc", predictor="euler_maruyama", corrector="none", denoise=False)
    assert em.capabilities() == {"stochastic": True, "order": 1.0, "requires_gaussian_marginals": False,
                                 "host_syncs": False}
    assert not sdeflow.create_sampler("pc", predictor="euler_maruyama", n_corrector_steps=0,
                                      denoise=False).requires_gaussian_marginals
    assert sdeflow.create_sampler("pc", predictor="none").capabilities()["order"] is None


def test_incompatible_process_names_the_component() -> None:
    sm = ScoreModel(nn.Identity(), NonGaussianProcess(), parametrization="score")
    with pytest.raises(IncompatibleError, match=r"sampler 'pc': the corrector 'langevin' need\(s\) a process with "
                                                r"Gaussian marginals.*NonGaussianProcess declares gaussian_marginals=False"):
        sdeflow.create_sampler("pc", predictor="euler_maruyama", corrector="langevin", denoise=False).sample(sm, (4, 1))
    with pytest.raises(IncompatibleError, match=r"the predictor 'reverse_diffusion' and the corrector 'langevin'"):
        sdeflow.create_sampler("pc").sample(sm, (4, 1))
    with pytest.raises(IncompatibleError, match=r"the predictor 'ancestral' need"):
        sdeflow.create_sampler("pc", predictor="ancestral", corrector="none", denoise=False).sample(sm, (4, 1))
    with pytest.raises(IncompatibleError, match=r"the final denoising \(denoise=True\) need"):
        sdeflow.create_sampler("pc", predictor="euler_maruyama", corrector="none").sample(sm, (4, 1))
    # only drift and diffusion: accepted
    sdeflow.create_sampler("pc", predictor="euler_maruyama", corrector="none", denoise=False).check_compatible(sm)
    sdeflow.create_sampler("pc", predictor="euler_maruyama", n_corrector_steps=0, denoise=False).check_compatible(sm)


@pytest.mark.parametrize("options, error, match", [
    (dict(predictor="heun"), UnknownComponentError,
     r"unknown predictor 'heun'; valid predictor names: 'ancestral', 'euler_maruyama', 'none', 'reverse_diffusion'"),
    (dict(corrector="ald"), UnknownComponentError, r"unknown corrector 'ald'; valid corrector names: 'langevin', 'none'"),
    (dict(corrector="none", snr=0.2), OptionError, r"snr=0.2 is an option of the Langevin corrector; corrector 'none'"),
    (dict(snr=-0.1), OptionError, r"snr must be positive"),
    (dict(snr=0.1, corrector_options={"snr": 0.2}), OptionError, r"snr given twice"),
    (dict(predictor="none", corrector="none"), OptionError, r"predictor='none' with no corrector steps"),
    (dict(predictor="none", n_corrector_steps=0), OptionError, r"predictor='none' with no corrector steps"),
    (dict(n_corrector_steps=-1), OptionError, r"n_corrector_steps must be an integer >= 0"),
    (dict(steps=0), OptionError, r"steps must be a positive integer"),
    (dict(schedule="karras"), OptionError, r"unknown schedule 'karras'"),
    (dict(predictor="ancestral", predictor_options={"variance": "small"}), OptionError,
     r"variance must be one of posterior, forward"),
    (dict(corrector_options={"norm": "max"}), OptionError, r"norm must be one of batch, sample"),
])
def test_bad_options(options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        sdeflow.create_sampler("pc", **options)
