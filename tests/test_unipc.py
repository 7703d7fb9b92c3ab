"""The ``unipc`` sampler (Zhao et al. 2023): its relation to DPM-Solver++, its convergence order with and without
the corrector, exact NFE, options and errors. Ground truth: exact Gaussian-mixture scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from common import gen
from test_fast_samplers import with_fixed_prior
from torch import Tensor

import sdeflow
from sdeflow import ScoreModel
from sdeflow.data.datasets import gaussian_1d, nine_gaussians
from sdeflow.errors import NonFiniteError, OptionError

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("process_name", ["vp", "subvp", "ve", "ddpm"])
def test_predictor_alone_is_dpm_solver_pp(process_name: str) -> None:
    """UniP-1 is DDIM and UniP-2 with ``B(h) = e^h - 1`` is DPM-Solver++(2M): with rho = 1/2 their updates coincide
    term by term (Zhao et al. 2023, Sec. 3.3). UniP-3 (bh2) is DPM-Solver++ 3M with the Taylor-consistent
    coefficient of the second divided difference."""
    gmm = nine_gaussians(dtype=torch.float64)
    sm = gmm.score_model(sdeflow.create_process(process_name))
    for order in (1, 2, 3):
        a = sdeflow.create_sampler("unipc", steps=12, order=order, corrector=False).sample(sm, (200, 2), gen(0))
        b = sdeflow.create_sampler("dpm_solver", steps=12, order=order).sample(sm, (200, 2), gen(0))
        assert a.nfe == b.nfe == 12
        torch.testing.assert_close(a.samples, b.samples, rtol=1e-11, atol=1e-11)


def _slope(steps: list[int], errors: list[float]) -> float:
    return float(np.polyfit(np.log(1.0 / np.asarray(steps, float)), np.log(np.asarray(errors)), 1)[0])


def test_unipc_converges_at_order_p_plus_one() -> None:
    """Pathwise error (median over 64 trajectories: one that passes near the boundary between two modes has a large,
    pre-asymptotic error constant) against dopri8 (rtol = atol = 1e-13) on the nine Gaussians under VP, without
    lower-order final steps (whose uncorrected first-order last step would cap the order at 2 in the limit).
    Measured slopes between consecutive step counts: UniPC-1 1.97, 2.00 (80 -> 160 -> 320); UniPC-2 2.94, 3.16;
    UniPC-3 approaching 4 from below (160 -> 320 -> 640); without the corrector the predictor's own p."""
    gmm = nine_gaussians(dtype=torch.float64)
    process = sdeflow.create_process("vp")
    n = 64
    x_T = gmm.score_model(process).prior_sample((n, 2), gen(3))
    sm = with_fixed_prior(gmm.score_model(process), x_T)
    ref = sdeflow.create_sampler("ode", method="dopri8", rtol=1e-13, atol=1e-13).sample(sm, (n, 2)).samples
    cases = [(1, True, [80, 160, 320], 2.0), (2, True, [80, 160, 320], 3.0), (3, True, [160, 320, 640], 4.0),
             (2, False, [80, 160, 320], 2.0)]
    for order, corrector, steps, expected in cases:
        errors = [float((sdeflow.create_sampler("unipc", steps=k, order=order, corrector=corrector,
                                                lower_order_final=False).sample(sm, (n, 2)).samples - ref)
                        .norm(dim=1).median()) for k in steps]
        p = _slope(steps, errors)
        assert abs(p - expected) < 0.3, (order, corrector, p, errors)
        caps = sdeflow.create_sampler("unipc", order=order, corrector=corrector).capabilities()
        assert caps == {"stochastic": False, "order": expected, "requires_gaussian_marginals": True, "host_syncs": False}


def test_corrector_costs_no_evaluation_and_the_last_step_is_not_corrected() -> None:
    """``steps`` evaluations, each at the predicted state; the corrected state differs from the predicted one
    (it is what the next predictor step starts from), and the output is the last predictor step's."""
    process = sdeflow.create_process("vp")
    seen: list[Tensor] = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.exact = gaussian_1d(dtype=torch.float64).score_model(process)

        def forward(self, x: Tensor, t: Tensor) -> Tensor:
            seen.append(x.clone())
            return self.exact.network_output(x, t)

    sm = ScoreModel(Recorder(), process, parametrization="score")
    res = sdeflow.create_sampler("unipc", steps=8).sample(sm, (16, 1), gen(1), return_trajectory=True)
    assert res.nfe == len(seen) == 8 and res.steps == 8
    for k in range(8):  # evaluation k is at the predicted state reported after step k
        assert torch.equal(seen[k], res.trajectory[k])
    plain = sdeflow.create_sampler("unipc", steps=8, corrector=False).sample(sm, (16, 1), gen(1))
    assert not torch.allclose(plain.samples, res.samples)
    assert torch.equal(res.trajectory[-1], res.samples)


@pytest.mark.parametrize("process_name", ["vp", "subvp", "ve", "ddpm", "ncsn"])
def test_every_process_dtype_and_reproducible(process_name: str) -> None:
    process = sdeflow.create_process(process_name)
    sm = gaussian_1d().score_model(process)  # float32
    s = sdeflow.create_sampler("unipc", steps=7, order=3)
    a, b = s.sample(sm, (32, 1), gen(5)), s.sample(sm, (32, 1), gen(5))
    assert a.samples.dtype == torch.float32 and torch.isfinite(a.samples).all() and a.nfe == 7
    assert torch.equal(a.samples, b.samples)


def test_nan_is_named_with_step_and_time() -> None:
    process = sdeflow.create_process("vp")
    inner = gaussian_1d(dtype=torch.float64).score_model(process)

    class NaNBelow(torch.nn.Module):
        def forward(self, x: Tensor, t: Tensor) -> Tensor:
            out = inner.network_output(x, t)
            return torch.where((t < 0.5)[:, None], torch.full_like(out, math.nan), out)

    sm = ScoreModel(NaNBelow(), process, parametrization="score")
    with pytest.raises(NonFiniteError, match=r"sampler 'unipc' \(order=2, variant='bh2', corrector=True, steps=10, "
                                             r"schedule='time_uniform'\).*step 7 of 10, t=0\.4"):
        sdeflow.create_sampler("unipc", steps=10, schedule="time_uniform").sample(sm, (4, 1), gen(0))


@pytest.mark.parametrize("options, match", [
    (dict(order=4), r"order must be one of \(1, 2, 3\)"),
    (dict(steps=2, order=3), r"UniPC-3 needs steps >= order = 3"),
    (dict(variant="bh3"), r"variant must be one of bh1, bh2"),
    (dict(schedule="karras"), r"unknown schedule 'karras'"),
    (dict(clip_x0=0.0), r"clip_x0 must be positive"),
])
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        sdeflow.create_sampler("unipc", **options)
