"""Time grids for samplers that walk from ``t_max`` to ``t_end`` in discrete steps."""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.noise_levels import host_marginal, t_from_host_log_snr
from ..core.process import ForwardProcess
from ..errors import OptionError

GRID_SPACINGS = ("time", "log_snr")


def uniform_log_snr_times(process: ForwardProcess, t_start: float, t_end: float, n: int) -> Tensor:
    """``n + 1`` descending times from ``t_start`` to ``t_end`` (float64) uniform in the log-SNR
    ``log(alpha_t^2 / sigma_t^2)`` (Kingma et al. 2021, Eq. 2; DPM-Solver's ``"logSNR"`` skip, Lu et al.
    2022, Sec. 3.3), through the process's ``t_from_log_snr``.

    Raises:
        OptionError: the log-SNR is not finite at an end (``sigma = 0``: VE at ``t = 0``).
    """
    ends = torch.tensor([t_start, t_end], dtype=torch.float64)
    lam = host_marginal(process, ends)[2]
    if not torch.isfinite(lam).all():
        raise OptionError(f"log-SNR spacing needs a finite log-SNR at both ends, got {lam.tolist()} "
                          f"at t={ends.tolist()}; "
                          "pass t_end > t_min")
    grid = t_from_host_log_snr(process, torch.linspace(float(lam[0]), float(lam[1]), n + 1, dtype=torch.float64))
    grid[0], grid[-1] = t_start, t_end
    return grid


def reverse_grid(process: ForwardProcess, t_start: float, t_end: float, steps: int | None, default_steps: int,
                 spacing: str = "time") -> Tensor:
    """Descending times ``t_start = t_0 > ... > t_K = t_end`` (float64).

    A discrete-time process (one with :meth:`~sdeflow.ForwardProcess.discrete_times`) uses its
    own chain when ``steps`` is ``None`` and an evenly strided subset of it otherwise
    ("respacing", Nichol & Dhariwal 2021, Sec. 4), followed by ``t_end`` itself when ``t_end`` lies
    between two of its times (the run stops at ``t_end``, not at the chain time above it). A
    continuous process gets ``steps`` (default ``default_steps``) intervals uniform in ``t`` or in
    log-SNR (:func:`uniform_log_snr_times`).
    """
    if spacing not in GRID_SPACINGS:
        raise OptionError(f"spacing must be one of {', '.join(GRID_SPACINGS)}, got {spacing!r}")
    chain = process.discrete_times()
    if chain is not None:
        chain = chain.to(torch.float64)
        chain = chain[(chain <= t_start + 1e-12) & (chain >= t_end - 1e-12)]
        if steps is not None and steps + 1 < chain.numel():
            idx = torch.round(torch.linspace(0, chain.numel() - 1, int(steps) + 1, dtype=torch.float64)).long()
            chain = chain[idx]
        if chain.numel() == 0 or float(chain[-1]) > t_end + 1e-12:
            chain = torch.cat([chain, torch.tensor([t_end], dtype=torch.float64)])
        return chain
    n = int(steps or default_steps)
    if spacing == "time":
        return torch.linspace(t_start, t_end, n + 1, dtype=torch.float64)
    return uniform_log_snr_times(process, t_start, t_end, n)
