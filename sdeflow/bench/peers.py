"""Peer samplers: diffusers' schedulers driven by the same exact denoiser (``pip install sdeflow[peers]``).

The mapping between conventions (also in ``docs/bench.md``):

* **Discrete schedule.** diffusers' schedulers work on ``N = 1000`` training timesteps
  ``k = 0..N-1`` with ``alphas_cumprod[k] = prod_{j<=k} (1 - beta_j)``. Timestep ``k`` is
  sdeflow time ``t_k = t_lo + k (t_max - t_lo) / (N - 1)``, ``t_lo = max(t_min, t_max / N)``:
  for ``ddpm`` (``t_min = 1/N``), ``vp`` and ``subvp`` (``t_min = 1e-3``) that is ``t_k = (k+1)/N``,
  DDPM's own chain. The betas are passed as ``trained_betas`` so that ``alphas_cumprod[k]`` is
  exactly the process's ``alpha_t^2 / (alpha_t^2 + sigma_t^2) = sigmoid(log_snr(t_k))`` (for
  ``ddpm`` these are Ho et al.'s linear betas 1e-4..0.02 themselves, up to rounding).
* **Variance-preserving frame.** diffusers assumes ``x = sqrt(abar) x0 + sqrt(1 - abar) eps``; a
  process state ``x_t = alpha_t x0 + sigma_t eps`` is that frame scaled by
  ``c_t = sqrt(alpha_t^2 + sigma_t^2)`` (1 for VP and DDPM). The model diffusers calls is
  ``eps(x_vp, k) = eps_theta(c_t x_vp, t)`` with sdeflow's exact ``eps = -sigma_t score``, and the
  initial latents are the same exact ``p_{t_max}`` draws as sdeflow's samplers get, divided by
  ``c_{t_max}`` (times ``sqrt(1 + sigma_0^2)`` for the sigma-based Euler and Heun).
* **Timestep spacing.** Every scheduler starts at ``k = N - 1`` (``t_max``): DDPM and DDIM with
  ``timestep_spacing="trailing"`` (their default ``"leading"`` starts at ``k = 900`` for 10 steps,
  i.e. from ``t = 0.9`` with a ``t_max`` sample); Euler, Heun, DPM-Solver++ and UniPC with their
  default ``"linspace"``. ``clip_sample=False`` (no clipping to [-1, 1]).
* **Sigma-based schedulers** (Euler, Heun) interpolate ``sigma = sqrt((1 - abar)/abar)`` at
  fractional timesteps; the model is evaluated at the noise level the scheduler holds,
  ``t = t_from_log_snr(-2 log sigma)``, not at an interpolated time.
* **The end.** All of them finish with the data prediction at their last evaluation
  (``alphas_cumprod = 1`` / ``sigma = 0``), i.e. Tweedie's ``E[x0 | x_t]``: their pathwise error
  is measured against the reference ODE solution followed by the same denoising.
* **Precision.** diffusers keeps its schedule tables in float32 (Euler and DPM-Solver++ also cast
  the state to float32 inside ``step``): a floor near ``1e-7`` relative that sdeflow's float64
  samplers do not have. On sub-VP, ``1 - abar`` at the low-noise end (``~1e-8``) is below float32's
  resolution, so the last few training timesteps have ``sigma = 0`` there (the model is then
  evaluated at ``t_lo``).

NFE: one model call per timestep; Heun's and KDPM2's ``N`` steps cost ``2N - 1`` calls (no second
stage on the last step to ``sigma = 0``), so a budget ``B`` gives ``(B + 1) // 2`` steps; PNDM's
PLMS (``skip_prk_steps``) makes one call more than its steps, so ``B - 1``; all others ``B`` steps.

A model of a discrete chain of another length (a diffusers checkpoint with ``num_train_timesteps``
other than 1000, :func:`sdeflow.interop.from_diffusers`) passes its ``N`` to :func:`run_peer`.

The flow-matching Euler scheduler (``FlowMatchEulerDiscreteScheduler``, shift 1 and SD3's 3) works
in the rectified-flow frame instead: :mod:`sdeflow.bench.flow_peer`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..errors import IncompatibleError, OptionError
from ..utils.shapes import append_dims
from .flow_peer import run_flow_peer

#: diffusers' training timesteps
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class PeerConfig:
    """One diffusers scheduler configuration.

    Attributes:
        label: table label.
        scheduler: diffusers class name.
        kwargs: constructor options beyond the schedule.
        stochastic: draws noise in ``step`` (no pathwise error).
        sigma_based: the model input is scaled by ``1 / sqrt(1 + sigma^2)`` (Euler, Heun).
        evals_per_step: 2 for Heun and KDPM2 (the last step 1), else 1.
        order: the nominal order (deterministic schedulers).
        extra_evals: model calls beyond one per step (PNDM's PLMS: 1).
        flow: a flow-matching scheduler, run in the rectified-flow frame on the exact velocity
            (:mod:`sdeflow.bench.flow_peer`); ``kwargs["shift"]`` is its shift.
    """

    label: str
    scheduler: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    stochastic: bool = False
    sigma_based: bool = False
    evals_per_step: int = 1
    order: float | None = None
    extra_evals: int = 0
    flow: bool = False

    def steps_for(self, budget: int) -> int:
        """Inference steps within ``budget`` evaluations."""
        return (budget + 1) // 2 if self.evals_per_step == 2 else int(budget) - self.extra_evals


PEER_CONFIGS: list[PeerConfig] = [
    PeerConfig("diffusers DDPM", "DDPMScheduler", dict(timestep_spacing="trailing", clip_sample=False,
                                                       variance_type="fixed_small"), stochastic=True),
    PeerConfig("diffusers DDIM", "DDIMScheduler", dict(timestep_spacing="trailing", clip_sample=False,
                                                       set_alpha_to_one=True), order=1.0),
    PeerConfig("diffusers Euler", "EulerDiscreteScheduler", {}, sigma_based=True, order=1.0),
    PeerConfig("diffusers Heun", "HeunDiscreteScheduler", {}, sigma_based=True, evals_per_step=2, order=2.0),
    PeerConfig("diffusers DPMSolverMultistep", "DPMSolverMultistepScheduler",
               dict(solver_order=2, algorithm_type="dpmsolver++"), order=2.0),
    PeerConfig("diffusers UniPC", "UniPCMultistepScheduler", dict(solver_order=2), order=3.0),
    PeerConfig("diffusers DEIS", "DEISMultistepScheduler", dict(solver_order=2), order=2.0),
    PeerConfig("diffusers DPMSolverSinglestep", "DPMSolverSinglestepScheduler",
               dict(solver_order=2, algorithm_type="dpmsolver++", lower_order_final=True), order=2.0),
    PeerConfig("diffusers LMS", "LMSDiscreteScheduler", {}, sigma_based=True, order=4.0),
    PeerConfig("diffusers PNDM", "PNDMScheduler", dict(skip_prk_steps=True, timestep_spacing="trailing"), order=4.0,
               extra_evals=1),
    PeerConfig("diffusers KDPM2", "KDPM2DiscreteScheduler", {}, sigma_based=True, evals_per_step=2, order=2.0),
    PeerConfig("diffusers FlowMatchEuler", "FlowMatchEulerDiscreteScheduler", dict(shift=1.0), order=1.0, flow=True),
    PeerConfig("diffusers FlowMatchEuler shift=3", "FlowMatchEulerDiscreteScheduler", dict(shift=3.0), order=1.0,
               flow=True),
]
#: the deterministic discretisations of the DDPM chain (pathwise error against the reference ODE solution);
#: the flow-matching ones work in the rectified-flow frame (:mod:`sdeflow.bench.flow_peer`)
DETERMINISTIC_PEERS: list[str] = [c.label for c in PEER_CONFIGS if not c.stochastic and not c.flow]


def peers_available() -> bool:
    """True when diffusers is installed (``pip install sdeflow[peers]``)."""
    return importlib.util.find_spec("diffusers") is not None


def peer_config(label: str) -> PeerConfig:
    """The peer configuration ``label`` (:class:`OptionError` lists the valid ones)."""
    for c in PEER_CONFIGS:
        if c.label == label:
            return c
    raise OptionError(f"unknown peer {label!r}; valid: {', '.join(c.label for c in PEER_CONFIGS)}")


def peer_times(process: ForwardProcess, n: int = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """``t_k = t_lo + k (t_max - t_lo) / (n - 1)``, ``t_lo = max(t_min, t_max / n)`` (float64, ascending)."""
    t_max, t_min = float(process.t_max), float(process.t_min)
    t_lo = max(t_min, t_max / n)
    return t_lo + torch.arange(n, dtype=torch.float64) * ((t_max - t_lo) / (n - 1))


def peer_betas(process: ForwardProcess, times: Tensor) -> np.ndarray:
    """``trained_betas`` with ``prod_{j<=k} (1 - beta_j) = sigmoid(log_snr(t_k))``:
    ``beta_k = 1 - abar_k / abar_{k-1}``."""
    if not getattr(process, "gaussian_marginals", False):
        raise IncompatibleError(f"diffusers' schedulers need a process with Gaussian marginals; "
                                f"{type(process).__name__} has none")
    with torch.no_grad():
        lam = process.log_snr(times.to(torch.float64)).to(torch.float64)
    log_abar = torch.nn.functional.logsigmoid(lam)
    prev = torch.cat([torch.zeros(1, dtype=torch.float64), log_abar[:-1]])
    betas = -torch.expm1(log_abar - prev)
    if not (torch.isfinite(betas).all() and bool((betas > 0).all()) and bool((betas < 1).all())):
        raise IncompatibleError(f"{type(process).__name__}: the log-SNR is not strictly decreasing on "
                                f"[{float(times[0]):g}, {float(times[-1]):g}]; no diffusers schedule matches it")
    return betas.numpy()


class PeerModel:
    """The exact model as diffusers sees it: ``eps(x_vp, t) = eps_theta(c_t x_vp, t)`` (module docstring),
    with a call counter."""

    def __init__(self, score_model: ScoreModel) -> None:
        self.sm, self.nfe = score_model, 0

    def scale(self, t: float, like: Tensor) -> Tensor:
        """``c_t = sqrt(alpha_t^2 + sigma_t^2)``, shape ``(batch, 1, ...)``."""
        tt = torch.full((like.shape[0],), float(t), dtype=like.dtype, device=like.device)
        a, s = self.sm.process.marginal(tt)
        return append_dims(torch.sqrt(a * a + s * s), like.ndim)

    def __call__(self, x_vp: Tensor, t: float) -> Tensor:
        self.nfe += 1
        tt = torch.full((x_vp.shape[0],), float(t), dtype=x_vp.dtype, device=x_vp.device)
        return self.sm.eps(x_vp * self.scale(t, x_vp), tt, check=False)


@dataclass
class PeerResult:
    """Samples and cost of one peer run."""

    samples: Tensor
    nfe: int
    steps: int


def make_scheduler(config: PeerConfig, betas: np.ndarray) -> Any:
    """The diffusers scheduler of ``config`` on the discrete schedule ``betas``."""
    import diffusers

    cls = getattr(diffusers, config.scheduler)
    return cls(num_train_timesteps=len(betas), trained_betas=betas.tolist(), prediction_type="epsilon",
               **config.kwargs)


def run_peer(config: PeerConfig, budget: int, score_model: ScoreModel, x_T: Tensor,
             generator: torch.Generator | None = None, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> PeerResult:
    """Sample with diffusers' ``config.scheduler`` from the process-frame initial states ``x_T``.

    Args:
        config: the scheduler configuration.
        budget: NFE budget (:meth:`PeerConfig.steps_for`).
        score_model: the exact (or any) sdeflow score model; its process defines the schedule.
        x_T: initial states at ``t_max`` in the process's frame, ``(batch, *dims)``.
        generator: noise of stochastic schedulers (DDPM).
        num_train_timesteps: the discrete schedule's length ``N`` (a diffusers checkpoint's own).

    Returns:
        :class:`PeerResult` with samples in data space.
    """
    if config.flow:
        samples, nfe, steps = run_flow_peer(config, budget, score_model, x_T)
        return PeerResult(samples=samples, nfe=nfe, steps=steps)
    process = score_model.process
    times = peer_times(process, int(num_train_timesteps))
    betas = peer_betas(process, times)
    sched = make_scheduler(config, betas)
    steps = config.steps_for(budget)
    if steps < 1:
        raise OptionError(f"{config.label}: budget {budget} leaves no step")
    with np.errstate(divide="ignore"):  # sigma = 0 in float32 tables (sub-VP): reported as non-finite samples
        sched.set_timesteps(steps, device=x_T.device)
    model = PeerModel(score_model)
    t_list = times.tolist()
    t_lo, t_hi = t_list[0], t_list[-1]
    with torch.no_grad():
        x = x_T / model.scale(t_hi, x_T)  # variance-preserving frame at t_max
        if config.sigma_based:
            x = x * math.sqrt(1.0 + float(sched.sigmas[0]) ** 2)
        for tau in sched.timesteps:
            x_in = sched.scale_model_input(x, tau)
            if config.sigma_based:
                sigma = float(sched.sigmas[sched.step_index])
                if sigma > 0:  # float32 tables round sub-VP's abar(t_lo) = 1 - 1e-8 to 1: sigma = 0
                    lam = torch.tensor([-2.0 * math.log(sigma)], dtype=torch.float64)
                    t = min(max(float(process.t_from_log_snr(lam)[0]), t_lo), t_hi)
                else:
                    t = t_lo
            else:
                t = t_list[int(round(float(tau)))]
            eps = model(x_in, t)
            kw = {"generator": generator} if config.stochastic else {}
            x = sched.step(eps, tau, x, **kw).prev_sample
    return PeerResult(samples=x, nfe=model.nfe, steps=steps)
