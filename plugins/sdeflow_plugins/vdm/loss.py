"""The VDM variational lower bound: its three terms, the training loss and a bits/dim breakdown.

Kingma et al. 2021 ("Variational Diffusion Models"): the VLB and its continuous-time limit
``T -> inf``, for data ``x`` with ``D`` values,

    -log p(x) <= VLB(x) = D_KL(q(z_1 | x) || p(z_1))          prior term
                        + E_{q(z_0 | x)}[-log p(x | z_0)]      reconstruction term
                        + L_inf(x),                            diffusion term
    L_inf(x) = 1/2 E_{t ~ U(0, 1), eps ~ N(0, I)} [gamma'(t) || eps - eps_hat(z_t; t) ||^2],
    z_t = alpha_t x + sigma_t eps,

``gamma = -log SNR`` (so ``-SNR'/SNR = gamma'``). Bits per dimension: ``VLB / (D ln 2)``.

* Prior: sdeflow's samplers start from the process prior ``N(0, sigma_1^2 I)`` (the marginal at
  ``t = 1`` without its data term), so ``p(z_1)`` is that Gaussian and the KL is
  ``1/2 SNR(1) ||x||^2``. The paper's ``N(0, I)`` differs by ``O(SNR(1)) = O(e^{-gamma_max})``
  (2e-9 at the default ``gamma_max = 20``); both are valid bounds, this one is the bound of the
  model the samplers draw from.
* Reconstruction: the discretised Gaussian decoder of :mod:`sdeflow_plugins.vdm.decoder` with
  one reparametrised draw ``z_0 = alpha_0 x + sigma_0 eps_0``.
* Diffusion: one time and one noise draw per sample; times are antithetic by default
  (:meth:`VDMProcess.sample_training_time`); ``gamma'`` in closed form (differentiable in the
  schedule's parameters). Any parametrization works (the network output is converted to
  ``eps`` by :func:`sdeflow.to_eps`). It is half of the core's likelihood-weighted
  denoising score matching, ``sdeflow.denoising_score_matching(weighting="likelihood",
  reduction="sum")``, whose weight ``g^2 / sigma^2`` equals ``gamma'`` here (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sdeflow import ScoreModel, append_dims, randn, to_eps
from sdeflow.errors import IncompatibleError, OptionError, ShapeError

from .decoder import check_on_levels, discretized_gaussian_log_prob
from .process import VDMProcess
from .schedule import GradientScale, LearnedGamma


@dataclass
class VLBTerms:
    """Per-sample terms of the VDM bound (nats, shape ``(batch,)``).

    Attributes:
        diffusion: ``L_inf`` Monte-Carlo estimate (one ``t``, one ``eps`` per sample).
        prior: ``D_KL(q(z_1 | x) || p(z_1))`` (exact).
        reconstruction: ``-log p(x | z_0)`` for one ``z_0`` per sample.
        n_dims: values per sample ``D``.
    """

    diffusion: Tensor
    prior: Tensor
    reconstruction: Tensor
    n_dims: int

    @property
    def total(self) -> Tensor:
        """The VLB per sample (nats)."""
        return self.diffusion + self.prior + self.reconstruction

    def bits_per_dim(self) -> dict[str, Tensor]:
        """Batch means of each term and of the total in bits per dimension (``/ (D ln 2)``)."""
        c = 1.0 / (self.n_dims * math.log(2.0))
        return {"diffusion": self.diffusion.mean() * c, "prior": self.prior.mean() * c,
                "reconstruction": self.reconstruction.mean() * c, "total": self.total.mean() * c}


def vdm_process(score_model: ScoreModel) -> VDMProcess:
    """The :class:`VDMProcess` of ``score_model``, or :class:`IncompatibleError`."""
    process = getattr(score_model, "process", None)
    if not isinstance(process, VDMProcess):
        raise IncompatibleError(f"the VDM loss needs a score model on the 'vdm' process, got "
                                f"{type(process).__name__}; use sdeflow.create_process('vdm')")
    return process


def _check_batch(x0: Tensor) -> None:
    if not isinstance(x0, Tensor) or x0.ndim < 2 or x0.shape[0] == 0:
        raise ShapeError(f"x0 must be a non-empty tensor of shape (batch, *dims), got "
                         f"{tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__}")


def diffusion_loss(score_model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None,
                   t: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
    """Continuous-time diffusion loss ``1/2 gamma'(t) ||eps - eps_hat(z_t; t)||^2`` per sample
    (Kingma et al. 2021, the ``T -> inf`` limit of the discrete-time loss).

    Args:
        score_model: a model on a :class:`VDMProcess` (any parametrization).
        x0: data, shape ``(batch, *dims)``.
        generator: random source for ``t`` (drawn first) and ``eps``.
        t: times (default: :meth:`VDMProcess.sample_training_time`).
        noise: ``eps`` (default: drawn from ``generator``).

    Returns:
        Nats per sample, shape ``(batch,)``; an unbiased estimate of ``L_inf(x)``.
    """
    process = vdm_process(score_model)
    _check_batch(x0)
    n = x0.shape[0]
    if t is None:
        t = process.sample_training_time(n, generator, x0.device, x0.dtype)
    if noise is None:
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
    gamma, dgamma = process.gamma_and_derivative(t)
    a_, s_ = process.alpha_sigma(gamma)
    a, s = append_dims(a_, x0.ndim), append_dims(s_, x0.ndim)
    xt = a * x0 + s * noise
    with process.reusing_schedule(t, (gamma, dgamma)):
        out = score_model.network_output(xt, t)
    derivatives: dict[str, Tensor] = {}
    if score_model.parametrization == "velocity":  # the velocity needs d alpha/dt, d sigma/dt: from gamma'
        da_, ds_ = process.alpha_sigma_derivatives(a_, s_, dgamma)
        derivatives = {"da": append_dims(da_, x0.ndim), "ds": append_dims(ds_, x0.ndim)}
    eps_hat = to_eps(score_model.parametrization, out, xt, a, s, **derivatives)
    return 0.5 * dgamma * (noise - eps_hat).pow(2).reshape(n, -1).sum(1)


def prior_loss(process: VDMProcess, x0: Tensor) -> Tensor:
    """``D_KL(N(alpha_1 x, sigma_1^2 I) || N(0, sigma_1^2 I)) = 1/2 SNR(1) ||x||^2`` per sample (nats),
    ``SNR(1) = exp(-gamma_max)``; see the module docstring for the choice of ``p(z_1)``."""
    _check_batch(x0)
    _, g1 = process.endpoints(x0)
    return 0.5 * torch.exp(-g1) * x0.reshape(x0.shape[0], -1).pow(2).sum(1)


def reconstruction_loss(process: VDMProcess, x0: Tensor, generator: torch.Generator | None = None,
                        noise: Tensor | None = None) -> Tensor:
    """``-log p(x | z_0)`` per sample for one draw ``z_0 = alpha_0 x + sigma_0 eps_0`` (nats).

    With ``m = z_0 / alpha_0 = x + exp(gamma_0 / 2) eps_0`` and ``s = exp(gamma_0 / 2)``, the
    decoder is :func:`~sdeflow_plugins.vdm.decoder.discretized_gaussian_log_prob` on the process's
    ``bins`` levels (reparametrised: gradients reach ``gamma_min``).

    Args:
        process: the VDM process (its ``bins``, ``data_range`` and ``gamma(0)``).
        x0: data on the level grid, shape ``(batch, *dims)`` (checked when ``process.check_data``).
        generator: random source for ``eps_0``.
        noise: ``eps_0`` (default: drawn from ``generator``).

    Returns:
        Nats per sample, shape ``(batch,)``.
    """
    _check_batch(x0)
    if process.check_data:
        check_on_levels(x0, process.bins, process.data_range)
    if noise is None:
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
    g0, _ = process.endpoints(x0)
    scale = torch.exp(0.5 * g0)
    logp = discretized_gaussian_log_prob(x0, x0 + scale * noise, scale, process.bins, process.data_range)
    return -logp.reshape(x0.shape[0], -1).sum(1)


def vlb_terms(score_model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None) -> VLBTerms:
    """All three terms of the VDM bound for a batch (random draws in the order ``t``, ``eps``, ``eps_0``).

    Args:
        score_model: a model on a :class:`VDMProcess`.
        x0: data on the process's level grid, shape ``(batch, *dims)``.
        generator: random source.

    Returns:
        :class:`VLBTerms` (per-sample nats).
    """
    process = vdm_process(score_model)
    _check_batch(x0)
    diff = diffusion_loss(score_model, x0, generator)
    rec = reconstruction_loss(process, x0, generator)
    return VLBTerms(diffusion=diff, prior=prior_loss(process, x0), reconstruction=rec, n_dims=x0[0].numel())


def vdm_loss(score_model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The VDM training loss: the batch-mean VLB in bits per dimension (``VDMProcess.default_loss``).

    Its value is always the VLB estimate. Gradients: the network and the schedule's endpoints get
    the VLB's gradient. The learned schedule's interior parameters ``eta`` get, when the process
    has ``minimize_variance`` (default), the gradient of ``mean_i L_i^2`` instead, ``L_i`` being
    sample ``i``'s diffusion term in bits/dim: in continuous time the VLB does not depend on the
    interior (Kingma et al. 2021, invariance to the noise schedule), so minimising
    ``E[L^2] = Var[L] + const`` minimises the variance of the VLB estimator, as the paper does.
    It costs nothing extra: ``d(L_i^2)/d eta = 2 L_i dL_i/d eta``, and every dependence of ``L_i`` on
    ``eta`` passes through sample ``i``'s ``r(t_i)``, ``r'(t_i)``, whose incoming gradient is
    multiplied by ``2 L_i`` by a tensor hook (:class:`~sdeflow_plugins.vdm.schedule.GradientScale`).

    Args:
        score_model: a model on a :class:`VDMProcess`.
        x0: data on the process's level grid, shape ``(batch, *dims)``.
        generator: random source.

    Returns:
        Scalar loss (bits per dimension).
    """
    process = vdm_process(score_model)
    _check_batch(x0)
    c = 1.0 / (x0[0].numel() * math.log(2.0))
    schedule = process.schedule
    scaled = (process.minimize_variance and schedule.has_interior and torch.is_grad_enabled()
              and any(p.requires_grad for p in schedule.parameters()))
    if not scaled:
        return vlb_terms(score_model, x0, generator).total.mean() * c
    scale = GradientScale(x0.shape[0])
    assert isinstance(schedule, LearnedGamma)  # the one schedule with an interior (has_interior)
    with schedule.scale_interior_gradients(scale):
        terms = vlb_terms(score_model, x0, generator)
    scale.scale = 2.0 * c * terms.diffusion.detach()
    return terms.total.mean() * c


