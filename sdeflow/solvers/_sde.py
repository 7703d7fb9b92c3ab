"""Fixed-step integration of the reverse-time SDE with torchsde.

torchsde integrates forward in its time variable and accumulates ``t += dt`` in floating
point, which leaves a tiny extra last step for most ``dt`` (float32 ``ts=[0, 1]``, ``dt=1e-3``
gave 1001 steps, the last 9.3e-6 long) and can make the default Brownian tree recurse for
ever. So the reverse SDE is written in *step time* ``u in [0, N]``:

    t(u) = t_start - u h,   h = (t_start - t_end) / N,
    dy = -h [f(y, t) - g(t)^2 score(y, t)] du + sqrt(h) g(t) dW_u        (Song et al. 2021, Eq. 6)

with ``dt = 1`` in ``u``: integers are exact in floating point, so there are exactly ``N``
equal steps for every ``N``. The noise is isotropic and independent of the state, so the Ito
and Stratonovich forms coincide and every torchsde method for diagonal noise applies.

The step loop is ours (:func:`integrate_sde`), not ``solver.integrate``: it calls the torchsde
method's ``step`` with step times ``k, k + 1`` given as host numbers, so nothing in it reads a
device value back (torchsde's own loop compares time tensors every step) and the times and
diffusion coefficients of the grid are computed once, before the loop, in one vectorised call.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
import torchsde
from torch import Tensor, nn
from torchsde._core import methods
from torchsde._core.base_sde import ForwardSDE

from ..core.dynamics import ReverseSDE
from ..core.process import ForwardProcess

#: torchsde methods usable for the reverse SDE, with the SDE type each is written for
SDE_METHODS: dict[str, str] = {
    "euler": "ito",
    "milstein": "ito",
    "srk": "ito",
    "euler_heun": "stratonovich",
    "heun": "stratonovich",
    "midpoint": "stratonovich",
    "reversible_heun": "stratonovich",
    "log_ode": "stratonovich",
}
#: strong order of each method on additive (state-independent) noise, per torchsde
SDE_STRONG_ORDER: dict[str, float] = {
    "euler": 1.0, "milstein": 1.0, "srk": 1.5, "euler_heun": 1.0, "heun": 1.0,
    "midpoint": 1.0, "reversible_heun": 1.0, "log_ode": 1.0,
}


class ReverseSDEStepTime(nn.Module):
    """The reverse SDE in step time ``u`` as a torchsde SDE (``noise_type="diagonal"``).

    Times reach it as host numbers (floats, or CPU 0-d tensors for methods that need tensor
    arithmetic on ``dt``), so ``t(u)`` is computed on the host. On the integer grid
    ``u = 0..N`` the clamped times and ``sqrt(h) g(t)`` come from tables built once per run
    (:meth:`prepare`; ``O(N)`` scalars); other stage times (midpoint, SRK) are computed when
    asked for, and the last one is cached so a drift and a diffusion at the same time share it.

    Args:
        sde: the reverse SDE (forward-time drift and diffusion).
        process: its process (for time clamping).
        shape: data shape ``(batch, *dims)``; torchsde sees ``(batch, prod(dims))``.
        t_start: time at ``u = 0`` (usually ``t_max``).
        t_end: time at ``u = N`` (usually ``t_min``).
        steps: ``N``.
        sde_type: ``"ito"`` or ``"stratonovich"`` (equivalent here; chosen per method).
    """

    noise_type = "diagonal"

    def __init__(self, sde: ReverseSDE, process: ForwardProcess, shape: tuple[int, ...], t_start: float,
                 t_end: float, steps: int, sde_type: str) -> None:
        super().__init__()
        self.sde, self.process, self.shape = sde, process, shape
        self.sde_type = sde_type
        self.t_start, self.t_end, self.steps = float(t_start), float(t_end), int(steps)
        self.h = (float(t_start) - float(t_end)) / int(steps)
        self.sqrt_h = math.sqrt(self.h)
        self._grid: tuple[Tensor, Tensor] | None = None  # clamped times, sqrt(h) g(t) at u = 0..N
        self._like: tuple[torch.dtype, torch.device] | None = None
        self._last: tuple[float, Tensor, Tensor] | None = None  # (u, times, sqrt(h) g) off the grid

    # ------------------------------------------------------------------ times and coefficients
    def host_time(self, u: float) -> float:
        """Unclamped forward time ``t(u) = t_start - u h`` in double precision (``t(N) = t_end`` exactly)."""
        return self.t_end if u == self.steps else self.t_start - u * self.h

    def prepare(self, like: Tensor) -> None:
        """Build the tables of the integer grid for ``like``'s dtype and device (once per run)."""
        key = (like.dtype, like.device)
        if self._like == key:
            return
        n = self.steps
        host = torch.tensor([self.host_time(k) for k in range(n + 1)], dtype=torch.float64)
        times = self.process.clamp_time(host.to(device=like.device, dtype=like.dtype))
        g = self.sde.diffusion(times).to(like.dtype) * self.sqrt_h
        self._grid, self._like, self._last = (times, g), key, None

    def _coeffs(self, u: float | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(t, sqrt(h) g(t))`` at step time ``u``: a 0-d or ``(1,)`` time and a coefficient that
        broadcasts against the ``(batch, D)`` state."""
        if isinstance(u, Tensor):
            u = float(u)  # a host (CPU) tensor: no device synchronisation
        self.prepare(like)
        k = int(u)
        if k == u and 0 <= k <= self.steps:
            times, g = self._grid  # type: ignore[misc]
            return times[k], g[k]
        last = self._last
        if last is not None and last[0] == u:
            return last[1], last[2]
        t = self.process.clamp_time(torch.full((1,), self.host_time(u), dtype=like.dtype, device=like.device))
        gt = self.sde.diffusion(t).to(like.dtype) * self.sqrt_h
        self._last = (u, t, gt)
        return t, gt

    def time(self, u: float | Tensor, like: Tensor | None = None) -> Tensor:
        """Forward time ``t(u) = t_start - u h`` clamped into ``[t_min, t_max]``, shape ``(batch,)``
        (an expanded view of one scalar)."""
        if like is None:
            like = self._grid[0] if self._grid is not None else torch.empty(0)
        t, _ = self._coeffs(u, like)
        return t.reshape(()).expand(self.shape[0])

    # ------------------------------------------------------------------ the torchsde interface
    def _drift(self, t: Tensor, y: Tensor) -> Tensor:
        x = y.reshape(self.shape)
        return (-self.h * self.sde.drift(x, t.reshape(()).expand(self.shape[0]))).reshape(y.shape)

    def f(self, u: float | Tensor, y: Tensor) -> Tensor:
        """Drift in step time: ``-h [f - g^2 score]`` (Song et al. 2021, Eq. 6, with ``t = t_start - u h``)."""
        t, _ = self._coeffs(u, y)
        return self._drift(t, y)

    def g(self, u: float | Tensor, y: Tensor) -> Tensor:
        """Diagonal diffusion in step time: ``sqrt(h) g(t)`` for every coordinate (an expanded view)."""
        _, g = self._coeffs(u, y)
        return g.reshape(()).expand_as(y)

    def g_prod(self, u: float | Tensor, y: Tensor, v: Tensor) -> Tensor:
        """``sqrt(h) g(t) v`` without materialising the expanded diffusion."""
        _, g = self._coeffs(u, y)
        return g * v

    def f_and_g_prod(self, u: float | Tensor, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and ``g v`` at one time (the time and ``g`` are looked up once)."""
        t, g = self._coeffs(u, y)
        return self._drift(t, y), g * v

    def f_and_g(self, u: float | Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and the diagonal diffusion at one time."""
        t, g = self._coeffs(u, y)
        return self._drift(t, y), g.reshape(()).expand_as(y)

    def gdg_prod(self, u: float | Tensor, y: Tensor, v: Tensor) -> Tensor:
        """``(dg/dy) g v = 0``: the diffusion does not depend on the state (Milstein = Euler here)."""
        return torch.zeros_like(y)


#: methods whose ``step`` does tensor arithmetic on ``dt`` (``dt.sqrt()``): they get CPU 0-d
#: tensors as times, every other method plain floats
_TENSOR_TIME_METHODS = frozenset({"srk"})


def make_solver(sde: ReverseSDEStepTime, bm: torchsde.BaseBrownian, method: str) -> Any:
    """A torchsde fixed-step solver (``dt = 1`` in step time) for ``sde``.

    ``torchsde.sdeint`` validates its input by calling the drift once at ``ts[0]``: one wasted
    network evaluation per call (and per step when stepping one step at a time). The shapes
    here are right by construction, so the solver is built directly, as ``sdeint`` itself
    does after its check (torchsde 0.2.x: ``methods.select`` + ``ForwardSDE``).

    The diffusion does not depend on the state, so the Milstein correction
    ``g_prod_and_gdg_prod`` is torchsde's zero-correction version for additive noise instead of
    its autograd Jacobian-vector product for diagonal noise (same result, no graph per step).
    """
    solver_cls = methods.select(method=method, sde_type=sde.sde_type)
    forward = ForwardSDE(sde)
    forward.g_prod_and_gdg_prod = forward.g_prod_and_gdg_prod_additive
    return solver_cls(sde=forward, bm=bm, dt=1.0, adaptive=False, rtol=1e-5, atol=1e-4,
                      dt_min=1e-5, options={})


def integrate_sde(
    sde: ReverseSDEStepTime,
    y0: Tensor,
    method: str,
    bm: torchsde.BaseBrownian,
    on_step: Callable[[int, Tensor], None] | None = None,
    steps: Iterable[int] | None = None,
) -> Tensor:
    """Run ``sde.steps`` steps of ``method`` from ``y0`` (2-D) and return the final state.

    The loop calls the torchsde method's ``step(k, k + 1, y, extra)`` for ``k = 0..N-1`` (what
    torchsde's fixed-step ``integrate`` does with ``dt = 1``, without its per-step comparisons
    of time tensors). Only the current state and the method's extra state (reversible Heun)
    are kept: O(batch) memory. ``on_step(k, y)``, if given, sees the state after step ``k + 1``;
    ``steps`` is the loop's iterable of ``k`` (a :meth:`SamplingRun.steps <sdeflow.solvers.SamplingRun.steps>`;
    default ``range(N)``).
    """
    if y0.ndim != 2:
        raise ValueError(f"torchsde needs a 2-D state (batch, D), got {tuple(y0.shape)}")
    n = sde.steps
    solver = make_solver(sde, bm, method)
    sde.prepare(y0)
    if method in _TENSOR_TIME_METHODS:
        grid: list[Any] = list(torch.arange(n + 1, dtype=torch.float64).unbind())
    else:
        grid = [float(k) for k in range(n + 1)]
    y, extra = y0, solver.init_extra_solver_state(grid[0], y0)
    step = solver.step
    for k in range(n) if steps is None else steps:
        y, extra = step(grid[k], grid[k + 1], y, extra)
        if on_step is not None:
            on_step(k, y)
    return y
