"""The sdeflow conformance kit on this plugin's components, plus tests of what is specific to them.

``test_sdeflow_conformance`` is the kit's own test: the pytest plugin (loaded through ``addopts``
in pyproject.toml) parametrizes it over every component of the plugin ``example`` and every
check, listed as ``process:cosine_vp::forward_simulation`` and so on (``pytest -v``).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import sdeflow
from sdeflow import testing as kit
from sdeflow.errors import NonFiniteError, OptionError
from sdeflow.testing.suite import test_sdeflow_conformance  # noqa: F401  (collected here: the kit)
from sdeflow_example import CosineVPProcess, StochasticHeunSampler

F64 = torch.float64


def test_found_through_its_entry_point() -> None:
    info = sdeflow.plugin_info("example")
    assert info.ok and info.distribution == "sdeflow-example-plugin" and info.target == "sdeflow_example"
    assert info.components["process"] == ["cosine_vp"] and info.components["sampler"] == ["stochastic_heun"]
    assert isinstance(sdeflow.create_process("cosine_vp", s=0.01), CosineVPProcess)
    assert isinstance(sdeflow.create_sampler("stochastic_heun", steps=10), StochasticHeunSampler)
    with pytest.raises(OptionError, match="tau_max"):
        sdeflow.create_process("cosine_vp", tau_max=1.0)


def test_kit_functions_on_other_options() -> None:
    """The kit's functions called directly, on options the pytest plugin does not select."""
    kit.check_process(CosineVPProcess(s=0.02, tau_max=0.9, t_min=1e-4))
    kit.check_sampler_recovers_gaussian(functools.partial(StochasticHeunSampler, steps=200), tol=0.03)


class _CosineFromMarginal(sdeflow.MarginalDefinedProcess):
    """The same marginal, with drift and diffusion derived by sdeflow (forward-mode autodiff)."""

    def __init__(self, ref: CosineVPProcess) -> None:
        super().__init__()
        self.ref, self.t_min = ref, ref.t_min

    def marginal(self, t):  # type: ignore[no-untyped-def]
        return self.ref.marginal(t)


def test_closed_form_sde_matches_the_marginal_derivation() -> None:
    """``f = d log alpha/dt`` and ``g^2 = d sigma^2/dt - 2 f sigma^2`` (Kingma et al. 2021, Eq. 33)
    computed by sdeflow from the marginal alone equal the closed-form ``beta(t)``."""
    p = CosineVPProcess().to(F64)
    derived = _CosineFromMarginal(p)
    t = torch.linspace(p.t_min, 1.0, 101, dtype=F64)
    x = torch.randn(101, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(derived.drift(x, t), p.drift(x, t), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(derived.diffusion(t), p.diffusion(t), rtol=1e-8, atol=1e-10)


def test_marginal_is_the_cosine_schedule() -> None:
    """``alpha_t^2 = f(tau) / f(0)``, ``f(tau) = cos^2(pi/2 (tau + s)/(1 + s))`` at ``tau = tau_max t``
    (Nichol & Dhariwal 2021, Eq. 17), and the process is variance preserving."""
    s, tau_max = 0.008, 0.9946
    p = CosineVPProcess(s=s, tau_max=tau_max).to(F64)
    t = torch.linspace(0.0, 1.0, 11, dtype=F64)
    f = torch.cos(0.5 * math.pi * (tau_max * t + s) / (1 + s)) ** 2
    a, sig = p.marginal(t)
    torch.testing.assert_close(a * a, f / f[0], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(a * a + sig * sig, torch.ones_like(t), rtol=1e-12, atol=1e-12)


def test_sampler_counts_two_evaluations_per_step_and_names_a_bad_step() -> None:
    sm = kit.RecordingScoreModel(kit.gaussian_target(), CosineVPProcess().to(F64))
    res = StochasticHeunSampler(steps=7).sample(sm, (16, 2), torch.Generator().manual_seed(0))
    assert res.nfe == sm.calls == 2 * 7 + 1 and res.steps == 7

    class NaNBelow(kit.RecordingScoreModel):
        def network_output(self, x, t):  # type: ignore[no-untyped-def]
            out = super().network_output(x, t)
            return out * float("nan") if float(t[0]) < 0.5 else out

    bad = NaNBelow(kit.gaussian_target(), CosineVPProcess().to(F64))
    with pytest.raises(NonFiniteError, match=r"stochastic_heun.*step [56] of 10"):
        StochasticHeunSampler(steps=10, denoise=False).sample(bad, (4, 2), torch.Generator().manual_seed(0))
