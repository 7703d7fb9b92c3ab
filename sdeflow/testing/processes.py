"""Conformance checks for a :class:`sdeflow.ForwardProcess`.

Each check takes a process instance (it works on a float64 copy) and raises ``AssertionError``
with a message saying what differs, by how much and what was allowed. What a process with
Gaussian marginals must satisfy (Song et al. 2021, Eq. 5-7, 13 and Appendix B):

* its drift and diffusion generate its stated marginal ``x_t = alpha_t x_0 + sigma_t eps``:
  the deterministic moment equations (:func:`check_process_moment_equations`) and a Monte-Carlo
  simulation of the forward SDE (:func:`check_process_forward_simulation`);
* its prior is the marginal at ``t_max`` with ``alpha_{t_max} x_0`` replaced by 0
  (:func:`check_process_prior`, :func:`check_process_exact_mixture_prior`);
* the exact score of a Gaussian mixture diffused by it equals autograd of ``log p_t``, of the
  closed form and of an independent ``torch.distributions`` reference (:func:`check_process_exact_score`);
* its probability-flow ODE transports ``p_{t1}`` to ``p_{t0}`` (:func:`check_process_probability_flow_gaussian`,
  :func:`check_process_probability_flow_transport`);
* log-SNR monotonicity and inversion, the declared time interval and its validation, and shapes
  for vectors and images;
* for every process, with or without Gaussian marginals: the prior's samples and log-density
  agree (:func:`check_process_prior_density`), training times lie in the declared interval
  (:func:`check_process_time_range`).

Statistical tolerances are :data:`~sdeflow.testing.common.K_SE` standard errors computed from
the sample itself, plus the exactly computed bias of the discretisation where one is used.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torchdiffeq
import torchsde
from torch import Tensor, nn
from torch.distributions import Normal

from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..data.gaussian_mixture import ExactMixtureScoreModel, GaussianMixture
from ..errors import TimeRangeError
from ..plugins.api import create_sampler
from ..solvers import StepNoise
from .common import (
    F64,
    K_SE,
    CheckNotApplicable,
    as_float64,
    assert_close,
    assert_moments,
    coeffs,
    frac_time,
    graded_time_grid,
    require_gaussian_marginals,
    time_grid,
)
from .mixtures import (
    MIXTURES,
    marginal_moments,
    mixture_1d,
    mixture_2d,
    reference_marginal,
    reference_posterior_mean,
)


def _name(p: ForwardProcess) -> str:
    return type(p).__name__


def _gaussian_case(process: ForwardProcess, check: str) -> tuple[ForwardProcess, str]:
    """The float64 copy of ``process`` a Gaussian-marginal check runs on, and its name for messages
    (:class:`~sdeflow.testing.common.CheckNotApplicable` without Gaussian marginals)."""
    p = as_float64(process)
    require_gaussian_marginals(p, check)
    return p, _name(p)


# ---------------------------------------------------------------------------------- helpers
def linear_drift_coefficient(process: ForwardProcess, t: Tensor) -> Tensor:
    """``c(t)`` with ``f(x, t) = -c(t) x``, after checking that the drift is linear in ``x``.

    Gaussian marginals ``alpha_t x_0 + sigma_t eps`` for every ``x_0`` force a drift linear in
    ``x`` with coefficient ``d log alpha_t / dt`` (Song et al. 2021, Appendix B; Kingma et al.
    2021, Appendix A.4).

    Args:
        process: a float64 process with Gaussian marginals.
        t: times, shape ``(n,)``.

    Returns:
        ``c(t)``, shape ``(n,)``.
    """
    n = t.shape[0]
    c = -process.drift(torch.ones(n, 1, dtype=F64), t)[:, 0]
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    assert_close(process.drift(x, t), -c[:, None] * x,
                 f"{_name(process)}: the drift of a process with Gaussian marginals must be linear in x",
                 rtol=1e-10, atol=1e-12)
    return c


def cumtrapz(y: Tensor, t: Tensor) -> Tensor:
    """Cumulative trapezoid rule ``int_{t_0}^{t_i} y``, starting at 0."""
    inc = 0.5 * (y[1:] + y[:-1]) * (t[1:] - t[:-1])
    return torch.cat([torch.zeros(1, dtype=y.dtype), torch.cumsum(inc, 0)])


def _trapezoid_moment_factors(process: ForwardProcess, t: Tensor) -> tuple[Tensor, Tensor]:
    log_phi = cumtrapz(-linear_drift_coefficient(process, t), t)
    phi = torch.exp(log_phi)
    return phi, phi * phi * cumtrapz(process.g2(t) * torch.exp(-2 * log_phi), t)


def sde_moment_factors(process: ForwardProcess, t: Tensor) -> tuple[Tensor, Tensor]:
    """Moments of the forward SDE itself, from its drift and diffusion alone, on the grid ``t``.

    For ``f = -c(t) x`` the mean and variance obey ``m' = -c m`` and ``V' = -2 c V + g^2``
    (Sarkka & Solin 2019, Eq. 6.2-6.3), solved by an integrating factor:
    ``m(t) = phi(t) m(t_0)`` and ``V(t) = phi(t)^2 V(t_0) + q(t)`` with ``phi = exp(-int c)``
    and ``q = phi^2 int g^2 / phi^2``. The integrals use the trapezoid rule on ``t`` and on ``t``
    with its midpoints added, combined by Richardson extrapolation (``(4 I_{h/2} - I_h) / 3``)
    so that the quadrature error is ``O(h^4)``: schedules whose ``beta`` grows steeply near
    ``t_max`` (the cosine schedule) are integrated to ``1e-8``.

    Args:
        process: a float64 process with a linear drift.
        t: increasing times, shape ``(n,)``.

    Returns:
        ``(phi, q)``, each of shape ``(n,)``.
    """
    fine = torch.empty(2 * t.shape[0] - 1, dtype=t.dtype)
    fine[0::2], fine[1::2] = t, 0.5 * (t[1:] + t[:-1])
    phi_c, q_c = _trapezoid_moment_factors(process, t)
    phi_f, q_f = _trapezoid_moment_factors(process, fine)
    return (4.0 * phi_f[0::2] - phi_c) / 3.0, (4.0 * q_f[0::2] - q_c) / 3.0


class ForwardSDEStepTime(nn.Module):
    """The forward SDE ``dx = f dt + g dw`` in step time ``u = (t - t0) / h`` for torchsde.

    ``dy = h f(y, t0 + u h) du + sqrt(h) g(t0 + u h) dW_u``: with ``dt = 1`` and integer output
    times every step lands exactly on the grid (no interpolated outputs, no sliver steps); the
    same substitution the ``sde`` sampler uses for the reverse SDE.

    Args:
        process: the forward process.
        t0: start time.
        h: step size in ``t``.
        batch: number of samples.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, process: ForwardProcess, t0: float, h: float, batch: int) -> None:
        super().__init__()
        self.process, self.t0, self.h, self.sqrt_h, self.batch = process, t0, h, math.sqrt(h), batch

    def time(self, u: Tensor) -> Tensor:
        """The time ``t0 + u h`` (clamped into the process's interval) for every sample."""
        return self.process.clamp_time(self.t0 + u * self.h).reshape(()).expand(self.batch)

    def f(self, u: Tensor, y: Tensor) -> Tensor:
        """Drift in step time."""
        return self.h * self.process.drift(y, self.time(u))

    def g(self, u: Tensor, y: Tensor) -> Tensor:
        """Diagonal diffusion in step time."""
        return (self.sqrt_h * self.process.diffusion(self.time(u)))[:, None].expand_as(y)


