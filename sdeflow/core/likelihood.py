"""Log-likelihood through the probability-flow ODE (instantaneous change of variables).

The probability-flow ODE ``dx/dt = f_tilde(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t)`` (Song et al.
2021, Eq. 13) transports ``p_t`` along its trajectories, and along a trajectory the density obeys
the instantaneous change of variables (Chen et al. 2018, Theorem 1):

    d log p_t(x(t)) / dt = - div f_tilde(x(t), t).

Integrating the augmented system ``(x, Delta)`` with ``dDelta/dt = div f_tilde`` from ``t_start``
(default the model's :attr:`~sdeflow.ScoreModel.score_t_min`: the process's ``t_min``, unless the
model's score is infinite there) to ``t_max`` gives (Song et al. 2021, Eq. 39-40, App. D.2)

    log p_{t_start}(x) = log p_{t_max}(x(t_max)) + int_{t_start}^{t_max} div f_tilde(x(t), t) dt.

The divergence is computed exactly (one vectorised vector-Jacobian product per data dimension,
for low dimension) or estimated with the Skilling-Hutchinson trace estimator
``div f_tilde = E[eps^T (d f_tilde / dx) eps]`` (Skilling 1989; Hutchinson 1990; Grathwohl et al.
2019, FFJORD) with Rademacher or Gaussian probes drawn once per integration from a
``torch.Generator`` and held fixed along the trajectory (so the ODE stays deterministic and every
torchdiffeq method applies). With ``K`` probes each probe's integral is carried in its own
channel: the ``K`` per-probe log-densities are i.i.d. unbiased estimates, whose mean is the result
and whose standard deviation over ``sqrt(K)`` is its standard error.

Bits per dimension of discrete data under uniform dequantization: see :func:`bits_per_dim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import NonFiniteError, OptionError, ShapeError, TimeRangeError
from ..utils.shapes import rand, randn
from ..utils.validation import check_positive_int
from .evaluator import Evaluator
from .ode import FlowField, check_ode_options, integrate_ode, ode_failures
from .score_model import ScoreModel

#: divergence estimators
ESTIMATORS: tuple[str, ...] = ("auto", "exact", "hutchinson")
#: Hutchinson probe distributions
PROBES: tuple[str, ...] = ("rademacher", "gaussian")
#: with ``estimator="auto"``, data of at most this many dimensions get the exact divergence
AUTO_EXACT_MAX_DIM = 64


@dataclass
class LikelihoodResult:
    """What :func:`log_likelihood` returns.

    Attributes:
        log_prob: ``log p_{t_start}(x)`` in nats, shape ``(n,)`` (the mean over probes for
            Hutchinson).
        nfe: score evaluations (one per evaluation of the vector field; the backward passes of
            the divergence are not counted separately).
        prior_log_prob: ``log p_T(x_T)`` from ``score_model.prior_log_prob``, shape ``(n,)``.
        delta_logp: ``int_{t_start}^{t_max} div f_tilde dt``, shape ``(n,)`` (mean over probes).
        latent: ``x_T``, the ODE's image of ``x`` at ``t_max`` (shape of ``x``).
        stderr: standard error of ``log_prob`` over the Hutchinson probes, shape ``(n,)``;
            ``None`` for the exact divergence or a single probe.
        per_probe: per-probe log-densities ``(n, n_probes)`` (Hutchinson only, else ``None``).
        estimator: ``"exact"`` or ``"hutchinson"`` (what ``"auto"`` resolved to).
        n_probes: probes per sample (0 for the exact divergence).
        n_dims: data dimensions per sample ``D``.
        t_start: the time ``t`` of the density ``log p_t`` in :attr:`log_prob`, where the integration
            starts: the ``t_start`` argument, or by default ``score_model.score_t_min``, which is the
            process's ``t_min`` unless the process has no noise there (``sigma_{t_min} = 0``, VE at
            ``t = 0``) and the network predicts ``eps``/``x0``/``v`` (then its score is infinite at
            ``t_min`` and this is the time at which ``sigma_t / alpha_t`` reaches the model's
            ``noise_floor``, 0.002 by default); ``log_prob`` is then the density of the data
            perturbed with that little noise, ``p_{t_start}``, not ``p_{t_min}``.
        t_end: the end of the integration interval (``t_max``).
        steps: solver steps taken (accepted steps for adaptive methods).
    """

    log_prob: Tensor
    nfe: int
    prior_log_prob: Tensor
    delta_logp: Tensor
    latent: Tensor
    stderr: Tensor | None
    per_probe: Tensor | None
    estimator: str
    n_probes: int
    n_dims: int
    t_start: float
    t_end: float
    steps: int

    def bits_per_dim(self, bins: int = 256, data_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
        """Bits per dimension of the discrete data (see :func:`bits_per_dim`), shape ``(n,)``."""
        return bits_per_dim(self.log_prob, self.n_dims, bins=bins, data_range=data_range)


def bits_per_dim(log_prob: Tensor, n_dims: int, bins: int = 256,
                 data_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Upper bound on the bits per dimension of discrete data from a continuous log-density.

    For integer data dequantized uniformly onto ``data_range`` (:func:`dequantize`), Jensen's
    inequality gives ``log P(k) >= E_u[log p(z)] + D log Delta`` with ``Delta = (hi - lo) / bins``
    (Theis et al. 2016, Eq. 11), so ``bpd = -log p(z) / (D ln 2) + log_2(bins / (hi - lo))``: 7 bits
    of offset for 8-bit data in ``[-1, 1]``, as in Song et al. 2021's code (derivation:
    ``docs/likelihood.md``).

    Args:
        log_prob: ``log p(z)`` in nats, shape ``(n,)``.
        n_dims: ``D``, values per sample.
        bins: number of discrete levels per value (256 for 8-bit).
        data_range: ``(lo, hi)``, the interval the levels were mapped onto.

    Returns:
        Bits per dimension, shape ``(n,)``.
    """
    lo, hi = (float(v) for v in data_range)
    if not hi > lo:
        raise OptionError(f"data_range must be (lo, hi) with hi > lo, got {data_range!r}")
    check_positive_int("bins", bins)
    check_positive_int("n_dims", n_dims)
    log_delta = math.log((hi - lo) / int(bins))
    return -(log_prob + int(n_dims) * log_delta) / (int(n_dims) * math.log(2.0))


