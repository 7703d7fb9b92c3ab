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
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torchsde
from torch import Tensor, nn
from torchsde._core import methods
from torchsde._core.base_sde import ForwardSDE

from ..dynamics import ReverseSDE
from ..process import ForwardProcess
from ..shapes import append_dims

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
        self.t_start, self.steps = float(t_start), int(steps)
        self.h = (float(t_start) - float(t_end)) / int(steps)
        self.sqrt_h = math.sqrt(self.h)

    def time(self, u: Tensor) -> Tensor:
        """Forward time ``t(u) = t_start - u h`` clamped into ``[t_min, t_max]``, shape ``(batch,)``."""
        t = self.process.clamp_time(self.t_start - u * self.h)
        return t.reshape(()).expand(self.shape[0])

    def f(self, u: Tensor, y: Tensor) -> Tensor:
        """Drift in step time: ``-h [f - g^2 score]``."""
        x = y.reshape(self.shape)
        return (-self.h * self.sde.drift(x, self.time(u))).reshape(y.shape)

    def g(self, u: Tensor, y: Tensor) -> Tensor:
        """Diagonal diffusion in step time: ``sqrt(h) g(t)`` for every coordinate."""
        g = self.sde.diffusion(self.time(u)) * self.sqrt_h
        return append_dims(g.to(y.dtype), y.ndim).expand_as(y)

    def g_prod(self, u: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """``g(t) v`` without materialising the expanded diffusion."""
        g = self.sde.diffusion(self.time(u)) * self.sqrt_h
        return append_dims(g.to(y.dtype), y.ndim) * v

    def gdg_prod(self, u: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """``(dg/dy) g v = 0``: the diffusion does not depend on the state (Milstein = Euler here)."""
        return torch.zeros_like(y)

    def step_of_time(self, t: float) -> str:
        """Describe which step a time belongs to, for error messages."""
        k = min(self.steps, max(1, int(math.floor((self.t_start - t) / self.h + 1e-9)) + 1))
        return f"step {k} of {self.steps}"


def make_solver(sde: ReverseSDEStepTime, bm: torchsde.BaseBrownian, method: str) -> Any:
    """A torchsde fixed-step solver (``dt = 1`` in step time) for ``sde``.

    ``torchsde.sdeint`` validates its input by calling the drift once at ``ts[0]``: one wasted
    network evaluation per call (and per step when stepping one step at a time). The shapes
    here are right by construction, so the solver is built directly, as ``sdeint`` itself
    does after its check (torchsde 0.2.x: ``methods.select`` + ``ForwardSDE``).
    """
    solver_cls = methods.select(method=method, sde_type=sde.sde_type)
    return solver_cls(sde=ForwardSDE(sde), bm=bm, dt=1.0, adaptive=False, rtol=1e-5, atol=1e-4,
                      dt_min=1e-5, options={})


def integrate_sde(
    sde: ReverseSDEStepTime,
    y0: Tensor,
    method: str,
    bm: torchsde.BaseBrownian,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Run ``sde.steps`` steps of ``method`` from ``y0`` (2-D) and return the final state.

    Without ``on_step`` one solver call covers all steps (O(batch) memory: only the initial
    and final states are kept). With it, the solver runs step by step, carrying its extra
    state (reversible Heun), and ``on_step(k, y)`` sees the state after step ``k + 1``.
    """
    if y0.ndim != 2:
        raise ValueError(f"torchsde needs a 2-D state (batch, D), got {tuple(y0.shape)}")
    n = sde.steps
    solver = make_solver(sde, bm, method)
    ts_kwargs = dict(dtype=y0.dtype, device=y0.device)
    ts = torch.tensor([0.0, float(n)], **ts_kwargs)
    extra = solver.init_extra_solver_state(ts[0], y0)
    if on_step is None:
        ys, _ = solver.integrate(y0, ts, extra)
        return ys[-1]
    y = y0
    for k in range(n):
        ys, extra = solver.integrate(y, torch.tensor([float(k), float(k + 1)], **ts_kwargs), extra)
        y = ys[-1]
        on_step(k, y)
    return y