def integrate_probability_flow(process: ForwardProcess, score_model: ScoreModel, x: Tensor, t1: float, t0: float,
                               tol: float) -> Tensor:
    """Integrate the probability-flow ODE ``dx/dt = f - 1/2 g^2 score`` (Song et al. 2021,
    Eq. 13) from ``t1`` down to ``t0`` with torchdiffeq's dopri5 (``rtol = atol = tol``) through
    ``process.probability_flow``. Evaluation times are clamped into ``[t0, t1]``: dopri5 probes
    outside the interval.

    Args:
        process: the forward process.
        score_model: the score.
        x: states at ``t1``, shape ``(batch, d)``.
        t1: start time.
        t0: end time (``t0 < t1``).
        tol: relative and absolute tolerance.

    Returns:
        The states at ``t0``.
    """
    ode = process.probability_flow(lambda y, t: score_model.score(y, t, check=False))
    batch = x.shape[0]

    def field(t: Tensor, y: Tensor) -> Tensor:
        return ode.velocity(y, process.clamp_time(t.clamp(t0, t1)).reshape(()).expand(batch))

    ts = torch.tensor([t1, t0], dtype=F64)
    return torchdiffeq.odeint(field, x, ts, method="dopri5", rtol=tol, atol=tol)[-1]


def _expect_raises(exc: type[BaseException], fn: Callable[[], object], what: str, match: str | None = None) -> None:
    try:
        fn()
    except exc as err:
        if match is not None and match not in str(err):
            raise AssertionError(f"{what}: raised {type(err).__name__} as expected, but its message does not "
                                 f"mention {match!r}: {err}") from err
        return
    except Exception as err:  # noqa: BLE001 - report the wrong exception type
        raise AssertionError(f"{what}: expected {exc.__name__}, got {type(err).__name__}: {err}") from err
    raise AssertionError(f"{what}: expected {exc.__name__}, nothing was raised")