def dequantize(k: Tensor, bins: int = 256, data_range: tuple[float, float] = (-1.0, 1.0),
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform dequantization ``z = lo + (hi - lo) (k + u) / bins``, ``u ~ U[0, 1)`` (Theis et al. 2016).

    The convention :func:`bits_per_dim` assumes.

    Args:
        k: integer levels in ``{0, ..., bins-1}``, any shape.
        bins: number of levels.
        data_range: ``(lo, hi)``.
        generator: random source of ``u``.
        dtype: floating dtype of the result.

    Returns:
        Dequantized values in ``[lo, hi)``, shaped like ``k``.
    """
    check_positive_int("bins", bins)
    lo, hi = (float(v) for v in data_range)
    if not hi > lo:
        raise OptionError(f"data_range must be (lo, hi) with hi > lo, got {data_range!r}")
    kf = k.to(dtype)
    if kf.numel() and (bool((kf < 0).any()) or bool((kf > bins - 1).any()) or bool((kf != kf.round()).any())):
        raise OptionError(f"k must hold integer levels in [0, {bins - 1}]")
    u = rand(tuple(k.shape), generator, k.device, dtype)
    return lo + (hi - lo) * (kf + u) / int(bins)


class _AugmentedField(nn.Module):
    """``d/dt (x, Delta_1..K) = (f_tilde(x, t), eps_k^T J eps_k)`` on a flat ``(n, D + K)`` state.

    ``J = d f_tilde / dx``. For the exact divergence the probes are the ``D`` basis vectors and
    their quadratic forms (the diagonal of ``J``) are summed into one channel.
    """

    def __init__(self, flow: FlowField, shape: tuple[int, ...], probes: Tensor, exact: bool,
                 vectorize: bool) -> None:
        super().__init__()
        self.flow, self.shape, self.probes, self.exact, self.vectorize = flow, shape, probes, exact, vectorize
        self.n = shape[0]
        self.d = int(math.prod(shape[1:]))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x = y[:, : self.d].detach().reshape(self.shape).requires_grad_(True)
            v = self.flow(t, x)
            if not v.requires_grad:
                raise RuntimeError(
                    "log_likelihood: the probability-flow velocity does not depend on x through autograd "
                    "(is the score computed under torch.no_grad() or detached?); the divergence needs "
                    "d score / dx")
            vjp = None
            if self.vectorize:
                try:
                    (vjp,) = torch.autograd.grad(v, x, grad_outputs=self.probes, is_grads_batched=True,
                                                 allow_unused=True, retain_graph=True)
                except RuntimeError as exc:  # an operation vmap cannot batch (diffusers' UNets): loop from now on
                    if "vmap" not in str(exc) and "batched" not in str(exc).lower():
                        raise
                    self.vectorize = False
            if not self.vectorize:
                rows = []
                for k in range(self.probes.shape[0]):
                    (r,) = torch.autograd.grad(v, x, grad_outputs=self.probes[k], retain_graph=True,
                                               allow_unused=True)
                    rows.append(torch.zeros_like(x) if r is None else r)
                vjp = torch.stack(rows)
        if vjp is None:
            vjp = torch.zeros_like(self.probes)
        q = (vjp * self.probes).reshape(self.probes.shape[0], self.n, self.d).sum(-1)  # (K, n)
        if self.exact:
            q = q.sum(0, keepdim=True)
        return torch.cat([v.detach().reshape(self.n, self.d), q.transpose(0, 1)], dim=1)


def _split_norm(d: int):  # type: ignore[no-untyped-def]
    """Error norm of the flat state: the larger of the RMS over the ``x`` part and over the
    log-density channels (torchdiffeq's norm for a tuple state), so the log-density's error is
    controlled on its own however many data dimensions there are."""

    def norm(e: Tensor) -> Tensor:
        e = e.reshape(-1, e.shape[-1]) if e.ndim > 1 else e.reshape(1, -1)
        a = e[:, :d].abs().pow(2).mean().sqrt()
        b = e[:, d:].abs().pow(2).mean().sqrt()
        return torch.maximum(a, b)

    return norm


def _draw_probes(kind: str, k: int, shape: tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device, dtype: torch.dtype) -> Tensor:
    full = (k, *shape)
    if kind == "gaussian":
        return randn(full, generator, device, dtype)
    # Rademacher: +-1 with probability 1/2 each
    return torch.where(rand(full, generator, device, dtype) < 0.5, -1.0, 1.0).to(dtype)


def log_likelihood(
    score_model: ScoreModel,
    x: Tensor,
    *,
    estimator: str = "auto",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    method: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    steps: int | None = None,
    t_start: float | None = None,
    options: dict[str, Any] | None = None,
    vectorize: bool = True,
    check_finite: bool = True,
) -> LikelihoodResult:
    """``log p_{t_start}(x)`` of a score model through its probability-flow ODE.

    Implements Song et al. 2021, Eq. 39-40 (Appendix D.2) with Chen et al. 2018's instantaneous
    change of variables: integrate ``dx/dt = f - 1/2 g^2 s_theta`` together with
    ``dDelta/dt = div(f - 1/2 g^2 s_theta)`` from ``t_start`` to ``t_max`` and return
    ``log p_T(x_T) + Delta(t_max)``.

    What is computed is the density of the model's ODE at ``t_start`` (default
    ``score_model.score_t_min``: the process's ``t_min``, where samplers stop), not at ``t = 0``: for
    VE (``t_min = 0``) with an exact score that is the data density itself; for VP/sub-VP/DDPM with
    ``t_min = 1e-3`` it is the density of ``alpha x_0 + sigma eps`` with ``sigma ~ 0.01`` (build the
    process with a smaller ``t_min``, or pass a smaller ``t_start`` where the process allows it, to
    get closer to ``p_0``). A network predicting ``eps``/``x0``/``v`` has no finite score where
    ``sigma_t = 0`` (VE at ``t = 0``): its default ``t_start`` is where ``sigma_t / alpha_t`` reaches
    its ``noise_floor`` (0.002), and :attr:`LikelihoodResult.t_start` reports it.

    The prior term comes from ``score_model.prior_log_prob``: ``N(0, sigma_T^2 I)`` from the
    process's marginal by default; the exact ``p_T`` for a :meth:`GaussianMixture.score_model`
    with ``exact_prior=True`` (then, with the exact score, the only error left is the solver's).

    Args:
        score_model: any :class:`sdeflow.ScoreModel` on any process.
        x: data, shape ``(n, *dims)`` (vectors or images); cast to the model's dtype and device.
        estimator: ``"exact"`` (``D`` vector-Jacobian products per evaluation, batched into one
            vmapped backward pass), ``"hutchinson"`` (``n_probes`` products), or ``"auto"``:
            exact when ``D <= 64``, else Hutchinson.
        n_probes: Hutchinson probes per sample (``>= 2`` to get a standard error).
        probe: ``"rademacher"`` (lower variance) or ``"gaussian"``.
        generator: random source of the probes.
        method: any torchdiffeq method (adaptive or fixed-grid).
        rtol: relative tolerance of adaptive methods (default 1e-5).
        atol: absolute tolerance of adaptive methods (default 1e-5).
        steps: equal steps of a fixed-grid method (default 100); an error for adaptive ones.
        t_start: where the density is evaluated (default ``score_model.score_t_min``), in
            ``[score_t_min, t_max)``: below ``score_t_min`` the model's score is infinite, which is a
            :class:`~sdeflow.errors.TimeRangeError` naming the valid range.
        options: extra torchdiffeq options (the default error norm is the larger of the RMS
            errors of ``x`` and of the log-density channels).
        vectorize: batch the vector-Jacobian products with ``is_grads_batched`` (vmap); ``False``
            loops over probes. A network with operations vmap cannot batch (diffusers' UNets) makes
            the first evaluation fall back to the loop by itself.
        check_finite: raise :class:`sdeflow.errors.NonFiniteError` when the score turns NaN/Inf.

    Returns:
        A :class:`LikelihoodResult` (detached tensors; works under ``torch.no_grad()`` and
        ``torch.inference_mode()`` callers: gradients are enabled inside).

    The adaptive solver's step sizes are shared by the whole batch (as in Song et al.'s code), so
    a sample's value depends on its batch within the solver tolerance.
    """
    if estimator not in ESTIMATORS:
        raise OptionError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if probe not in PROBES:
        raise OptionError(f"unknown probe {probe!r}; valid: {', '.join(PROBES)}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise OptionError(f"n_probes must be an integer >= 1, got {n_probes!r}")
    n_steps, rtol_v, atol_v = check_ode_options(method, steps, rtol, atol)
    if not isinstance(score_model, ScoreModel):
        raise TypeError(f"score_model must be a sdeflow.ScoreModel, got {type(score_model).__name__}")
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1 or x[0].numel() < 1:
        raise ShapeError(f"x must be a tensor of shape (n, *dims), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")

    process = score_model.process
    process.check_start("log_likelihood")
    t_min, t_max = float(process.t_min), float(process.t_max)
    floor = float(score_model.score_t_min)
    t0 = floor if t_start is None else float(t_start)
    if not t_min <= t0 < t_max:
        raise TimeRangeError(f"t_start={t0:g} must lie in [t_min, t_max) = [{t_min:g}, {t_max:g}) "
                             f"of {type(process).__name__}")
    if t0 < floor:
        raise TimeRangeError(
            f"t_start={t0:g} lies below score_t_min={floor:.6g}: {type(process).__name__} has no noise at "
            f"t_min={t_min:g}, where the score of a network predicting {score_model.parametrization!r} is infinite, "
            "so the "
            f"integration starts no earlier than where sigma/alpha reaches the model's noise floor; valid t_start: "
            f"[{floor:.6g}, {t_max:g}) (leave t_start out for {floor:.6g})")
    shape = tuple(int(s) for s in x.shape)
    n, d = shape[0], int(math.prod(shape[1:]))
    kind = estimator if estimator != "auto" else ("exact" if d <= AUTO_EXACT_MAX_DIM else "hutchinson")
    exact = kind == "exact"
    fixed = n_steps is not None
    where = f"log_likelihood (method={method!r}, estimator={kind!r})"

    with torch.inference_mode(False), torch.enable_grad():
        dtype, device = score_model.dtype, score_model.device
        x = x.detach().to(device=device, dtype=dtype).clone()
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteError("log_likelihood: x contains NaN/Inf")
        if exact:
            eye = torch.eye(d, dtype=dtype, device=device)  # basis probes e_i
            probes = eye[:, None, :].expand(d, n, d).reshape(d, *shape)
        else:
            probes = _draw_probes(probe, n_probes, shape, generator, device, dtype)
        k_channels = 1 if exact else n_probes

        evaluator = Evaluator(score_model, check_finite)
        flow = FlowField(process.probability_flow(evaluator), process, n, t_floor=floor)
        field = _AugmentedField(flow, shape, probes, exact, bool(vectorize))
        opts = dict(options or {})
        if not fixed:
            opts.setdefault("norm", _split_norm(d))
        y0 = torch.cat([x.reshape(n, d), torch.zeros(n, k_channels, dtype=dtype, device=device)], dim=1)
        count = [0]

        def on_step(t: Tensor, y: Tensor, dt: Tensor) -> None:
            count[0] += 1

        with ode_failures(evaluator, where):
            y1 = integrate_ode(field, y0, t0, t_max, method, n_steps, rtol_v, atol_v, opts, on_step)
        evaluator.raise_if_nonfinite(where, samples=y1)
        latent = y1[:, :d].reshape(shape)
        delta = y1[:, d:]  # (n, K)
        with torch.no_grad():
            prior = score_model.prior_log_prob(latent).reshape(n).detach()
        per_probe = prior[:, None] + delta
        log_prob = per_probe.mean(1)
        stderr = None
        if not exact and n_probes >= 2:
            stderr = per_probe.std(1, correction=1) / math.sqrt(n_probes)
        if not bool(torch.isfinite(log_prob).all()):
            raise NonFiniteError(f"{where}: the log-density is not finite (prior term or integral)")
        return LikelihoodResult(
            log_prob=log_prob.detach(), nfe=evaluator.nfe, prior_log_prob=prior, delta_logp=delta.mean(1).detach(),
            latent=latent.detach(), stderr=None if stderr is None else stderr.detach(),
            per_probe=None if exact else per_probe.detach(), estimator=kind, n_probes=0 if exact else n_probes,
            n_dims=d, t_start=t0, t_end=t_max, steps=n_steps if n_steps is not None else count[0])


__all__ = ["LikelihoodResult", "bits_per_dim", "dequantize", "log_likelihood"]
