"""The ``ddpm`` process's schedules: scaled-linear, sigmoid, given betas, zero terminal SNR, and the
monotone interpolation that replaces an overshooting spline. Closed forms, no diffusers."""

from __future__ import annotations

import math

import pytest
import torch

import sdeflow
from sdeflow.errors import OptionError

F64 = torch.float64


def chain_abar(process: sdeflow.ForwardProcess) -> torch.Tensor:
    """``alpha_t^2`` at the chain's times ``i/N``, ``i = 1..N``."""
    n = process.num_steps
    t = torch.arange(1, n + 1, dtype=F64) / n
    return process.marginal(t)[0] ** 2


def beta_on_fine_grid(process: sdeflow.ForwardProcess, points: int = 100_001) -> torch.Tensor:
    t = torch.linspace(float(process.t_min), 1.0, points, dtype=F64)
    return process.beta(t)


def test_scaled_linear_and_sigmoid_betas() -> None:
    n, b0, b1 = 200, 0.00085, 0.012
    p = sdeflow.create_process("ddpm", num_steps=n, schedule="scaled_linear", beta_start=b0, beta_end=b1)
    want = torch.linspace(math.sqrt(b0), math.sqrt(b1), n, dtype=F64) ** 2
    assert torch.allclose(p.betas, want, rtol=1e-12) and torch.allclose(chain_abar(p), torch.cumprod(1 - want, 0),
                                                                         rtol=1e-10)
    p = sdeflow.create_process("ddpm", num_steps=n, schedule="sigmoid", beta_start=1e-4, beta_end=0.02)
    u = torch.linspace(-6, 6, n, dtype=F64)
    assert torch.allclose(p.betas, 1e-4 + (0.02 - 1e-4) / (1 + torch.exp(-u)), rtol=1e-12)
    assert p.interpolation == "spline" and float(beta_on_fine_grid(p).min()) > 0


def test_given_betas() -> None:
    betas = torch.linspace(1e-3, 0.05, 300, dtype=F64) ** 1.5
    p = sdeflow.create_process("ddpm", betas=betas.tolist())
    assert p.num_steps == 300 and p.schedule == "given" and p.t_min == pytest.approx(1 / 300)
    assert torch.allclose(chain_abar(p), torch.cumprod(1 - betas, 0), rtol=1e-10)
    assert sdeflow.create_process("ddpm", betas=betas, num_steps=300).num_steps == 300
    with pytest.raises(OptionError, match="num_steps=200 disagrees with the 300 given betas"):
        sdeflow.create_process("ddpm", betas=betas, num_steps=200)
    with pytest.raises(OptionError, match=r"betas must hold at least two finite values in \(0, 1\)"):
        sdeflow.create_process("ddpm", betas=[0.1, 1.5, 0.2])
    with pytest.raises(OptionError, match="unknown beta schedule 'laplace'; valid: linear, cosine, scaled_linear, sigmoid"):
        sdeflow.create_process("ddpm", schedule="laplace")


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine", "sigmoid"])
def test_zero_terminal_snr(schedule: str) -> None:
    kw = dict(beta_start=0.00085, beta_end=0.012) if schedule == "scaled_linear" else {}
    base = sdeflow.create_process("ddpm", schedule=schedule, **kw)
    p = sdeflow.create_process("ddpm", schedule=schedule, zero_terminal_snr=True, **kw)
    a0, a = chain_abar(base), chain_abar(p)
    assert float(a[0]) == pytest.approx(float(a0[0]), rel=1e-12)  # the first step keeps its signal
    assert float(a[-1]) <= 2.0 ** -24 and bool((a[1:] < a[:-1]).all())
    # Lin et al. 2024, Alg. 1: sqrt(abar) is an affine map of the original's, zero at the end (before the floor)
    s0, s = a0.sqrt(), a.sqrt()
    k = (s0[0] - s0[-1]) / s0[0]
    assert torch.allclose(s[:-1], (s0[:-1] - s0[-1]) / k, rtol=1e-9)
    assert math.isfinite(float(p.log_snr(torch.ones(1, dtype=F64))))
    assert float(beta_on_fine_grid(p).min()) > 0


def test_monotone_interpolation_replaces_an_overshooting_spline() -> None:
    betas = [1e-3] * 60 + [0.6] + [1e-3] * 39  # a jump: the C^2 spline overshoots around it
    p = sdeflow.create_process("ddpm", betas=betas)
    assert p.interpolation == "monotone"
    assert torch.allclose(chain_abar(p), torch.cumprod(1 - torch.tensor(betas, dtype=F64), 0), rtol=1e-12)
    beta = beta_on_fine_grid(p)
    assert float(beta.min()) > 0
    # C^1: the slope is continuous across the knots
    knots = torch.arange(2, 100, dtype=F64) / 100
    eps = 1e-12
    left, right = p.beta(knots - eps), p.beta(knots + eps)
    assert float(((left - right).abs() / right.abs()).max()) < 1e-4
    for schedule in ("linear", "cosine"):
        assert sdeflow.create_process("ddpm", schedule=schedule).interpolation == "spline"  # unchanged
