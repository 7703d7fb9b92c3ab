"""Reference components the sampler checks run on: processes with closed-form marginals (an
Ornstein-Uhlenbeck process, a process with a log-SNR linear in time), a process without Gaussian
marginals whose marginals are still known exactly, and exact score models that count their evaluations."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..data.gaussian_mixture import ExactMixtureScoreModel, GaussianMixture
from ..errors import IncompatibleError
from ..utils.shapes import append_dims, randn


class ReferenceOUProcess(ForwardProcess):
    """The Ornstein-Uhlenbeck process ``dx = -theta x dt + sqrt(2 theta) dw`` (stationary law N(0, I)).

    Solving the linear SDE (Sarkka & Solin 2019, Eq. 6.6), ``x_t = e^{-theta t} x_0 +
    int_0^t e^{-theta (t - u)} sqrt(2 theta) dw_u``, so ``alpha_t = e^{-theta t}`` and
    ``sigma_t^2 = 1 - e^{-2 theta t}``. It is part of no plugin: the sampler checks run on it so
    they depend on nothing but the core.

    Args:
        theta: mean-reversion rate.
        t_min: smallest time.
    """

    def __init__(self, theta: float = 5.0, t_min: float = 1e-3) -> None:
        super().__init__()
        self.theta, self.t_min = float(theta), float(t_min)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -theta x``."""
        return -self.theta * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(2 theta)``."""
        return torch.full_like(t, math.sqrt(2.0 * self.theta))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = e^{-theta t}``, ``sigma_t = sqrt(1 - e^{-2 theta t})``."""
        return torch.exp(-self.theta * t), torch.sqrt(-torch.expm1(-2.0 * self.theta * t))


class LinearLogSNRProcess(ForwardProcess):
    """A variance-preserving process whose log-SNR is linear in time: the reference of the order checks.

    ``lambda_t = log(alpha_t^2 / sigma_t^2) = lambda_max - (lambda_max - lambda_min) t``, so
    ``alpha_t^2 = sigmoid(lambda_t)`` and ``sigma_t^2 = sigmoid(-lambda_t)`` (the VDM
    parametrization with a linear ``gamma_t = -lambda_t``, Kingma et al. 2021, Eq. 3-4). The VP
    SDE generating it (Song et al. 2021, Eq. 11) has ``beta(t) = -d log alpha_t^2 / dt =
    (lambda_max - lambda_min) sigma_t^2``. A grid uniform in time is uniform in log-SNR too and the
    log-SNR is finite on ``[0, 1]`` (``sigma_0 = 0.0025`` with the defaults): every sampler's grid
    (uniform in ``t``, in log-SNR, EDM's) resolves the flow from a few steps on, so an empirical
    order measured on it is the sampler's own, not a singularity's of the schedule (near
    ``sigma = 0`` a time-uniform grid needs ``h << t_min`` before a first-order method shows
    order 1). At the default ends, log-SNR 12 and -12, the data prediction of the order checks'
    Gaussians no longer changes, as on VP, VE and VDM.

    Args:
        lambda_max: log-SNR at ``t = 0`` (``t_min``).
        lambda_min: log-SNR at ``t = 1``.
    """

    t_min = 0.0

    def __init__(self, lambda_max: float = 12.0, lambda_min: float = -12.0) -> None:
        super().__init__()
        if not lambda_max > lambda_min:
            raise ValueError(f"lambda_max must exceed lambda_min, got {lambda_max}, {lambda_min}")
        self.lambda_max, self.lambda_min = float(lambda_max), float(lambda_min)
        self.rate = self.lambda_max - self.lambda_min

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = lambda_max - (lambda_max - lambda_min) t``."""
        return self.lambda_max - self.rate * t

    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        """The closed-form inverse of :meth:`log_snr`, clipped to ``[t_min, t_max]``."""
        return ((self.lambda_max - lam) / self.rate).clamp(float(self.t_min), float(self.t_max))

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = sqrt(sigmoid(lambda_t))``, ``sigma_t = sqrt(sigmoid(-lambda_t))``."""
        lam = self.log_snr(t)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -1/2 beta(t) x`` with ``beta(t) = (lambda_max - lambda_min) sigma_t^2``."""
        beta = self.rate * torch.sigmoid(-self.log_snr(t))
        return -0.5 * append_dims(beta, x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t))``."""
        return torch.sqrt(self.rate * torch.sigmoid(-self.log_snr(t)))