# ---------------------------------------------------------------------------------- the checks
def check_process_shapes(process: ForwardProcess) -> None:
    """``drift``/``diffusion``/``network_condition`` (and, with Gaussian marginals, ``marginal`` and
    ``perturb``) and the derived reverse SDE and probability-flow ODE keep the documented shapes
    (``(batch, *dims)`` for states, ``(batch,)`` for coefficients), and an image is treated
    exactly like its flattened vector.

    Args:
        process: the process to check.
    """
    p = as_float64(process)
    name = _name(p)
    t = torch.tensor([frac_time(p, 0.1), frac_time(p, 0.5), frac_time(p, 1.0)], dtype=F64)
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(3, 16, generator=gen, dtype=F64)
    img = vec.reshape(3, 1, 4, 4)

    def zero_score(y: Tensor, tt: Tensor) -> Tensor:
        return torch.zeros_like(y)

    gaussian = bool(getattr(p, "gaussian_marginals", False))
    for x in (vec, img):
        shape = tuple(x.shape)
        assert p.drift(x, t).shape == x.shape, f"{name}.drift: shape {tuple(p.drift(x, t).shape)} for x of {shape}"
        if gaussian:
            xt, eps = p.perturb(x, t, generator=gen)
            assert xt.shape == x.shape and eps.shape == x.shape, f"{name}.perturb: shapes for x of {shape}"
        assert p.reverse_sde(zero_score).drift(x, t).shape == x.shape, f"{name}: reverse-SDE drift shape for {shape}"
        assert p.probability_flow(zero_score).velocity(x, t).shape == x.shape, f"{name}: PF-ODE velocity shape"
    assert_close(p.drift(img, t).reshape(3, 16), p.drift(vec, t), f"{name}: drift of an image vs its flat vector",
                 rtol=0, atol=0)
    g_shape = tuple(p.diffusion(t).shape)
    assert g_shape == (3,), f"{name}.diffusion(t) must have shape (batch,), got {g_shape}"
    c_shape = tuple(p.network_condition(t).shape)
    assert c_shape == (3,), f"{name}.network_condition(t) must have shape (batch,), got {c_shape}"
    if not gaussian:
        return
    a, s = p.marginal(t)
    assert a.shape == (3,) and s.shape == (3,), f"{name}.marginal(t) must return two (batch,) tensors"
    noise = torch.randn(3, 1, 4, 4, generator=gen, dtype=F64)
    xt, _ = p.perturb(img, t, noise=noise)
    assert_close(xt, a[:, None, None, None] * img + s[:, None, None, None] * noise,
                 f"{name}.perturb must return alpha_t x_0 + sigma_t eps", rtol=1e-12, atol=1e-12)


def check_process_marginal_finite(process: ForwardProcess) -> None:
    """``alpha_t > 0``, ``sigma_t >= 0`` (``> 0`` after ``t_min``) and ``g(t) >= 0`` are finite
    on 401 times spanning ``[t_min, t_max]``.

    Args:
        process: the process to check.
    """
    p, name = _gaussian_case(process, "check_process_marginal_finite")
    t = time_grid(p, 401)
    a, s = p.marginal(t)
    g = p.diffusion(t)
    for what, v in (("alpha_t", a), ("sigma_t", s), ("g(t)", g)):
        bad = t[~torch.isfinite(v)][:3].tolist()
        assert not bad, f"{name}: {what} is not finite on [t_min, t_max] (at t={bad})"
    assert (a > 0).all(), f"{name}: alpha_t must be positive on [t_min, t_max]"
    assert (s >= 0).all() and (g >= 0).all(), f"{name}: sigma_t and g(t) must be non-negative"
    assert (s[1:] > 0).all(), f"{name}: sigma_t must be positive after t_min"


def check_process_time_validation(process: ForwardProcess) -> None:
    """``check_time`` accepts ``[t_min, t_max]`` (tensors and broadcast floats) and raises
    :class:`sdeflow.errors.TimeRangeError` naming ``t_min`` for times outside it or NaN; a score
    model built on the process refuses such times too.

    Args:
        process: the process to check.
    """
    p = as_float64(process)
    name = _name(p)
    lo, hi = float(p.t_min), float(p.t_max)
    ok = p.check_time(torch.tensor([lo, 0.5 * (lo + hi), hi], dtype=F64), 3)
    assert ok.shape == (3,), f"{name}.check_time must return shape (batch,)"
    assert p.check_time(0.5 * (lo + hi), 4).shape == (4,), f"{name}.check_time must broadcast a float to (batch,)"
    for bad in (lo - 0.01, hi + 0.01, float("nan")):
        _expect_raises(TimeRangeError, lambda: p.check_time(torch.tensor([0.5 * (lo + hi), bad], dtype=F64)),
                       f"{name}.check_time(t={bad:g})", match="t_min")
    if getattr(p, "gaussian_marginals", False):
        sm = mixture_1d().score_model(p)
        _expect_raises(TimeRangeError, lambda: sm.score(torch.zeros(2, 1, dtype=F64),
                                                        torch.tensor([hi + 0.01, hi + 0.01], dtype=F64)),
                       f"score model on {name} at t > t_max")


