"""One conformance suite for every registered forward process, through the plugin kit.

The suite is parametrized over ``sdeflow.list_plugins()["process"]`` at collection time, each
process built with its default options, so a process plugin added later (built-in or
third-party) is tested automatically. The checks themselves live in
:mod:`sdeflow.testing.processes` (the kit third-party authors run on their own processes);
what they assert, with the equations, is in their docstrings: drift and diffusion generate the
marginal (moment equations and a Monte-Carlo simulation of the forward SDE), the prior is the
marginal at ``t_max``, the exact mixture score equals autograd of ``log p_t`` (closed form and
``torch.distributions``), the probability-flow ODE transports the marginals and is the flow's
velocity, the marginal's time derivatives, log-SNR monotonicity and inversion, the declared time
interval and its validation, the prior's samples and density agree, and shapes for vectors and images.
"""

from __future__ import annotations

import inspect

import pytest

import sdeflow
from sdeflow import testing as kit

PROCESS_NAMES = sorted(sdeflow.list_plugins()["process"])

#: every test but the last runs once per registered process
each_process = pytest.mark.parametrize("name", PROCESS_NAMES)


def make_process(name: str) -> sdeflow.ForwardProcess:
    """The process ``name`` with default options."""
    return sdeflow.create_process(name)


@each_process
def test_registry_has_the_builtin_processes(name: str) -> None:
    assert {"vp", "subvp", "ve"} <= set(PROCESS_NAMES)
    p = make_process(name)
    assert isinstance(p, sdeflow.ForwardProcess)
    # every registered process declares Gaussian marginals, so no kit check below is skipped
    assert p.gaussian_marginals, f"{name}: the conformance suite expects Gaussian marginals"


@each_process
def test_shapes_vectors_and_images(name: str) -> None:
    kit.check_process_shapes(make_process(name))


@each_process
def test_marginal_finite_and_positive(name: str) -> None:
    kit.check_process_marginal_finite(make_process(name))


@each_process
def test_check_time_rejects_out_of_range(name: str) -> None:
    kit.check_process_time_validation(make_process(name))


@each_process
def test_declared_time_interval(name: str) -> None:
    kit.check_process_time_range(make_process(name))


@each_process
def test_prior_samples_and_density_agree(name: str) -> None:
    kit.check_process_prior_density(make_process(name))


@each_process
def test_log_snr_decreasing_and_inverted(name: str) -> None:
    kit.check_process_log_snr(make_process(name))


@each_process
def test_moment_equations_reproduce_marginal(name: str) -> None:
    kit.check_process_moment_equations(make_process(name))


@each_process
def test_forward_sde_monte_carlo_matches_marginal(name: str) -> None:
    kit.check_process_forward_simulation(make_process(name))


@each_process
def test_prior_is_marginal_at_t_max(name: str) -> None:
    kit.check_process_prior(make_process(name))


@each_process
def test_exact_mixture_prior_is_p_t_max(name: str) -> None:
    kit.check_process_exact_mixture_prior(make_process(name))


@each_process
@pytest.mark.parametrize("mixture", sorted(kit.MIXTURES))
def test_exact_score_equals_autograd_of_log_density(name: str, mixture: str) -> None:
    kit.check_process_exact_score(make_process(name), mixture)


@each_process
def test_probability_flow_maps_gaussian_exactly(name: str) -> None:
    kit.check_process_probability_flow_gaussian(make_process(name))


@each_process
def test_probability_flow_transports_marginals(name: str) -> None:
    kit.check_process_probability_flow_transport(make_process(name))


@each_process
def test_marginal_derivatives_match_marginal_and_sde(name: str) -> None:
    kit.check_process_marginal_derivatives(make_process(name))


@each_process
def test_velocity_is_the_probability_flow(name: str) -> None:
    kit.check_process_velocity(make_process(name))


def test_suite_calls_every_process_check_of_the_kit() -> None:
    """A check added to the kit must be called here too (this suite is its strictest user)."""
    sources = "".join(inspect.getsource(f) for n, f in globals().items() if n.startswith("test_"))
    for check in kit.PROCESS_CHECKS.values():
        target = getattr(check, "func", check).__name__  # exact-score entries are partials
        assert f"kit.{target}(" in sources, f"tests/test_process_conformance.py does not call kit.{target}"
