"""``sdeflow.interop.from_function``: an EDM denoiser ``D(x, sigma)`` or a score_sde score ``s(x, t)`` as a
score model, checked against the exact scores of a Gaussian mixture.

For data ``N(mu, c^2 I)`` the ideal denoiser is ``D(x, sigma) = mu + c^2 / (c^2 + sigma^2) (x - mu)``
(the posterior mean of ``x_0`` given ``x_0 + sigma n``); wrapped with ``kind="edm"`` its score must be
the exact score of ``p_t`` under any Gaussian-marginal process, its samples the exact ODE map's,
and its log-likelihood the closed form's.
"""

from __future__ import annotations

import math

import pytest
import torch

import sdeflow
from sdeflow.errors import IncompatibleError, OptionError, ShapeError
from sdeflow.interop import FunctionScoreModel, from_function
from sdeflow.testing.reference import NonGaussianProcess

pytestmark = pytest.mark.usefixtures("single_thread")

MU, C = 0.7, 0.5
F64 = torch.float64


def gaussian(mu: float = MU) -> sdeflow.GaussianMixture:
    return sdeflow.GaussianMixture([1.0], [[mu, -mu]], C * C, dtype=F64)


def make_denoiser(m: float = MU):  # type: ignore[no-untyped-def]
    """The ideal denoiser of N((m, -m), c^2 I)."""
    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = (sigma * sigma).reshape(-1, *([1] * (x.ndim - 1)))
        mu = torch.tensor([m, -m], dtype=x.dtype)
        return mu + C * C / (C * C + s2) * (x - mu)
    return denoiser


edm_denoiser = make_denoiser()


def times(process: sdeflow.ForwardProcess) -> torch.Tensor:
    lo = max(float(process.t_min), 0.02)
    return torch.linspace(lo, 1.0, 6, dtype=F64)


@pytest.mark.parametrize("process", ["ve", "vp", "subvp", "ddpm"])
def test_edm_denoiser_has_the_exact_score(process: str) -> None:
    sm = from_function(edm_denoiser, "edm", process=None if process == "ve" else process, dtype=F64)
    assert isinstance(sm, FunctionScoreModel) and sm.parametrization == "x0"
    if process == "ve":
        assert (sm.process.sigma_min, sm.process.sigma_max) == (0.002, 80.0)
    exact = gaussian().score_model(sm.process)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in times(sm.process):
        tt = t.expand(6)
        assert torch.allclose(sm.score(x, tt), exact.score(x, tt), rtol=1e-9, atol=1e-9), (process, float(t))


def test_edm_denoiser_samples_and_likelihood_match_the_exact_model() -> None:
    sm = from_function(edm_denoiser, "edm", dtype=F64)
    exact = gaussian().score_model(sm.process)
    x_T = sm.prior_sample((64, 2), torch.Generator().manual_seed(1))
    for name, opts in (("dpm_solver", dict(steps=12)), ("heun", dict(steps=8))):
        a = sdeflow.create_sampler(name, **opts).sample(sm, (64, 2), x_T=x_T)
        b = sdeflow.create_sampler(name, **opts).sample(exact, (64, 2), x_T=x_T)
        assert a.nfe == b.nfe and torch.allclose(a.samples, b.samples, rtol=1e-8, atol=1e-8), name
    # the ODE under vp (sigma > 0 at t_min: both integrate to it; under ve the x0 model stops at sigma = 0.002)
    vp = from_function(edm_denoiser, "edm", process="vp", dtype=F64)
    exact_vp = gaussian().score_model(vp.process)
    x_vp = vp.prior_sample((64, 2), torch.Generator().manual_seed(1))
    a = sdeflow.create_sampler("ode", method="rk4", steps=20).sample(vp, (64, 2), x_T=x_vp)
    b = sdeflow.create_sampler("ode", method="rk4", steps=20).sample(exact_vp, (64, 2), x_T=x_vp)
    assert a.nfe == b.nfe and torch.allclose(a.samples, b.samples, rtol=1e-8, atol=1e-8)
    # log p at the noise floor sigma = 0.002 under ve against the closed form N(0, c^2 + 0.002^2) (centred
    # data: the prior N(0, 80^2) is then p_1 = N(0, c^2 + 80^2) to 4e-5 nats)
    centred = from_function(make_denoiser(0.0), "edm", dtype=F64)
    x = gaussian(0.0).sample(32, torch.Generator().manual_seed(2))
    got = sdeflow.log_likelihood(centred, x, rtol=1e-8, atol=1e-8).log_prob
    s = float(centred.process.marginal(torch.tensor([centred.score_t_min], dtype=F64))[1])
    assert s == pytest.approx(0.002, rel=1e-6)
    want = sdeflow.GaussianMixture([1.0], [[0.0, 0.0]], C * C + s * s, dtype=F64).log_prob(x)
    assert float((got - want).abs().max()) < 2e-4


