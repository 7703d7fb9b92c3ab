"""Brownian sources for fixed-step reverse-SDE integration with torchsde.

Samplers integrate in *step time* ``u in [0, N]`` (one unit per step; see
:mod:`sdeflow.integrators.sde`), so increments are queried on consecutive unit intervals.

* :class:`StepNoise` draws each increment fresh from a ``torch.Generator``: the cheapest
  source (no tree, no cache), for plain sampling.
* :class:`ScaledBrownian` maps step time onto a torchsde ``BrownianInterval`` in physical
  time, so the *same* Brownian path is seen at every step count (strong-error and order
  studies).
"""

from __future__ import annotations

import math

import torch
import torchsde
from torch import Tensor
from torchsde import BaseBrownian

from ..shapes import randn


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
        h = tb - ta
        root = torch.sqrt(torch.as_tensor(h, dtype=self._dtype, device=self._device))
        w = randn(self._shape, self._generator, self._device, self._dtype) * root
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
    """A physical-time ``BrownianInterval`` seen in step time ``u = s / h``.

    ``W_u(u) = W_s(h u) / sqrt(h)``, hence space-time Levy area ``U_u = U_s / h^{3/2}`` and
    Levy area ``A_u = A_s / h``.

    Args:
        span: length of the physical time interval (``t_start - t_end``).
        steps: number of steps ``N`` (so ``h = span / N``).
        shape: ``(batch, D)``.
        seed: entropy of the Brownian path (same seed, same path at every ``N``).
        levy_area_approximation: as in torchsde (``"space-time"``, ``"davie"``, ``"foster"``).
    """

    __slots__ = ("_bm", "_h", "_levy", "_span")

    def __init__(self, span: float, steps: int, shape: tuple[int, ...], seed: int, dtype: torch.dtype,
                 device: torch.device, levy_area_approximation: str = "space-time") -> None:
        self._h = span / steps
        self._span = float(span)
        self._levy = levy_area_approximation
        self._bm = torchsde.BrownianInterval(
            t0=0.0, t1=span, size=tuple(shape), dtype=dtype, device=device, entropy=seed,
            dt=self._h, levy_area_approximation=levy_area_approximation,
        )

    def __call__(self, ta: Tensor, tb: Tensor | None = None, return_U: bool = False, return_A: bool = False):  # noqa: N803
        h = self._h
        sa = min(float(ta) * h, self._span)  # u * h may round past the end by an ulp
        sb = min(float(tb) * h, self._span) if tb is not None else None
        out = self._bm(sa, sb, return_U=return_U, return_A=return_A)
        if not (return_U or return_A):
            return out / math.sqrt(h)
        w, *rest = out
        scaled = [w / math.sqrt(h)]
        if return_U:
            scaled.append(rest.pop(0) / h**1.5)
        if return_A:
            scaled.append(rest.pop(0) / h)
        return tuple(scaled)

    def __repr__(self) -> str:
        return f"ScaledBrownian(h={self._h:g}, {self._bm!r})"

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
