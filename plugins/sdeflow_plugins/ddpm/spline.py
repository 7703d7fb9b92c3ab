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


def spline_eval(t: Tensor, y: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """Spline value ``S(t)`` and slope ``S'(t)`` for ``t`` in ``[0, 1]`` (float64 internally)."""
    n = y.numel() - 1
    h = 1.0 / n
    tt = t.to(torch.float64).clamp(0.0, 1.0)
    i = torch.floor(tt * n).clamp(max=n - 1).long()
    left = tt - i.to(torch.float64) * h  # t - t_i
    right = h - left  # t_{i+1} - t
    yi, yj, mi, mj = y[i], y[i + 1], m[i], m[i + 1]
    ci = yi / h - mi * h / 6.0
    cj = yj / h - mj * h / 6.0
    val = mi * right**3 / (6 * h) + mj * left**3 / (6 * h) + ci * right + cj * left
    slope = -mi * right**2 / (2 * h) + mj * left**2 / (2 * h) - ci + cj
    return val.to(t.dtype), slope.to(t.dtype)
