"""diffusers' flow-matching Euler scheduler driven by the same exact model (``pip install sdeflow[peers]``).

``FlowMatchEulerDiscreteScheduler`` (the sampler of Stable Diffusion 3 and Flux) integrates the
rectified flow ``x_s = (1 - s) x_0 + s eps`` in its noise level ``s`` (``sigmas``) with Euler steps
``x <- x + (s_next - s) u(x, s)`` on the velocity ``u = E[eps - x_0 | x_s]`` (Liu et al. 2022;
Esser et al. 2024), from ``s = 1`` to ``s = 0``. The mapping (also in ``docs/bench.md``):

* **The rectified-flow frame of any process.** A state ``x_t = alpha_t x_0 + sigma_t eps`` divided
  by ``c_t = alpha_t + sigma_t`` is ``(1 - s) x_0 + s eps`` with ``s = sigma_t / (alpha_t + sigma_t)``,
  and back: ``t = t_from_log_snr(2 log((1 - s) / s))``. For ``rectified_flow`` itself ``c_t = 1``
  and ``s = t``; every other Gaussian-marginal process runs through the same frame, so the
  scheduler is compared on VP and VE too. The model diffusers calls returns ``eps_theta - x0_theta``
  of sdeflow's exact model at ``(c_t x, t)``: the exact velocity.
* **Schedule.** diffusers' own spacing: noise levels uniform in the unshifted ``s`` down to
  ``1 / N`` (``N = 1000`` training steps), then shifted, ``s -> k s / (1 + (k - 1) s)`` (SD3's
  ``shift = 3``; ``shift = 1`` is none), then the final step to ``s = 0``. It starts where the
  exact ``p_{t_max}`` draws live, at ``s_top = s(t_max)`` (0.999 for ``rectified_flow``, instead of
  diffusers' 1): the unshifted levels run from the preimage of ``s_top`` under the shift, passed as
  ``sigmas=`` (the scheduler shifts them itself). Where ``t_min > 0`` the bottom level is
  ``max(1 / N, s(t_min))`` before shifting (evaluation times are clamped into ``[t_min, t_max]``).
* **The end.** The last Euler step to ``s = 0``, ``x - s u``, is the data prediction
  ``E[x_0 | x_s]`` at the last level: the pathwise error is measured against the reference ODE
  solution followed by the same denoising, as for the other peers.
* **Precision.** The scheduler casts the state to float32 inside ``step`` and keeps its sigmas in
  float32: a floor near ``1e-7`` relative.

NFE: one model call per level; a budget ``B`` is ``B`` steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.score_model import ScoreModel
from ..errors import IncompatibleError, OptionError
from ..utils.shapes import append_dims

#: diffusers' training steps of the flow-matching schedulers
NUM_TRAIN_TIMESTEPS = 1000


def rf_frame(score_model: ScoreModel, t: float, like: Tensor) -> tuple[Tensor, float]:
    """``c_t = alpha_t + sigma_t`` (broadcast like ``like``) and the rectified-flow level ``s = sigma_t / c_t``."""
    tt = torch.full((like.shape[0],), float(t), dtype=like.dtype, device=like.device)
    with torch.no_grad():
        a, s = score_model.process.marginal(tt)
    c = a + s
    return append_dims(c, like.ndim), float(s[0] / c[0])


def time_of_level(score_model: ScoreModel, level: float, t_lo: float, t_hi: float) -> float:
    """The process time of the rectified-flow level ``s`` (``log-SNR = 2 log((1 - s) / s)``), clamped to
    ``[t_lo, t_hi]``."""
    if level <= 0.0:
        return t_lo
    if level >= 1.0:
        return t_hi
    lam = torch.tensor([2.0 * (math.log1p(-level) - math.log(level))], dtype=torch.float64)
    with torch.no_grad():
        t = float(score_model.process.t_from_log_snr(lam)[0])
    return min(max(t, t_lo), t_hi)


class FlowPeerModel:
    """The exact model as the flow-matching scheduler sees it: ``u(x, s) = eps_theta - x0_theta`` at ``(c_t x, t)``,
    with a call counter."""

    def __init__(self, score_model: ScoreModel) -> None:
        self.sm, self.nfe = score_model, 0

    def __call__(self, x_rf: Tensor, t: float) -> Tensor:
        self.nfe += 1
        c, _ = rf_frame(self.sm, t, x_rf)
        x = c * x_rf
        tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
        a, s = (append_dims(v, x.ndim) for v in self.sm.process.marginal(tt))
        eps = self.sm.eps(x, tt, check=False)
        return eps - (x - s * eps) / a


def unshifted_levels(top: float, bottom: float, steps: int, shift: float) -> list[float]:
    """``steps`` levels uniform in the unshifted ``s``, from the preimage of ``top`` under the shift
    ``s -> k s / (1 + (k - 1) s)`` down to ``bottom`` (already unshifted)."""
    k = float(shift)
    start = top / (k - (k - 1.0) * top)
    if steps == 1:
        return [start]
    return np.linspace(start, bottom, steps).tolist()


def run_flow_peer(config: Any, budget: int, score_model: ScoreModel, x_T: Tensor) -> tuple[Tensor, int, int]:
    """Sample with ``FlowMatchEulerDiscreteScheduler`` (shift ``config.kwargs["shift"]``) from the
    process-frame initial states ``x_T`` at ``t_max``.

    Args:
        config: the :class:`~sdeflow.bench.peers.PeerConfig`.
        budget: NFE budget (= steps).
        score_model: the exact (or any) sdeflow score model on a Gaussian-marginal process.
        x_T: initial states at ``t_max`` in the process's frame, ``(batch, *dims)``.

    Returns:
        ``(samples in data space, nfe, steps)``.
    """
    import diffusers

    process = score_model.process
    if not getattr(process, "gaussian_marginals", False):
        raise IncompatibleError(f"{config.label} needs a process with Gaussian marginals; {type(process).__name__} "
                                "has none")
    steps = int(budget)
    if steps < 1:
        raise OptionError(f"{config.label}: budget {budget} leaves no step")
    shift = float(config.kwargs.get("shift", 1.0))
    sched = getattr(diffusers, config.scheduler)(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift)
    t_lo, t_hi = float(process.t_min), float(process.t_max)
    c_hi, top = rf_frame(score_model, t_hi, x_T)
    _, low = rf_frame(score_model, t_lo, x_T)
    k = shift
    bottom = max(1.0 / NUM_TRAIN_TIMESTEPS, low / (k - (k - 1.0) * low))  # unshifted
    sched.set_timesteps(sigmas=unshifted_levels(top, bottom, steps, shift), device=x_T.device)
    model = FlowPeerModel(score_model)
    with torch.no_grad():
        x = x_T / c_hi
        for tau in sched.timesteps:
            level = float(sched.sigmas[sched.step_index if sched.step_index is not None else 0])
            u = model(x, time_of_level(score_model, level, t_lo, t_hi))
            x = sched.step(u, tau, x).prev_sample
    return x, model.nfe, steps
