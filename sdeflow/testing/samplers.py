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
* it refuses a process it cannot run, by its declared capabilities (:func:`check_sampler_refuses_incompatible`);
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
from .common import F64, as_float64, assert_moments, coeffs, frac_time
from .processes import _expect_raises
from .reference import NonGaussianProcess, RecordingScoreModel, ReferenceOUProcess

#: builds a sampler from keyword options
SamplerFactory = Callable[..., Sampler]

#: mean and covariance of the 2-D Gaussian target (correlated, unequal variances)
TARGET_MEAN = (1.0, -0.5)
TARGET_COV = ((0.5, 0.2), (0.2, 0.3))


def gaussian_target(dim: int = 2) -> GaussianMixture:
    """The Gaussian target ``N(m, C)`` of the sampler checks (float64): for ``dim = 2`` the
    correlated :data:`TARGET_MEAN`, :data:`TARGET_COV`; otherwise ``N(0.5, 0.4 I)``."""
    if dim == 2:
        return GaussianMixture([1.0], [list(TARGET_MEAN)], [[list(r) for r in TARGET_COV]], dtype=F64)
    return GaussianMixture([1.0], [[0.5] * dim], 0.4, dtype=F64)


def _process(process: ForwardProcess | None) -> ForwardProcess:
    return as_float64(process) if process is not None else ReferenceOUProcess().to(F64)


def _build(factory: SamplerFactory, **options: Any) -> Sampler:
    sampler = factory(**options)
    assert isinstance(sampler, Sampler), f"the factory returned {type(sampler).__name__}, not a sdeflow.Sampler"
    return sampler


