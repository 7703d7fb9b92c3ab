"""Brownian sources for fixed-step reverse-SDE integration with torchsde.

Samplers integrate in *step time* ``u in [0, N]`` (one unit per step; see
:class:`~sdeflow.solvers.ReverseSDEStepTime`), so increments are queried on consecutive unit intervals.

* :class:`StepNoise` draws each increment fresh from a ``torch.Generator``: the cheapest
  source (no tree, no cache), for plain sampling.
* :class:`ScaledBrownian` maps step time onto a torchsde ``BrownianInterval`` on the unit
  interval built as a dyadic tree, so the *same* Brownian path is seen at every step count
  (strong-error and order studies).
"""

from __future__ import annotations

import math

import torch
import torchsde
from torch import Tensor
from torchsde import BaseBrownian

from ..utils.shapes import randn

#: time resolution of the step-count-independent Brownian path (unit interval): grid points
#: ``k / N`` are resolved exactly for ``N`` a power of two up to ``2**12``, and to ``5e-13`` otherwise
PATH_TOL = 1e-12


class StepNoise(BaseBrownian):
    """Independent Gaussian increments ``W(tb) - W(ta) ~ N(0, (tb - ta) I)`` from a generator.

    Also returns the space-time Levy area ``U = int_ta^tb (W_s - W_ta) ds`` on request (needed
    by SRK): with ``h = tb - ta``, ``H = U/h - W/2 ~ N(0, h/12)`` is independent of ``W``.
    Each interval must be queried once (torchsde's fixed-step solvers do).
    """

    __slots__ = ("_shape", "_dtype", "_device", "_generator")

    def __init__(self, shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device) -> None:
        self._shape, self._dtype, self._device, self._generator = tuple(shape), dtype, device, generator

    def __call__(self, ta: Tensor, tb: Tensor | None = None, return_U: bool = False, return_A: bool = False):  # noqa: N803
        if tb is None:
            raise ValueError("StepNoise answers increments over intervals only: call bm(ta, tb)")
        if return_A:
            raise ValueError("StepNoise provides no Levy area A; use brownian='interval'")
        h: Tensor | float = tb - ta
        if isinstance(h, Tensor) and h.device.type == "cpu":
            h = float(h)  # host times (sdeflow's loop): no device synchronisation
        w = randn(self._shape, self._generator, self._device, self._dtype)
        root: Tensor | float
        if isinstance(h, Tensor):
            root = torch.sqrt(h.to(self._dtype))
            w = w * root
        else:
            root = math.sqrt(h)
            if h != 1.0:  # unit steps in step time: skip the multiplication by one
                w = w * root
        if not return_U:
            return w
        hh = randn(self._shape, self._generator, self._device, self._dtype) * (root / math.sqrt(12.0))
        return w, h * (0.5 * w + hh)

    def __repr__(self) -> str:
        return f"StepNoise(shape={self._shape}, dtype={self._dtype}, device={self._device})"

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    @property
    def levy_area_approximation(self) -> str:
        return "space-time"


class ScaledBrownian(BaseBrownian):
    """A torchsde ``BrownianInterval`` on the unit interval seen in step time ``u in [0, N]``.

    The path lives in normalised time ``r = u / N`` (physical time ``s = span * r``):
    ``W_u(u) = sqrt(N) B(u / N)``, hence space-time Levy area ``U_u = N^{3/2} U_B`` and Levy
    area ``A_u = N A_B``.

    With ``consistent=True`` the interval is a dyadic ("halfway") tree resolved to
    :data:`PATH_TOL`, so ``B`` depends on ``seed`` alone, not on where or in which order it is
    queried: every step count sees the *same* Brownian path (a plain ``BrownianInterval``
    splits at its query points, so its path depends on the step count). Queries cost
    ``O(log2(1 / h))`` bridge samples: cheap when ``N`` is a power of two (its grid points are
    tree nodes), slower otherwise. ``consistent=False`` uses the plain interval with a ``dt``
    hint (fast, path specific to ``N``).

    Args:
        span: length of the physical time interval (``t_start - t_end``); informational.
        steps: number of steps ``N``.
        shape: ``(batch, D)``.
        seed: entropy of the Brownian path.
        levy_area_approximation: as in torchsde (``"space-time"``, ``"davie"``, ``"foster"``).
        consistent: same path at every step count (see above).
    """

    __slots__ = ("_bm", "_n", "_levy", "_span")

    def __init__(self, span: float, steps: int, shape: tuple[int, ...], seed: int, dtype: torch.dtype,
                 device: torch.device, levy_area_approximation: str = "space-time", consistent: bool = True) -> None:
        self._n = int(steps)
        self._span = float(span)
        self._levy = levy_area_approximation
        tree = dict(halfway_tree=True, tol=PATH_TOL) if consistent else dict(dt=1.0 / self._n)
        self._bm = torchsde.BrownianInterval(
            t0=0.0, t1=1.0, size=tuple(shape), dtype=dtype, device=device, entropy=seed,
            levy_area_approximation=levy_area_approximation, **tree,
        )

    def __call__(self, ta: Tensor, tb: Tensor | None = None, return_U: bool = False, return_A: bool = False):  # noqa: N803
        n = self._n
        ra = min(float(ta) / n, 1.0)
        rb = min(float(tb) / n, 1.0) if tb is not None else None
        out = self._bm(ra, rb, return_U=return_U, return_A=return_A)
        if not (return_U or return_A):
            return out * math.sqrt(n)
        w, *rest = out
        scaled = [w * math.sqrt(n)]
        if return_U:
            scaled.append(rest.pop(0) * n**1.5)
        if return_A:
            scaled.append(rest.pop(0) * n)
        return tuple(scaled)

    def __repr__(self) -> str:
        return f"ScaledBrownian(steps={self._n}, span={self._span:g}, {self._bm!r})"

    @property
    def dtype(self) -> torch.dtype:
        return self._bm.dtype

    @property
    def device(self) -> torch.device:
        return self._bm.device

    @property
    def shape(self) -> torch.Size:
        return self._bm.shape

    @property
    def levy_area_approximation(self) -> str:
        return self._levy