def check_process_time_range(process: ForwardProcess, n: int = 4096) -> None:
    """The declared interval: ``t_min`` and ``t_max`` are finite numbers with
    ``0 <= t_min < t_max``; the training times ``sample_training_time(n)`` lie in it, have shape
    ``(n,)`` and the requested dtype, repeat with the generator seed and are not all equal; the
    chain ``discrete_times()`` of a discrete-time process, when it has one, is strictly descending
    inside the interval; ``network_condition`` is finite on it.

    Args:
        process: the process to check.
        n: number of training times drawn.
    """
    p = as_float64(process)
    name = _name(p)
    try:
        lo, hi = float(p.t_min), float(p.t_max)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{name}: t_min and t_max must be numbers, got {p.t_min!r}, {p.t_max!r}") from err
    assert math.isfinite(lo) and math.isfinite(hi), f"{name}: t_min={lo} and t_max={hi} must be finite"
    assert 0.0 <= lo < hi, f"{name}: the declared interval must satisfy 0 <= t_min < t_max, got [{lo:g}, {hi:g}]"
    slack = p.time_tolerance * max(1.0, hi - lo)
    for dtype in (torch.float32, F64):
        t = p.sample_training_time(n, torch.Generator().manual_seed(5), dtype=dtype)
        assert t.shape == (n,) and t.dtype == dtype, (
            f"{name}.sample_training_time({n}, dtype={dtype}): shape {tuple(t.shape)}, dtype {t.dtype}")
        out = t[(t < lo - slack) | (t > hi + slack) | torch.isnan(t)]
        assert out.numel() == 0, (f"{name}.sample_training_time draws times outside the declared [t_min, t_max] = "
                                  f"[{lo:g}, {hi:g}]: e.g. {out[:3].tolist()}")
        assert float(t.max() - t.min()) > 0, f"{name}.sample_training_time draws one time only"
        again = p.sample_training_time(n, torch.Generator().manual_seed(5), dtype=dtype)
        assert torch.equal(t, again), f"{name}.sample_training_time is not reproducible with the same generator seed"
    chain = p.discrete_times()
    if chain is not None:
        chain = torch.as_tensor(chain, dtype=F64)
        assert chain.ndim == 1 and chain.numel() >= 2, f"{name}.discrete_times() must be a 1-D tensor of times"
        assert bool((chain[1:] < chain[:-1]).all()), f"{name}.discrete_times() must be strictly descending"
        assert float(chain.min()) >= lo - slack and float(chain.max()) <= hi + slack, (
            f"{name}.discrete_times() spans [{float(chain.min()):g}, {float(chain.max()):g}], outside the declared "
            f"[t_min, t_max] = [{lo:g}, {hi:g}]")
    grid = time_grid(p, 101)
    cond = p.network_condition(grid)
    assert torch.isfinite(cond).all(), f"{name}.network_condition is not finite on [t_min, t_max]"


def check_process_prior_density(process: ForwardProcess, n: int = 20_000) -> None:
    """The prior's sampler and its log-density describe one distribution, for any process (with or
    without Gaussian marginals): ``exp(prior_log_prob)`` integrates to 1 (1-D, trapezoid rule on
    20001 points over the samples' range plus 8 standard deviations; ``1e-3``) and the samples
    satisfy Stein's identity for the density's own score ``s = grad log p``: ``E[s] = 0`` and
    ``E[x s] = -1`` per coordinate (integration by parts; 2-D, within
    :data:`~sdeflow.testing.common.K_SE` standard errors).

    Args:
        process: the process to check.
        n: number of prior samples.
    """
    p = as_float64(process)
    name = _name(p)
    x = p.prior_sample((n, 1), torch.Generator().manual_seed(12), dtype=F64)
    assert x.shape == (n, 1) and torch.isfinite(x).all(), f"{name}.prior_sample: shape {tuple(x.shape)}, finite"
    sd = float(x.std())
    grid = torch.linspace(float(x.min()) - 8 * sd, float(x.max()) + 8 * sd, 20001, dtype=F64)[:, None]
    with torch.no_grad():
        mass = float(torch.trapezoid(torch.exp(p.prior_log_prob(grid)), grid[:, 0]))
    assert abs(mass - 1.0) < 1e-3, f"{name}: exp(prior_log_prob) integrates to {mass:.6f} in 1-D, not 1"
    y = p.prior_sample((n, 2), torch.Generator().manual_seed(13), dtype=F64).requires_grad_(True)
    (score,) = torch.autograd.grad(p.prior_log_prob(y).sum(), y)
    y = y.detach()
    for what, v, want in (("E[grad log p]", score, 0.0), ("E[x grad log p]", y * score, -1.0)):
        mean, se = v.mean(0), v.std(0) / math.sqrt(n)
        assert torch.all((mean - want).abs() <= K_SE * se), (
            f"{name}: prior samples and prior_log_prob disagree (Stein's identity): {what} = {mean.tolist()}, "
            f"expected {want:g} within {(K_SE * se).tolist()}")


def check_process_log_snr(process: ForwardProcess) -> None:
    """``lambda_t = log(alpha_t^2 / sigma_t^2)`` is strictly decreasing (Kingma et al. 2021,
    Eq. 2) and ``t_from_log_snr`` inverts it (the process's own inverse and the base class's
    generic bisection agree to ``1e-7`` of the time span) on the process's interval.

    Args:
        process: the process to check.
    """
    p, name = _gaussian_case(process, "check_process_log_snr")
    t = time_grid(p, 201)
    lam = p.log_snr(t)
    assert not torch.isnan(lam).any(), f"{name}: log-SNR is NaN on [t_min, t_max]"
    assert torch.isfinite(lam[1:]).all(), f"{name}: log-SNR is not finite after t_min"
    assert (lam[1:] < lam[:-1]).all(), f"{name}: log-SNR is not strictly decreasing in t"
    a, s = p.marginal(t[1:])
    assert_close(lam[1:], 2 * torch.log(a / s), f"{name}.log_snr vs 2 log(alpha/sigma)", rtol=1e-9, atol=1e-9)
    inner = t[1:-1]
    span = float(p.t_max) - float(p.t_min)
    assert_close(p.t_from_log_snr(p.log_snr(inner)), inner, f"{name}.t_from_log_snr(log_snr(t)) vs t",
                 rtol=0, atol=1e-7 * span)
    generic = ForwardProcess.t_from_log_snr(p, p.log_snr(inner))
    assert_close(generic, inner, f"{name}: generic bisection t_from_log_snr(log_snr(t)) vs t", rtol=0, atol=1e-7 * span)


