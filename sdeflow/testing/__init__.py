"""The sdeflow conformance kit: checks a plugin author runs against their components.

Importable check functions (plain ``assert``-style functions raising ``AssertionError`` with a
message saying what differs, by how much and what was allowed; no pytest needed) and an
opt-in pytest plugin, :mod:`sdeflow.testing.pytest_plugin`, that runs them on the components
of a plugin::

    from sdeflow.testing import check_process, check_sampler, check_model

    check_process(MyProcess())                                      # every process check
    check_sampler(functools.partial(sdeflow.create_sampler, "my-sampler", steps=100))
    check_model(functools.partial(sdeflow.create_model, "my-net", dim=3), shape=(8, 3))

The process checks compare a process's marginal with its own SDE (moment equations and an
Euler-Maruyama simulation), its prior with its marginal at ``t_max``, and the exact
Gaussian-mixture score under it with autograd of an independent log-density, the marginal's time
derivatives with finite differences and the SDE, and the probability-flow ODE with the flow's velocity
from an independent posterior mean; the sampler checks
test the sampling contract and the law of the samples with the exact score of a Gaussian; the
model checks test the ``net(x, t_cond)`` contract (and ``net(x, t_cond, labels)`` of a class-conditional
network). sdeflow's own test suite runs the process
checks over every registered process and the sampler and model checks over every built-in.
"""

from __future__ import annotations

from .common import F64, K_SE, CheckNotApplicable, assert_moments
from .mixtures import (
    MIXTURES,
    marginal_moments,
    mixture_1d,
    mixture_2d,
    mixture_5d_full,
    reference_marginal,
    reference_posterior_mean,
)
from .models import (
    MODEL_CHECKS,
    check_model,
    check_model_batch_independence,
    check_model_conditional,
    check_model_float64,
    check_model_output,
)
from .orders import check_sampler_order, fit_order, gaussian_flow_map
from .processes import (
    PROCESS_CHECKS,
    check_process,
    check_process_exact_mixture_prior,
    check_process_exact_score,
    check_process_forward_simulation,
    check_process_log_snr,
    check_process_marginal_derivatives,
    check_process_marginal_finite,
    check_process_moment_equations,
    check_process_prior,
    check_process_prior_density,
    check_process_probability_flow_gaussian,
    check_process_probability_flow_transport,
    check_process_shapes,
    check_process_time_range,
    check_process_time_validation,
    check_process_velocity,
    integrate_probability_flow,
)
from .reference import (
    GaussianPosteriorMeanModel,
    GaussianQuantityUsed,
    LinearLogSNRProcess,
    NoiseEndProcess,
    NonGaussianProcess,
    RecordingScoreModel,
    ReferenceOUProcess,
    StationaryScoreModel,
)
from .samplers import (
                     SAMPLER_CHECKS,
                     check_sampler,
                     check_sampler_contract,
                     check_sampler_dtypes,
    check_sampler_finite_start,
                     check_sampler_interface,
                     check_sampler_recovers_gaussian,
                     check_sampler_refuses_incompatible,
                     check_sampler_reproducible,
                     check_sampler_stochastic,
                     check_sampler_t_end,
                     check_sampler_without_gaussian_marginals,
)
from .sampling import gaussian_target, order_targets
from .syncs import HostSyncCounter, check_sampler_host_syncs

__all__ = [
    "CheckNotApplicable", "F64", "GaussianPosteriorMeanModel", "GaussianQuantityUsed", "HostSyncCounter", "K_SE",
    "LinearLogSNRProcess", "MIXTURES", "MODEL_CHECKS", "NoiseEndProcess", "NonGaussianProcess", "PROCESS_CHECKS",
    "RecordingScoreModel", "ReferenceOUProcess", "SAMPLER_CHECKS", "StationaryScoreModel", "assert_moments",
    "check_model", "check_model_batch_independence", "check_model_conditional", "check_model_float64",
    "check_model_output", "check_process", "check_process_exact_mixture_prior", "check_process_exact_score",
    "check_process_forward_simulation", "check_process_log_snr", "check_process_marginal_derivatives",
    "check_process_marginal_finite", "check_process_moment_equations", "check_process_prior",
    "check_process_prior_density", "check_process_probability_flow_gaussian",
    "check_process_probability_flow_transport", "check_process_shapes", "check_process_time_range",
    "check_process_time_validation", "check_process_velocity", "check_sampler", "check_sampler_contract",
    "check_sampler_dtypes", "check_sampler_finite_start", "check_sampler_host_syncs", "check_sampler_interface",
    "check_sampler_order", "check_sampler_recovers_gaussian", "check_sampler_refuses_incompatible",
    "check_sampler_reproducible", "check_sampler_stochastic", "check_sampler_t_end",
    "check_sampler_without_gaussian_marginals", "fit_order", "gaussian_flow_map", "gaussian_target",
    "integrate_probability_flow", "marginal_moments", "mixture_1d", "mixture_2d", "mixture_5d_full", "order_targets",
    "reference_marginal", "reference_posterior_mean",
]
