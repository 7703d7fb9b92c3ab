"""Denoising score-matching losses (sdeflow.core.losses): every weighting on every process.

The ground truth: for a 1-D Gaussian target ``N(m, v)`` and a process with marginal
``x_t = a x0 + s eps``, ``p_t = N(a m, a^2 v + s^2)``. The EXACT eps-model
``eps_theta = -s score = s (x_t - a m) / D``, ``D = a^2 v + s^2``, leaves the error

    e = eps_theta - eps = (s a (x0 - m) - a^2 v eps) / D ~ N(0, a^2 v / D),

so the irreducible eps-MSE at time ``t`` is ``a^2 v / D`` (the fraction of p_t's variance that
is signal). For the native x0 target ``x0_hat - x0 = -(s / a) e`` (error ``s^2 v / D``), and
for the native v target ``v = a eps - s x0`` the error is ``((a^2 + s^2) / a) e``
(``(a^2 + s^2)^2 v / D``). The loss is ``E_t[W(t) E(e^2 | t)]`` with ``W = 1`` (simple, sigma2,
native) or ``W = g^2 / s^2`` (likelihood), ``t`` from the process's training-time
distribution; it is computed here by quadrature (exact sums for the discrete DDPM/NCSN) and
the Monte-Carlo loss must lie within 4.5 standard errors, the standard error coming from the
per-sample variance ``E_t[3 W^2 E(e^2|t)^2] - L^2`` (``e^2`` is a scaled chi-square(1)) and n.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import sdeflow
from sdeflow.core import parametrization as P
from sdeflow.core.losses import denoising_score_matching, sample_importance_time
from sdeflow.data.datasets import gaussian_1d
from sdeflow.errors import OptionError

F64 = torch.float64
MEAN, STD = 5.0, 2.0
N_MC = 40_000
K_SE = 4.5

PROCESSES = {
    "ddpm": {},
    "ncsn": {},
    "vp": {},
    "subvp": {},
    "ve": {},
    # the likelihood weighting g^2/sigma^2 ~ 1/t near t = 0 for VE: its expectation is finite only with t_min > 0
    "ve_tmin": {"t_min": 1e-3},
}


def make_process(key: str) -> sdeflow.ForwardProcess:
    return sdeflow.create_process(key.split("_")[0], **PROCESSES[key]).to(F64)


class ExactGaussianModel(sdeflow.ScoreModel):
    """The exact model of ``N(MEAN, STD^2)`` under ``process``, in parametrization ``kind``."""

    def __init__(self, process: sdeflow.ForwardProcess, kind: str) -> None:
        exact = gaussian_1d(MEAN, STD, dtype=F64).score_model(process)
        super().__init__(exact.network, process, parametrization=kind)
        self.exact = exact

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        a, s = self.process.marginal(t)
        a, s = sdeflow.append_dims(a, x.ndim), sdeflow.append_dims(s, x.ndim)
        score = self.exact.network_output(x, t)
        if self.parametrization == "score":
            return score
        eps = P.to_eps("score", score, x, a, s)
        x0 = P.to_x0("score", score, x, a, s)
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[self.parametrization]


def irreducible(process: sdeflow.ForwardProcess, t: Tensor, target: str) -> Tensor:
    """``E[err^2 | t]`` of the exact model for the regression target ``target`` (see module docstring)."""
    a, s = process.marginal(t)
    v = STD**2
    d = a * a * v + s * s
    if target == "eps":
        return a * a * v / d
    if target == "x0":
        return s * s * v / d
    if target == "v":
        return (a * a + s * s) ** 2 * v / d
    raise AssertionError(target)


def time_nodes(process: sdeflow.ForwardProcess) -> tuple[Tensor, Tensor]:
    """Nodes and masses of the plain training-time distribution (exact for discrete processes;
    composite Simpson on a grid geometric near t_min for continuous ones)."""
    chain = process.discrete_times()
    if chain is not None:
        return chain.to(F64), torch.full_like(chain.to(F64), 1.0 / chain.numel())
    t0, t1 = float(process.t_min), float(process.t_max)
    m = 20_001
    u = torch.linspace(0.0, 1.0, m, dtype=F64)
    simpson = torch.ones(m, dtype=F64)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    simpson /= 3.0 * (m - 1)
    if t0 > 0:
        t = t0 * (t1 / t0) ** u
        jac = t * math.log(t1 / t0)
    else:
        t = t0 + (t1 - t0) * u
        jac = torch.full_like(t, t1 - t0)
    return t, simpson * jac / (t1 - t0)


def expected_loss(process: sdeflow.ForwardProcess, weighting: str, target: str,
                  importance: bool = False) -> tuple[float, float]:
    """``(E[Y], Var[Y])`` of one sample's loss ``Y`` (1-D data) by quadrature."""
    t, q = time_nodes(process)
    err = irreducible(process, t, target)
    w = process.g2(t) / process.marginal(t)[1] ** 2 if weighting == "likelihood" else torch.ones_like(t)
    mean = float((q * w * err).sum())
    if not importance:
        second = float((q * 3.0 * (w * err) ** 2).sum())
    else:  # t ~ p = w / Z (relative to the Lebesgue or counting measure), Y = (q/p) w e^2
        if process.discrete_times() is not None:
            p = w / w.sum()
            second = float((q * q / p * 3.0 * (w * err) ** 2).sum())
        else:
            z = float((q * w).sum())  # Z relative to q: p(t) = q(t) w(t) / z
            second = float((q * z * w * 3.0 * err**2).sum())
    return mean, second - mean * mean


