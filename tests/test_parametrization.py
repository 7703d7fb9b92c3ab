"""The five network parametrizations and their conversions (``sdeflow.core.parametrization``).

With ``x_t = a x0 + s eps``: ``score = -eps / s``, ``x0 = (x_t - s eps) / a``,
``v = a eps - s x0`` (Song et al. 2021, Eq. 7; Salimans & Ho 2022, Eq. 9) and the flow's
velocity ``u = a' x0 + s' eps`` (Lipman et al. 2023, Eq. 15-16). The relations must hold for any
``a``, ``s`` (``a^2 + s^2 != 1`` in VE and sub-VP) and any derivatives with ``a s' - s a' > 0``
(a decreasing log-SNR), for vectors and images.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import sdeflow
from sdeflow.core import parametrization as P
from sdeflow.errors import OptionError
from sdeflow.utils.shapes import append_dims

F64 = torch.float64
KINDS = P.PARAMETRIZATIONS
CONVERTERS = {"eps": P.to_eps, "score": P.to_score, "x0": P.to_x0, "v": P.to_v, "velocity": P.to_velocity}


def random_state(shape: tuple[int, ...], ve_like: bool, seed: int = 0) -> tuple[Tensor, ...]:
    """Random ``x0``, ``eps`` and per-sample ``a``, ``s``, ``da``, ``ds`` broadcast to ``shape``.

    ``ve_like``: ``a = 1``, ``da = 0`` and ``s`` up to 50 (VE); otherwise ``a``, ``s`` independent in
    ``(0.05, 1]`` so ``a^2 + s^2`` ranges over ``(0, 2]`` (sub-VP has ``a^2 + s^2 < 1``), ``da`` in
    ``[-2, 0.5]`` (a growing ``alpha`` is allowed while the log-SNR falls) and ``ds`` chosen so that
    ``a ds - s da`` lies in ``[0.1, 3]``.
    """
    g = torch.Generator().manual_seed(seed)
    n = shape[0]
    x0 = torch.randn(shape, generator=g, dtype=F64)
    eps = torch.randn(shape, generator=g, dtype=F64)
    if ve_like:
        a = torch.ones(n, dtype=F64)
        s = torch.exp(torch.empty(n, dtype=F64).uniform_(-4.0, 4.0, generator=g))
        da = torch.zeros(n, dtype=F64)
    else:
        a = 0.05 + 0.95 * torch.rand(n, generator=g, dtype=F64)
        s = 0.05 + 0.95 * torch.rand(n, generator=g, dtype=F64)
        da = -2.0 + 2.5 * torch.rand(n, generator=g, dtype=F64)
    det = 0.1 + 2.9 * torch.rand(n, generator=g, dtype=F64)
    ds = (det + s * da) / a
    return x0, eps, *(append_dims(v, len(shape)) for v in (a, s, da, ds))


def truth(x0: Tensor, eps: Tensor, a: Tensor, s: Tensor, da: Tensor, ds: Tensor) -> dict[str, Tensor]:
    return {"eps": eps, "x0": x0, "score": -eps / s, "v": a * eps - s * x0, "velocity": da * x0 + ds * eps}


@pytest.mark.parametrize("shape", [(64, 3), (16, 1, 4, 4)], ids=["vector", "image"])
@pytest.mark.parametrize("ve_like", [False, True], ids=["a-s-free", "ve"])
@pytest.mark.parametrize("kind", KINDS)
def test_round_trips(kind: str, ve_like: bool, shape: tuple[int, ...]) -> None:
    """From the regression target of ``kind`` every other quantity is recovered exactly."""
    x0, eps, a, s, da, ds = random_state(shape, ve_like)
    x = a * x0 + s * eps
    want = truth(x0, eps, a, s, da, ds)
    c = {"a": a, "s": s, "da": da, "ds": ds}
    out = P.target(kind, x0, eps, **c)
    torch.testing.assert_close(out, want[kind], rtol=1e-12, atol=1e-12)
    for other, convert in CONVERTERS.items():
        got = convert(kind, out, x, **c)
        scale = float(want[other].abs().max())
        torch.testing.assert_close(got, want[other], rtol=1e-9, atol=1e-9 * scale, msg=f"{kind} -> {other}")
        # and back again
        back = CONVERTERS[kind](other, got, x, **c)
        torch.testing.assert_close(back, out, rtol=1e-9, atol=1e-9 * float(out.abs().max()), msg=f"{other} -> {kind}")


def test_velocity_conversions_need_the_derivatives() -> None:
    """Without ``da``/``ds`` a conversion from or to the velocity says what it needs; the others do not need them."""
    x0, eps, a, s, da, ds = random_state((8, 3), ve_like=False)
    x = a * x0 + s * eps
    for convert in CONVERTERS.values():
        with pytest.raises(OptionError, match="needs the time derivatives"):
            convert("velocity", x, x, a, s)
    with pytest.raises(OptionError, match="needs the time derivatives"):
        P.to_velocity("eps", eps, x, a, s)
    with pytest.raises(OptionError, match="needs the time derivatives"):
        P.target("velocity", x0, eps, a, s)
    torch.testing.assert_close(P.to_x0("eps", eps, x, a, s), x0)


def test_velocity_is_not_salimans_and_ho_v() -> None:
    """On the linear path ``a = 1 - t``, ``s = t`` the velocity is ``eps - x0``, and
    ``u = ((2t - 1) x_t + v) / ((1 - t)^2 + t^2)``; on the trigonometric path it is ``(pi / 2) v``."""
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 16, 3, generator=g, dtype=F64)
    t = torch.rand(16, 1, generator=g, dtype=F64)
    a, s, one = 1 - t, t, torch.ones_like(t)
    x = a * x0 + s * eps
    v = P.target("v", x0, eps, a, s)
    u = P.to_velocity("v", v, x, a, s, da=-one, ds=one)
    torch.testing.assert_close(u, eps - x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(u, ((2 * t - 1) * x + v) / (a * a + s * s), rtol=1e-12, atol=1e-12)
    assert float((u - v).abs().max()) > 0.1
    h = 0.5 * torch.pi
    a, s, da, ds = torch.cos(h * t), torch.sin(h * t), -h * torch.sin(h * t), h * torch.cos(h * t)
    x = a * x0 + s * eps
    v = P.target("v", x0, eps, a, s)
    torch.testing.assert_close(P.to_velocity("v", v, x, a, s, da=da, ds=ds), h * v, rtol=1e-12, atol=1e-12)


def test_a2_plus_s2_is_really_not_one() -> None:
    """Guard: the general-form test data leaves the VP identity ``a^2 + s^2 = 1``."""
    _, _, a, s, _, _ = random_state((64, 3), ve_like=False)
    r = (a * a + s * s).flatten()
    assert float(r.min()) < 0.5 and float(r.max()) > 1.3


class ExactNetwork(nn.Module):
    """A "network" that outputs the exact ``kind`` quantity of ``p_t`` for ``p_0 = N(mu, v0 I)``.

    Exact score ``-(x - a mu) / (a^2 v0 + s^2)``; the other quantities follow from the
    Gaussian posterior ``E[x0 | x_t]`` (Tweedie's formula). It reads ``t`` from
    ``expected_t``, after checking that ``t_cond`` is what the process conditions on.
    """

    def __init__(self, process: sdeflow.ForwardProcess, kind: str, mu: float, v0: float) -> None:
        super().__init__()
        self.process, self.kind, self.mu, self.v0 = process, kind, mu, v0
        self.expected_t: Tensor | None = None

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        t = self.expected_t
        assert t is not None
        torch.testing.assert_close(t_cond, self.process.network_condition(t))
        a, s, da, ds = (append_dims(v, x.ndim) for v in self.process.marginal_and_derivatives(t))
        score = -(x - a * self.mu) / (a * a * self.v0 + s * s)
        eps = -s * score
        x0 = (x + s * s * score) / a
        return {"score": score, "eps": eps, "x0": x0, "v": a * eps - s * x0, "velocity": da * x0 + ds * eps}[self.kind]


PROCESS_NAMES = sorted(sdeflow.list_plugins()["process"])


@pytest.mark.parametrize("name", PROCESS_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_score_model_with_exact_network_gives_exact_score(kind: str, name: str) -> None:
    """``ScoreModel(net, process, kind)`` with a network predicting the exact ``kind`` quantity
    returns the exact score (checked against the closed-form Gaussian-mixture score), and its
    eps/x0/v accessors agree with the exact quantities."""
    process = sdeflow.create_process(name).to(F64).requires_grad_(False)  # a learned schedule: no graph needed
    mu, v0 = 1.5, 0.8
    net = ExactNetwork(process, kind, mu, v0)
    model = sdeflow.ScoreModel(net, process, parametrization=kind)
    exact = sdeflow.GaussianMixture([1.0], [[mu] * 16], v0, dtype=F64).score_model(process)
    lo, hi = float(process.t_min), float(process.t_max)
    g = torch.Generator().manual_seed(1)
    # t_min excluded: s may be 0 there (VE), where eps/x0/v networks cannot express the score
    t = lo + (hi - lo) * torch.linspace(0.05, 1.0, 8, dtype=F64)
    for shape in ((8, 16), (8, 1, 4, 4)):
        x = 3.0 * torch.randn(shape, generator=g, dtype=F64)
        net.expected_t = t
        want = exact.score(x.reshape(8, 16), t).reshape(shape)
        for got in (model.score(x, t), model(x, t)):
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8 * float(want.abs().max()))
        ref = ExactNetwork(process, "eps", mu, v0)
        for other in ("eps", "x0", "v", "velocity"):
            ref.kind, ref.expected_t = other, t
            q = ref(x, process.network_condition(t))
            torch.testing.assert_close(getattr(model, other)(x, t), q, rtol=1e-8, atol=1e-8 * float(q.abs().max()))


def test_unknown_parametrization_raises() -> None:
    process = sdeflow.create_process("vp")
    net = sdeflow.create_model("mlp", dim=2)
    with pytest.raises(OptionError, match="valid: eps, score, x0, v, velocity"):
        sdeflow.ScoreModel(net, process, parametrization="epsilon")
    with pytest.raises(ValueError):  # OptionError is a ValueError for generic handlers
        P.check_parametrization("noise")
    x = torch.zeros(2, 2)
    one = torch.ones(2, 1)
    for convert in CONVERTERS.values():
        with pytest.raises(OptionError, match="unknown parametrization 'flow'"):
            convert("flow", x, x, one, one, da=-one, ds=one)
    with pytest.raises(OptionError, match="unknown parametrization"):
        P.target("flow", x, x, one, one)


def test_default_parametrization_comes_from_the_process() -> None:
    """``ScoreModel(net, process)`` predicts the process's ``default_parametrization``: ``eps`` for the
    diffusions, ``velocity`` for ``rectified_flow``; an explicit choice wins."""
    net = sdeflow.create_model("mlp", dim=2)
    assert sdeflow.ScoreModel(net, sdeflow.create_process("vp")).parametrization == "eps"
    flow = sdeflow.create_process("rectified_flow")
    assert sdeflow.ScoreModel(net, flow).parametrization == "velocity"
    assert sdeflow.ScoreModel(net, flow, parametrization="eps").parametrization == "eps"
