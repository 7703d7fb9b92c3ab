"""The exact conditional of a Gaussian mixture given some of its coordinates.

For ``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` and a split of the coordinates into observed ``O`` and
unobserved ``U``,

    p(x_U | x_O = v) = sum_k w'_k N(x_U; mu_k,U + Sigma_k,UO Sigma_k,OO^{-1} (v - mu_k,O),
                                          Sigma_k,UU - Sigma_k,UO Sigma_k,OO^{-1} Sigma_k,OU),
    w'_k ~ w_k N(v; mu_k,O, Sigma_k,OO)

(the Gaussian conditioning formulas, Bishop 2006, Eqs. 2.81-2.82, per component; the weights are
Bayes' rule for the component given the observation). Computed in float64 with Cholesky
factorisations of the observed blocks.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..errors import OptionError, ShapeError


def condition_on_coordinates(weights: Tensor, means: Tensor, covs: Tensor, mask: Tensor | Sequence[bool],
                             values: Tensor | Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """The weights ``(K,)``, means ``(K, |U|)`` and covariances ``(K, |U|, |U|)`` (float64) of
    ``p(x_U | x_O = values_O)`` (module docstring) over the unobserved coordinates, in their order.

    Args:
        weights: the joint mixture's weights ``(K,)``.
        means: its means ``(K, d)``.
        covs: its covariances ``(K, d, d)``.
        mask: boolean with ``d`` entries (any shape), ``True`` = observed.
        values: ``d`` values (entries where ``mask`` is False are ignored).

    Raises:
        OptionError: a mask that is not boolean, observes nothing or everything, or non-finite
            observed values.
        ShapeError: mask or values without ``d`` entries.
    """
    d, device = means.shape[1], means.device
    m = torch.as_tensor(mask, device=device)
    if m.dtype != torch.bool:
        raise OptionError(f"mask must be boolean (True = observed), got dtype {m.dtype}")
    v = torch.as_tensor(values, dtype=torch.float64, device=device)
    if m.numel() != d or v.numel() != d:
        raise ShapeError(f"mask and values must have {d} entries (the mixture's dimension), got {m.numel()} and "
                         f"{v.numel()}")
    m, v = m.reshape(d), v.reshape(d)
    obs, unobs = m.nonzero().reshape(-1), (~m).nonzero().reshape(-1)
    if obs.numel() == 0 or unobs.numel() == 0:
        raise OptionError(f"mask must observe at least one coordinate and leave at least one unobserved; it observes "
                          f"{obs.numel()} of {d}")
    vo = v[obs]
    if not bool(torch.isfinite(vo).all()):
        raise OptionError("the observed values contain NaN/Inf")
    cov = covs.to(torch.float64)
    mu = means.to(torch.float64)
    s_oo = cov[:, obs][:, :, obs]
    s_uo = cov[:, unobs][:, :, obs]
    s_uu = cov[:, unobs][:, :, unobs]
    chol = torch.linalg.cholesky(s_oo)
    diff = (vo[None] - mu[:, obs])[..., None]  # (K, |O|, 1)
    sol = torch.cholesky_solve(diff, chol)  # Sigma_OO^{-1} (v - mu_O)
    cond_means = mu[:, unobs] + (s_uo @ sol)[..., 0]
    gain = torch.cholesky_solve(s_uo.transpose(-1, -2), chol)  # Sigma_OO^{-1} Sigma_OU
    cond_covs = s_uu - s_uo @ gain
    cond_covs = 0.5 * (cond_covs + cond_covs.transpose(-1, -2))
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_lik = -0.5 * ((diff[..., 0] * sol[..., 0]).sum(-1) + logdet + obs.numel() * math.log(2 * math.pi))
    log_w = torch.log(weights.to(torch.float64)) + log_lik
    return torch.softmax(log_w, dim=0), cond_means, cond_covs


__all__ = ["condition_on_coordinates"]