def mc_loss(model: sdeflow.ScoreModel, n: int, seed: int, **options) -> float:
    gen = torch.Generator().manual_seed(seed)
    x0 = gaussian_1d(MEAN, STD, dtype=F64).sample(n, torch.Generator().manual_seed(seed + 1000))
    return float(denoising_score_matching(model, x0, generator=gen, **options))


CASES = [
    # (weighting, parametrization of the exact model, regression target of the loss)
    ("simple", "eps", "eps"),
    ("simple", "score", "eps"),
    ("simple", "x0", "eps"),
    ("sigma2", "score", "eps"),
    ("native", "x0", "x0"),
    ("native", "v", "v"),
    ("native", "eps", "eps"),
    ("likelihood", "eps", "eps"),
]


@pytest.mark.parametrize("key", list(PROCESSES))
@pytest.mark.parametrize("weighting,kind,target", CASES)
def test_exact_model_reaches_closed_form_irreducible_loss(key: str, weighting: str, kind: str, target: str) -> None:
    if weighting == "likelihood" and key == "ve":
        pytest.skip("E[g^2/sigma^2] diverges at t_min = 0 for VE; covered by ve_tmin")
    process = make_process(key)
    model = ExactGaussianModel(process, kind)
    mean, var = expected_loss(process, weighting, target)
    got = mc_loss(model, N_MC, seed=11, weighting=weighting)
    se = math.sqrt(var / N_MC)
    assert abs(got - mean) <= K_SE * se + 1e-9 * abs(mean), (got, mean, se)


@pytest.mark.parametrize("key", ["ddpm", "ncsn", "vp", "subvp", "ve_tmin"])
def test_importance_sampled_likelihood_agrees_with_plain(key: str) -> None:
    process = make_process(key)
    model = ExactGaussianModel(process, "eps")
    mean, var_plain = expected_loss(process, "likelihood", "eps")
    _, var_is = expected_loss(process, "likelihood", "eps", importance=True)
    plain = mc_loss(model, N_MC, seed=3, weighting="likelihood")
    imp = mc_loss(model, N_MC, seed=4, weighting="likelihood", importance_sampling=True)
    se_plain, se_is = math.sqrt(var_plain / N_MC), math.sqrt(var_is / N_MC)
    assert abs(imp - mean) <= K_SE * se_is, (imp, mean, se_is)
    assert abs(imp - plain) <= K_SE * math.hypot(se_is, se_plain), (imp, plain)
    # importance sampling is there for the variance: never worse (equal for NCSN, where g^2/s^2 is constant)
    assert var_is <= var_plain * (1 + 1e-9)
    if key in ("vp", "subvp", "ve_tmin", "ddpm"):
        assert var_is < 0.7 * var_plain


@pytest.mark.parametrize("key", ["ddpm", "ncsn", "vp", "ve_tmin"])
def test_importance_weights_are_unbiased_for_the_plain_time_distribution(key: str) -> None:
    """``E_p[q/p] = 1`` and ``E_p[q/p t] = E_q[t]``: the weights undo the change of measure exactly."""
    process = make_process(key)
    n = 200_000
    t, ratio = sample_importance_time(process, n, torch.Generator().manual_seed(5), "cpu", F64)
    assert t.shape == ratio.shape == (n,) and bool((ratio > 0).all())
    assert float(t.min()) >= float(process.t_min) - 1e-12 and float(t.max()) <= float(process.t_max) + 1e-12
    nodes, q = time_nodes(process)
    for f, exact in ((torch.ones_like(t), 1.0), (t, float((q * nodes).sum()))):
        vals = ratio * f
        se = float(vals.std()) / math.sqrt(n)
        assert abs(float(vals.mean()) - exact) <= K_SE * se, (float(vals.mean()), exact, se)
    if process.discrete_times() is not None:  # only the chain's own times are drawn
        chain = process.discrete_times()
        assert bool(torch.isin(t, chain.to(F64)).all())


@pytest.mark.parametrize("key", list(PROCESSES))
@pytest.mark.parametrize("weighting", ["simple", "sigma2", "likelihood", "native"])
def test_sum_reduction_is_dim_times_mean(key: str, weighting: str) -> None:
    process = make_process(key)
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=3, hidden=16, depth=1).to(F64)
    model = sdeflow.ScoreModel(net, process, parametrization="x0" if weighting == "native" else "eps")
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    kw = {"weighting": weighting}
    mean = denoising_score_matching(model, x0, torch.Generator().manual_seed(2), reduction="mean", **kw)
    total = denoising_score_matching(model, x0, torch.Generator().manual_seed(2), reduction="sum", **kw)
    torch.testing.assert_close(total, 3.0 * mean, rtol=1e-12, atol=0)