def _label(sampler: Sampler) -> str:
    return f"sampler {sampler.name or type(sampler).__name__!r}"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_sampler_interface(factory: SamplerFactory) -> None:
    """``options()`` lists every constructor option with its default, on the class and the
    instance alike, and includes ``t_end``; ``capabilities()`` has exactly the keys
    ``stochastic`` (bool), ``order`` (float or None) and ``requires_gaussian_marginals`` (bool);
    ``repr`` names the class.

    Args:
        factory: builds the sampler.
    """
    sampler = _build(factory)
    cls, what = type(sampler), _label(sampler)
    opts = sampler.options()
    assert opts == cls.options(), f"{what}: options() differs between the instance and the class"
    params = [p.name for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert list(opts) == params, f"{what}: options() {list(opts)} must list the constructor's options {params}"
    assert "t_end" in opts, (f"{what}: a sampler takes a t_end option (the time where the reverse run stops; "
                             f"default the process's t_min); options: {list(opts)}")
    caps = sampler.capabilities()
    keys = {"stochastic", "order", "requires_gaussian_marginals"}
    assert set(caps) == keys, f"{what}: capabilities() keys {set(caps)}, expected {keys}"
    assert isinstance(caps["stochastic"], bool), f"{what}: capabilities()['stochastic'] must be a bool"
    assert isinstance(caps["requires_gaussian_marginals"], bool), (
        f"{what}: capabilities()['requires_gaussian_marginals'] must be a bool")
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
    :class:`~sdeflow.errors.ShapeError` and a non-``ScoreModel`` :class:`~sdeflow.errors.IncompatibleError`.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
    """
    p = _process(process)
    for shape, dim in (((64, 2), 2), ((16, 1, 2, 2), 4)):
        sampler = _build(factory)
        what = f"{_label(sampler)} on {type(p).__name__}, shape {shape}"
        sm = RecordingScoreModel(gaussian_target(dim), p)
        seen: list[tuple[Any, float, tuple[int, ...]]] = []

        def callback(step: Any, t: Any, x: Tensor) -> None:
            seen.append((step, float(t), tuple(x.shape)))

        res = sampler.sample(sm, shape, _gen(0), callback=callback, return_trajectory=True)
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
    sampler = _build(factory)
    sm = RecordingScoreModel(gaussian_target(2), p)
    _expect_raises(ShapeError, lambda: sampler.sample(sm, (0, 2), _gen(0)), f"{_label(sampler)} with shape (0, 2)")
    _expect_raises(IncompatibleError, lambda: sampler.sample(object(), (4, 2), _gen(0)),  # type: ignore[arg-type]
                   f"{_label(sampler)} given an object that is not a ScoreModel")


def check_sampler_reproducible(factory: SamplerFactory, process: ForwardProcess | None = None) -> None:
    """All randomness comes from the ``generator`` argument: the same seed gives identical
    samples (also after another run in between), a different seed different ones.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
    """
    p = _process(process)
    sampler = _build(factory)
    what = _label(sampler)
    sm = RecordingScoreModel(gaussian_target(), p)
    a = sampler.sample(sm, (32, 2), _gen(5)).samples
    other = sampler.sample(sm, (32, 2), _gen(6)).samples
    b = sampler.sample(sm, (32, 2), _gen(5)).samples
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
    p64 = _process(process)
    p32 = copy.deepcopy(p64).to(torch.float32)
    sampler = _build(factory)
    what = _label(sampler)
    n = 1000
    out = {}
    for dtype, p in ((F64, p64), (torch.float32, p32)):
        sm = RecordingScoreModel(gaussian_target(), p, dtype=dtype)
        x = sampler.sample(sm, (n, 2), _gen(7)).samples
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


def _no_denoise(sampler: Sampler) -> dict[str, Any]:
    return {"denoise": False} if "denoise" in sampler.options() else {}


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
    p = _process(process)
    t_end = frac_time(p, frac)
    base = _build(factory)
    sampler = _build(factory, t_end=t_end, **_no_denoise(base))
    what = f"{_label(sampler)} with t_end={t_end:.4g}"
    target = gaussian_target()
    sm = RecordingScoreModel(target, p)
    times: list[float] = []
    res = sampler.sample(sm, (n, 2), _gen(11), callback=lambda step, t, x: times.append(float(t)))
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
    p = _process(process)
    base = _build(factory)
    sampler = _build(factory, **_no_denoise(base))
    what = f"{_label(sampler)} on {type(p).__name__}"
    target = gaussian_target()
    res = sampler.sample(RecordingScoreModel(target, p), (n, 2), _gen(seed))
    mean, cov = _expected_law(target, p, float(p.t_min))
    assert_moments(res.samples, mean, cov, f"{what}: samples vs p_(t_min) of N(m, C)", mean_slack=tol, cov_slack=tol)


def check_sampler_refuses_incompatible(factory: SamplerFactory) -> None:
    """Capabilities are enforced: a sampler declaring ``requires_gaussian_marginals`` raises
    :class:`~sdeflow.errors.IncompatibleError` for a process with ``gaussian_marginals = False``
    (:class:`~sdeflow.testing.reference.NonGaussianProcess`); one that does not declare it
    accepts such a process (``check_compatible`` passes).

    Args:
        factory: builds the sampler.
    """
    sampler = _build(factory)
    what = _label(sampler)
    sm = RecordingScoreModel(gaussian_target(), NonGaussianProcess().to(F64))
    if sampler.capabilities()["requires_gaussian_marginals"]:
        _expect_raises(IncompatibleError, lambda: sampler.sample(sm, (8, 2), _gen(0)),
                       f"{what} (requires_gaussian_marginals) on a process without Gaussian marginals",
                       match="gaussian")
        assert sm.calls == 0, f"{what}: it evaluated the model {sm.calls} times before refusing the process"
    else:
        try:
            sampler.check_compatible(sm)
        except IncompatibleError as err:
            raise AssertionError(f"{what} declares requires_gaussian_marginals=False but refuses a process "
                                 f"without Gaussian marginals: {err}") from err


#: every sampler check by short name, in the order the pytest plugin runs them
SAMPLER_CHECKS: dict[str, Callable[..., None]] = {
    "interface": check_sampler_interface,
    "contract": check_sampler_contract,
    "reproducible": check_sampler_reproducible,
    "dtypes": check_sampler_dtypes,
    "t_end": check_sampler_t_end,
    "refuses_incompatible": check_sampler_refuses_incompatible,
    "recovers_gaussian": check_sampler_recovers_gaussian,
}


def check_sampler(factory: SamplerFactory, process: ForwardProcess | None = None, tol: float = 0.05) -> None:
    """Run every check of :data:`SAMPLER_CHECKS` on the sampler ``factory`` builds.

    Args:
        factory: builds the sampler.
        process: the process to sample under (default: the reference OU process).
        tol: allowed bias for :func:`check_sampler_t_end` and :func:`check_sampler_recovers_gaussian`.
    """
    check_sampler_interface(factory)
    check_sampler_contract(factory, process)
    check_sampler_reproducible(factory, process)
    check_sampler_dtypes(factory, process)
    check_sampler_t_end(factory, process, tol=tol)
    check_sampler_refuses_incompatible(factory)
    check_sampler_recovers_gaussian(factory, process, tol=tol)
