"""Training objectives built from the process's marginal and the model's parametrization.

Denoising score matching (Vincent 2011; Song et al. 2021, Eq. 7) with weighting ``lambda(t)``:

    L = E_t E_{x0, eps} lambda(t) || s_theta(x_t, t) + eps / sigma_t ||^2
      = E_t E_{x0, eps} (lambda(t) / sigma_t^2) || eps_theta(x_t, t) - eps ||^2,

written through the eps form so that every parametrization (eps, score, x0, v) and every
process share one implementation. Weightings:

* ``"simple"``: ``lambda = sigma_t^2``, the eps-MSE of DDPM (Ho et al. 2020, Eq. 14);
* ``"sigma2"``: NCSN's ``lambda(sigma) = sigma^2`` (Song & Ermon 2019, Eq. 6): the same
  objective in score form, kept as a name because papers use it;
* ``"likelihood"``: ``lambda = g(t)^2`` (Song et al. 2021b, "Maximum likelihood training",
  Thm. 1), optionally with importance sampling of ``t`` from ``p(t) ~ g(t)^2 / sigma_t^2``;
* ``"native"``: MSE on the parametrization's own target (eps, x0, v or velocity; for score
  models, ``"simple"``).

Conditional flow matching (Lipman et al. 2023, Eq. 23; Liu et al. 2022, Eq. 1), the objective of
flows (:func:`flow_matching_loss`), regresses the velocity ``u = a' x0 + s' eps`` of the path
``x_t = a x0 + s eps`` instead:

    L_CFM = E_t E_{x0, eps} || u_theta(x_t, t) - (a'_t x0 + s'_t eps) ||^2,

with ``u_theta`` converted from any parametrization; in the eps form it is denoising score
matching with the weight ``(D / a)^2``, ``D = a s' - s a'`` (``1 / (1 - t)^2`` on the linear path).
SD3's logit-normal time density (Esser et al. 2024, Sec. 3.1) is :func:`logit_normal_time`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import OptionError
from ..utils.shapes import rand, randn
from . import parametrization as P

if TYPE_CHECKING:  # pragma: no cover
    from .process import ForwardProcess
    from .score_model import ScoreModel

WEIGHTINGS = ("auto", "simple", "sigma2", "likelihood", "native")
REDUCTIONS = ("mean", "sum")


def likelihood_time_density(process: "ForwardProcess", n_grid: int = 2048, device: torch.device | str | None = None,
                            dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
    """Grid ``t``, unnormalised density ``w(t) = g(t)^2 / sigma_t^2`` and its normalised CDF.

    Used to importance-sample ``t`` for the likelihood weighting (Song et al. 2021b, Sec. 5).
    The grid is geometric near ``t_min`` where ``w`` is largest (``~ 1/t`` for VP), uniform
    when ``t_min = 0``. The CDF is the trapezoidal integral of ``w``, so sampling by linear
    interpolation of it draws ``t`` from the piecewise-constant density
    ``(cdf_k - cdf_{k-1}) / (t_k - t_{k-1})`` on each grid interval.
    """
    t0, t1 = float(process.t_min), float(process.t_max)
    s_min = float(process.marginal(torch.tensor([t0], dtype=dtype, device=device))[1][0])
    if not s_min > 0:
        raise OptionError(
            f"{type(process).__name__} has sigma_t = 0 at t_min = {t0:g}, where g^2/sigma^2 is not integrable: "
            "importance sampling for the likelihood weighting needs a process with t_min > 0 "
            "(e.g. create_process('ve', t_min=1e-5))"
        )
    u = torch.linspace(0.0, 1.0, n_grid, dtype=dtype, device=device)
    t = t0 * (t1 / t0) ** u if t0 > 0 else t0 + (t1 - t0) * u
    t[0], t[-1] = t0, t1
    with torch.no_grad():
        w = _likelihood_weight(process, t)
    area = 0.5 * (w[1:] + w[:-1]) * (t[1:] - t[:-1])
    cdf = torch.cat([torch.zeros(1, dtype=dtype, device=device), torch.cumsum(area, 0)])
    return t, w, cdf / cdf[-1]


def _likelihood_weight(process: "ForwardProcess", t: Tensor) -> Tensor:
    """``g(t)^2 / sigma_t^2``, the likelihood weighting in eps form (NaN/Inf mapped to 0)."""
    _, s = process.marginal(t)
    w = process.g2(t) / (s * s).clamp_min(torch.finfo(t.dtype).tiny)
    return torch.nan_to_num(w, nan=0.0, posinf=0.0)


def sample_importance_time(process: "ForwardProcess", n: int, generator: torch.Generator | None,
                           device: torch.device | str | None, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Times ``t ~ p(t)``, ``p ~ g^2 / sigma^2``, and the unbiasing weights ``q(t) / p(t)``.

    ``q`` is the plain training-time distribution, so for any ``f``
    ``E_p[q/p f] = E_q[f]``: the importance-sampled likelihood loss has exactly the
    expectation of the plain one, with lower variance (Song et al. 2021b, Sec. 5).

    * A discrete-time process (one with :meth:`~sdeflow.ForwardProcess.discrete_times`, whose
      :meth:`~sdeflow.ForwardProcess.sample_training_time` draws those times uniformly: DDPM,
      NCSN) samples its own ``K`` times with ``p_i ~ w(t_i)``; weight ``(1/K) / p_i``.
    * A continuous one samples ``[t_min, t_max]`` by inverse CDF on the grid of
      :func:`likelihood_time_density`; the weight uses the density actually sampled (piecewise
      constant on the grid), ``q / p = 1 / ((t_max - t_min) p(t))``, so no grid bias remains.

    Returns:
        ``(t, q(t) / p(t))``, both of shape ``(n,)`` and dtype ``dtype``.
    """
    chain = process.discrete_times()
    u = rand((n,), generator, device, torch.float64)
    if chain is not None:
        times = chain.to(device=device, dtype=torch.float64)
        with torch.no_grad():
            w = _likelihood_weight(process, times)
        if not bool((w > 0).all()):
            raise OptionError(f"{type(process).__name__}: g^2/sigma^2 is not positive and finite at every training "
                              "time; importance sampling for the likelihood weighting cannot be used")
        prob = w / w.sum()
        cdf = torch.cumsum(prob, 0)
        idx = torch.searchsorted(cdf, u * cdf[-1], right=True).clamp(max=times.numel() - 1)
        ratio = (1.0 / times.numel()) / prob[idx]
        return times[idx].to(dtype), ratio.to(dtype)
    grid, _, cdf = likelihood_time_density(process, device=device)
    idx = torch.searchsorted(cdf, u).clamp(1, grid.numel() - 1)
    c0, c1 = cdf[idx - 1], cdf[idx]
    width = grid[idx] - grid[idx - 1]
    frac = ((u - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
    t = grid[idx - 1] + frac * width
    density = (c1 - c0) / width  # of the normalised piecewise-constant sampling density
    ratio = 1.0 / ((float(process.t_max) - float(process.t_min)) * density)
    return t.to(dtype), ratio.to(dtype)


def denoising_score_matching(
    score_model: "ScoreModel",
    x0: Tensor,
    generator: torch.Generator | None = None,
    weighting: str = "auto",
    reduction: str = "mean",
    importance_sampling: bool = False,
) -> Tensor:
    """Denoising score-matching loss on a batch (see the module docstring for the weightings).

    Args:
        score_model: the model to train.
        x0: data batch, shape ``(batch, *dims)``.
        generator: random source for ``t`` and ``eps``.
        weighting: ``"auto"``, ``"simple"``, ``"sigma2"``, ``"likelihood"`` or ``"native"``
            (``"auto"`` = ``"native"``, i.e. ``"simple"`` for eps and score models).
        reduction: ``"mean"`` or ``"sum"`` over data dimensions (always mean over the batch).
        importance_sampling: with ``"likelihood"``, draw ``t`` from ``p(t) ~ g^2/sigma^2`` and
            weight by ``q(t)/p(t)`` (``q``: the plain time distribution), an estimator with the
            same expectation and lower variance (Song et al. 2021b; see
            :func:`sample_importance_time`).

    Returns:
        Scalar loss.
    """
    if weighting not in WEIGHTINGS:
        raise OptionError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if reduction not in REDUCTIONS:
        raise OptionError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if importance_sampling and weighting != "likelihood":
        raise OptionError("importance_sampling applies to weighting='likelihood' only")
    process = score_model.process
    n = x0.shape[0]
    kind = score_model.parametrization
    if weighting == "auto":
        weighting = "native"
    if weighting == "native" and kind in ("eps", "score"):
        weighting = "simple"
    per_t_weight: Tensor | None = None
    if importance_sampling:
        t, per_t_weight = sample_importance_time(process, n, generator, x0.device, x0.dtype)
    else:
        t = process.sample_training_time(n, generator, x0.device, x0.dtype)
    eps = randn(x0.shape, generator, x0.device, x0.dtype)
    c = score_model.coefficients(t, x0.ndim)
    a, s = c["a"], c["s"]
    s_ = s.reshape(n)
    xt = a * x0 + s * eps
    out = score_model.network_output(xt, t)
    if weighting == "native":
        err = out - P.target(kind, x0, eps, **c)
    else:
        err = P.to_eps(kind, out, xt, **c) - eps
    sq = err.pow(2)
    if weighting != "likelihood":
        # unweighted: the batch mean of per-sample means (sums) is the mean over all elements
        # (times the elements per sample); two kernels fewer forward and backward
        return sq.mean() if reduction == "mean" else sq.sum() / n
    sq = sq.reshape(n, -1)
    per_sample = sq.mean(1) if reduction == "mean" else sq.sum(1)
    w = process.g2(t) / (s_ * s_)
    per_sample = per_sample * (w * per_t_weight if per_t_weight is not None else w)
    return per_sample.mean()


def logit_normal_time(n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32, t_min: float = 0.0, t_max: float = 1.0, mean: float = 0.0,
                      std: float = 1.0) -> Tensor:
    """Training times from SD3's logit-normal density (Esser et al. 2024, Sec. 3.1, Eq. 19):
    ``t = t_min + (t_max - t_min) sigmoid(m + s n)``, ``n ~ N(0, 1)``, which puts more training
    weight on the middle of the path (``m = 0``, ``s = 1`` was SD3's best).

    Args:
        n: number of times.
        generator: random source.
        device: device of the result.
        dtype: dtype of the result.
        t_min: where the unit interval's 0 is mapped.
        t_max: where the unit interval's 1 is mapped.
        mean: location ``m`` of the logit.
        std: scale ``s > 0`` of the logit.

    Returns:
        Times of shape ``(n,)`` in ``(t_min, t_max)``.
    """
    if not std > 0:
        raise OptionError(f"the logit-normal scale must be positive, got std={std!r}")
    z = randn((n,), generator, device, torch.float64)
    u = torch.sigmoid(float(mean) + float(std) * z)
    return (float(t_min) + (float(t_max) - float(t_min)) * u).to(dtype)


def flow_matching_loss(score_model: "ScoreModel", x0: Tensor, generator: torch.Generator | None = None,
                       reduction: str = "mean") -> Tensor:
    """Conditional flow matching (Lipman et al. 2023, Eq. 23; Liu et al. 2022, Eq. 1):
    ``|| u_theta(x_t, t) - (a'_t x0 + s'_t eps) ||^2`` with ``x_t = a_t x0 + s_t eps`` and
    ``t ~ process.sample_training_time`` (uniform, or SD3's logit-normal, Esser et al. 2024).

    For ``rectified_flow`` (``x_t = (1 - t) x0 + t eps``) the target is ``eps - x0``. A network in the
    ``velocity`` parametrization regresses it directly; any other parametrization is converted to
    the velocity first (:func:`sdeflow.core.parametrization.to_velocity`), which is the same objective
    with its own weighting (in the eps form ``(D / a)^2``, ``D = a s' - s a'``).

    Args:
        score_model: the model to train.
        x0: data batch, shape ``(batch, *dims)``.
        generator: random source for ``t`` and ``eps``.
        reduction: ``"mean"`` or ``"sum"`` over data dimensions (always mean over the batch).

    Returns:
        Scalar loss.
    """
    if reduction not in REDUCTIONS:
        raise OptionError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    process = score_model.process
    n = x0.shape[0]
    t = process.sample_training_time(n, generator, x0.device, x0.dtype)
    eps = randn(x0.shape, generator, x0.device, x0.dtype)
    c = score_model.coefficients(t, x0.ndim, derivatives=True)
    xt = c["a"] * x0 + c["s"] * eps
    out = score_model.network_output(xt, t)
    err = P.to_velocity(score_model.parametrization, out, xt, **c) - P.target("velocity", x0, eps, **c)
    sq = err.pow(2)
    return sq.mean() if reduction == "mean" else sq.sum() / n
