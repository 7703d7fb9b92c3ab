"""Conditioning against closed-form truth: exact mixture conditionals, the conditioned score-model
view (labels, classifier-free guidance, observed coordinates) and the guided probability-flow ODE of
two Gaussian classes, whose field is linear at every time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from common import gen
from scipy.integrate import solve_ivp

import sdeflow
from sdeflow import GaussianMixture
from sdeflow.data import anisotropic_mixture, nine_gaussians
from sdeflow.errors import IncompatibleError, OptionError, ShapeError
from sdeflow.testing import assert_moments

F64 = torch.float64


# ----------------------------------------------------------------------------------- exact conditionals
def test_condition_on_coordinates_is_bayes_rule() -> None:
    """log p(x_U | x_O = v) = log p(x_U, v) - log p_O(v) for a full-covariance mixture."""
    gm = anisotropic_mixture(5, n_components=3, seed=2, dtype=F64)
    mask = torch.tensor([True, False, True, False, False])
    values = torch.tensor([0.7, float("nan"), -1.2, 0.0, 0.0], dtype=F64)  # unobserved entries are ignored
    cond = gm.condition(mask=mask, values=values)
    assert cond.dim == 3 and cond.n_components == 3
    xu = cond.sample(50, gen(1)) + 0.3 * torch.randn(50, 3, generator=gen(2), dtype=F64)
    full = torch.zeros(50, 5, dtype=F64)
    full[:, mask], full[:, ~mask] = values[mask], xu
    obs = mask.nonzero().reshape(-1)
    marginal_o = GaussianMixture(gm.weights, gm.means[:, obs], gm.covs[:, obs][:, :, obs], dtype=F64)
    expected = gm.log_prob(full) - marginal_o.log_prob(values[mask][None]).expand(50)
    torch.testing.assert_close(cond.log_prob(xu), expected, rtol=1e-10, atol=1e-10)


def test_condition_on_component_and_component_scores() -> None:
    gm = nine_gaussians(dtype=F64)
    c4 = gm.condition(component=4)
    assert c4.n_components == 1 and torch.equal(c4.means[0], gm.means[4])
    x = torch.randn(7, 2, generator=gen(0), dtype=F64)
    a, s = torch.full((7,), 0.8, dtype=F64), torch.full((7,), 0.6, dtype=F64)
    comps = torch.tensor([4, 4, 0, 8, -1, 2, 4])
    score = gm.marginal_score(x, a, s, components=comps)
    logp = gm.marginal_log_prob(x, a, s, components=comps)
    for i, k in enumerate(comps.tolist()):
        ref = gm if k < 0 else gm.condition(component=k)
        torch.testing.assert_close(score[i], ref.marginal_score(x[i:i + 1], a[i:i + 1], s[i:i + 1])[0])
        torch.testing.assert_close(logp[i], ref.marginal_log_prob(x[i:i + 1], a[i:i + 1], s[i:i + 1])[0])
    xs, labels = gm.sample_labelled(100, gen(3))
    torch.testing.assert_close(xs, gm.sample(100, gen(3)))
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(9))
    with pytest.raises(OptionError, match="0..8"):
        gm.condition(component=9)
    with pytest.raises(OptionError, match="observe"):
        gm.condition(mask=torch.tensor([True, True]), values=torch.zeros(2))


# ----------------------------------------------------------------------------------- the view
def test_exact_view_scores_are_the_components() -> None:
    gm = anisotropic_mixture(3, n_components=4, dtype=F64)
    sm = gm.score_model(sdeflow.create_process("vp"))
    x = torch.randn(5, 3, generator=gen(0), dtype=F64)
    t = torch.tensor([0.01, 0.2, 0.5, 0.9, 1.0], dtype=F64)
    labels = torch.tensor([3, 0, -1, 2, 1])
    view = sm.given(labels)
    a, s = sm.process.marginal(t)
    torch.testing.assert_close(view.score(x, t), gm.marginal_score(x, a, s, components=labels))
    w = 1.5
    guided = sm.given(labels, guidance=w).score(x, t)
    torch.testing.assert_close(guided, (1 + w) * view.score(x, t) - w * sm.score(x, t))
    # the implicit classifier: score + w grad log p_t(c | x)
    xg = x.clone().requires_grad_(True)
    log_class = gm.marginal_log_prob(xg, a, s, components=labels.clamp_min(0)) + torch.log(gm.weights[labels.clamp_min(0)]) \
        - gm.marginal_log_prob(xg, a, s)
    (grad,) = torch.autograd.grad(log_class.sum(), xg)
    grad[labels < 0] = 0.0
    torch.testing.assert_close(guided, view.score(x, t) + w * grad)


@pytest.mark.parametrize("parametrization", ["eps", "score", "x0", "v", "velocity"])
def test_guidance_is_the_eps_combination_in_every_parametrization(parametrization: str) -> None:
    """(1 + w) eps(x, c) - w eps(x, null): combining the raw outputs of any parametrization is exactly
    the eps combination (the conversions are affine in the output, the weights sum to one)."""
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=3, num_classes=4, hidden=16, depth=1).double()
    sm = sdeflow.ScoreModel(net, sdeflow.create_process("subvp"), parametrization=parametrization)
    x = torch.randn(6, 3, generator=gen(0), dtype=F64)
    t = torch.linspace(0.05, 0.95, 6, dtype=F64)
    labels, w = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0, -0.5], dtype=F64)
    guided = sm.given(labels, guidance=w)
    expected = (1 + w[:, None]) * sm.given(labels).eps(x, t) - w[:, None] * sm.given(-1).eps(x, t)
    torch.testing.assert_close(guided.eps(x, t), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sm.given(-1).eps(x, t), sm.eps(x, t))  # no label = the unconditional call
    unbatched = sm.given(labels, guidance=w, batched=False)
    torch.testing.assert_close(unbatched.score(x, t), guided.score(x, t), rtol=1e-12, atol=1e-12)


def test_view_counts_one_evaluation_per_guided_score() -> None:
    calls: list[int] = []
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=2, num_classes=3, hidden=16, depth=1)
    net.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    sm = sdeflow.ScoreModel(net, sdeflow.create_process("vp"))
    res = sdeflow.create_sampler("ddim", steps=7).sample(sm.given(2, guidance=3.0), (5, 2), gen(0))
    assert res.nfe == 7 and calls == [10] * 7  # one call on the doubled batch per evaluation
    calls.clear()
    res = sdeflow.create_sampler("ddim", steps=7).sample(sm.given(2, guidance=3.0, batched=False), (5, 2), gen(0))
    assert res.nfe == 7 and calls == [5] * 14


def test_view_errors() -> None:
    vp = sdeflow.create_process("vp")
    plain = sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2), vp)
    with pytest.raises(IncompatibleError, match="num_classes"):
        plain.given(1)
    cond = sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2, num_classes=3), vp)
    with pytest.raises(OptionError, match="0..2"):
        cond.given(3)
    with pytest.raises(OptionError, match="integers"):
        cond.given(1.5)
    with pytest.raises(OptionError, match="need labels"):
        plain.given(mask=torch.tensor([True, False]), values=torch.zeros(2), guidance=1.0)
    with pytest.raises(OptionError, match="finite"):
        cond.given(1, guidance=float("nan"))
    with pytest.raises(IncompatibleError, match="already conditioned"):
        cond.given(1).given(2)
    with pytest.raises(IncompatibleError, match="cannot be trained"):
        cond.given(1, guidance=1.0).loss(torch.zeros(4, 2))
    with pytest.raises(ShapeError, match="rows"):
        cond.given(torch.tensor([0, 1, 2])).score(torch.zeros(4, 2), torch.full((4,), 0.5))
    with pytest.raises(OptionError, match="labels"):
        plain.network(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(IncompatibleError, match="imputes"):
        sdeflow.create_sampler("repaint", steps=4).sample(cond.given(1), (3, 2), gen(0))


# ----------------------------------------------------------------------------------- sampling p(x | c)
@pytest.mark.parametrize("sampler,options", [("ode", {"rtol": 1e-6, "atol": 1e-6}), ("dpm_solver", {"steps": 30}),
                                             ("sde", {"steps": 400})])
def test_guidance_zero_samples_the_class_component(sampler: str, options: dict) -> None:
    """Exact conditional scores, guidance 0: the samples are the class's component (moments) and the
    probability-flow likelihood of the view is the component's log-density."""
    gm = nine_gaussians(dtype=F64)
    comp = gm.condition(component=5)
    view = gm.score_model(sdeflow.create_process("vp")).given(5)
    x = sdeflow.create_sampler(sampler, **options).sample(view, (3000, 2), gen(1)).samples
    assert_moments(x, comp.mean(), comp.covariance(), f"{sampler} on nine Gaussians given component 5")
    lp = comp.log_prob(x)
    ref = comp.log_prob(comp.sample(3000, gen(2)))
    se = math.sqrt(float(lp.var()) / 3000 + float(ref.var()) / 3000)
    assert abs(float(lp.mean() - ref.mean())) < 4 * se


