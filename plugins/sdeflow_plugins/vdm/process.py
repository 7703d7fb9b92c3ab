"""The VDM forward process: a variance-preserving diffusion defined by its noise schedule ``gamma(t)``.

Kingma et al. 2021 ("Variational Diffusion Models"), Eqs. 1-2: ``q(z_t | x) = N(alpha_t x, sigma_t^2 I)``
with ``sigma_t^2 = sigmoid(gamma(t))``, ``alpha_t^2 = sigmoid(-gamma(t))`` and
``log SNR(t) = log(alpha_t^2 / sigma_t^2) = -gamma(t)``.

Drift and diffusion follow from the marginal alone (Kingma et al. 2021, Appendix A.4; Song et al.
2021, Appendix B): for ``dz = f(t) z dt + g(t) dw`` with these marginals,

    f(t)   = d log alpha_t / dt = 1/2 d log sigmoid(-gamma) / dt = -1/2 gamma'(t) sigmoid(gamma(t)),
    g(t)^2 = d sigma_t^2 / dt - 2 f(t) sigma_t^2 = -sigma_t^2 d log SNR / dt = gamma'(t) sigmoid(gamma(t)),

using ``d sigmoid(x)/dx = sigmoid(x) sigmoid(-x)``. ``gamma'`` comes in closed form from the
schedule (:mod:`sdeflow_plugins.vdm.schedule`), so drift and diffusion are exact, work under
``torch.no_grad`` and in float64.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import Tensor
from torch.nn.functional import softplus

from sdeflow import ForwardProcess, append_dims, levels_to_signed, rand
from sdeflow.errors import OptionError

from .decoder import check_bins, decode_levels
from .schedule import GammaSchedule, LearnedGamma, LinearGamma

if TYPE_CHECKING:  # pragma: no cover
    from sdeflow import ScoreModel

SCHEDULES = ("learned", "linear")


class VDMProcess(ForwardProcess):
    """Variational diffusion model (Kingma et al. 2021) with a learned or linear schedule ``gamma(t)``.

    ``gamma`` is the negative log-SNR: ``gamma(0) = gamma_min`` (least noise, ``sigma_0^2 =
    sigmoid(gamma_min)``), ``gamma(1) = gamma_max`` (most noise). Time runs over ``[0, 1]``
    (``t_min = 0``: ``sigma_0 > 0``, and the VLB's reconstruction term lives at ``t = 0``).

    The schedule is a submodule, so a :class:`sdeflow.ScoreModel` built on this process trains
    it: ``ScoreModel.parameters()`` includes the schedule's parameters. The default training
    objective (:meth:`default_loss`, what ``ScoreModel.loss`` calls) is the VDM variational
    bound in bits per dimension (:func:`sdeflow_plugins.vdm.loss.vdm_loss`).

    The network is conditioned on the normalised noise level
    ``(gamma(t) - gamma_min) / (gamma_max - gamma_min)`` with the *construction-time* constants
    (the official VDM code does the same): the model then is a function of ``(z, SNR)``, for which
    the continuous-time VLB depends on the schedule only through its endpoints (Kingma et al.
    2021, Sec. "invariance to the noise schedule in continuous time"); for the linear schedule
    with fixed endpoints the condition equals ``t``.

    Args:
        gamma_min: ``gamma(0)`` (initial value when learned).
        gamma_max: ``gamma(1)`` (initial value when learned).
        schedule: ``"learned"`` (the monotone network, :class:`LearnedGamma`) or ``"linear"``.
        learn_endpoints: train ``gamma_min``/``gamma_max``; default: True for ``"learned"``,
            False for ``"linear"`` (True there is the official code's learnable-scalar schedule).
        hidden: width of the learned schedule's hidden layer (the paper: 1024).
        minimize_variance: train the learned schedule's interior to minimise the variance of the
            diffusion-loss estimator instead of the VLB itself (Kingma et al. 2021; the VLB does
            not depend on the interior in continuous time); see :func:`~sdeflow_plugins.vdm.loss.vdm_loss`.
        bins: number of discrete data levels (256 for 8-bit images, 17 for sklearn's 8x8 digits).
        data_range: the interval the levels are mapped onto: level ``k`` is
            ``lo + k (hi - lo) / (bins - 1)`` (so ``lo`` and ``hi`` are data values, as in Kingma
            et al. 2021).
        antithetic: draw the diffusion loss's times as ``(u + i / n) mod 1`` (the paper's
            low-discrepancy sampler) instead of i.i.d. uniform.
        check_data: the loss checks that its data lie on the level grid (one host sync per call).
    """

    t_min: float = 0.0
    t_max: float = 1.0

    def __init__(self, gamma_min: float = -10.0, gamma_max: float = 20.0, schedule: str = "learned",
                 learn_endpoints: bool | None = None, hidden: int = 1024, minimize_variance: bool = True,
                 bins: int = 256, data_range: Sequence[float] = (-1.0, 1.0), antithetic: bool = True,
                 check_data: bool = True) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise OptionError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
        if learn_endpoints is None:
            learn_endpoints = schedule == "learned"
        self.schedule_name = schedule
        self.schedule: GammaSchedule
        if schedule == "learned":
            self.schedule = LearnedGamma(gamma_min, gamma_max, hidden=hidden, learn_endpoints=bool(learn_endpoints))
        else:
            self.schedule = LinearGamma(gamma_min, gamma_max, learn_endpoints=bool(learn_endpoints))
        self.condition_min, self.condition_max = float(gamma_min), float(gamma_max)
        self.bins, self.data_range = check_bins(bins, data_range)
        self.data_levels = self.bins
        self.minimize_variance = bool(minimize_variance)
        self.antithetic = bool(antithetic)
        self.check_data = bool(check_data)
        self._memo: tuple[Tensor, tuple[Tensor, Tensor]] | None = None  # see reusing_schedule
        self._last: tuple | None = None  # the last evaluation without gradients (gamma_and_derivative)

    def __getstate__(self) -> dict:
        """Pickling (``torch.save`` of the module, deep copies) drops the evaluation caches."""
        state = dict(self.__dict__)
        state["_memo"] = state["_last"] = None
        return state

    # ------------------------------------------------------------------ the schedule
    def gamma(self, t: Tensor) -> Tensor:
        """``gamma(t) = -log SNR(t)`` (Kingma et al. 2021, Eq. 2 with the learned schedule), shape of ``t``."""
        return self.gamma_and_derivative(t)[0]

    def gamma_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(gamma(t), gamma'(t))`` in closed form, each shaped like ``t`` (inside
        :meth:`reusing_schedule` for this very tensor ``t``, the values given there)."""
        memo = self._memo
        if memo is not None and memo[0] is t:
            return memo[1]
        if torch.is_grad_enabled():
            return self.schedule.gamma_and_derivative(t)
        # without gradients (samplers) the drift, diffusion, marginal and network condition of one
        # step ask for the same time tensor: keep the last result, keyed by that very tensor object
        # (a weak reference), its in-place version and the schedule parameters' versions
        key = (t._version, tuple((id(p), p._version) for p in self.schedule.parameters()))
        last = self._last
        if last is not None and last[0]() is t and last[1] == key:
            return last[2]
        out = self.schedule.gamma_and_derivative(t)
        self._last = (weakref.ref(t), key, out)
        return out

    @contextlib.contextmanager
    def reusing_schedule(self, t: Tensor, values: tuple[Tensor, Tensor]) -> Iterator[None]:
        """Within the block, evaluations of the schedule at the tensor object ``t`` return ``values``
        (``(gamma(t), gamma'(t))`` already computed, with their autograd graph): the loss evaluates
        the schedule once per batch although the network's condition and the model's marginal ask
        for it again."""
        previous, self._memo = self._memo, (t, values)
        try:
            yield
        finally:
            self._memo = previous

    def endpoints(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(gamma(0), gamma(1)) = (gamma_min, gamma_max)``, 0-d tensors of ``like``'s dtype/device."""
        return self.schedule.endpoints(like)

    @staticmethod
    def alpha_sigma(gamma: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha = sqrt(sigmoid(-gamma))``, ``sigma = sqrt(sigmoid(gamma))``, via
        ``log sigmoid(x) = -softplus(-x)`` (accurate for large ``|gamma|``)."""
        return torch.exp(-0.5 * softplus(gamma)), torch.exp(-0.5 * softplus(-gamma))

    @staticmethod
    def alpha_sigma_derivatives(alpha: Tensor, sigma: Tensor, dgamma: Tensor) -> tuple[Tensor, Tensor]:
        """``(d alpha/dt, d sigma/dt) = (-1/2 alpha sigma^2 gamma', 1/2 sigma alpha^2 gamma')`` from
        ``alpha^2 = sigmoid(-gamma)``, ``sigma^2 = sigmoid(gamma)`` and ``d sigmoid(x)/dx = sigmoid(x) sigmoid(-x)``."""
        return -0.5 * alpha * sigma * sigma * dgamma, 0.5 * sigma * alpha * alpha * dgamma

    # ------------------------------------------------------------------ ForwardProcess
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` with ``alpha_t^2 = sigmoid(-gamma(t))``, ``sigma_t^2 = sigmoid(gamma(t))``."""
        return self.alpha_sigma(self.gamma(t))

    def marginal_and_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha_t, sigma_t, d alpha_t/dt, d sigma_t/dt)`` in closed form from ``gamma`` and ``gamma'``
        (:meth:`alpha_sigma_derivatives`)."""
        gamma, dgamma = self.gamma_and_derivative(t)
        a, s = self.alpha_sigma(gamma)
        return (a, s, *self.alpha_sigma_derivatives(a, s, dgamma))

    def drift_coefficient(self, t: Tensor) -> Tensor:
        """``f(t) = -1/2 gamma'(t) sigmoid(gamma(t))`` (see the module docstring)."""
        gamma, dgamma = self.gamma_and_derivative(t)
        return -0.5 * dgamma * torch.sigmoid(gamma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(t) x`` with ``f(t) = -1/2 gamma'(t) sigmoid(gamma(t))``."""
        return append_dims(self.drift_coefficient(t), x.ndim) * x

    def g2(self, t: Tensor) -> Tensor:
        """``g(t)^2 = gamma'(t) sigmoid(gamma(t))`` (see the module docstring)."""
        gamma, dgamma = self.gamma_and_derivative(t)
        return dgamma * torch.sigmoid(gamma)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(gamma'(t) sigmoid(gamma(t)))``."""
        return torch.sqrt(self.g2(t))

    def log_snr(self, t: Tensor) -> Tensor:
        """``log SNR(t) = -gamma(t)`` exactly (Kingma et al. 2021, Eq. 2)."""
        return -self.gamma(t)

    def t_from_log_snr(self, lam: Tensor, iters: int = 40) -> Tensor:
        """Invert :meth:`log_snr`: closed form for the linear schedule; for the learned one, Newton's
        method on ``gamma(t) = -lam`` with the closed-form ``gamma'``, safeguarded by a bracket
        (a Newton step leaving the bracket is replaced by bisection), so it converges for every
        monotone schedule and quadratically near the root.

        Args:
            lam: target log-SNR values, any shape.
            iters: safeguarded Newton steps (the learned schedule).

        Returns:
            Times in ``[0, 1]`` (clipped at the ends), shaped like ``lam``.
        """
        with torch.no_grad():
            target = -lam.reshape(-1)
            closed = self.schedule.inverse(target)
            if closed is not None:
                return closed.clamp(float(self.t_min), float(self.t_max)).reshape(lam.shape)
            g0, g1 = self.endpoints(target)
            lo = torch.full_like(target, float(self.t_min))
            hi = torch.full_like(target, float(self.t_max))
            t = ((target - g0) / (g1 - g0)).clamp(0.0, 1.0)  # the linear schedule's answer
            for _ in range(int(iters)):
                g, dg = self.gamma_and_derivative(t)
                f = g - target
                lo = torch.where(f <= 0, t, lo)
                hi = torch.where(f >= 0, t, hi)
                step = t - f / dg
                t = torch.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
            return t.clamp(float(self.t_min), float(self.t_max)).reshape(lam.shape)

    def network_condition(self, t: Tensor) -> Tensor:
        """``(gamma(t) - gamma_min) / (gamma_max - gamma_min)`` with the construction-time endpoint
        values (fixed constants; ``[0, 1]`` at initialisation; ``t`` itself for a fixed linear schedule)."""
        return (self.gamma(t) - self.condition_min) / (self.condition_max - self.condition_min)

    def sample_training_time(self, n: int, generator: torch.Generator | None = None,
                             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``t ~ U[0, 1]``; with ``antithetic`` the low-discrepancy draw ``t_i = (u + i/n) mod 1`` of
        Kingma et al. 2021 (one uniform ``u`` per batch: every ``t_i`` is still uniform, so the
        estimator is unbiased, and the batch covers ``[0, 1]`` evenly)."""
        if not self.antithetic:
            return super().sample_training_time(n, generator, device, dtype)
        u = rand((1,), generator, device, dtype)
        return torch.remainder(u + torch.arange(n, device=device, dtype=dtype) / n, 1.0)

    def decode(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = False) -> Tensor:
        """VDM's decoder ``p(x | z_0)``: the data levels a final latent ``z_0`` stands for.

        The generative model ends with ``x ~ p(x | z_0)`` (Kingma et al. 2021, its last factor; the official
        code's ``generate_x``), the discretised Gaussian ``N(z_0 / alpha_0, sigma_0^2 / alpha_0^2)``
        on the ``bins`` levels of ``data_range`` that the bound's reconstruction term scores
        (:func:`~sdeflow_plugins.vdm.decoder.discretized_gaussian_log_prob`); ``z_0`` itself is not an
        image of the data, its decoding is (``docs/plugins/vdm.md``).

        Args:
            x: ``z_0``, the sampler's state at ``t = 0`` (``ancestral`` with ``denoise=False``; a
                denoised estimate decodes to nearly the same mode), any shape.
            generator: random source when ``sample``.
            sample: draw ``x ~ p(x | z_0)`` (the model's distribution) instead of its most likely
                level (default).

        Returns:
            Values on the level grid ``lo + k (hi - lo) / (bins - 1)``, shaped and typed like ``x``.
        """
        with torch.no_grad():
            g0, _ = self.endpoints(x)
            alpha0, _ = self.alpha_sigma(g0)
            k = decode_levels(x / alpha0, torch.exp(0.5 * g0), self.bins, self.data_range, generator, sample)
        return levels_to_signed(k, self.bins - 1, x.dtype, self.data_range, check=False)

    def default_loss(self, score_model: "ScoreModel", x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The VDM variational bound in bits per dimension (:func:`sdeflow_plugins.vdm.loss.vdm_loss`)."""
        from .loss import vdm_loss

        return vdm_loss(score_model, x0, generator=generator)

    def extra_repr(self) -> str:
        return (f"schedule={self.schedule_name!r}, gamma_min={self.condition_min:g}, gamma_max={self.condition_max:g}, "
                f"bins={self.bins}, data_range={self.data_range}, " + super().extra_repr())
