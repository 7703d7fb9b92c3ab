"""Shared pieces of the conformance kit: precision, tolerances, the "does not apply" signal."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from ..core.process import ForwardProcess

#: every check computes in double precision
F64 = torch.float64
#: number of standard errors allowed in every Monte-Carlo comparison. With about 20 compared
#: statistics per check, a correct component fails with probability below 20 * 6.3e-5 ~ 1e-3
#: (two-sided normal tail beyond 4 sigma); the kit's seeds are fixed, so a pass is reproducible.
K_SE = 4.0


class CheckNotApplicable(Exception):
    """A check that does not apply to the component (e.g. it needs Gaussian marginals).

    The pytest plugin turns it into a skip with this message; called directly, it propagates.
    """


def as_float64(process: ForwardProcess) -> ForwardProcess:
    """A float64 copy of ``process`` with its parameters frozen (the caller's module is left as it
    was). The checks test the process as a function of ``(x, t)``: a learned schedule's parameters
    need no autograd graph, which would only slow every integration down."""
    return copy.deepcopy(process).to(F64).requires_grad_(False)


def require_gaussian_marginals(process: ForwardProcess, check: str) -> None:
    """Raise :class:`CheckNotApplicable` unless ``process`` declares ``gaussian_marginals``."""
    if not getattr(process, "gaussian_marginals", False):
        raise CheckNotApplicable(f"{check} needs a process with Gaussian marginals; "
                                 f"{type(process).__name__} declares gaussian_marginals=False")


def time_grid(process: ForwardProcess, n: int) -> Tensor:
    """``n`` equally spaced times from ``t_min`` to ``t_max`` (float64)."""
    return torch.linspace(float(process.t_min), float(process.t_max), n, dtype=F64)


def graded_time_grid(process: ForwardProcess, n: int) -> Tensor:
    """``n`` times from ``t_min`` to ``t_max`` (float64), graded towards both ends like Chebyshev points,
    ``t_min + (t_max - t_min) (1 - cos(pi u)) / 2`` for ``u`` uniform: quadrature on it resolves the
    coefficients that grow steeply at an end of the interval (``1 / (1 - t)`` of a flow near
    ``t_max = 0.999``, the cosine schedule's ``beta``) with a smooth change of variable, so the
    trapezoid rule keeps its ``h^2`` error expansion and Richardson extrapolation applies."""
    lo, hi = float(process.t_min), float(process.t_max)
    u = torch.linspace(0.0, 1.0, n, dtype=F64)
    t = lo + (hi - lo) * 0.5 * (1.0 - torch.cos(math.pi * u))
    t[0], t[-1] = lo, hi
    return t


def frac_time(process: ForwardProcess, frac: float) -> float:
    """The time a fraction ``frac`` of the way from ``t_min`` to ``t_max``."""
    lo, hi = float(process.t_min), float(process.t_max)
    return lo + frac * (hi - lo)


def coeffs(process: ForwardProcess, t: float) -> tuple[float, float]:
    """``(alpha_t, sigma_t)`` of the marginal at one time, as Python floats."""
    with torch.no_grad():
        a, s = process.marginal(torch.tensor([t], dtype=F64))
    return float(a[0]), float(s[0])


def assert_moments(x: Tensor, mean: Tensor, cov: Tensor, what: str, mean_slack: Tensor | float = 0.0,
                   cov_slack: Tensor | float = 0.0, k: float = K_SE) -> None:
    """Assert that the sample mean and covariance of ``x`` match ``mean`` and ``cov``.

    The tolerance comes from the sample itself: ``k`` standard errors (``std / sqrt(n)`` for
    each mean, ``std((x_i - m_i)(x_j - m_j)) / sqrt(n)`` for each covariance entry, the
    central-limit standard error of an average), plus a known deterministic slack such as the
    exactly computed bias of a discretisation.

    Args:
        x: samples, shape ``(n, d)``.
        mean: expected mean, shape ``(d,)``.
        cov: expected covariance, shape ``(d, d)``.
        what: what is compared, for the message.
        mean_slack: extra absolute tolerance on the mean (scalar or ``(d,)``).
        cov_slack: extra absolute tolerance on the covariance (scalar or ``(d, d)``).
        k: number of standard errors allowed.

    Raises:
        AssertionError: naming ``what``, the estimate, the expectation and the tolerance.
    """
    n = x.shape[0]
    m = x.mean(0)
    d = x - m
    prods = d[:, :, None] * d[:, None, :]
    c = prods.sum(0) / (n - 1)
    se_m = x.std(0) / math.sqrt(n)
    se_c = prods.std(0) / math.sqrt(n)
    tol_m = k * se_m + torch.as_tensor(mean_slack, dtype=x.dtype).abs()
    tol_c = k * se_c + torch.as_tensor(cov_slack, dtype=x.dtype).abs()
    assert torch.all((m - mean).abs() <= tol_m), (
        f"{what}: sample mean {m.tolist()} differs from the expected {mean.tolist()} by more than "
        f"{k:g} standard errors of the {n} samples (+ known bias): tolerance {tol_m.tolist()}")
    assert torch.all((c - cov).abs() <= tol_c), (
        f"{what}: sample covariance {c.tolist()} differs from the expected {cov.tolist()} by more than "
        f"{k:g} standard errors of the {n} samples (+ known bias): tolerance {tol_c.tolist()}")


def assert_close(actual: Tensor, expected: Tensor, what: str, rtol: float, atol: float) -> None:
    """``torch.testing.assert_close`` with ``what`` leading the message."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol,
                               msg=lambda m: f"{what}: {m}")