def vlb_breakdown(score_model: ScoreModel, data: Tensor, generator: torch.Generator | None = None,
                  batch_size: int = 256, repeats: int = 1) -> dict[str, float]:
    """The VLB of a data set in bits per dimension, per term, with the standard error of the total.

    Every sample is evaluated ``repeats`` times (fresh ``t``, ``eps``, ``eps_0``), without gradients.

    Args:
        score_model: a model on a :class:`VDMProcess`.
        data: data on the process's level grid, shape ``(n, *dims)``.
        generator: random source.
        batch_size: samples per evaluation.
        repeats: evaluations per sample.

    Returns:
        ``{"diffusion", "prior", "reconstruction", "total", "total_se"}`` (bits/dim; ``total_se`` is
        the standard error of ``total`` over the ``n * repeats`` per-sample estimates).
    """
    vdm_process(score_model)
    _check_batch(data)
    if batch_size < 1 or repeats < 1:
        raise OptionError(f"batch_size and repeats must be positive, got {batch_size}, {repeats}")
    parts: dict[str, list[Tensor]] = {"diffusion": [], "prior": [], "reconstruction": []}
    with torch.no_grad():
        for _ in range(repeats):
            for i in range(0, data.shape[0], batch_size):
                terms = vlb_terms(score_model, data[i:i + batch_size], generator)
                for k in parts:
                    parts[k].append(getattr(terms, k).to(torch.float64))
    c = 1.0 / (data[0].numel() * math.log(2.0))
    cat = {k: torch.cat(v) * c for k, v in parts.items()}
    total = cat["diffusion"] + cat["prior"] + cat["reconstruction"]
    out = {k: float(v.mean()) for k, v in cat.items()}
    out["total"] = float(total.mean())
    out["total_se"] = float(total.std() / math.sqrt(total.numel())) if total.numel() > 1 else float("nan")
    return out
