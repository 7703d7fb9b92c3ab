"""Conformance checks for a :class:`sdeflow.Sampler`.

Each check takes a *factory*: anything that builds the sampler from keyword options, e.g. the
sampler class, or ``functools.partial(sdeflow.create_sampler, "my-sampler", steps=50)``. Checks
that need other options (``t_end``, ``denoise=False``) pass them on top of the factory's.

The checks run on the exact score of a Gaussian target (:class:`~sdeflow.testing.reference.RecordingScoreModel`,
which also counts network evaluations and records the times it is evaluated at) under
:class:`~sdeflow.testing.reference.ReferenceOUProcess` unless a process is given, so they depend
on no plugin. What a sampler must satisfy (the contract in ``docs/samplers.md``):

* ``sample(score_model, shape, generator)`` returns a :class:`sdeflow.SampleResult` with
  ``samples`` of ``shape`` in the model's dtype and ``nfe`` a Python ``int`` equal to the number
  of network evaluations; callbacks see ``(step, t, x)`` from step 0 at ``t_max``; a requested
  trajectory has one state per recorded step (:func:`check_sampler_contract`);
* the same generator seed gives the same samples, another seed other samples (:func:`check_sampler_reproducible`);
* float64 models give float64 samples and float32 models float32 ones (:func:`check_sampler_dtypes`);
* ``t_end`` is where it stops: no evaluation below it and the law of ``p_{t_end}`` (:func:`check_sampler_t_end`);
* it refuses a process it cannot run, by its declared capabilities (:func:`check_sampler_refuses_incompatible`,
  :func:`check_sampler_finite_start`), and runs on the ones it declares it can
  (:func:`check_sampler_without_gaussian_marginals`, :func:`check_sampler_finite_start`);
* its ``stochastic``, ``order`` and ``host_syncs`` are what it does (:func:`check_sampler_stochastic`,
  :func:`~sdeflow.testing.check_sampler_order`, :func:`~sdeflow.testing.check_sampler_host_syncs`);
* with the exact score it recovers a Gaussian target (:func:`check_sampler_recovers_gaussian`);
* ``options()`` and ``capabilities()`` describe it (:func:`check_sampler_interface`).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..core.sampler import Sampler, SampleResult
from ..data import GaussianMixture
from ..errors import IncompatibleError, ShapeError
from .common import F64, K_SE, CheckNotApplicable, assert_moments, coeffs, frac_time
from .orders import check_sampler_order
from .processes import _expect_raises
from .reference import (
    GaussianPosteriorMeanModel,
    NoiseEndProcess,
    NonGaussianProcess,
    RecordingScoreModel,
    StationaryScoreModel,
)
from .sampling import (
    SamplerFactory,
    build,
    gaussian_target,
    gen,
    label,
    no_denoise,
    process_or_reference,
    sample_from,
    takes_x_T,
)
from .syncs import check_sampler_host_syncs


def check_sampler_interface(factory: SamplerFactory) -> None:
    """``options()`` lists every constructor option with its default, on the class and the
    instance alike, and includes ``t_end``; ``capabilities()`` has exactly the keys
    ``stochastic`` (bool), ``order`` (float or None), ``requires_gaussian_marginals`` (bool) and
    ``host_syncs`` (bool); ``repr`` names the class.

    Args:
        factory: builds the sampler.
    """
    sampler = build(factory)
    cls, what = type(sampler), label(sampler)
    opts = sampler.options()
    assert opts == cls.options(), f"{what}: options() differs between the instance and the class"
    params = [p.name for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert list(opts) == params, f"{what}: options() {list(opts)} must list the constructor's options {params}"
    assert "t_end" in opts, (f"{what}: a sampler takes a t_end option (the time where the reverse run stops; "
                             f"default the process's t_min); options: {list(opts)}")
    caps = sampler.capabilities()
    keys = {"stochastic", "order", "requires_gaussian_marginals", "host_syncs"}
    assert set(caps) == keys, f"{what}: capabilities() keys {set(caps)}, expected {keys}"
    for key in ("stochastic", "requires_gaussian_marginals", "host_syncs"):
        assert isinstance(caps[key], bool), f"{what}: capabilities()[{key!r}] must be a bool, got {caps[key]!r}"
    assert caps["order"] is None or isinstance(caps["order"], float), f"{what}: 'order' must be a float or None"
    assert repr(sampler).startswith(cls.__name__), f"{what}: repr {repr(sampler)!r} must start with {cls.__name__}"


def check_sampler_contract(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """The result contract, on vectors ``(64, 2)`` and images ``(16, 1, 2, 2)``.

    ``samples`` has the requested shape and the model's dtype and is finite; ``nfe`` is a
    Python ``int`` (not a tensor or bool) equal to the number of network evaluations, counted
    by the model itself; ``steps`` is ``None`` or a positive int; the callback is called with
    ``(step: int, t, x)``, step 0 first at ``t_max``, steps non-decreasing and ``x`` of the
    sample shape; ``return_trajectory=True`` gives ``trajectory`` of shape ``(k, *shape)`` and
    ``times`` of shape ``(k,)`` starting at ``t_max``; a bad shape raises
    :class:`~sdeflow.errors.ShapeError` and a non-``ScoreModel`` :class:`~sdeflow.errors.IncompatibleError`;
    ``sample(..., x_T=x_T)`` starts from ``x_T`` (the state at step 0), leaves it unmodified and
    refuses one of another shape.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
    """
    p = process_or_reference(process)
    for shape, dim in (((64, 2), 2), ((16, 1, 2, 2), 4)):
        sampler = build(factory)
        what = f"{label(sampler)} on {type(p).__name__}, shape {shape}"
        sm = RecordingScoreModel(gaussian_target(dim), p)
        seen: list[tuple[Any, float, tuple[int, ...]]] = []

        def callback(step: Any, t: Any, x: Tensor) -> None:
            seen.append((step, float(t), tuple(x.shape)))

        res = sampler.sample(sm, shape, gen(0), callback=callback, return_trajectory=True)
        assert isinstance(res, SampleResult), f"{what}: sample() returned {type(res).__name__}, not a SampleResult"
        assert tuple(res.samples.shape) == shape, f"{what}: samples have shape {tuple(res.samples.shape)}"
        assert res.samples.dtype == F64, f"{what}: samples have dtype {res.samples.dtype}, the model's is float64"
        assert torch.isfinite(res.samples).all(), f"{what}: samples contain NaN/Inf"
        assert type(res.nfe) is int, f"{what}: nfe must be a Python int, got {type(res.nfe).__name__}"
        assert res.nfe == sm.calls > 0, f"{what}: nfe={res.nfe} but the model was evaluated {sm.calls} times"
        assert res.steps is None or (type(res.steps) is int and res.steps > 0), f"{what}: steps={res.steps!r}"
        assert seen, f"{what}: the callback was never called"
        steps = [s for s, _, _ in seen]
        assert all(type(s) is int for s in steps), f"{what}: callback steps must be ints, got {steps[:5]}"
        assert steps[0] == 0 and steps == sorted(steps), (
            f"{what}: callback steps {steps[:8]}... must start at 0, in order")
        assert math.isclose(seen[0][1], float(p.t_max), rel_tol=1e-6), f"{what}: first callback at t={seen[0][1]}"
        assert all(s == shape for _, _, s in seen), f"{what}: callback states must have the sample shape"
        assert res.trajectory is not None and res.times is not None, (
            f"{what}: return_trajectory=True gave no trajectory")
        k = res.trajectory.shape[0]
        assert tuple(res.trajectory.shape[1:]) == shape, f"{what}: trajectory shape {tuple(res.trajectory.shape)}"
        assert tuple(res.times.shape) == (k,), f"{what}: times shape {tuple(res.times.shape)}, expected ({k},)"
        t0 = float(res.times[0])
        assert math.isclose(t0, float(p.t_max), rel_tol=1e-6), f"{what}: times[0]={t0}, expected t_max"
    sampler = build(factory)
    sm = RecordingScoreModel(gaussian_target(2), p)
    _expect_raises(ShapeError, lambda: sampler.sample(sm, (0, 2), gen(0)), f"{label(sampler)} with shape (0, 2)")
    _expect_raises(IncompatibleError, lambda: sampler.sample(object(), (4, 2), gen(0)),  # type: ignore[arg-type]
                   f"{label(sampler)} given an object that is not a ScoreModel")
    _check_starts_from_x_T(sampler, sm)


def _check_starts_from_x_T(sampler: Sampler, sm: RecordingScoreModel) -> None:
    """``sample(..., x_T=x_T)`` starts from ``x_T``: the state reported at step 0 is ``x_T``, which
    is left unmodified; an ``x_T`` of another shape raises :class:`~sdeflow.errors.ShapeError`."""
    what = label(sampler)
    assert takes_x_T(sampler), (f"{what} cannot start from a given x_T: its _sample() takes no x_T argument "
                                "(accept x_T=None and start from it when given)")
    x_T = sm.prior_sample((16, 2), gen(2))
    keep = x_T.clone()
    first: list[Tensor] = []

    def callback(step: Any, t: Any, x: Tensor) -> None:
        if not first:
            first.append(x.clone())

    sampler.sample(sm, (16, 2), gen(3), x_T=x_T, callback=callback)
    assert first and torch.equal(first[0], keep), (
        f"{what}: sample(..., x_T=x_T) must start from x_T, but the state at step 0 differs from it "
        f"(max difference {float((first[0] - keep).abs().max()) if first else float('nan'):.3g})")
    assert torch.equal(x_T, keep), f"{what}: sample(..., x_T=x_T) modified x_T in place"
    _expect_raises(ShapeError, lambda: sampler.sample(sm, (16, 2), gen(3), x_T=x_T[:8]),
                   f"{what} given x_T of shape (8, 2) for samples of shape (16, 2)")


def check_sampler_reproducible(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """All randomness comes from the ``generator`` argument: the same seed gives identical
    samples (also after another run in between), a different seed different ones.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
    """
    p = process_or_reference(process)
    sampler = build(factory)
    what = label(sampler)
    sm = RecordingScoreModel(gaussian_target(), p)
    a = sampler.sample(sm, (32, 2), gen(5)).samples
    other = sampler.sample(sm, (32, 2), gen(6)).samples
    b = sampler.sample(sm, (32, 2), gen(5)).samples
    assert torch.equal(a, b), (f"{what}: two runs with generator seed 5 gave different samples "
                               f"(max diff {float((a - b).abs().max()):.3g})")
    assert not torch.equal(a, other), f"{what}: generator seeds 5 and 6 gave identical samples"


def check_sampler_dtypes(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """A float64 model gives float64 samples and a float32 model float32 samples, both finite,
    and the two agree in distribution: their means are within 4 standard errors (1000 samples).

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
    """
    p64 = process_or_reference(process)
    p32 = copy.deepcopy(p64).to(torch.float32)
    sampler = build(factory)
    what = label(sampler)
    n = 1000
    out = {}
    for dtype, p in ((F64, p64), (torch.float32, p32)):
        sm = RecordingScoreModel(gaussian_target(), p, dtype=dtype)
        x = sampler.sample(sm, (n, 2), gen(7)).samples
        assert x.dtype == dtype, f"{what}: a {dtype} model gave {x.dtype} samples"
        assert torch.isfinite(x).all(), f"{what}: {dtype} samples contain NaN/Inf"
        out[dtype] = x.to(F64)
    diff = (out[F64].mean(0) - out[torch.float32].mean(0)).abs()
    se = torch.sqrt((out[F64].var(0) + out[torch.float32].var(0)) / n)
    assert torch.all(diff <= 4 * se), (f"{what}: float32 and float64 sample means differ by {diff.tolist()} "
                                       f"(4 SE: {(4 * se).tolist()})")


def _expected_law(target: GaussianMixture, p: ForwardProcess, t: float) -> tuple[Tensor, Tensor]:
    a, s = coeffs(p, t)
    return a * target.mean(), a * a * target.covariance() + s * s * torch.eye(target.dim, dtype=F64)


def check_sampler_t_end(factory: SamplerFactory, process: ForwardProcess | None = None, n: int = 4000,
                        tol: float = 0.05, frac: float = 0.3) -> None:
    """``t_end`` is respected: built with ``t_end`` a fraction ``frac`` of the way from ``t_min``
    to ``t_max`` (and ``denoise=False`` when it has that option), the sampler never evaluates the
    model below ``t_end``, its last callback and trajectory time is ``t_end``, and its samples
    have the law of ``p_{t_end} = N(alpha m, alpha^2 C + sigma^2 I)`` (moments within
    :data:`~sdeflow.testing.common.K_SE` standard errors plus ``tol``).

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
        n: number of samples.
        tol: absolute slack on every mean and covariance entry for the sampler's own bias.
        frac: where ``t_end`` lies between ``t_min`` (0) and ``t_max`` (1).
    """
    p = process_or_reference(process)
    t_end = frac_time(p, frac)
    base = build(factory)
    sampler = build(factory, t_end=t_end, **no_denoise(base))
    what = f"{label(sampler)} with t_end={t_end:.4g}"
    target = gaussian_target()
    sm = RecordingScoreModel(target, p)
    times: list[float] = []
    res = sampler.sample(sm, (n, 2), gen(11), callback=lambda step, t, x: times.append(float(t)))
    slack = 1e-6 * (float(p.t_max) - float(p.t_min))
    assert sm.t_lo >= t_end - slack, f"{what}: the model was evaluated at t={sm.t_lo:.6g} < t_end"
    assert math.isclose(times[-1], t_end, rel_tol=1e-6, abs_tol=slack), (
        f"{what}: the last callback was at t={times[-1]:.6g}")
    assert min(times) >= t_end - slack, f"{what}: a callback reported t={min(times):.6g} < t_end"
    mean, cov = _expected_law(target, p, t_end)
    assert_moments(res.samples, mean, cov, f"{what}: samples vs p_(t_end)", mean_slack=tol, cov_slack=tol)


def check_sampler_recovers_gaussian(factory: SamplerFactory, process: ForwardProcess | None = None, n: int = 4000,
                            tol: float = 0.05, seed: int = 3) -> None:
    """With the exact score of ``N(m, C)`` (2-D, correlated) and the exact ``p_{t_max}`` as its
    start, the sampler's output at ``t_min`` has the law of ``p_{t_min}`` (built with
    ``denoise=False`` when it has that option): mean and covariance within
    :data:`~sdeflow.testing.common.K_SE` standard errors of the ``n`` samples plus ``tol``.

    ``tol`` is the sampler's allowed bias at the options the factory gives (a first-order
    sampler with 100 steps has a bias of a few hundredths here).

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
        n: number of samples.
        tol: absolute slack on every mean and covariance entry.
        seed: generator seed.
    """
    p = process_or_reference(process)
    base = build(factory)
    sampler = build(factory, **no_denoise(base))
    what = f"{label(sampler)} on {type(p).__name__}"
    target = gaussian_target()
    res = sampler.sample(RecordingScoreModel(target, p), (n, 2), gen(seed))
    mean, cov = _expected_law(target, p, float(p.t_min))
    assert_moments(res.samples, mean, cov, f"{what}: samples vs p_(t_min) of N(m, C)", mean_slack=tol, cov_slack=tol)


def check_sampler_stochastic(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """The ``stochastic`` capability is what the sampler does: two runs from the same start ``x_T``
    with generator seeds 5 and 6 give identical samples when it declares ``stochastic = False``
    (all its randomness is the prior draw) and different samples when it declares ``True``.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
    """
    p = process_or_reference(process)
    sampler = build(factory)
    what = label(sampler)
    target = gaussian_target()
    x_T = target.score_model(p).prior_sample((32, 2), gen(4))
    a, b = (sample_from(sampler, RecordingScoreModel(target, p), (32, 2), gen(seed), x_T).samples for seed in (5, 6))
    if sampler.capabilities()["stochastic"]:
        assert not torch.equal(a, b), (
            f"{what} declares stochastic=True but two runs from the same x_T with generator seeds 5 and 6 gave "
            "identical samples: it draws no noise from the generator (declare stochastic = False)")
    else:
        assert torch.equal(a, b), (
            f"{what} declares stochastic=False but two runs from the same x_T with generator seeds 5 and 6 differ "
            f"(max difference {float((a - b).abs().max()):.3g}): it draws noise from the generator during the run "
            "(declare stochastic = True)")


def check_sampler_refuses_incompatible(factory: SamplerFactory) -> None:
    """Capabilities are enforced: a sampler declaring ``requires_gaussian_marginals`` raises
    :class:`~sdeflow.errors.IncompatibleError` for a process with ``gaussian_marginals = False``
    (:class:`~sdeflow.testing.reference.NonGaussianProcess`) before evaluating anything; one that
    does not declare it accepts such a process (``check_compatible`` passes; that it also runs
    there is :func:`check_sampler_without_gaussian_marginals`).

    Args:
        factory: builds the sampler.
    """
    sampler = build(factory)
    what = label(sampler)
    sm = StationaryScoreModel(NonGaussianProcess())
    if sampler.capabilities()["requires_gaussian_marginals"]:
        _expect_raises(IncompatibleError, lambda: sampler.sample(sm, (8, 2), gen(0)),
                       f"{what} (requires_gaussian_marginals) on a process without Gaussian marginals",
                       match="gaussian")
        assert sm.calls == 0, f"{what}: it evaluated the model {sm.calls} times before refusing the process"
    else:
        try:
            sampler.check_compatible(sm)
        except IncompatibleError as err:
            raise AssertionError(f"{what} declares requires_gaussian_marginals=False but refuses a process "
                                 f"without Gaussian marginals: {err}") from err


def check_sampler_without_gaussian_marginals(factory: SamplerFactory, n: int = 4000, tol: float = 0.05) -> None:
    """A sampler declaring ``requires_gaussian_marginals = False`` runs under a process without
    Gaussian marginals, using only drift, diffusion and score: under
    :class:`~sdeflow.testing.reference.NonGaussianProcess` (a Langevin diffusion started in its
    stationary law ``q``, a product of two-component mixtures, whose ``marginal`` and log-SNR raise)
    with its exact score, it never asks for ``alpha_t``, ``sigma_t`` or the log-SNR, counts its
    evaluations, and keeps ``q``: a deterministic sampler returns its start (the probability-flow
    velocity ``f - 1/2 g^2 grad log q`` is zero; ``1e-6``), a stochastic one gives samples of ``q``
    (per coordinate mean 0, variance ``v + mu^2`` and fourth moment, within
    :data:`~sdeflow.testing.common.K_SE` standard errors plus ``tol``).

    Args:
        factory: builds the sampler.
        n: number of samples.
        tol: absolute slack on the moments (the sampler's own discretisation bias).

    Raises:
        CheckNotApplicable: the sampler declares ``requires_gaussian_marginals = True``.
    """
    sampler = build(factory)
    what = label(sampler)
    if sampler.capabilities()["requires_gaussian_marginals"]:
        raise CheckNotApplicable(f"{what} declares requires_gaussian_marginals=True")
    p = NonGaussianProcess().to(F64)
    sm = StationaryScoreModel(p)
    x_T = p.prior_sample((n, 2), gen(8), dtype=F64)
    try:
        res = sample_from(sampler, sm, (n, 2), gen(9), x_T)
    except Exception as err:  # noqa: BLE001 - the claim is that it runs
        if p.gaussian_calls:
            raise AssertionError(f"{what} declares requires_gaussian_marginals=False but used "
                                 f"{p.gaussian_calls[0]} of a process without Gaussian marginals: {err}") from err
        raise AssertionError(f"{what} declares requires_gaussian_marginals=False but fails on a process without "
                             f"Gaussian marginals: {type(err).__name__}: {err}") from err
    assert not p.gaussian_calls, (f"{what} declares requires_gaussian_marginals=False but used "
                                  f"{p.gaussian_calls[0]} of a process without Gaussian marginals")
    x = res.samples
    assert x.shape == (n, 2) and torch.isfinite(x).all(), f"{what}: samples of shape {tuple(x.shape)}, finite required"
    assert res.nfe == sm.calls > 0, f"{what}: nfe={res.nfe} but the model was evaluated {sm.calls} times"
    where = f"{what} on {type(p).__name__} (its start is its stationary law q)"
    if not sampler.capabilities()["stochastic"]:
        dev = float((x - x_T).abs().max())
        assert dev <= 1e-6, (f"{where}: the probability-flow velocity is zero, so a deterministic sampler returns its "
                             f"start x_T; it moved it by up to {dev:.3g}")
        return
    var, fourth = p.stationary_moments()
    assert_moments(x, torch.zeros(2, dtype=F64), var * torch.eye(2, dtype=F64), f"{where}: samples vs q",
                   mean_slack=tol, cov_slack=tol)
    m4 = (x**4).mean(0)
    tol4 = 4 * tol * var + K_SE * (x**4).std(0) / math.sqrt(n)
    assert torch.all((m4 - fourth).abs() <= tol4), (
        f"{where}: fourth moment {m4.tolist()} differs from q's {fourth:g} by more than {tol4.tolist()}")


def check_sampler_finite_start(factory: SamplerFactory, n: int = 4000, tol: float = 0.05) -> None:
    """``requires_finite_start`` is what the sampler needs: under
    :class:`~sdeflow.testing.reference.NoiseEndProcess` (``x_t = (1 - t) x_0 + t eps``, pure noise at
    ``t_max = 1``, where drift, ``g^2`` and the log-SNR are infinite), a sampler declaring
    ``requires_finite_start = True`` raises :class:`~sdeflow.errors.IncompatibleError` before
    evaluating the model; one declaring ``False`` starts there (with the exact data prediction
    ``E[x_0 | x_t]`` of a Gaussian, :class:`~sdeflow.testing.reference.GaussianPosteriorMeanModel`, and
    ``denoise=False`` when it has the option) and its samples have the law of ``p_{t_min}`` (moments
    within :data:`~sdeflow.testing.common.K_SE` standard errors plus ``tol``).

    Args:
        factory: builds the sampler.
        n: number of samples.
        tol: absolute slack on every mean and covariance entry.
    """
    base = build(factory)
    what = label(base)
    p = NoiseEndProcess().to(F64)
    target = gaussian_target()
    if getattr(base, "requires_finite_start", True):
        sm = GaussianPosteriorMeanModel(target, p)
        _expect_raises(IncompatibleError, lambda: base.sample(sm, (8, 2), gen(0)),
                       f"{what} (requires_finite_start) on a process with alpha = 0 at t_max")
        assert sm.calls == 0, f"{what}: it evaluated the model {sm.calls} times before refusing the process"
        return
    sampler = build(factory, **no_denoise(base))
    sm = GaussianPosteriorMeanModel(target, p)
    where = f"{what} declares requires_finite_start=False but on {type(p).__name__} (alpha = 0 at t_max)"
    try:
        res = sampler.sample(sm, (n, 2), gen(10))
    except Exception as err:  # noqa: BLE001 - the claim is that it runs
        raise AssertionError(f"{where} it fails: {type(err).__name__}: {err}") from err
    assert torch.isfinite(res.samples).all(), f"{where} its samples contain NaN/Inf"
    mean, cov = _expected_law(target, p, float(p.t_min))
    assert_moments(res.samples, mean, cov, f"{where}: samples vs p_(t_min)", mean_slack=tol, cov_slack=tol)


#: every sampler check by short name, in the order the pytest plugin runs them
SAMPLER_CHECKS: dict[str, Callable[..., None]] = {
    "interface": check_sampler_interface,
    "contract": check_sampler_contract,
    "reproducible": check_sampler_reproducible,
    "stochastic": check_sampler_stochastic,
    "dtypes": check_sampler_dtypes,
    "t_end": check_sampler_t_end,
    "refuses_incompatible": check_sampler_refuses_incompatible,
    "no_gaussian_marginals": check_sampler_without_gaussian_marginals,
    "finite_start": check_sampler_finite_start,
    "recovers_gaussian": check_sampler_recovers_gaussian,
    "order": check_sampler_order,
    "host_syncs": check_sampler_host_syncs,
}


#: the sampler checks that run under a given process (the others run on the kit's own processes:
#: the order check on :class:`~sdeflow.testing.reference.LinearLogSNRProcess`, the Gaussian-marginal
#: claims on :class:`~sdeflow.testing.reference.NonGaussianProcess`)
PROCESS_CHECKS_OF_SAMPLERS: tuple[str, ...] = ("contract", "reproducible", "stochastic", "dtypes", "t_end",
                                               "recovers_gaussian", "host_syncs")


def check_sampler(factory: SamplerFactory, process: ForwardProcess | None = None, tol: float = 0.05) -> None:
    """Run every check of :data:`SAMPLER_CHECKS` on the sampler ``factory`` builds (those that do
    not apply to it, e.g. the order check of a sampler declaring no order, are passed over).

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process); the order check
            runs on its own reference process, :func:`check_sampler_without_gaussian_marginals` and
            :func:`check_sampler_refuses_incompatible` on the kit's non-Gaussian one.
        tol: allowed bias for :func:`check_sampler_t_end`, :func:`check_sampler_recovers_gaussian`
            and :func:`check_sampler_without_gaussian_marginals`.
    """
    for name, check in SAMPLER_CHECKS.items():
        params = inspect.signature(check).parameters
        kwargs: dict[str, Any] = {}
        if name in PROCESS_CHECKS_OF_SAMPLERS:
            kwargs["process"] = process
        if "tol" in params:
            kwargs["tol"] = tol
        try:
            check(factory, **kwargs)
        except CheckNotApplicable:
            continue
