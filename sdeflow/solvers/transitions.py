"""The Gaussian transitions of a process with Gaussian marginals, for samplers that step by them.

With ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2`` for
``s < t`` (Kingma et al. 2021, Eqs. 26-27):

* the forward transition ``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)``;
* the posterior ``q(x_s | x_t, x_0) = N(alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 /
  sigma_t^2 x_0, sigma_{t|s}^2 sigma_s^2 / sigma_t^2 I)``, the ancestral step of Ho et al. 2020
  (Algorithm 2) once ``x_0`` is the model's prediction.

All coefficients are tensors broadcastable against ``x`` (0-d for one time per batch).
"""

from __future__ import annotations

from torch import Tensor

#: the two variances of the reverse step: the posterior's (DDPM's beta-tilde) or the forward one (beta)
VARIANCES = ("posterior", "forward")


def ancestral_mean_var(x_t: Tensor, x0: Tensor, a_t: Tensor, s_t: Tensor, a_s: Tensor, s_s: Tensor,
                       variance: str = "posterior") -> tuple[Tensor, Tensor]:
    """Mean and variance of the reverse step ``x_s ~ q(x_s | x_t, x_0)`` from ``t`` to ``s < t``.

    Args:
        x_t: the state at ``t``.
        x0: the data prediction at ``(x_t, t)``.
        a_t: ``alpha_t``.
        s_t: ``sigma_t``.
        a_s: ``alpha_s``.
        s_s: ``sigma_s``.
        variance: ``"posterior"`` (``sigma_{t|s}^2 sigma_s^2 / sigma_t^2``) or ``"forward"`` (``sigma_{t|s}^2``).

    Returns:
        ``(mean, variance)``; the variance may be slightly negative from rounding (clamp before the root).
    """
    a_ts = a_t / a_s
    var_ts = s_t * s_t - a_ts * a_ts * s_s * s_s
    mean = (a_ts * s_s * s_s / (s_t * s_t)) * x_t + (a_s * var_ts / (s_t * s_t)) * x0
    var = var_ts * s_s * s_s / (s_t * s_t) if variance == "posterior" else var_ts
    return mean, var


def forward_transition(x_s: Tensor, a_s: Tensor, s_s: Tensor, a_t: Tensor, s_t: Tensor, noise: Tensor) -> Tensor:
    """A draw of ``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)`` for ``t > s`` from standard normal ``noise``."""
    a_ts = a_t / a_s
    return a_ts * x_s + (s_t * s_t - a_ts * a_ts * s_s * s_s).clamp_min(0).sqrt() * noise


__all__ = ["VARIANCES", "ancestral_mean_var", "forward_transition"]