@pytest.mark.parametrize("process", ["vp", "ve"])
@pytest.mark.parametrize("kind", ["score", "eps", "x0", "v"])
def test_time_conventions_have_the_exact_score(process: str, kind: str) -> None:
    """score_sde's ``s(x, t)`` (and eps / x0 / v predictors) in the process's own time."""
    proc = sdeflow.create_process(process)
    exact = gaussian().score_model(proc)
    fn = {"score": exact.score, "eps": exact.eps, "x0": exact.x0, "v": exact.v}[kind]
    sm = from_function(lambda x, t: fn(x, t, check=False), kind, process=proc, dtype=F64)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    for t in times(proc):
        tt = t.expand(5)
        assert torch.allclose(sm.score(x, tt), exact.score(x, tt), rtol=1e-8, atol=1e-8), (kind, float(t))
    res = sdeflow.create_sampler("ddim", steps=5).sample(sm, (5, 2), x_T=x)
    ref = sdeflow.create_sampler("ddim", steps=5).sample(exact, (5, 2), x_T=x)
    assert torch.allclose(res.samples, ref.samples, rtol=1e-8, atol=1e-8)


def test_modules_keep_parameters_and_dtype() -> None:
    net = torch.nn.Linear(2, 2).double()
    sm = from_function(lambda x, s: net(x), "edm")
    assert sm.dtype == torch.float32  # a plain function runs in the default dtype unless told
    sm = from_function(torch.nn.Sequential(net), "eps", process="vp")
    assert sm.dtype == torch.float64 and sum(p.numel() for p in sm.parameters()) == 6
    assert from_function(edm_denoiser, dtype=F64).prior_sample((3, 2)).dtype == F64


def test_bad_input() -> None:
    with pytest.raises(OptionError, match="unknown kind 'sigma'; valid: edm, score, eps, x0, v"):
        from_function(edm_denoiser, "sigma")
    with pytest.raises(OptionError, match="process options"):
        from_function(edm_denoiser, process=sdeflow.create_process("ve"), sigma_max=10.0)
    with pytest.raises(IncompatibleError, match="no Gaussian marginals"):
        from_function(edm_denoiser, process=NonGaussianProcess())
    with pytest.raises(OptionError, match="must be callable"):
        from_function(3.0)  # type: ignore[arg-type]
    sm = from_function(lambda x, s: x[:, :1], "edm", dtype=F64)
    with pytest.raises(ShapeError, match="returned"):
        sm.score(torch.zeros(2, 2, dtype=F64), torch.full((2,), 0.5, dtype=F64))
    assert math.isfinite(float(from_function(edm_denoiser, dtype=F64).score_t_min))


def test_import_sdeflow_does_not_import_diffusers() -> None:
    import subprocess
    import sys

    code = "import sys, sdeflow, sdeflow.interop, sdeflow.cli; assert 'diffusers' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sdeflow.list_plugins()["sampler"])
def test_every_sampler_runs_on_a_wrapped_denoiser(name: str) -> None:
    opts = {"ode": dict(method="rk4", steps=4), "langevin": dict(num_scales=3, n_steps_each=1)}.get(name)
    if opts is None:
        opts = dict(steps=4) if "steps" in sdeflow.component_options("sampler", name) else {}
    calls = [0]

    def counted(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return edm_denoiser(x, sigma)

    sm = from_function(counted, "edm", dtype=F64)
    res = sdeflow.create_sampler(name, **opts).sample(sm, (8, 2), torch.Generator().manual_seed(0))
    assert res.samples.shape == (8, 2) and res.samples.dtype == F64 and bool(torch.isfinite(res.samples).all())
    assert res.nfe == calls[0] > 0
