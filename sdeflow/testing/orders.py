"""The order check: a sampler's declared ``order`` against its empirical order of convergence.

The targets are Gaussians, whose probability-flow ODE (Song et al. 2021, Eq. 13) is solved in
closed form under any process with Gaussian marginals (:func:`gaussian_flow_map`). The sampler
runs with ``steps`` from :data:`PATH_STEPS` (or :data:`WEAK_STEPS`) under the kit's
:class:`~sdeflow.testing.reference.LinearLogSNRProcess` (log-SNR linear in time, so that no time
grid meets a singularity of the schedule) from ``t_max`` to ``t_min``, with ``denoise=False`` when
it has that option, and its error ``e(N)`` after ``N`` steps is measured three ways:

* deterministic samplers (``stochastic = False``): pathwise, the RMS over :data:`PATHS` starts
  ``x_T`` (the same ones at every ``N``) of ``|x_N - Phi(x_T)|``, ``Phi`` the exact flow map;
* stochastic samplers that can run on one Brownian path at every step count (an option
  ``brownian`` accepting ``"interval"``, as the ``sde`` sampler has): strong, the RMS of
  ``|x_N - x_ref|`` on the same path and the same starts, ``x_ref`` the sampler itself at
  :data:`STRONG_REFERENCE_FACTOR` times the largest ``N``;
* other stochastic samplers: weak, the largest deviation of the sample mean and covariance of
  :data:`WEAK_SAMPLES` samples, whitened by the exact ``p_{t_min} = N(m, C)`` (``C^{-1/2}(x - m)``,
  exactly ``N(0, I)``: a relative error in every direction), from 0 and ``I`` (the same starts
  and seed at every ``N``).

The fitting rule: the empirical order is minus the least-squares slope of ``log e(N)`` against
``log N`` over the :data:`FIT_POINTS` largest step counts whose error is resolved (pathwise and
strong: above :data:`ROUND_OFF`; weak: above :data:`~sdeflow.testing.common.K_SE` standard errors
of its own Monte-Carlo estimate). On each target it must be at least the declared order ``p``
less :func:`allowed_slack` (``max(0.3, 0.15 p)``; weak ``max(0.5, 0.25 p)``), so a scheme one order
lower than declared fails. A higher empirical order passes: weak order is at least strong order,
and a sampler may converge faster on a Gaussian than in general.

Why the kit's process: its log-SNR runs linearly from 12 to -12, so the ends lie where the data
prediction no longer changes (as on VP, VE, VDM) and the lower-order warm-up steps of multistep
methods and their lower-order final steps cost nothing there, while the middle, where the
prediction changes, is resolved uniformly by every grid. The measured order is the order of the
method's steps. (Under a process whose ends lie where the prediction still changes, a multistep
method of order 3 with a first-order first step converges at order 2 as ``N -> infinity``: the
lowest-order step dominates; pass such a process explicitly to see it.)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..core.sampler import Sampler
from ..data import GaussianMixture
from ..errors import OptionError
from .common import F64, K_SE, CheckNotApplicable, as_float64, coeffs
from .reference import LinearLogSNRProcess, RecordingScoreModel
from .sampling import SamplerFactory, build, gen, label, no_denoise, order_targets, sample_from

#: step counts of the pathwise order fit (deterministic samplers)
PATH_STEPS: tuple[int, ...] = (16, 32, 64, 128, 256)
#: step counts of the strong and of the weak order fits (stochastic samplers)
STRONG_STEPS: tuple[int, ...] = (8, 16, 32, 64)
WEAK_STEPS: tuple[int, ...] = (8, 16, 32, 64)
#: the strong reference runs this many times the largest step count, on the same Brownian path
STRONG_REFERENCE_FACTOR = 8
#: starts ``x_T`` of the pathwise and strong errors
PATHS = 64
#: samples of the weak error
WEAK_SAMPLES = 20_000
#: the empirical order may lie ``max(PATH_SLACK, PATH_SLACK_REL * order)`` below the declared one
#: (pathwise and strong errors)
PATH_SLACK, PATH_SLACK_REL = 0.3, 0.15
#: the same for the weak error, which also carries Monte-Carlo noise
WEAK_SLACK, WEAK_SLACK_REL = 0.5, 0.25
#: the fit uses the errors at this many of the largest step counts that resolve it
FIT_POINTS = 3
#: pathwise errors at or below this are round-off, not discretisation (float64, data of unit scale)
ROUND_OFF = 1e-12


def gaussian_flow_map(process: ForwardProcess, mean: Tensor, cov: Tensor, x: Tensor, t_from: float,
                      t_to: float) -> Tensor:
    """The exact probability-flow map of ``N(mean, cov)`` data from ``t_from`` to ``t_to``.

    With ``x_t = alpha_t x_0 + sigma_t eps`` the marginal is ``N(alpha_t m, C_t)``,
    ``C_t = alpha_t^2 S + sigma_t^2 I``, and the probability-flow velocity ``f - 1/2 g^2 score``
    (Song et al. 2021, Eq. 13) is affine. In the eigenbasis ``S = U diag(l) U^T`` every ``C_t``
    is diagonal and ``z = C_t^{-1/2} (x - alpha_t m)`` is constant along the flow (with
    ``f = (alpha'/alpha) x`` and ``g^2 = (sigma^2)' - 2 (alpha'/alpha) sigma^2``, both sides of
    ``d log|x - alpha m| / dt = d log sqrt(v_t) / dt`` equal ``(alpha^2 l)' + (sigma^2)'`` over
    ``2 v_t``, ``v_t = alpha_t^2 l + sigma_t^2``), so

        x_{t_to} = alpha_to m + U diag(sqrt(v_to / v_from)) U^T (x - alpha_from m).

    Args:
        process: a float64 process with Gaussian marginals.
        mean: ``m``, shape ``(d,)``.
        cov: ``S``, shape ``(d, d)``.
        x: states at ``t_from``, shape ``(n, d)``.
        t_from: start time.
        t_to: end time.

    Returns:
        The states at ``t_to``, shape ``(n, d)``.
    """
    lam, u = torch.linalg.eigh(cov)
    a1, s1 = coeffs(process, t_from)
    a0, s0 = coeffs(process, t_to)
    ratio = torch.sqrt((a0 * a0 * lam + s0 * s0) / (a1 * a1 * lam + s1 * s1))
    return a0 * mean + ((x - a1 * mean) @ u) * ratio @ u.T


def allowed_slack(order: float, weak: bool = False) -> float:
    """How far below ``order`` the empirical order may lie: ``max(0.3, 0.15 order)`` for pathwise and
    strong errors, ``max(0.5, 0.25 order)`` for weak ones. A sampler of order ``p - 1`` that declares
    ``p`` fails for every ``p`` up to 6 (weak: up to 4)."""
    if weak:
        return max(WEAK_SLACK, WEAK_SLACK_REL * order)
    return max(PATH_SLACK, PATH_SLACK_REL * order)


def fit_order(steps: Sequence[int], errors: Sequence[float]) -> float:
    """Minus the least-squares slope of ``log e`` against ``log N``: the empirical order."""
    xs = [math.log(n) for n in steps]
    ys = [math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return -sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _takes_shared_path(sampler: Sampler) -> bool:
    return "brownian" in sampler.options()


def _build_at(factory: SamplerFactory, what: str, steps: int, **options: Any) -> Sampler:
    try:
        return build(factory, steps=steps, **options)
    except (OptionError, TypeError) as err:
        raise CheckNotApplicable(f"{what}: the order check varies the option steps, but steps={steps} was refused: "
                                 f"{err}") from err


def _x_T(target: GaussianMixture, p: ForwardProcess, n: int, seed: int) -> Tensor:
    return target.score_model(p).prior_sample((n, target.dim), gen(seed))


def _pathwise_errors(factory: SamplerFactory, what: str, target: GaussianMixture, p: ForwardProcess,
                     opts: dict[str, Any]) -> tuple[list[int], list[float]]:
    x_T = _x_T(target, p, PATHS, 40)
    exact = gaussian_flow_map(p, target.means[0], target.covs[0], x_T, float(p.t_max), float(p.t_min))
    errors = []
    for n in PATH_STEPS:
        sampler = _build_at(factory, what, n, **opts)
        x = sample_from(sampler, RecordingScoreModel(target, p), (PATHS, target.dim), gen(41), x_T).samples
        errors.append(float(((x - exact) ** 2).sum(1).mean().sqrt()))
    return list(PATH_STEPS), errors


def _strong_errors(factory: SamplerFactory, what: str, target: GaussianMixture, p: ForwardProcess,
                   opts: dict[str, Any]) -> tuple[list[int], list[float]]:
    x_T = _x_T(target, p, PATHS, 40)
    runs = {}
    for n in (*STRONG_STEPS, STRONG_REFERENCE_FACTOR * STRONG_STEPS[-1]):
        sampler = _build_at(factory, what, n, brownian="interval", **opts)
        runs[n] = sample_from(sampler, RecordingScoreModel(target, p), (PATHS, target.dim), gen(42), x_T).samples
    ref = runs[STRONG_REFERENCE_FACTOR * STRONG_STEPS[-1]]
    return list(STRONG_STEPS), [float(((runs[n] - ref) ** 2).sum(1).mean().sqrt()) for n in STRONG_STEPS]


def _weak_errors(factory: SamplerFactory, what: str, target: GaussianMixture, p: ForwardProcess,
                 opts: dict[str, Any]) -> tuple[list[int], list[float], list[float]]:
    n = WEAK_SAMPLES
    x_T = _x_T(target, p, n, 43)
    a, s = coeffs(p, float(p.t_min))
    mean, cov = a * target.mean(), a * a * target.covariance() + s * s * torch.eye(target.dim, dtype=F64)
    whiten = torch.linalg.inv(torch.linalg.cholesky(cov)).T  # y = (x - mean) @ whiten ~ N(0, I) exactly
    eye = torch.eye(target.dim, dtype=F64)
    errors, floors = [], []
    for steps in WEAK_STEPS:
        sampler = _build_at(factory, what, steps, **opts)
        x = sample_from(sampler, RecordingScoreModel(target, p), (n, target.dim), gen(44), x_T).samples
        y = (x - mean) @ whiten
        m = y.mean(0)
        d = y - m
        prods = d[:, :, None] * d[:, None, :]
        dev = torch.cat([m.abs(), (prods.sum(0) / (n - 1) - eye).abs().flatten()])
        se = torch.cat([y.std(0), prods.std(0).flatten()]) / math.sqrt(n)
        errors.append(float(dev.max()))
        floors.append(K_SE * float(se.max()))
    return list(WEAK_STEPS), errors, floors


def _table(steps: Sequence[int], errors: Sequence[float]) -> str:
    return ", ".join(f"{n}: {e:.3g}" for n, e in zip(steps, errors))


def check_sampler_order(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """The declared ``order`` is the empirical order of convergence in the number of steps (see
    the module docstring for the errors, the fitting rule and the tolerance).

    Args:
        factory: builds the sampler; it must take a ``steps`` option.
        process: a process with Gaussian marginals to measure under, from ``t_max`` to its
            ``t_min`` (default: :class:`~sdeflow.testing.reference.LinearLogSNRProcess`).

    Raises:
        CheckNotApplicable: the sampler declares no order, has no ``steps`` option, or its errors
            are below resolution at every step count (e.g. exact on Gaussians).
    """
    base = build(factory)
    what = label(base)
    caps = base.capabilities()
    declared = caps["order"]
    if declared is None:
        raise CheckNotApplicable(f"{what} declares no order (order=None)")
    if "steps" not in base.options():
        raise CheckNotApplicable(f"{what} has no steps option: the order check varies the number of steps "
                                 "(an adaptive sampler's order is not measured)")
    p = as_float64(process) if process is not None else LinearLogSNRProcess().to(F64)
    opts: dict[str, Any] = {"t_end": float(p.t_min), **no_denoise(base)}
    if not caps["stochastic"]:
        kind, slack = "pathwise error against the exact probability-flow map", allowed_slack(declared)
    elif _takes_shared_path(base):
        kind, slack = (f"strong error on one Brownian path (brownian='interval') against "
                       f"{STRONG_REFERENCE_FACTOR * STRONG_STEPS[-1]} steps"), allowed_slack(declared)
    else:
        kind = "weak error of the whitened sample mean and covariance against the exact law"
        slack = allowed_slack(declared, weak=True)
    for name, target in order_targets().items():
        if not caps["stochastic"]:
            steps, errors = _pathwise_errors(factory, what, target, p, opts)
            floors = [ROUND_OFF] * len(steps)
        elif _takes_shared_path(base):
            steps, errors = _strong_errors(factory, what, target, p, opts)
            floors = [ROUND_OFF] * len(steps)
        else:
            steps, errors, floors = _weak_errors(factory, what, target, p, opts)
        bad = [n for n, e in zip(steps, errors) if not math.isfinite(e)]
        assert not bad, f"{what}: non-finite samples at steps={bad} on the {name}"
        kept = [(n, e) for n, e, f in zip(steps, errors, floors) if e > f][-FIT_POINTS:]
        where = f"on the {name} under {type(p).__name__}"
        if len(kept) < FIT_POINTS:
            hint = ("; a stochastic sampler taking the option brownian='interval' (one Brownian path at every step "
                    "count) gets its strong order measured instead") if caps["stochastic"] and not \
                _takes_shared_path(base) else ""
            raise CheckNotApplicable(f"{what}: the {kind} {where} is resolved at fewer than {FIT_POINTS} step counts "
                                     f"(errors {_table(steps, errors)}; floors {_table(steps, floors)}): the order "
                                     f"cannot be measured{hint}")
        measured = fit_order(*zip(*kept))
        assert measured >= declared - slack, (
            f"{what} declares order={declared:g} but converges at order {measured:.2f} {where} ({kind}, "
            f"steps: error {_table(*zip(*kept))}); the fitted order must be at least {declared - slack:g} "
            f"(declared order - {slack:g})")


__all__ = [
    "FIT_POINTS", "PATHS", "PATH_SLACK", "PATH_SLACK_REL", "PATH_STEPS", "ROUND_OFF", "STRONG_REFERENCE_FACTOR",
    "STRONG_STEPS", "WEAK_SAMPLES", "WEAK_SLACK", "WEAK_SLACK_REL", "WEAK_STEPS", "allowed_slack",
    "check_sampler_order", "fit_order", "gaussian_flow_map",
]
