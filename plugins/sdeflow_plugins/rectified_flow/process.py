"""Rectified flow (Liu et al. 2022) and flow matching (Lipman et al. 2023) as a forward process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sdeflow import ForwardProcess, append_dims, flow_matching_loss, logit_normal_time
from sdeflow.errors import OptionError

from . import interpolants as I

if TYPE_CHECKING:  # pragma: no cover
    from sdeflow import ScoreModel

#: training-time densities: uniform (Lipman et al. 2023; Liu et al. 2022) or SD3's logit-normal
TIME_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")
#: the default end of the interval at the noise side (see :class:`RectifiedFlowProcess`)
DEFAULT_T_MAX = 0.999


class RectifiedFlowProcess(ForwardProcess):
    """The interpolation ``x_t = (1 - t) x_0 + t eps`` (rectified flow, Liu et al. 2022, Eq. 1; conditional
    flow matching's optimal-transport path with ``sigma_min = 0``, Lipman et al. 2023, Eq. 20-23; SD3's
    forward process, Esser et al. 2024), or with ``interpolant="cosine"`` the trigonometric path
    ``x_t = cos(pi t / 2) x_0 + sin(pi t / 2) eps`` (Albergo & Vanden-Eijnden 2023), as a forward SDE.

    The flow ``dx_t/dt = E[eps - x_0 | x_t]`` that a flow-matching network learns is this process's
    probability-flow ODE (Song et al. 2021, Eq. 13): with ``f(t) = -1/(1 - t)`` and
    ``g(t)^2 = 2t/(1 - t)`` (closed forms in :mod:`.interpolants`), ``f x - g^2 score / 2 = E[eps - x_0 | x_t]``.
    So the ``ode`` sampler with ``method="euler"`` is the rectified-flow Euler sampler, every other
    sampler (DPM-Solver++, UniPC, EDM's Heun, DDIM, the reverse SDE, predictor-corrector, ancestral,
    annealed Langevin) runs on it unchanged, and :func:`sdeflow.log_likelihood` gives its density.

    **Time interval.** ``t_min = 0`` is the data itself (``sigma_0 = 0``, like VE: a network's score is
    infinite there, so the score-based integrators stop at ``sigma_t / alpha_t = 0.002`` and finish with
    one data-prediction step, see :attr:`sdeflow.ScoreModel.score_t_min`). ``t_max = 0.999`` by default,
    not 1: at ``t = 1`` ``alpha = 0``, the drift ``-x/(1 - t)`` and ``g^2 = 2t/(1 - t)`` are infinite and
    the log-SNR is ``-inf`` (the velocity itself stays finite, but the reverse SDE, the score form of the
    ODE and the solvers stepping in log-SNR are not defined there). At ``t_max = 0.999``:
    ``alpha = 1e-3``, ``sigma / alpha = 999`` (log-SNR -13.8; VP's is -10.0 at its ``t_max``), ``g^2 = 1998``;
    the data-free prior ``N(0, 0.999^2 I)`` differs from ``p_{t_max}`` by the ``1e-3 x_0`` it leaves out, a
    KL of about ``1e-6 E|x_0|^2 / 2`` nats, far below anything a network learns. This is Liu et al.'s own
    choice: their code trains and samples on ``[eps, 1]`` with ``eps = 1e-3`` at the noise end (in their
    reversed time). ``t_max = 1`` is refused (:class:`~sdeflow.errors.OptionError`).

    **Training.** The default loss (:meth:`default_loss`, what ``ScoreModel.loss`` and the Trainer call) is
    conditional flow matching, ``|| u_theta(x_t, t) - (eps - x_0) ||^2`` (Lipman et al. 2023, Eq. 23;
    :func:`sdeflow.flow_matching_loss`), and a :class:`sdeflow.ScoreModel` built on this process predicts
    the ``velocity`` unless told otherwise (``default_parametrization``). Training times are uniform
    on ``(t_min, t_max]`` or, with ``time_sampling="logit_normal"``, SD3's logit-normal
    ``t = t_max sigmoid(m + s n)`` (Esser et al. 2024, Sec. 3.1; :func:`sdeflow.logit_normal_time`).

    Args:
        t_max: end of the interval at the noise side, in ``(t_min, 1)`` (default 0.999, see above).
        interpolant: ``"linear"`` (rectified flow, default) or ``"cosine"``.
        time_sampling: ``"uniform"`` (default) or ``"logit_normal"`` (SD3).
        logit_mean: the logit-normal's location ``m`` (SD3: 0).
        logit_std: the logit-normal's scale ``s`` (SD3: 1).
        t_min: start of the interval (default 0, the data).
    """

    default_parametrization = "velocity"

    def __init__(self, t_max: float = DEFAULT_T_MAX, interpolant: str = "linear", time_sampling: str = "uniform",
                 logit_mean: float = 0.0, logit_std: float = 1.0, t_min: float = 0.0) -> None:
        super().__init__()
        if interpolant not in I.INTERPOLANTS:
            raise OptionError(f"unknown interpolant {interpolant!r}; valid: {', '.join(I.INTERPOLANTS)}")
        if time_sampling not in TIME_SAMPLINGS:
            raise OptionError(f"unknown time_sampling {time_sampling!r}; valid: {', '.join(TIME_SAMPLINGS)}")
        if not 0.0 <= float(t_min) < float(t_max) < 1.0:
            hint = (" (at t = 1, alpha_t = 0: the drift -1/(1 - t), g(t)^2 = 2t/(1 - t) and the log-SNR are "
                    "infinite; 0.999 is the default)") if float(t_max) >= 1.0 else ""
            raise OptionError(f"need 0 <= t_min < t_max < 1, got t_min={t_min!r}, t_max={t_max!r}{hint}")
        if not float(logit_std) > 0:
            raise OptionError(f"logit_std must be positive, got {logit_std!r}")
        self.interpolant, self.time_sampling = interpolant, time_sampling
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)
        self.t_min, self.t_max = float(t_min), float(t_max)

    # ------------------------------------------------------------------ the SDE
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t) = (1 - t, t)`` (linear) or ``(cos(pi t/2), sin(pi t/2))`` (cosine)."""
        return I.marginal(self.interpolant, t)

    def marginal_and_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha_t, sigma_t, alpha_t', sigma_t')`` in closed form (``alpha' = -1``, ``sigma' = 1`` on the
        linear path)."""
        a, s = I.marginal(self.interpolant, t)
        return (a, s, *I.derivatives(self.interpolant, t))

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = (alpha_t' / alpha_t) x``: ``-x / (1 - t)`` on the linear path."""
        return append_dims(I.drift_coefficient(self.interpolant, t), x.ndim) * x

    def g2(self, t: Tensor) -> Tensor:
        """``g(t)^2 = 2 sigma sigma' - 2 f sigma^2``: ``2t / (1 - t)`` on the linear path."""
        return I.g2(self.interpolant, t)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(g(t)^2)``."""
        return torch.sqrt(self.g2(t))

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = 2 log((1 - t) / t)`` (linear) or ``-2 log tan(pi t / 2)`` (cosine), closed form."""
        return I.log_snr(self.interpolant, t)

    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        """Closed-form inverse of :meth:`log_snr`: ``sigmoid(-lambda / 2)`` on the linear path."""
        return I.t_from_log_snr(self.interpolant, lam)

    # ------------------------------------------------------------------ training
    def sample_training_time(self, n: int, generator: torch.Generator | None = None,
                             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Uniform on ``(t_min, t_max]`` (``t_min``, where ``sigma = 0``, left out: an ``x0`` or ``score``
        network's velocity is undefined there), or SD3's logit-normal (Esser et al. 2024, Sec. 3.1)."""
        if self.time_sampling == "logit_normal":
            return logit_normal_time(n, generator, device, dtype, self.t_min, self.t_max, self.logit_mean,
                                     self.logit_std)
        u = super().sample_training_time(n, generator, device, torch.float64)  # U[t_min, t_max)
        return (self.t_min + self.t_max - u).to(dtype)

    def default_loss(self, score_model: "ScoreModel", x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Conditional flow matching (Lipman et al. 2023, Eq. 23): :func:`sdeflow.flow_matching_loss`."""
        return flow_matching_loss(score_model, x0, generator=generator)

    def extra_repr(self) -> str:
        extra = (f", logit_mean={self.logit_mean:g}, logit_std={self.logit_std:g}"
                 if self.time_sampling == "logit_normal" else "")
        return f"interpolant={self.interpolant!r}, time_sampling={self.time_sampling!r}{extra}, " + super().extra_repr()
