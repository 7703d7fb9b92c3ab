"""``sdeflow.solvers.GridSampler``: the loop every hand-written sampler shares, used by a
third-party sampler written only as a grid, a plan and a step.

The sampler below is Heun's method on the probability-flow ODE in ``t`` (two evaluations a step),
so the step of a non-finite evaluation must be found from its evaluation number, not its time.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import pytest
import torch
from torch import Tensor, nn

import sdeflow
from sdeflow import ScoreModel
from sdeflow.data.datasets import gaussian_1d
from sdeflow.errors import NonFiniteError
from sdeflow.solvers import GridRun, GridSampler, SamplingRun


class FlowHeunSampler(GridSampler):
    """Heun's method on ``dx/dt = f - g^2 score / 2`` (Song et al. 2021, Eq. 13) on a uniform grid,
    with an optional Tweedie denoising at the end."""

    name = "test_flow_heun"

    def __init__(self, steps: int = 20, denoise: bool = False, t_end: float | None = None,
                 check_finite: bool = True) -> None:
        self.steps, self.denoise, self.t_end, self.check_finite = steps, denoise, t_end, check_finite

    def plan(self, run: GridRun, t_start: float, t_end: float) -> tuple[Tensor, Any]:
        return torch.linspace(t_start, t_end, self.steps + 1, dtype=torch.float64), run.process.probability_flow(
            run.evaluator)

    def step(self, run: GridRun, k: int, x: Tensor) -> Tensor:
        flow, dt = run.plan, run.times[k + 1] - run.times[k]
        v = flow.velocity(x, run.at(k))
        x_e = x + dt * v
        return x + 0.5 * dt * (v + flow.velocity(x_e, run.at(k + 1)))


class NaNAfter(nn.Module):
    """The exact score of N(5, 2^2) (parametrization ``score``), NaN from the ``bad``-th call on."""

    def __init__(self, process: sdeflow.ForwardProcess, bad: int | None = None) -> None:
        super().__init__()
        self.exact, self.bad, self.calls = gaussian_1d(dtype=torch.float64).score_model(process), bad, 0

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        out = self.exact.network_output(x, t)
        return out * math.nan if self.bad is not None and self.calls >= self.bad else out


def test_a_grid_sampler_gets_the_loop() -> None:
    """Exact NFE, the trajectory and callbacks at every grid time, reproducibility, the final denoising,
    and the target ``p_{t_min}`` of N(5, 2^2) to 4 standard errors."""
    process = sdeflow.create_process("vp")
    net = NaNAfter(process)
    sm = ScoreModel(net, process, parametrization="score")
    calls: list[tuple[int, float]] = []
    sampler = FlowHeunSampler(steps=20)
    res = sampler.sample(sm, (2000, 1), torch.Generator().manual_seed(0), return_trajectory=True,
                         callback=lambda k, t, x: calls.append((k, float(t))))
    assert res.nfe == net.calls == 40 and res.steps == 20
    assert [k for k, _ in calls] == list(range(21))
    assert [t for _, t in calls] == pytest.approx(torch.linspace(1.0, process.t_min, 21, dtype=torch.float64).tolist())
    assert res.trajectory.shape == (21, 2000, 1) and torch.equal(res.trajectory[-1], res.samples)
    again = sampler.sample(sm, (2000, 1), torch.Generator().manual_seed(0)).samples
    assert torch.equal(again, res.samples)
    a, s = (float(v) for v in process.marginal(torch.tensor([process.t_min], dtype=torch.float64)))
    mean, std = 5.0 * a, math.sqrt(4.0 * a * a + s * s)
    x = res.samples.reshape(-1)
    assert abs(float(x.mean()) - mean) < 4 * std / math.sqrt(2000)
    assert abs(float(x.std()) - std) < 4 * std / math.sqrt(2 * 1999)
    den = FlowHeunSampler(steps=20, denoise=True).sample(sm, (2000, 1), torch.Generator().manual_seed(0))
    assert den.nfe == 41
    t_end = torch.full((2000,), process.t_min, dtype=torch.float64)
    torch.testing.assert_close(den.samples, sm.x0(res.samples, t_end))


@pytest.mark.parametrize("bad, step", [(1, "step 1 of 5"), (2, "step 1 of 5"), (3, "step 2 of 5"),
                                       (8, "step 4 of 5"), (10, "step 5 of 5"),
                                       (11, "the final denoising step")])
def test_nan_names_the_step_by_evaluation_number(bad: int, step: str) -> None:
    """Two evaluations a step: evaluation ``j`` belongs to step ``ceil(j / 2)``, the 11th to the denoising."""
    process = sdeflow.create_process("vp")
    sm = ScoreModel(NaNAfter(process, bad), process, parametrization="score")
    with pytest.raises(NonFiniteError, match=rf"sampler 'test_flow_heun' \(steps=5\): the score became NaN/Inf at "
                                             rf"{step}, t=.*\(score evaluation {bad} of"):
        FlowHeunSampler(steps=5, denoise=True).sample(sm, (4, 1), torch.Generator().manual_seed(0))


def test_check_finite_off_and_non_finite_samples() -> None:
    process = sdeflow.create_process("vp")
    sm = ScoreModel(NaNAfter(process, 3), process, parametrization="score")
    with pytest.raises(NonFiniteError, match=r"the samples contain NaN/Inf after 10 score evaluations"):
        FlowHeunSampler(steps=5, check_finite=False).sample(sm, (4, 1))



@pytest.mark.parametrize("name, options, after_loop", [
    ("ode", {"method": "euler", "steps": 4}, 0), ("ode", {"method": "dopri5"}, 0), ("sde", {"steps": 4}, 1),
    ("pc", {"steps": 4}, 1), ("ancestral", {"steps": 4}, 1), ("langevin", {"num_scales": 3, "n_steps_each": 2}, 1),
    ("ddim", {"steps": 4}, 0), ("dpm_solver", {"steps": 4}, 0), ("unipc", {"steps": 4}, 0), ("heun", {"steps": 4}, 0),
    ("test_flow_heun", {"steps": 4, "denoise": True}, 1)])
def test_every_sampler_steps_inside_the_run_scaffold(monkeypatch: pytest.MonkeyPatch, name: str,
                                                    options: dict[str, Any], after_loop: int) -> None:
    """Every built-in sampler's step loop is ``SamplingRun.stepping`` (entered once); every evaluation but the
    final denoising happens inside it: the one place a step loop runs, which a check of host synchronisation
    inside the loop can wrap."""
    state = {"entered": 0, "inside": False}
    original = SamplingRun.stepping

    @contextlib.contextmanager
    def stepping(self: SamplingRun) -> Iterator[None]:
        state["entered"] += 1
        state["inside"] = True
        try:
            with original(self):
                yield
        finally:
            state["inside"] = False

    monkeypatch.setattr(SamplingRun, "stepping", stepping)
    process = sdeflow.create_process("vp")
    net = NaNAfter(process)
    seen: list[bool] = []
    forward = net.forward
    net.forward = lambda x, t: (seen.append(bool(state["inside"])), forward(x, t))[1]  # type: ignore[method-assign]
    sm = ScoreModel(net, process, parametrization="score")
    sampler = FlowHeunSampler(**options) if name == "test_flow_heun" else sdeflow.create_sampler(name, **options)
    res = sampler.sample(sm, (8, 1), torch.Generator().manual_seed(0))
    assert state["entered"] == 1
    assert len(seen) == res.nfe and seen.count(False) == after_loop, seen
