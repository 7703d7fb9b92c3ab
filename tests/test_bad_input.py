"""Bad input gives a clear exception that says what was wrong and what is valid: unknown
options, bad option values, times outside ``[t_min, t_max]``, wrong shapes, and plugins whose
factories return the wrong kind of object."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sdeflow
from sdeflow.errors import OptionError, PluginError, ShapeError, TimeRangeError
from sdeflow.plugins import manager as plugin_manager


@pytest.fixture
def vp_model() -> sdeflow.ScoreModel:
    torch.manual_seed(0)
    return sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2, hidden=8, depth=1), sdeflow.create_process("vp"))


@pytest.fixture
def exact_1d() -> sdeflow.ScoreModel:
    gmm = sdeflow.GaussianMixture([1.0], [[5.0]], [[[4.0]]], dtype=torch.float64)
    return gmm.score_model(sdeflow.create_process("ve"))


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("kind,name,bad,valid", [
    ("process", "ve", {"sigma": 1.0}, ["sigma_min=0.01", "sigma_max=50.0"]),
    ("process", "vp", {"beta": 1.0}, ["beta_min=0.1", "beta_max=20.0"]),
    ("model", "mlp", {"dim": 2, "width": 64}, ["dim", "hidden=128"]),
    ("sampler", "sde", {"method": "euler", "tol": 1e-3}, ["method='euler'", "steps=None", "dt=None"]),
    ("sampler", "ode", {"stepsize": 0.1}, ["method='dopri5'", "rtol=None", "atol=None", "steps=None"]),
])
def test_unknown_option_lists_the_valid_ones(kind, name, bad, valid):
    create = getattr(sdeflow, f"create_{kind}")
    with pytest.raises(OptionError) as exc:
        create(name, **bad)
    msg = str(exc.value)
    unknown = sorted(set(bad) - {"dim", "method"})
    assert f"{kind} {name!r}" in msg and f"unknown option(s) {', '.join(unknown)}" in msg
    assert "valid options:" in msg
    for v in valid:
        assert v in msg, (v, msg)
    assert isinstance(exc.value, ValueError)


def test_missing_required_option_is_named():
    with pytest.raises(OptionError, match=r"model 'mlp'.*needs option\(s\) dim.*create_model\('mlp', dim=\.\.\.\)"):
        sdeflow.create_model("mlp")


@pytest.mark.parametrize("create,kwargs,words", [
    (sdeflow.create_process, dict(name="ve", sigma_min=0.0), ["sigma_min", "0 < sigma_min < sigma_max", "0.0"]),
    (sdeflow.create_process, dict(name="ve", sigma_min=-1.0), ["sigma_min", "-1.0"]),
    (sdeflow.create_process, dict(name="ve", sigma_min=5.0, sigma_max=1.0), ["sigma_min < sigma_max"]),
    (sdeflow.create_process, dict(name="vp", beta_min=20.0, beta_max=0.1), ["beta_min < beta_max", "20.0", "0.1"]),
    (sdeflow.create_process, dict(name="subvp", beta_min=5.0, beta_max=5.0), ["beta_min < beta_max"]),
    (sdeflow.create_process, dict(name="vp", t_min=0.0), ["t_min", "(0, 1)"]),
    (sdeflow.create_model, dict(name="mlp", dim=0), ["dim", "positive integer", "0"]),
    (sdeflow.create_model, dict(name="mlp", dim=2.5), ["dim", "positive integer"]),
    (sdeflow.create_model, dict(name="mlp", dim=2, activation="swish"), ["swish", "silu", "gelu"]),
    (sdeflow.create_sampler, dict(name="sde", method="rk4"), ["'rk4'", "euler", "milstein", "srk"]),
    (sdeflow.create_sampler, dict(name="ode", method="tsit5"), ["'tsit5'", "dopri5", "rk4", "euler"]),
    (sdeflow.create_sampler, dict(name="sde", steps=0), ["steps", "positive integer", "0"]),
    (sdeflow.create_sampler, dict(name="sde", steps=2.5), ["steps", "positive integer"]),
    (sdeflow.create_sampler, dict(name="ode", method="rk4", steps=-3), ["steps", "positive integer", "-3"]),
    (sdeflow.create_sampler, dict(name="sde", dt=-0.01), ["dt", "positive", "-0.01"]),
    (sdeflow.create_sampler, dict(name="sde", dt=0.0), ["dt", "positive"]),
    (sdeflow.create_sampler, dict(name="sde", steps=10, dt=0.1), ["either steps or dt"]),
    (sdeflow.create_sampler, dict(name="sde", brownian="pink"), ["brownian", "fast", "interval", "pink"]),
    (sdeflow.create_sampler, dict(name="ode", method="dopri5", steps=100), ["steps=100", "adaptive", "'dopri5'", "rk4"]),
    (sdeflow.create_sampler, dict(name="ode", method="rk4", rtol=1e-3), ["rtol", "fixed-grid", "'rk4'", "dopri5"]),
    (sdeflow.create_sampler, dict(name="ode", method="euler", atol=1e-3), ["atol", "fixed-grid"]),
    (sdeflow.create_sampler, dict(name="ode", rtol=0.0), ["rtol", "positive"]),
])
def test_bad_option_values(create, kwargs, words):
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(OptionError) as exc:
        create(name, **kwargs)
    msg = str(exc.value)
    for w in words:
        assert w in msg, (w, msg)


def test_bad_parametrization_lists_the_valid_ones():
    with pytest.raises(OptionError, match=r"'epsilon'.*eps.*score.*x0.*v"):
        sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2), sdeflow.create_process("vp"), parametrization="epsilon")
    with pytest.raises(TypeError, match="ForwardProcess.*Linear"):
        sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2), nn.Linear(2, 2))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- times
@pytest.mark.parametrize("t", [1.5, 0.0, -0.1, float("nan")])
def test_score_time_outside_the_interval(vp_model, t):
    x = torch.randn(4, 2)
    with pytest.raises(TimeRangeError) as exc:
        vp_model.score(x, torch.full((4,), t))
    msg = str(exc.value)
    assert "VPProcess" in msg and "[t_min, t_max] = [0.001, 1]" in msg and "got values" in msg
    with pytest.raises(TimeRangeError):
        vp_model.score(x, t)  # a float is broadcast, then checked


def test_score_time_partly_outside(vp_model):
    t = torch.tensor([0.5, 0.2, 1.0 + 1e-3, 0.7])
    with pytest.raises(TimeRangeError, match=r"got values in \[0.2, 1.001\]"):
        vp_model.score(torch.randn(4, 2), t)
    # the interval's ends themselves are valid
    out = vp_model.score(torch.randn(2, 2), torch.tensor([1e-3, 1.0]))
    assert out.shape == (2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(4, 1), (5,), (3,), (1, 4)])
def test_score_time_wrong_shape(vp_model, shape):
    with pytest.raises(ShapeError) as exc:
        vp_model.score(torch.randn(4, 2), torch.full(shape, 0.5))
    msg = str(exc.value)
    assert "(4,)" in msg and "one time per sample" in msg and str(tuple(shape)) in msg


def test_score_x_without_batch_dimension(vp_model):
    with pytest.raises(ShapeError, match=r"x must be a tensor of shape \(batch, \*dims\), got \(2,\)"):
        vp_model.score(torch.randn(2), torch.tensor([0.5]))
    with pytest.raises(ShapeError, match=r"\(batch, \*dims\)"):
        vp_model.score(torch.tensor(1.0), 0.5)
    with pytest.raises(ShapeError, match=r"x0 must be a tensor of shape \(batch, \*dims\)"):
        vp_model.loss(torch.randn(2))


def test_network_returning_the_wrong_shape_is_named():
    class HalfNet(nn.Module):
        def forward(self, x, t_cond):
            return x[:, :1]

    sm = sdeflow.ScoreModel(HalfNet(), sdeflow.create_process("vp"))
    with pytest.raises(ShapeError) as exc:
        sm.score(torch.randn(3, 2), torch.full((3,), 0.5))
    msg = str(exc.value)
    assert "HalfNet" in msg and "(3, 1)" in msg and "(3, 2)" in msg and "shaped like its input" in msg
    with pytest.raises(ShapeError, match="HalfNet"):  # inside a sampler too
        sdeflow.create_sampler("sde", steps=3).sample(sm, (3, 2), generator=torch.Generator().manual_seed(0))


def test_model_of_the_wrong_dimension():
    sm = sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2), sdeflow.create_process("vp"))
    with pytest.raises(ShapeError, match=r"mlp built for dim=2.*\(5, 3\)"):
        sm.score(torch.randn(5, 3), torch.full((5,), 0.5))
    with pytest.raises(ShapeError, match=r"mlp built for dim=2"):
        sdeflow.create_sampler("ode", method="euler", steps=2).sample(sm, (5, 3))


# ---------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("sampler", ["sde", "ode"])
@pytest.mark.parametrize("shape", [(0, 1), (5,), (), (5, 0), (-2, 1), (2.5, 1)])
def test_sampler_bad_shape(exact_1d, sampler, shape):
    with pytest.raises(ShapeError) as exc:
        sdeflow.create_sampler(sampler).sample(exact_1d, shape)
    msg = str(exc.value)
    assert "(batch, *dims)" in msg and "positive" in msg


def test_sampler_shape_not_matching_the_data(exact_1d):
    with pytest.raises(ShapeError, match=r"dimension 1.*\(n, 1\).*\(4, 2\)"):
        sdeflow.create_sampler("ode", method="euler", steps=2).sample(exact_1d, (4, 2))
    # with the process's own prior the score itself rejects the shape
    gmm = sdeflow.GaussianMixture([1.0], [[5.0]], [[[4.0]]])
    sm = gmm.score_model(sdeflow.create_process("vp"), exact_prior=False)
    with pytest.raises(ShapeError, match=r"\(n, 1\).*\(4, 2\)"):
        sdeflow.create_sampler("sde", steps=2).sample(sm, (4, 2))


@pytest.mark.parametrize("sampler", ["sde", "ode"])
@pytest.mark.parametrize("process,t_end", [("vp", 0.0), ("vp", 1.0), ("ve", 1.5), ("ve", -0.5)])
def test_sampler_t_end_outside_the_interval(sampler, process, t_end):
    gmm = sdeflow.GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    sm = gmm.score_model(sdeflow.create_process(process))
    s = sdeflow.create_sampler(sampler, t_end=t_end)
    with pytest.raises(TimeRangeError) as exc:
        s.sample(sm, (4, 1))
    msg = str(exc.value)
    assert f"t_end={t_end:g}" in msg and "[t_min, t_max)" in msg


def test_sampler_rejects_something_that_is_not_a_score_model():
    with pytest.raises(sdeflow.errors.IncompatibleError, match="ScoreModel.*Linear"):
        sdeflow.create_sampler("sde").sample(nn.Linear(1, 1), (4, 1))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- factories of the wrong kind
class WrongKinds:
    """A plugin whose factories return the wrong kind of object."""

    @sdeflow.hookimpl
    def sdeflow_register_processes(self, registry):
        registry.add("not-a-process", lambda: nn.Linear(1, 1))

    @sdeflow.hookimpl
    def sdeflow_register_models(self, registry):
        registry.add("not-a-model", lambda dim=1: (lambda x, t: x))

    @sdeflow.hookimpl
    def sdeflow_register_samplers(self, registry):
        registry.add("not-a-sampler", lambda: object())


@pytest.fixture
def wrong_kinds():
    info = sdeflow.register_plugin(WrongKinds(), name="wrong-kinds")
    try:
        yield info
    finally:
        sdeflow.unregister_plugin("wrong-kinds")
        assert "wrong-kinds" not in plugin_manager.get_manager().plugins


@pytest.mark.parametrize("create,name,words", [
    (sdeflow.create_process, "not-a-process", ["process 'not-a-process'", "'wrong-kinds'", "Linear", "ForwardProcess"]),
    (sdeflow.create_model, "not-a-model", ["model 'not-a-model'", "'wrong-kinds'", "function", "torch.nn.Module"]),
    (sdeflow.create_sampler, "not-a-sampler", ["sampler 'not-a-sampler'", "'wrong-kinds'", "object", "sdeflow.Sampler"]),
])
def test_factory_returning_the_wrong_kind(wrong_kinds, create, name, words):
    with pytest.raises(PluginError) as exc:
        create(name)
    msg = str(exc.value)
    for w in words:
        assert w in msg, (w, msg)