def test_named_weightings_coincide_where_the_papers_coincide() -> None:
    """sigma2 (NCSN) and simple (DDPM) are one objective in eps form; auto/native of an eps model is
    simple; the ScoreModel's default loss is the process's (NCSN: sigma2)."""
    process = make_process("vp")
    model = ExactGaussianModel(process, "eps")
    x0 = gaussian_1d(MEAN, STD, dtype=F64).sample(256, torch.Generator().manual_seed(0))
    vals = [denoising_score_matching(model, x0, torch.Generator().manual_seed(9), weighting=w)
            for w in ("simple", "sigma2", "native", "auto")]
    for v in vals[1:]:
        torch.testing.assert_close(v, vals[0], rtol=1e-14, atol=0)
    torch.testing.assert_close(model.loss(x0, torch.Generator().manual_seed(9)), vals[0], rtol=1e-14, atol=0)
    ncsn = ExactGaussianModel(make_process("ncsn"), "eps")
    torch.testing.assert_close(ncsn.loss(x0, torch.Generator().manual_seed(9)),
                               denoising_score_matching(ncsn, x0, torch.Generator().manual_seed(9), weighting="sigma2"),
                               rtol=1e-14, atol=0)


def test_loss_is_seeded() -> None:
    process = make_process("subvp")
    model = ExactGaussianModel(process, "eps")
    x0 = gaussian_1d(MEAN, STD, dtype=F64).sample(128, torch.Generator().manual_seed(0))
    a = denoising_score_matching(model, x0, torch.Generator().manual_seed(1), weighting="likelihood",
                                 importance_sampling=True)
    b = denoising_score_matching(model, x0, torch.Generator().manual_seed(1), weighting="likelihood",
                                 importance_sampling=True)
    c = denoising_score_matching(model, x0, torch.Generator().manual_seed(2), weighting="likelihood",
                                 importance_sampling=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("key", ["ddpm", "ncsn", "vp", "subvp", "ve_tmin"])
@pytest.mark.parametrize("weighting,kind,importance", [
    ("simple", "eps", False), ("sigma2", "score", False), ("likelihood", "eps", False),
    ("likelihood", "eps", True), ("native", "x0", False), ("native", "v", False),
])
def test_gradients_flow_to_every_parameter(key: str, weighting: str, kind: str, importance: bool) -> None:
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=2, hidden=16, depth=1)
    model = sdeflow.ScoreModel(net, sdeflow.create_process(key.split("_")[0], **PROCESSES[key]), parametrization=kind)
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    loss = denoising_score_matching(model, x0, torch.Generator().manual_seed(2), weighting=weighting,
                                    importance_sampling=importance)
    assert loss.ndim == 0 and bool(torch.isfinite(loss))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name
    assert sum(float(p.grad.abs().sum()) for p in net.parameters()) > 0


def test_images_broadcast() -> None:
    """Per-sample times broadcast over (batch, c, h, w) data: the loss runs on image-shaped batches."""
    process = make_process("vp")
    model = sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=12, hidden=8, depth=1).to(F64), process)
    x0 = torch.randn(5, 3, 2, 2, dtype=F64)
    mean = denoising_score_matching(model, x0, torch.Generator().manual_seed(0))
    total = denoising_score_matching(model, x0, torch.Generator().manual_seed(0), reduction="sum")
    torch.testing.assert_close(total, 12 * mean, rtol=1e-12, atol=0)


@pytest.mark.parametrize("options,match", [
    ({"weighting": "snr"}, "unknown weighting 'snr'"),
    ({"reduction": "max"}, "reduction must be"),
    ({"weighting": "simple", "importance_sampling": True}, "weighting='likelihood' only"),
])
def test_bad_options_raise(options: dict, match: str) -> None:
    model = ExactGaussianModel(make_process("vp"), "eps")
    with pytest.raises(OptionError, match=match):
        denoising_score_matching(model, torch.zeros(4, 1, dtype=F64), **options)


def test_importance_sampling_needs_positive_sigma_at_t_min() -> None:
    model = ExactGaussianModel(make_process("ve"), "eps")  # t_min = 0: sigma_0 = 0
    with pytest.raises(OptionError, match="t_min > 0"):
        denoising_score_matching(model, torch.zeros(4, 1, dtype=F64), weighting="likelihood",
                                 importance_sampling=True)


def test_score_model_loss_rejects_bad_batches() -> None:
    model = ExactGaussianModel(make_process("vp"), "eps")
    with pytest.raises(sdeflow.errors.ShapeError):
        model.loss(torch.zeros(4, dtype=F64))