def check_process_moment_equations(process: ForwardProcess, grid: int = 20001) -> None:
    """Drift and diffusion generate the marginal, deterministically.

    For ``f = -c(t) x`` the moments of the forward SDE obey ``m' = -c m`` and
    ``V' = -2 c V + g^2`` (Sarkka & Solin 2019, Eq. 6.2-6.3). Solved by quadrature
    (:func:`sde_moment_factors`) from the marginal at ``t_min``, they must equal
    ``alpha_t m_0`` and ``alpha_t^2 V_0 + sigma_t^2`` everywhere to ``rtol = 1e-8``. The
    quadrature grid is graded towards both ends (:func:`~sdeflow.testing.common.graded_time_grid`):
    on it the extrapolated quadrature is accurate to ``1e-9`` for the steep cosine DDPM schedule and
    ``3e-12`` for a flow's ``1 / (1 - t)`` up to ``t_max = 0.999`` (a uniform grid of the same size
    leaves ``9e-6`` and ``1.5e-7``).

    Args:
        process: the process to check.
        grid: number of quadrature points on ``[t_min, t_max]``.
    """
    p, name = _gaussian_case(process, "check_process_moment_equations")
    t = graded_time_grid(p, grid)
    phi, q = sde_moment_factors(p, t)
    a, s = p.marginal(t)
    m0, v0 = 1.5, 0.7
    assert_close(phi * a[0] * m0, a * m0, f"{name}: mean from the drift (m' = f m) vs alpha_t m_0",
                 rtol=1e-8, atol=1e-10)
    assert_close(phi**2 * (a[0] ** 2 * v0 + s[0] ** 2) + q, a * a * v0 + s * s,
                 f"{name}: variance from drift and diffusion (V' = 2 f V + g^2) vs alpha_t^2 V_0 + sigma_t^2",
                 rtol=1e-8, atol=1e-10)