class NoiseEndProcess(ForwardProcess):
    """The linear interpolation ``x_t = (1 - t) x_0 + t eps`` on ``[1e-3, 1]``, which reaches pure noise:
    ``alpha_{t_max} = 0`` (Liu et al. 2022, Eq. 1; Lipman et al. 2023, Eq. 23). Its SDE,
    ``f = -x / (1 - t)`` and ``g^2 = 2t / (1 - t)`` (``f = alpha'/alpha``, ``g^2 = (sigma^2)' - 2 f
    sigma^2``), is infinite at ``t_max``: a sampler that evaluates the drift, ``g^2`` or the log-SNR
    there must refuse it (``requires_finite_start = True``, :meth:`sdeflow.ForwardProcess.check_start`);
    one declaring ``requires_finite_start = False`` must run on it."""

    t_min = 1e-3

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = 1 - t``, ``sigma_t = t``."""
        return 1.0 - t, t.clone()

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -x / (1 - t)`` (infinite at ``t = 1``)."""
        return -x / append_dims(1.0 - t, x.ndim)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(2t / (1 - t))`` (infinite at ``t = 1``)."""
        return torch.sqrt(2.0 * t / (1.0 - t))


class _GaussianPosteriorMean(nn.Module):
    mean: Tensor
    cov: Tensor

    def __init__(self, target: GaussianMixture, process: ForwardProcess) -> None:
        super().__init__()
        self.process = process
        self.register_buffer("mean", target.means[0].clone())
        self.register_buffer("cov", target.covs[0].clone())

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        a, s = self.process.marginal(t_cond)
        a, s = a[:, None, None], s[:, None, None]
        eye = torch.eye(int(self.cov.shape[0]), dtype=x.dtype, device=x.device)
        gain = a * self.cov @ torch.linalg.inv(a * a * self.cov + s * s * eye)  # alpha S (alpha^2 S + sigma^2 I)^-1
        return self.mean + (gain @ (x - a[:, :, 0] * self.mean)[:, :, None])[:, :, 0]


class GaussianPosteriorMeanModel(ScoreModel):
    """The exact data prediction ``E[x_0 | x_t] = m + alpha_t S (alpha_t^2 S + sigma_t^2 I)^{-1}
    (x - alpha_t m)`` of Gaussian data ``N(m, S)`` (parametrization ``x0``): finite where
    ``alpha_t = 0`` (it is ``m`` there), so a sampler can start at :class:`NoiseEndProcess`'s
    ``t_max``. Counts its evaluations (``calls``).

    Args:
        target: a one-component :class:`sdeflow.GaussianMixture`.
        process: the process.
    """

    def __init__(self, target: GaussianMixture, process: ForwardProcess) -> None:
        super().__init__(_GaussianPosteriorMean(target, process), process, parametrization="x0")
        self.calls = 0

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """``E[x_0 | x_t]``, after counting the call."""
        self.calls += 1
        return self.network(x, t)


class GaussianQuantityUsed(IncompatibleError):
    """Raised by :class:`NonGaussianProcess` when asked for ``alpha_t``, ``sigma_t`` or the log-SNR."""


class NonGaussianProcess(ForwardProcess):
    """Langevin diffusion ``dx = grad log q(x) dt + sqrt(2) dw`` started in its stationary law ``q``:
    a process without Gaussian marginals whose every marginal is known exactly.

    ``q`` is a product over coordinates of ``1/2 N(-mu, v) + 1/2 N(mu, v)`` (``mu = 1``,
    ``v = 1/4``), whose score is ``(-x + mu tanh(mu x / v)) / v``. The drift is nonlinear, so
    ``q(x_t | x_0)`` is not Gaussian (``gaussian_marginals = False``), but ``q`` is stationary
    for the Langevin diffusion (Roberts & Tweedie 1996, Sec. 1): from ``x_0 ~ q``,
    ``p_t = q`` at every ``t``. So the exact score is ``grad log q`` at every time
    (:class:`StationaryScoreModel`), the reverse SDE keeps ``q`` and the probability-flow
    velocity ``f - 1/2 g^2 grad log q`` is zero: a correct sampler returns its start unchanged
    (deterministic) or samples of ``q`` (stochastic).

    ``marginal``, ``log_snr`` and ``t_from_log_snr`` do not exist for it: they record the call in
    :attr:`gaussian_calls` and raise :class:`GaussianQuantityUsed`, so a sampler declaring
    ``requires_gaussian_marginals = False`` that uses ``alpha_t``, ``sigma_t`` is caught. The
    prior is ``q`` itself.
    """

    gaussian_marginals = False
    t_min = 1e-3
    #: the mixture's half-distance between modes and component variance
    mu, v = 1.0, 0.25

    def __init__(self) -> None:
        super().__init__()
        self.gaussian_calls: list[str] = []

    def stationary_score(self, x: Tensor) -> Tensor:
        """``grad log q(x) = (-x + mu tanh(mu x / v)) / v``, coordinate by coordinate."""
        return (-x + self.mu * torch.tanh((self.mu / self.v) * x)) / self.v

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = grad log q(x)`` (nonlinear)."""
        return self.stationary_score(x)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(2)``."""
        return torch.full_like(t, math.sqrt(2.0))

    def _gaussian(self, what: str) -> None:
        self.gaussian_calls.append(what)
        raise GaussianQuantityUsed(f"{type(self).__name__} has no Gaussian marginals (gaussian_marginals=False): "
                                   f"{what} does not exist for it")

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Does not exist: records the call and raises :class:`GaussianQuantityUsed`."""
        self._gaussian("marginal(t) (alpha_t, sigma_t)")
        raise AssertionError  # pragma: no cover

    def log_snr(self, t: Tensor) -> Tensor:
        """Does not exist: records the call and raises :class:`GaussianQuantityUsed`."""
        self._gaussian("log_snr(t)")
        raise AssertionError  # pragma: no cover

    def t_from_log_snr(self, lam: Tensor, iters: int = 60) -> Tensor:
        """Does not exist: records the call and raises :class:`GaussianQuantityUsed`."""
        self._gaussian("t_from_log_snr(lambda)")
        raise AssertionError  # pragma: no cover

    def prior_sample(self, shape: Sequence[int], generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Samples of ``q``: ``+-mu`` with probability 1/2 each, plus ``N(0, v)`` noise."""
        sign = torch.where(randn(shape, generator, device, dtype) > 0, 1.0, -1.0).to(dtype)
        return self.mu * sign + math.sqrt(self.v) * randn(shape, generator, device, dtype)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """``log q(x)``, summed over data dimensions (nats)."""
        comp = Normal(torch.tensor(self.mu, dtype=x.dtype, device=x.device),
                      torch.tensor(math.sqrt(self.v), dtype=x.dtype, device=x.device))
        lp = torch.logaddexp(comp.log_prob(x), comp.log_prob(-x)) - math.log(2.0)
        return lp.flatten(1).sum(1)

    def stationary_moments(self) -> tuple[float, float]:
        """Variance ``v + mu^2`` and fourth moment ``3 v^2 + 6 v mu^2 + mu^4`` of one coordinate of ``q``."""
        return self.v + self.mu**2, 3 * self.v**2 + 6 * self.v * self.mu**2 + self.mu**4


class _StationaryScore(nn.Module):
    def __init__(self, process: NonGaussianProcess, dtype: torch.dtype) -> None:
        super().__init__()
        self.process = process
        self.register_buffer("anchor", torch.zeros((), dtype=dtype))  # the model's dtype and device

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:
        return self.process.stationary_score(x)


class StationaryScoreModel(ScoreModel):
    """The exact score ``grad log q`` of :class:`NonGaussianProcess` at every time (parametrization
    ``score``), counting its evaluations like :class:`RecordingScoreModel`. ``score`` needs no
    ``alpha_t``, ``sigma_t``; ``eps``, ``x0`` and ``v`` (which do) raise
    :class:`GaussianQuantityUsed` through the process.

    Args:
        process: the non-Gaussian process.
        dtype: the model's dtype.
    """

    def __init__(self, process: NonGaussianProcess, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(_StationaryScore(process, dtype), process, parametrization="score")
        self.calls = 0

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """``grad log q(x)``, after counting the call."""
        self.calls += 1
        return self.network(x, t)

    def score(self, x: Tensor, t: Tensor | float, *, check: bool = True) -> Tensor:
        """``grad log q(x)`` (the same at every time)."""
        if check:
            t = self.process.check_time(t, x.shape[0], like=x)
        return self.network_output(x, t)  # type: ignore[arg-type]


class RecordingScoreModel(ExactMixtureScoreModel):
    """An exact mixture score model that counts its network evaluations and records the
    smallest and largest time it was evaluated at, so a check can compare a sampler's reported
    ``nfe`` with the truth and see whether it stayed inside ``[t_end, t_max]``.

    Every score, ``eps``, ``x0`` and ``v`` of a :class:`sdeflow.ScoreModel` goes through one
    :meth:`network_output` call, so ``calls`` is the number of network evaluations.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.t_lo = math.inf
        self.t_hi = -math.inf

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact score, after recording the call."""
        self.calls += 1
        self.t_lo = min(self.t_lo, float(t.min()))
        self.t_hi = max(self.t_hi, float(t.max()))
        return super().network_output(x, t)


__all__ = ["GaussianPosteriorMeanModel", "GaussianQuantityUsed", "LinearLogSNRProcess", "NoiseEndProcess",
           "NonGaussianProcess", "RecordingScoreModel", "ReferenceOUProcess", "StationaryScoreModel"]