def test_likelihood_of_the_view_is_the_class_density() -> None:
    gm = nine_gaussians(dtype=F64)
    view = gm.score_model(sdeflow.create_process("vp", t_min=1e-5)).given(torch.tensor([2, 7, 7]))
    x = torch.stack([gm.condition(component=k).sample(1, gen(k))[0] for k in (2, 7, 7)])
    res = sdeflow.log_likelihood(view, x, rtol=1e-8, atol=1e-8)
    expected = torch.stack([gm.condition(component=k).log_prob(x[i:i + 1])[0] for i, k in enumerate((2, 7, 7))])
    torch.testing.assert_close(res.log_prob, expected, rtol=0, atol=2e-3)


# ----------------------------------------------------------------------------------- the linear guided ODE
def _two_gaussian_classes() -> GaussianMixture:
    covs = torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.05], [-0.05, 0.4]]], dtype=F64)
    return GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.3]], covs, dtype=F64)


def linear_flow_map(gm: GaussianMixture, process: sdeflow.ForwardProcess, label: int, negative: int, w: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(Phi, r)`` with ``x_{t_min} = Phi x_{t_max} + r`` for the guided probability-flow ODE
    ``dx/dt = f x - g^2/2 [(1 + w) s_label - w s_negative]`` (linear: ``s_c = -C_c^{-1} (x - a mu_c)``,
    ``C_c = a^2 Sigma_c + s^2 I``), integrated by scipy's DOP853 to 1e-12."""
    d = gm.dim
    covs, means = gm.covs.numpy(), gm.means.numpy()
    eye = np.eye(d)

    def field(t: float, y: np.ndarray) -> np.ndarray:
        tt = torch.tensor([t], dtype=F64)
        a, s = (float(v[0]) for v in process.marginal(tt))
        f = float(process.drift(torch.ones(1, 1, dtype=F64), tt)[0, 0])
        g2 = float(process.g2(tt)[0])
        inv = [np.linalg.inv(a * a * covs[k] + s * s * eye) for k in (label, negative)]
        m = f * eye + 0.5 * g2 * ((1 + w) * inv[0] - w * inv[1])
        c = -0.5 * g2 * a * ((1 + w) * inv[0] @ means[label] - w * inv[1] @ means[negative])
        phi, r = y[:d * d].reshape(d, d), y[d * d:]
        return np.concatenate([(m @ phi).reshape(-1), m @ r + c])

    y0 = np.concatenate([eye.reshape(-1), np.zeros(d)])
    sol = solve_ivp(field, (float(process.t_max), float(process.t_min)), y0, method="DOP853", rtol=1e-12, atol=1e-12)
    return sol.y[:d * d, -1].reshape(d, d), sol.y[d * d:, -1]


@pytest.mark.parametrize("process_name", ["vp", "ve"])
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_ode_matches_the_linear_flow(process_name: str, w: float) -> None:
    """Two Gaussian classes, guidance towards class 1 away from class 0: every guided sample of the
    ``ode`` sampler is the linear flow map of its prior draw, and the samples' moments are the flow's."""
    gm = _two_gaussian_classes()
    process = sdeflow.create_process(process_name).double()
    view = gm.score_model(process).given(1, guidance=w, negative=0)
    n = 2000
    x_T = view.prior_sample((n, 2), gen(4))
    x = sdeflow.create_sampler("ode", rtol=1e-9, atol=1e-9).sample(view, (n, 2), gen(4)).samples
    phi, r = (torch.as_tensor(v) for v in linear_flow_map(gm, process, 1, 0, w))
    torch.testing.assert_close(x, x_T @ phi.T + r, rtol=0, atol=5e-6)
    prior = gm.score_model(process).marginal_mixture(float(process.t_max)).condition(component=1)
    assert_moments(x, phi @ prior.means[0] + r, phi @ prior.covs[0] @ phi.T, f"guided ode, w={w}")


def test_bench_runs_the_conditioned_view_like_any_target() -> None:
    """The benchmark harness samples the class target through the view and measures it against the class."""
    from sdeflow import bench

    spec = bench.BenchSpec(targets=["nine_gaussians_class4"], processes=["vp"], samplers=["dpm_solver 2M"],
                           nfe=[10, 40], samples=1000, paths=16, metrics=["mean_err", "cov_err"], overhead=False)
    res = bench.run_bench(spec, progress=False)
    assert [r["status"] for r in res.rows] == ["ok", "ok"]
    floors = res.floors["nine_gaussians_class4"]
    assert all(res.rows[-1][m] < 3 * floors[m] + 0.005 for m in ("mean_err", "cov_err")), (res.rows[-1], floors)
    assert res.targets["nine_gaussians_class4"]["dim"] == 2


# ----------------------------------------------------------------------------------- imputation
def test_repaint_schedule() -> None:
    from sdeflow_plugins.repaint import repaint_schedule

    assert repaint_schedule(5, 2, 1) == [0, 1, 2, 3, 4, 5]
    seq = repaint_schedule(20, 5, 3)
    assert seq[0] == 0 and seq[-1] == 20 and all(abs(b - a) == 1 for a, b in zip(seq, seq[1:]))
    downs = sum(b > a for a, b in zip(seq, seq[1:]))
    assert downs == 20 + (3 - 1) * 5 * math.ceil((20 - 5) / 5)
    res = sdeflow.create_sampler("repaint", steps=20, jump_length=5, resample=3).sample(
        nine_gaussians(dtype=F64).score_model(sdeflow.create_process("vp")).given(
            mask=torch.tensor([True, False]), values=torch.zeros(2)), (4, 2), gen(0))
    assert res.nfe == downs + 1 and res.steps == len(seq) - 1


def test_imputation_view_moves_observed_coordinates_by_their_exact_marginal() -> None:
    """The observed coordinates of the view follow q(x_t | y) = N(alpha_t y, sigma_t^2): stopped at
    t_end = 0.3 (no denoising), their moments are that marginal's; the data-prediction samplers end on y."""
    gm = nine_gaussians(dtype=F64)
    process = sdeflow.create_process("vp")
    y = torch.tensor([0.7, 0.0], dtype=F64)
    view = gm.score_model(process).given(mask=torch.tensor([True, False]), values=y)
    x = sdeflow.create_sampler("ddim", steps=40, t_end=0.3).sample(view, (4000, 2), gen(0)).samples
    a, s = (float(v) for v in process.marginal(torch.tensor([0.3], dtype=F64)))
    assert_moments(x[:, :1], torch.tensor([a * 0.7], dtype=F64), torch.tensor([[s * s]], dtype=F64), "observed x1 at t=0.3")
    for name in ("ancestral", "dpm_solver"):
        out = sdeflow.create_sampler(name, steps=30).sample(view, (50, 2), gen(1)).samples
        assert float((view.fill_observed(out)[:, 0] - 0.7).abs().max()) == 0.0
        assert float((out[:, 0] - 0.7).abs().max()) < (1e-9 if name == "ancestral" else 0.05)


def test_replacement_is_biased_and_repaint_reduces_the_bias() -> None:
    """16-D anisotropic mixture with 8 coordinates observed at a draw of one component: the exact
    conditional is that component; replacement puts about half the samples in other components,
    RePaint's resampling far fewer, the exact conditional score none (see docs/conditioning.md)."""
    gm = anisotropic_mixture(16, dtype=F64)
    y = gm.sample(1, gen(7))[0]
    mask = torch.arange(16) % 2 == 0
    cond = gm.condition(mask=mask, values=y)
    home = int(cond.weights.argmax())
    assert float(cond.weights[home]) > 0.999
    process = sdeflow.create_process("vp")
    view = gm.score_model(process).given(mask=mask, values=y)

    def wrong_component(x: torch.Tensor) -> float:
        n = x.shape[0]
        logits, _, _ = cond._components(x, torch.ones(n, dtype=F64), torch.zeros(n, dtype=F64))
        return float((logits.argmax(1) != home).to(F64).mean())

    n = 1000
    replaced = sdeflow.create_sampler("ancestral", steps=25).sample(view, (n, 16), gen(3)).samples[:, ~mask]
    repaint = sdeflow.create_sampler("repaint", steps=25, jump_length=5, resample=10).sample(view, (n, 16), gen(3))
    exact = sdeflow.create_sampler("ancestral", steps=25).sample(cond.score_model(process), (n, 8), gen(3)).samples
    r, rp, ex = wrong_component(replaced), wrong_component(repaint.samples[:, ~mask]), wrong_component(exact)
    assert r > 0.35 and rp < r - 0.15 and ex < 0.01, (r, rp, ex)
