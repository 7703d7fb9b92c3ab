"""``Sampler.sample(..., x_T=...)``: every registered sampler starts from a given prior draw.

Deterministic samplers then depend on ``x_T`` alone (the generator no longer matters); stochastic
ones still draw their noise from the generator, so the same ``(x_T, seed)`` repeats exactly. A bad
``x_T`` (shape, dtype, not a tensor) is a :class:`ShapeError`; a sampler whose ``_sample`` takes no
``x_T`` refuses one with an :class:`IncompatibleError`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import sdeflow
from sdeflow.errors import IncompatibleError, ShapeError

SHAPE = (16, 2)


def _options(name: str) -> dict[str, Any]:
    """Small budgets: every sampler that takes ``steps`` gets a few (``ode``: fixed-grid rk4)."""
    if name == "ode":
        return dict(method="rk4", steps=6)
    if name == "langevin":
        return dict(num_scales=4, n_steps_each=2)
    opts = sdeflow.component_options("sampler", name)
    return dict(steps=6) if "steps" in opts else {}


def _model() -> sdeflow.ScoreModel:
    gm = sdeflow.GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]], 0.2, dtype=torch.float64)
    return gm.score_model(sdeflow.create_process("vp"))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sdeflow.list_plugins()["sampler"])
def test_every_sampler_starts_from_x_T(name: str) -> None:
    sm = _model()
    sampler = sdeflow.create_sampler(name, **_options(name))
    x_T = sm.prior_sample(SHAPE, _gen(0))
    kept = x_T.clone()
    a = sampler.sample(sm, SHAPE, _gen(1), x_T=x_T, return_trajectory=True)
    assert torch.equal(x_T, kept), f"{name}: sample() modified x_T"
    assert a.samples.shape == SHAPE and bool(torch.isfinite(a.samples).all())
    assert torch.equal(a.trajectory[0], x_T), f"{name}: the first state of the trajectory is not x_T"
    again = sampler.sample(sm, SHAPE, _gen(1), x_T=x_T)
    assert torch.equal(a.samples, again.samples), f"{name}: the same x_T and seed gave different samples"
    other = sampler.sample(sm, SHAPE, _gen(1), x_T=sm.prior_sample(SHAPE, _gen(5)))
    assert not torch.equal(a.samples, other.samples), f"{name}: another x_T gave the same samples"
    if not sampler.stochastic:
        b = sampler.sample(sm, SHAPE, _gen(2), x_T=x_T)
        assert torch.equal(a.samples, b.samples), f"{name} is deterministic: the generator must not matter given x_T"
        drawn = sampler.sample(sm, SHAPE, _gen(0))  # its own prior draw from seed 0 is x_T
        assert torch.equal(a.samples, drawn.samples), f"{name}: x_T = the prior draw of seed 0 must give that run"
        assert a.nfe == drawn.nfe


def test_bad_x_T_is_a_clear_shape_error() -> None:
    sm = _model()
    sampler = sdeflow.create_sampler("ddim", steps=4)
    x_T = sm.prior_sample(SHAPE, _gen(0))
    with pytest.raises(ShapeError, match=r"x_T has shape \(16, 3\).*\(16, 2\)"):
        sampler.sample(sm, SHAPE, x_T=torch.zeros(16, 3, dtype=torch.float64))
    with pytest.raises(ShapeError, match=r"x_T has dtype torch.float32.*torch.float64"):
        sampler.sample(sm, SHAPE, x_T=x_T.float())
    with pytest.raises(ShapeError, match="x_T must be a tensor"):
        sampler.sample(sm, SHAPE, x_T=x_T.tolist())  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_x_T_on_another_device_is_refused() -> None:  # pragma: no cover - GPU machines only
    sm = _model()
    with pytest.raises(ShapeError, match="x_T is on"):
        sdeflow.create_sampler("ddim", steps=4).sample(sm, SHAPE, x_T=torch.zeros(SHAPE, dtype=torch.float64,
                                                                                  device="cuda"))


def test_a_sampler_without_x_T_support_refuses_it() -> None:
    class Plain(sdeflow.Sampler):
        name = "plain"

        def __init__(self, t_end: float | None = None) -> None:
            self.t_end = t_end

        def _sample(self, score_model, shape, generator, callback, progress, return_trajectory):  # type: ignore[no-untyped-def]
            x = score_model.prior_sample(shape, generator)
            return sdeflow.SampleResult(samples=x, nfe=0)

    sm = _model()
    assert Plain().sample(sm, SHAPE, _gen(0)).samples.shape == SHAPE  # without x_T it runs as before
    with pytest.raises(IncompatibleError, match="cannot start from a given x_T"):
        Plain().sample(sm, SHAPE, x_T=sm.prior_sample(SHAPE, _gen(0)))
