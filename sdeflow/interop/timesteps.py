"""The one map between sdeflow's continuous time and a discrete-time network's timestep input.

A diffusers model was trained on integer timesteps ``k = 0..N-1`` with
``x = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps`` and ``abar_k = prod_{j<=k} (1 - beta_j)``. sdeflow
embeds that chain in continuous time as the ``ddpm`` process, whose marginal at ``t = i/N`` is the
chain's ``abar_i`` exactly (``i = 1..N``; ``t_min = 1/N``). Step ``k`` of the network is chain
index ``i = k + 1``, so

    timestep(t) = (t - 1/N) N,        t(k) = (k + 1) / N,

the convention of DPM-Solver for discrete-time models (Lu et al. 2022, "DPM-Solver": ``t_k =
(k + 1)/N``, network input ``(t - 1/N) N``): ``t = 1/N`` is timestep 0, ``t = 1`` timestep
``N - 1``, and the map is affine, so between the integers the network sees the fractional timestep
its sinusoidal time embedding is defined for. Why this one and not k-diffusion's (which feeds the
network the fractional index where ``log sigma`` lies between the discrete levels): the process
already interpolates ``log abar`` in ``t`` (a C^2 spline through the chain's values), and an
affine timestep keeps the network's input and the marginal parametrised by the same variable, so
the probability-flow ODE is one smooth function of ``t``; both conventions agree at every integer
timestep, which is all the network was trained on, and that is what the equality of sdeflow's
``ddim`` and ``dpm_solver`` with diffusers' own loops (tests) rests on.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import OptionError


def network_timestep(t: Tensor, num_train_timesteps: int) -> Tensor:
    """The timestep a discrete-time network gets at continuous time ``t``: ``(t - 1/N) N``.

    DPM-Solver's convention for discrete-time models (Lu et al. 2022): chain index ``i = k + 1`` sits
    at ``t = i/N`` in the ``ddpm`` process, so ``t = 1/N`` is timestep 0 and ``t = 1`` timestep
    ``N - 1``; affine in ``t``, the map keeps the network's input and the process's interpolation of
    ``log abar`` on one variable (the module docstring says why this and not k-diffusion's).

    Args:
        t: times in ``[1/N, 1]``, any shape.
        num_train_timesteps: ``N``.

    Returns:
        Fractional timesteps in ``[0, N - 1]``, in ``t``'s dtype (integers at ``t = (k + 1)/N``).
    """
    n = float(num_train_timesteps)
    return (t - 1.0 / n) * n


def time_of_timestep(timestep: Tensor | float, num_train_timesteps: int) -> Tensor:
    """The inverse of :func:`network_timestep`: ``t = (k + 1) / N`` (float64)."""
    k = torch.as_tensor(timestep, dtype=torch.float64)
    return (k + 1.0) / float(num_train_timesteps)


def timestep_schedule(score_model: Any, timesteps: Sequence[float] | Tensor) -> dict[str, Any]:
    """Sampler options that walk a diffusers scheduler's own timesteps and end as it does.

    For ``timesteps`` ``k_0 = N - 1 > k_1 > ... > k_m`` (what ``scheduler.timesteps`` holds after
    ``set_timesteps`` with ``timestep_spacing="trailing"`` or ``"linspace"``), the options
    ``schedule`` (the noise levels ``sigma/alpha`` at ``t(k_j)``), ``t_end = t(k_m)`` and
    ``denoise=True`` make ``ddim``, ``dpm_solver`` and ``unipc`` evaluate the network at exactly these
    timesteps and finish with the data prediction at ``k_m``, as diffusers' DDIM (``set_alpha_to_one``)
    and DPM-Solver++ (``final_sigmas_type="zero"``) do: ``m + 1`` evaluations.

    Args:
        score_model: a model of a ``ddpm`` process (e.g. from :func:`sdeflow.interop.from_diffusers`).
        timesteps: descending integer timesteps, the first ``N - 1``.

    Returns:
        ``{"schedule": [...], "t_end": ..., "denoise": True}``.

    Raises:
        OptionError: the process has no discrete chain, or the timesteps do not start at ``N - 1``
            (sdeflow's samplers start at ``t_max``, where the prior draw lives) or are not
            strictly decreasing integers in ``[0, N - 1]``.
    """
    process = score_model.process
    n = getattr(process, "num_steps", None)
    if not isinstance(n, int) or process.discrete_times() is None:
        raise OptionError(f"timestep_schedule needs a model of the ddpm process (a discrete chain of N steps), "
                          f"got {type(process).__name__}")
    ks = [float(k) for k in torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1).tolist()]
    if len(ks) < 2 or any(not k.is_integer() or not 0 <= k <= n - 1 for k in ks) or \
            any(not b < a for a, b in zip(ks, ks[1:])):
        raise OptionError(f"timesteps must be at least two strictly decreasing integers in [0, {n - 1}], got {ks}")
    if ks[0] != n - 1:
        raise OptionError(f"the first timestep must be N - 1 = {n - 1} (t = 1, where the prior draw lives), got "
                          f"{ks[0]:g}; use timestep_spacing='trailing' or 'linspace' (diffusers' 'leading' spacing "
                          "starts below it)")
    times = time_of_timestep(torch.tensor(ks, dtype=torch.float64), n)
    with torch.no_grad():
        lam = process.log_snr(times.to(dtype=torch.float64))
    levels = [math.exp(-0.5 * float(v)) for v in lam]
    return {"schedule": levels, "t_end": float(times[-1]), "denoise": True}
