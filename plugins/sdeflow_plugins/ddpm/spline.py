"""A clamped cubic spline on a uniform grid, evaluated in torch (values and first derivative)."""

from __future__ import annotations

import torch
from torch import Tensor


def clamped_spline_moments(y: Tensor, d0: float, d1: float) -> Tensor:
    """Second derivatives ``M_i`` of the clamped cubic spline through ``y_0..y_N`` on ``t_i = i/N``
    with end slopes ``d0``, ``d1`` (de Boor 1978, Ch. IV): solves
    ``M_{i-1} + 4 M_i + M_{i+1} = 6 (y_{i+1} - 2 y_i + y_{i-1}) / h^2`` with the clamped end rows."""
    n = y.numel() - 1
    h = 1.0 / n
    a = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    rhs = torch.zeros(n + 1, dtype=torch.float64)
    idx = torch.arange(1, n)
    a[idx, idx - 1] = 1.0
    a[idx, idx] = 4.0
    a[idx, idx + 1] = 1.0
    rhs[1:n] = 6.0 * (y[2:] - 2.0 * y[1:-1] + y[:-2]) / h**2
    a[0, 0], a[0, 1] = 2.0, 1.0
    rhs[0] = 6.0 / h * ((y[1] - y[0]) / h - d0)
    a[n, n - 1], a[n, n] = 1.0, 2.0
    rhs[n] = 6.0 / h * (d1 - (y[n] - y[n - 1]) / h)
    return torch.linalg.solve(a, rhs)


def spline_coefficients(y: Tensor, m: Tensor) -> Tensor:
    """Per-interval polynomial coefficients ``(c0, c1, c2, c3)``, shape ``(N, 4)``, float64, so that on
    ``[t_i, t_{i+1}]`` with ``u = t - t_i`` the spline is ``c0 + c1 u + c2 u^2 + c3 u^3``.

    Expanding the moment form ``S = M_i (h-u)^3/(6h) + M_{i+1} u^3/(6h) + C_i (h-u) + C_{i+1} u``
    with ``C_k = y_k/h - M_k h/6`` gives ``c0 = y_i``, ``c1 = (y_{i+1} - y_i)/h - h (2 M_i + M_{i+1})/6``,
    ``c2 = M_i / 2``, ``c3 = (M_{i+1} - M_i) / (6 h)``.
    """
    y, m = y.to(torch.float64), m.to(torch.float64)
    n = y.numel() - 1
    h = 1.0 / n
    yi, yj, mi, mj = y[:-1], y[1:], m[:-1], m[1:]
    c1 = (yj - yi) / h - h * (2.0 * mi + mj) / 6.0
    return torch.stack([yi, c1, 0.5 * mi, (mj - mi) / (6.0 * h)], dim=1)


def _locate(t: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Interval index and offset ``u = t - t_i`` (float64) for ``t`` clamped into ``[0, 1]``."""
    tt = t.to(torch.float64).clamp(0.0, 1.0)
    i = torch.floor(tt * n).clamp_(max=n - 1)
    return i.long(), tt - i / n


def spline_value(t: Tensor, coef: Tensor) -> Tensor:
    """Spline value ``S(t)`` for ``t`` in ``[0, 1]`` from :func:`spline_coefficients` (Horner, float64
    internally, returned in ``t``'s dtype)."""
    i, u = _locate(t, coef.shape[0])
    c = coef[i]
    return (c[:, 0] + u * (c[:, 1] + u * (c[:, 2] + u * c[:, 3]))).to(t.dtype).reshape(t.shape)


def spline_value_and_slope(t: Tensor, coef: Tensor) -> tuple[Tensor, Tensor]:
    """Spline value ``S(t)`` and slope ``S'(t)`` for ``t`` in ``[0, 1]`` (float64 internally)."""
    i, u = _locate(t, coef.shape[0])
    c = coef[i]
    val = c[:, 0] + u * (c[:, 1] + u * (c[:, 2] + u * c[:, 3]))
    slope = c[:, 1] + u * (2.0 * c[:, 2] + 3.0 * u * c[:, 3])
    return val.to(t.dtype).reshape(t.shape), slope.to(t.dtype).reshape(t.shape)


def max_slope(coef: Tensor) -> float:
    """The largest slope ``S'(t)`` of the piecewise cubic ``coef`` on ``[0, 1]`` (exact: per interval
    the slope ``c1 + 2 c2 u + 3 c3 u^2`` is a quadratic, maximal at an end or at its vertex)."""
    n = coef.shape[0]
    h = 1.0 / n
    c1, c2, c3 = coef[:, 1], coef[:, 2], coef[:, 3]
    ends = torch.maximum(c1, c1 + 2.0 * c2 * h + 3.0 * c3 * h * h)
    safe = torch.where(c3 == 0, torch.ones_like(c3), c3)
    u = torch.where(c3 == 0, torch.zeros_like(c3), -c2 / (3.0 * safe))
    inside = (u > 0) & (u < h)
    vertex = c1 + 2.0 * c2 * u + 3.0 * c3 * u * u
    return float(torch.where(inside, torch.maximum(ends, vertex), ends).max())


def monotone_coefficients(y: Tensor, d0: float, d1: float) -> Tensor:
    """Coefficients (as :func:`spline_coefficients`) of the monotone piecewise-cubic Hermite
    interpolant through the strictly decreasing ``y_0..y_N`` on ``t_i = i/N`` (Fritsch & Butland
    1984: knot slopes the harmonic means of the neighbouring secants, which keeps every piece
    monotone; end slopes ``d0``, ``d1``, which must lie between 0 and three times the end secants).
    It is C^1 (continuous slope), where the clamped spline is C^2 but may overshoot."""
    y = y.to(torch.float64)
    n = y.numel() - 1
    h = 1.0 / n
    sec = (y[1:] - y[:-1]) / h
    m = torch.empty(n + 1, dtype=torch.float64)
    m[0], m[n] = d0, d1
    a, b = sec[:-1], sec[1:]
    m[1:n] = 2.0 * a * b / (a + b)
    mi, mj = m[:-1], m[1:]
    c2 = (3.0 * sec - 2.0 * mi - mj) / h
    c3 = (mi + mj - 2.0 * sec) / (h * h)
    return torch.stack([y[:-1], mi, c2, c3], dim=1)