def check_process_forward_simulation(process: ForwardProcess, n: int = 10_000, steps: int = 500,
                                     seed: int = 1234) -> None:
    """Simulate ``dx = f dt + g dw`` by Euler-Maruyama (torchsde) from ``x_{t_min} = alpha x_0 +
    sigma eps`` and compare mean and covariance with the closed form ``alpha_t m_0``,
    ``alpha_t^2 C_0 + sigma_t^2 I`` at four times (a 2-D mixture with a full covariance).

    Tolerance: :data:`~sdeflow.testing.common.K_SE` standard errors of the ``n`` samples plus
    the Euler bias: the exact moments of the Euler scheme (recursion ``m <- (1 - c h) m``,
    ``V <- (1 - c h)^2 V + g^2 h``) minus those of the SDE itself (:func:`sde_moment_factors`),
    both from drift and diffusion only, so the slack never absorbs a wrong marginal.

    Args:
        process: the process to check.
        n: number of simulated paths.
        steps: Euler-Maruyama steps over ``[t_min, t_max]``.
        seed: seed of the simulation.
    """
    p, name = _gaussian_case(process, "check_process_forward_simulation")
    gmm = mixture_2d()
    fine = 40
    t0 = float(p.t_min)
    h = (float(p.t_max) - t0) / steps
    gen = torch.Generator().manual_seed(seed)
    a0, s0 = coeffs(p, t0)
    y0 = a0 * gmm.sample(n, gen) + s0 * torch.randn(n, 2, generator=gen, dtype=F64)
    marks = [0, steps // 4, steps // 2, steps]
    bm = StepNoise((n, 2), gen, F64, torch.device("cpu"))
    ys = torchsde.sdeint(ForwardSDEStepTime(p, t0, h, n), y0, torch.tensor(marks, dtype=F64), method="euler",
                         dt=1.0, bm=bm)
    # exact moments of the Euler scheme (the drift is linear, checked) and of the SDE itself
    tj = t0 + h * torch.arange(steps, dtype=F64)
    shrink = 1.0 - h * linear_drift_coefficient(p, tj)
    g2h = p.g2(tj) * h
    prod, q = [1.0], [0.0]
    for j in range(steps):
        prod.append(prod[-1] * float(shrink[j]))
        q.append(float(shrink[j]) ** 2 * q[-1] + float(g2h[j]))
    phi, q_sde = sde_moment_factors(p, t0 + (h / fine) * torch.arange(steps * fine + 1, dtype=F64))
    m_start, c_start = marginal_moments(gmm, a0, s0)
    eye = torch.eye(2, dtype=F64)
    for k, y in zip(marks, ys):
        t = t0 + k * h
        mean, cov = marginal_moments(gmm, *coeffs(p, t))
        f_k, q_k = float(phi[k * fine]), float(q_sde[k * fine])
        bias_mean = (prod[k] - f_k) * m_start
        bias_cov = (prod[k] ** 2 - f_k**2) * c_start + (q[k] - q_k) * eye
        assert_moments(y, mean, cov, f"{name}: forward SDE simulated to t={t:.4g} vs marginal(t)",
                       mean_slack=bias_mean, cov_slack=bias_cov)


def check_process_prior(process: ForwardProcess, n: int = 20_000) -> None:
    """The data-free prior is ``N(0, sigma_{t_max}^2 I)`` (the marginal at ``t_max`` with
    ``alpha_{t_max} x_0`` replaced by 0): ``prior_std``, the moments of ``prior_sample``,
    seeded reproducibility, image shapes, and ``prior_log_prob`` against ``torch.distributions``.

    Args:
        process: the process to check.
        n: number of prior samples.
    """
    p, name = _gaussian_case(process, "check_process_prior")
    _, s_t = coeffs(p, float(p.t_max))
    std = float(p.prior_std(dtype=F64))
    assert math.isclose(std, s_t, rel_tol=1e-12), f"{name}.prior_std() = {std} but sigma_(t_max) = {s_t}"
    x = p.prior_sample((n, 2), torch.Generator().manual_seed(7), dtype=F64)
    assert x.shape == (n, 2) and x.dtype == F64, f"{name}.prior_sample: shape {tuple(x.shape)}, dtype {x.dtype}"
    assert_moments(x, torch.zeros(2, dtype=F64), s_t**2 * torch.eye(2, dtype=F64), f"{name}: prior samples")
    again = p.prior_sample((n, 2), torch.Generator().manual_seed(7), dtype=F64)
    assert torch.equal(x, again), f"{name}.prior_sample is not reproducible with the same generator seed"
    img = p.prior_sample((5, 1, 4, 4), torch.Generator().manual_seed(8), dtype=F64)
    assert img.shape == (5, 1, 4, 4), f"{name}.prior_sample: image shape {tuple(img.shape)}"
    ref = Normal(torch.tensor(0.0, dtype=F64), torch.tensor(s_t, dtype=F64))
    for v in (x[:50], img):
        assert_close(p.prior_log_prob(v), ref.log_prob(v).flatten(1).sum(1),
                     f"{name}.prior_log_prob vs log N(0, sigma_(t_max)^2 I)", rtol=1e-12, atol=1e-10)


def check_process_exact_mixture_prior(process: ForwardProcess, n: int = 20_000) -> None:
    """``GaussianMixture.score_model(process, exact_prior=True)`` draws from and scores the
    exact ``p_{t_max}``; with ``exact_prior=False`` it uses the process's own prior.

    Args:
        process: the process to check.
        n: number of samples.
    """
    p, name = _gaussian_case(process, "check_process_exact_mixture_prior")
    gmm = mixture_2d()
    a, s = coeffs(p, float(p.t_max))
    sm = gmm.score_model(p, exact_prior=True)
    x = sm.prior_sample((n, 2), torch.Generator().manual_seed(3))
    assert x.dtype == F64, f"{name}: exact prior samples have dtype {x.dtype}, expected float64"
    assert_moments(x, *marginal_moments(gmm, a, s), f"{name}: exact p_(t_max) samples")
    ref = reference_marginal(gmm, a, s)
    assert_close(sm.prior_log_prob(x[:100]), ref.log_prob(x[:100]), f"{name}: exact prior log-density",
                 rtol=1e-10, atol=1e-10)
    free = gmm.score_model(p, exact_prior=False)
    assert_close(free.prior_log_prob(x[:100]), p.prior_log_prob(x[:100]),
                 f"{name}: exact_prior=False must use the process's prior log-density", rtol=1e-12, atol=1e-12)
    y = free.prior_sample((1000, 2), torch.Generator().manual_seed(4))
    assert torch.equal(y, p.prior_sample((1000, 2), torch.Generator().manual_seed(4), dtype=F64)), (
        f"{name}: exact_prior=False must draw from the process's prior")


def check_process_exact_score(process: ForwardProcess, mixture: str = "2d") -> None:
    """Exact Gaussian-mixture score round trip: ``GaussianMixture.score_model(process).score``
    equals autograd of the closed-form ``log p_t`` and of an independent ``torch.distributions``
    ``log p_t = log sum_k w_k N(alpha_t mu_k, alpha_t^2 Sigma_k + sigma_t^2 I)`` (float64, five
    times from ``t_min`` to ``t_max``, samples of ``p_t`` and far-away points).

    Args:
        process: the process to check.
        mixture: ``"1d"``, ``"2d"`` or ``"5d_full"`` (:data:`sdeflow.testing.mixtures.MIXTURES`).
    """
    p, name = _gaussian_case(process, "check_process_exact_score")
    gmm = MIXTURES[mixture]()
    sm = gmm.score_model(p)
    assert isinstance(sm, ExactMixtureScoreModel)
    gen = torch.Generator().manual_seed(21)
    for frac in (0.0, 0.02, 0.3, 0.7, 1.0):
        t = frac_time(p, frac)
        a, s = coeffs(p, t)
        pt = sm.marginal_mixture(t)
        x = torch.cat([pt.sample(64, gen), 3.0 * (a + s) * torch.randn(8, gmm.dim, generator=gen, dtype=F64)])
        tt = torch.full((x.shape[0],), t, dtype=F64)
        x = x.requires_grad_(True)
        closed = sm.marginal_log_prob(x, tt)
        ref = reference_marginal(gmm, a, s).log_prob(x)
        (g_closed,) = torch.autograd.grad(closed.sum(), x)
        (g_ref,) = torch.autograd.grad(ref.sum(), x)
        score = sm.score(x.detach(), tt)
        scale = float(g_ref.abs().max())
        what = f"{name}, mixture {mixture}, t={t:.4g}"
        assert_close(closed.detach(), ref.detach(), f"{what}: closed-form log p_t vs torch.distributions",
                     rtol=1e-9, atol=1e-9)
        assert_close(score, g_closed, f"{what}: exact score vs autograd of the closed-form log p_t",
                     rtol=1e-9, atol=1e-9 * scale)
        assert_close(score, g_ref, f"{what}: exact score vs autograd of the torch.distributions log p_t",
                     rtol=1e-8, atol=1e-8 * scale)


def check_process_probability_flow_gaussian(process: ForwardProcess) -> None:
    """For ``p_0 = N(mu, v_0)`` the probability-flow ODE keeps ``z = (x - alpha_t mu) / sqrt(v_t)``
    constant (Song et al. 2021, Eq. 13), so every point moves to ``alpha_0 mu + z sqrt(v_0)``: a
    pointwise, noise-free check from ``t_max`` down to ``t_min`` (dopri5 at ``1e-10``).

    Args:
        process: the process to check.
    """
    p = as_float64(process)
    require_gaussian_marginals(p, "check_process_probability_flow_gaussian")
    mu, var0 = 1.5, 0.5
    sm = GaussianMixture([1.0], [[mu]], [[[var0]]], dtype=F64).score_model(p)
    t1, t0 = float(p.t_max), float(p.t_min)
    a1, s1 = coeffs(p, t1)
    a0, s0 = coeffs(p, t0)
    v1, v0 = a1 * a1 * var0 + s1 * s1, a0 * a0 * var0 + s0 * s0
    z = torch.linspace(-3, 3, 13, dtype=F64)[:, None]
    x0 = integrate_probability_flow(p, sm, a1 * mu + z * math.sqrt(v1), t1, t0, tol=1e-10)
    assert_close(x0, a0 * mu + z * math.sqrt(v0),
                 f"{_name(p)}: probability-flow ODE from t_max to t_min on a Gaussian vs the exact map",
                 rtol=1e-6, atol=1e-6)


def check_process_probability_flow_transport(process: ForwardProcess, n: int = 4000) -> None:
    """The probability-flow ODE carries exact ``p_{t1}`` samples to ``p_{t0}``, in mean and covariance.

    Two legs: ``t_max -> t_mid`` through the registered ``ode`` sampler (dopri5, exact prior,
    ``t_end=t_mid``: samplers always start at ``t_max``), and ``t_mid -> t_min`` through
    :func:`integrate_probability_flow` (torchdiffeq directly on ``process.probability_flow``).

    Args:
        process: the process to check.
        n: number of samples.
    """
    p, name = _gaussian_case(process, "check_process_probability_flow_transport")
    gmm = mixture_2d()
    sm = gmm.score_model(p, exact_prior=True)
    t_mid = frac_time(p, 0.4)
    sampler = create_sampler("ode", method="dopri5", rtol=1e-6, atol=1e-6, t_end=t_mid)
    res = sampler.sample(sm, (n, 2), torch.Generator().manual_seed(31))
    assert res.samples.dtype == F64 and res.nfe > 0
    assert_moments(res.samples, *marginal_moments(gmm, *coeffs(p, t_mid)),
                   f"{name}: PF ODE (ode sampler) t_max -> {t_mid:.3g} vs marginal")
    x1 = sm.marginal_mixture(t_mid).sample(n, torch.Generator().manual_seed(32))
    t0 = float(p.t_min)
    x0 = integrate_probability_flow(p, sm, x1, t_mid, t0, tol=1e-7)
    assert_moments(x0, *marginal_moments(gmm, *coeffs(p, t0)), f"{name}: PF ODE {t_mid:.3g} -> t_min vs marginal")


def check_process_marginal_derivatives(process: ForwardProcess) -> None:
    """``marginal_and_derivatives(t)`` returns the marginal and its time derivatives: ``(alpha_t,
    sigma_t)`` equal to :meth:`~sdeflow.ForwardProcess.marginal` exactly, ``(alpha_t', sigma_t')`` equal
    to fourth-order central differences of the marginal (relative ``1e-6``), and consistent with
    the process's own SDE, which for Gaussian marginals must satisfy ``f(t) = alpha_t' / alpha_t`` and
    ``g(t)^2 = 2 sigma_t sigma_t' - 2 f(t) sigma_t^2`` (Song et al. 2021, Appendix B; Kingma et al.
    2021, Appendix A.4), at 41 interior times.

    Args:
        process: the process to check.
    """
    p, name = _gaussian_case(process, "check_process_marginal_derivatives")
    lo, hi = float(p.t_min), float(p.t_max)
    h = 1e-4 * (hi - lo)
    t = lo + (hi - lo) * torch.linspace(0.02, 0.98, 41, dtype=F64)
    with torch.no_grad():
        a, s, da, ds = p.marginal_and_derivatives(t)
        a_ref, s_ref = p.marginal(t)
        pts = [p.marginal(t + k * h) for k in (-2, -1, 1, 2)]
        c = linear_drift_coefficient(p, t)
        g2 = p.g2(t)
    assert_close(a, a_ref, f"{name}.marginal_and_derivatives: alpha_t vs marginal(t)", rtol=1e-12, atol=1e-14)
    assert_close(s, s_ref, f"{name}.marginal_and_derivatives: sigma_t vs marginal(t)", rtol=1e-12, atol=1e-14)
    for i, (what, d) in enumerate((("alpha_t'", da), ("sigma_t'", ds))):
        fd = (pts[0][i] - 8 * pts[1][i] + 8 * pts[2][i] - pts[3][i]) / (12 * h)
        assert_close(d, fd, f"{name}.marginal_and_derivatives: {what} vs central differences of the marginal",
                     rtol=1e-6, atol=1e-8 * float(fd.abs().max()))
    assert_close(-c, da / a, f"{name}: drift coefficient f(t) vs alpha_t' / alpha_t", rtol=1e-8, atol=1e-10)
    assert_close(g2, 2 * s * ds - 2 * (da / a) * s * s, f"{name}: g(t)^2 vs 2 sigma sigma' - 2 f sigma^2",
                 rtol=1e-8, atol=1e-10 * float(g2.abs().max()))


def check_process_velocity(process: ForwardProcess) -> None:
    """The velocity of the exact Gaussian-mixture model, ``ScoreModel.velocity``, is the flow
    ``E[alpha_t' x_0 + sigma_t' eps | x_t]`` (Lipman et al. 2023, Eq. 15-16), computed independently
    from the mixture's posterior mean (:func:`~sdeflow.testing.mixtures.reference_posterior_mean`), and
    the process's probability-flow ODE ``f - g^2 score / 2`` (Song et al. 2021, Eq. 13) equals it; a
    ``velocity``-parametrized network returning it gives back the exact score (five times, float64).

    Args:
        process: the process to check.
    """
    p, name = _gaussian_case(process, "check_process_velocity")
    gmm = mixture_2d()
    sm = gmm.score_model(p)
    gen = torch.Generator().manual_seed(41)

    class _Velocity(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.t: Tensor | None = None

        def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
            assert self.t is not None, "set the time the network answers for"
            return sm.velocity(x, self.t)

    net = _Velocity()
    as_velocity = ScoreModel(net, p, parametrization="velocity")
    for frac in (0.02, 0.3, 0.7, 0.95, 1.0):
        t = frac_time(p, frac)
        a, s = coeffs(p, t)
        x = sm.marginal_mixture(t).sample(64, gen)
        tt = torch.full((x.shape[0],), t, dtype=F64)
        with torch.no_grad():
            _, _, da, ds = p.marginal_and_derivatives(tt[:1])
            x0 = reference_posterior_mean(gmm, x, a, s)
            want = float(da) * x0 + float(ds) * (x - a * x0) / s
            got = sm.velocity(x, tt)
            flow = p.probability_flow(lambda y, u: sm.score(y, u, check=False)).velocity(x, tt)
            net.t = tt
            score_back = as_velocity.score(x, tt)
            score = sm.score(x, tt)
        what = f"{name}, t={t:.4g}"
        scale = float(want.abs().max())
        assert_close(got, want, f"{what}: ScoreModel.velocity of the exact mixture vs E[a' x0 + s' eps | x_t]",
                     rtol=1e-7, atol=1e-7 * scale)
        assert_close(flow, want, f"{what}: probability-flow ODE f - g^2 score / 2 vs the velocity", rtol=1e-7,
                     atol=1e-7 * scale)
        assert_close(score_back, score, f"{what}: the score of a velocity network vs the exact score", rtol=1e-7,
                     atol=1e-7 * float(score.abs().max()))


#: every process check by short name, in the order the pytest plugin runs them
PROCESS_CHECKS: dict[str, Callable[[ForwardProcess], None]] = {
    "shapes": check_process_shapes,
    "marginal_finite": check_process_marginal_finite,
    "time_validation": check_process_time_validation,
    "time_range": check_process_time_range,
    "log_snr": check_process_log_snr,
    "marginal_derivatives": check_process_marginal_derivatives,
    "moment_equations": check_process_moment_equations,
    "forward_simulation": check_process_forward_simulation,
    "prior": check_process_prior,
    "prior_density": check_process_prior_density,
    "exact_mixture_prior": check_process_exact_mixture_prior,
    **{f"exact_score_{m}": functools.partial(check_process_exact_score, mixture=m) for m in MIXTURES},
    "probability_flow_gaussian": check_process_probability_flow_gaussian,
    "probability_flow_transport": check_process_probability_flow_transport,
    "velocity": check_process_velocity,
}


def check_process(process: ForwardProcess) -> None:
    """Run every check of :data:`PROCESS_CHECKS` on ``process`` (those needing Gaussian
    marginals only when it declares them).

    Args:
        process: the process to check.
    """
    for check in PROCESS_CHECKS.values():
        try:
            check(process)
        except CheckNotApplicable:
            continue
