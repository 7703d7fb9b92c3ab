"""Noise levels ``sigma_t / alpha_t`` of a process, evaluated on the host in float64.

Notation: ``log_snr(t) = log(alpha_t^2 / sigma_t^2)`` (Kingma et al. 2021, Eq. 2). EDM's noise level
of the scaled variable ``x / alpha_t`` is ``sigma_t / alpha_t = exp(-log_snr / 2)`` (Karras et al. 2022,
Eq. 4 with ``s(t) = alpha_t``). Schedules, the score model's noise floor and the samplers' grids are
computed from these values once, before a sampling loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .process import ForwardProcess

#: EDM's smallest noise level ``sigma / alpha`` (Karras et al. 2022, Table 1): where a schedule uniform
#: in log-SNR or in ``sigma^(1/rho)`` stops short of a ``t_end`` with ``sigma = 0``, and the default
#: :attr:`~sdeflow.ScoreModel.noise_floor`
EDM_SIGMA_MIN = 0.002
#: EDM's largest noise level (Karras et al. 2022, Table 1)
EDM_SIGMA_MAX = 80.0


def host_dtype(process: ForwardProcess) -> torch.dtype:
    """float64, unless the process has floating parameters of another dtype (a learned schedule)."""
    for p in process.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float64


def _device(process: ForwardProcess) -> torch.device:
    return next((b.device for b in list(process.parameters()) + list(process.buffers())), torch.device("cpu"))


def host_marginal(process: ForwardProcess, times: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(alpha_t, sigma_t, log_snr(t))`` of ``process`` at ``times``, as float64 CPU tensors."""
    t = times.to(device=_device(process), dtype=host_dtype(process))
    with torch.no_grad():
        a, s = process.marginal(t)
        lam = process.log_snr(t)
    a, s, lam = (v.detach().to("cpu", torch.float64) for v in (a, s, lam))
    return a, s, lam


def t_from_host_log_snr(process: ForwardProcess, lam: Tensor) -> Tensor:
    """Times of the log-SNR values ``lam`` (``process.t_from_log_snr``), as a float64 CPU tensor."""
    with torch.no_grad():
        t = process.t_from_log_snr(lam.to(device=_device(process), dtype=host_dtype(process)))
    return t.detach().to("cpu", torch.float64)


def scaled_sigma(process: ForwardProcess, t: Tensor) -> Tensor:
    """EDM's noise level of ``x / alpha_t``: ``sigma_t / alpha_t = exp(-log_snr(t) / 2)`` (Karras et al.
    2022, Eq. 4 and Table 1 with ``s(t) = alpha_t``); 0 where ``sigma_t = 0``. Float64, on the host."""
    return torch.exp(-0.5 * host_marginal(process, t.to(torch.float64))[2])


def t_from_scaled_sigma(process: ForwardProcess, sigma: Tensor) -> Tensor:
    """Inverse of :func:`scaled_sigma` through ``t_from_log_snr(-2 log sigma)``."""
    return t_from_host_log_snr(process, -2.0 * torch.log(sigma.to(torch.float64)))


__all__ = ["EDM_SIGMA_MAX", "EDM_SIGMA_MIN", "host_marginal", "scaled_sigma", "t_from_host_log_snr",
           "t_from_scaled_sigma"]
