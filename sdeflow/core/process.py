"""The forward process: an Ito SDE ``dx = f(x, t) dt + g(t) dw`` with Gaussian marginals.

A subclass implements three things (Song et al. 2021, "Score-Based Generative Modeling through
Stochastic Differential Equations", Eq. 5 and Appendix B):

* :meth:`ForwardProcess.drift` ``f(x, t)``,
* :meth:`ForwardProcess.diffusion` ``g(t)`` (a scalar per sample: the noise is isotropic and
  independent of the state),
* :meth:`ForwardProcess.marginal` ``(alpha_t, sigma_t)`` with ``x_t = alpha_t x_0 + sigma_t eps``.

Everything else has a default here: time validation, the prior ``N(0, sigma_{t_max}^2 I)``
taken from the marginal, the time derivatives of the marginal's coefficients (what the flow's
``velocity`` parametrization needs), perturbation for training, the log-SNR and its inverse, and
the derived reverse-time SDE and probability-flow ODE.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from ..errors import IncompatibleError, ShapeError, TimeRangeError
from ..utils.shapes import append_dims, rand, randn
from .dynamics import ProbabilityFlowODE, ReverseSDE
from .losses import denoising_score_matching

if TYPE_CHECKING:  # pragma: no cover
    from .score_model import ScoreModel

ScoreFn = Callable[[Tensor, Tensor], Tensor]


class ForwardProcess(nn.Module):
    """Base class of forward diffusion processes (Song et al. 2021, Eq. 5).

    Class attributes (capabilities, checked by samplers at construction or sampling time):

    * ``gaussian_marginals``: ``marginal(t)`` is exact, so ``q(x_t | x_0)`` is Gaussian.
    * ``t_min``/``t_max``: the time interval; ``t_min`` is where sampling ends and training
      time draws start (instances may override it).
    * ``default_parametrization``: what a network of this method predicts when
      :class:`sdeflow.ScoreModel` is not told (``"eps"``; flows: ``"velocity"``).
    * ``data_levels``: the number of discrete data levels of a process of discrete data (``None``:
      continuous data).
    """

    gaussian_marginals: ClassVar[bool] = True
    default_parametrization: ClassVar[str] = "eps"
    t_min: float = 1e-5
    t_max: float = 1.0
    #: relative slack when checking that a time lies in ``[t_min, t_max]``
    time_tolerance: ClassVar[float] = 1e-6
    #: the number of discrete levels the data are modelled on (``vdm``'s ``bins``: 256 for 8-bit
    #: images, Kingma et al. 2021), ``None`` for continuous data; :meth:`decode` maps states onto them
    data_levels: int | None = None

    # ------------------------------------------------------------------ the SDE
    def drift(self, x: Tensor, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Drift ``f(x, t)`` of the forward SDE (Song et al. 2021, Eq. 5).

        Args:
            x: state, shape ``(batch, *dims)``.
            t: times, shape ``(batch,)``.

        Returns:
            Tensor of the same shape as ``x``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement drift(x, t)")

    def diffusion(self, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Diffusion coefficient ``g(t)`` of the forward SDE (Song et al. 2021, Eq. 5).

        Args:
            t: times, shape ``(batch,)``.

        Returns:
            Tensor of shape ``(batch,)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement diffusion(t)")

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Coefficients of the perturbation kernel ``q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I)``.

        Args:
            t: times, shape ``(batch,)``.

        Returns:
            ``(alpha_t, sigma_t)``, each of shape ``(batch,)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement marginal(t)")

    def marginal_and_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha_t, sigma_t, d alpha_t/dt, d sigma_t/dt)``, each of shape ``(batch,)``.

        The derivatives give the velocity of the interpolation ``x_t = alpha_t x_0 + sigma_t eps``,
        ``u = (d alpha_t/dt) x_0 + (d sigma_t/dt) eps`` (Lipman et al. 2023, Eq. 15-16; Liu et al.
        2022, Eq. 1), which the ``velocity`` parametrization and the flow-matching loss need. The
        default differentiates :meth:`marginal` by forward-mode automatic differentiation
        (``torch.func.jvp``: exact, one extra pass, no finite differences, also inside
        ``torch.no_grad``); a process with closed forms overrides it.

        Args:
            t: times, shape ``(batch,)``.

        Returns:
            ``(alpha_t, sigma_t, d alpha_t/dt, d sigma_t/dt)``.
        """
        with torch.enable_grad():
            (a, s), (da, ds) = torch.func.jvp(self.marginal, (t,), (torch.ones_like(t),))  # type: ignore[misc]
        return a, s, da, ds

    # ------------------------------------------------------------------ time handling
    def check_time(self, t: Tensor | float, batch: int | None = None, *, like: Tensor | None = None) -> Tensor:
        """Validate diffusion times and return them as a ``(batch,)`` tensor.

        A Python float or 0-d tensor is broadcast to ``(batch,)``. Times outside
        ``[t_min, t_max]`` (up to a relative tolerance) raise :class:`TimeRangeError`.

        Args:
            t: times.
            batch: expected batch size (``None`` accepts any).
            like: a tensor whose device and dtype the result takes (default: ``t``'s own).

        Returns:
            Times of shape ``(batch,)``.
        """
        if not isinstance(t, Tensor):
            # straight to the target dtype: a float64 time (0.999) must not pass through float32 first
            t = torch.tensor(float(t), dtype=like.dtype if like is not None else torch.get_default_dtype())
        if like is not None:
            t = t.to(device=like.device, dtype=like.dtype)
        if t.ndim == 0:
            if batch is None:
                raise ShapeError("a scalar time needs a batch size; pass t of shape (batch,)")
            t = t.expand(batch)
        elif t.ndim != 1 or (batch is not None and t.shape[0] != batch):
            want = f"({batch},)" if batch is not None else "(batch,)"
            raise ShapeError(f"t must have shape {want} (one time per sample), got {tuple(t.shape)}")
        lo, hi = float(self.t_min), float(self.t_max)
        slack = self.time_tolerance * max(1.0, abs(hi - lo))
        if t.numel() and (bool(torch.isnan(t).any()) or float(t.min()) < lo - slack or float(t.max()) > hi + slack):
            raise TimeRangeError(
                f"{type(self).__name__}: times must lie in [t_min, t_max] = [{lo:g}, {hi:g}], "
                f"got values in [{float(t.min()):g}, {float(t.max()):g}]"
            )
        return t

    def clamp_time(self, t: Tensor) -> Tensor:
        """Clamp times into ``[t_min, t_max]`` without a host synchronisation.

        Solvers evaluate vector fields slightly outside the interval (adaptive Runge-Kutta
        methods overshoot; torchdiffeq's dopri5 was seen evaluating at ``t = -0.01``). The
        sampler loop clamps every evaluation time through this method, so no process is ever
        asked for its marginal where it is undefined.
        """
        return t.clamp(float(self.t_min), float(self.t_max))

    def check_start(self, who: str) -> None:
        """Raise :class:`~sdeflow.errors.IncompatibleError` unless the reverse-time dynamics can start at
        ``t_max``: drift, ``g(t)^2`` and (with Gaussian marginals) the marginal finite there, and
        ``alpha_{t_max} > 0``.

        An interpolation that reaches pure noise, ``alpha_1 = 0`` (a flow's ``x_1 = eps``), has an
        infinite drift ``alpha'/alpha`` and ``g^2`` and a log-SNR of ``-inf`` at ``t = 1``: the reverse SDE,
        the probability-flow ODE in its score form and the solvers stepping in log-SNR are undefined
        there, so such a process must end its interval short of it (``rectified_flow``: ``t_max = 0.999``).
        Samplers (``Sampler.requires_finite_start``) and :func:`sdeflow.log_likelihood` call this once,
        before their loops (a few host evaluations).

        Args:
            who: the caller, for the message.
        """
        ref = next(iter(list(self.parameters()) + list(self.buffers())), None)
        device = ref.device if ref is not None else None
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float64
        t_max = float(self.t_max)
        t = torch.full((1,), t_max, dtype=dtype, device=device)
        with torch.no_grad():
            one = torch.ones(1, 1, dtype=dtype, device=device)
            values = {"g(t)^2": self.g2(t), "drift f(1, t)": self.drift(one, t)}
            if getattr(self, "gaussian_marginals", False):
                a, s = self.marginal(t)
                values.update({"alpha_t": a, "sigma_t": s})
        bad = {k: float(v.reshape(-1)[0]) for k, v in values.items() if not bool(torch.isfinite(v).all())}
        if "alpha_t" in values and not bad and not float(values["alpha_t"].reshape(-1)[0]) > 0:
            bad["alpha_t"] = float(values["alpha_t"].reshape(-1)[0])
        if bad:
            found = ", ".join(f"{k} = {v:g}" for k, v in bad.items())
            raise IncompatibleError(
                f"{who}: {type(self).__name__} cannot be integrated from t_max = {t_max:g}, where {found}: the "
                "reverse SDE, the probability-flow ODE and log-SNR steps need alpha_t > 0 and a finite drift and "
                "g(t)^2 there; end the process's interval before alpha_t reaches 0 (e.g. "
                "create_process('rectified_flow', t_max=0.999))")

    # ------------------------------------------------------------------ derived quantities
    def g2(self, t: Tensor) -> Tensor:
        """Squared diffusion ``g(t)^2``, shape ``(batch,)``."""
        g = self.diffusion(t)
        return g * g

    def log_snr(self, t: Tensor) -> Tensor:
        """Log signal-to-noise ratio ``lambda_t = log(alpha_t^2 / sigma_t^2)`` (Kingma et al. 2021, Eq. 2)."""
        a, s = self.marginal(t)
        return 2.0 * (torch.log(a) - torch.log(s))

    def t_from_log_snr(self, lam: Tensor, iters: int = 60) -> Tensor:
        """Invert :meth:`log_snr` (assumed strictly decreasing in ``t``) by bisection.

        Processes with a closed-form inverse override this; the default works for any
        monotone schedule, learned ones included.

        Args:
            lam: target log-SNR values, any shape.
            iters: bisection steps (60 halvings reach float64 resolution).

        Returns:
            Times in ``[t_min, t_max]`` with ``log_snr(t) == lam`` (clipped at the ends).
        """
        flat = lam.reshape(-1)
        lo = torch.full_like(flat, float(self.t_min))
        hi = torch.full_like(flat, float(self.t_max))
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > flat  # still too early: move right
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).reshape(lam.shape)

    def perturb(
        self,
        x0: Tensor,
        t: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sample ``x_t = alpha_t x_0 + sigma_t eps`` from ``q(x_t | x_0)`` (Song et al. 2021, Eq. 7).

        Args:
            x0: clean data, shape ``(batch, *dims)``.
            t: times, shape ``(batch,)``.
            noise: optional ``eps``; drawn from ``generator`` when omitted.
            generator: random source.

        Returns:
            ``(x_t, eps)``.
        """
        if noise is None:
            noise = randn(x0.shape, generator, x0.device, x0.dtype)
        a, s = self.marginal(t)
        return append_dims(a, x0.ndim) * x0 + append_dims(s, x0.ndim) * noise, noise

    def prior_std(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard deviation ``sigma_{t_max}`` of the prior, read from the marginal."""
        t = torch.full((1,), float(self.t_max), device=device, dtype=dtype)
        return self.marginal(t)[1][0]

    def prior_sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draw from the prior ``N(0, sigma_{t_max}^2 I)`` (the marginal at ``t_max`` with
        ``alpha_{t_max} x_0`` replaced by 0, the only data-free choice).

        When ``alpha_{t_max}`` is not negligible this prior is biased; a score model that knows
        its data distribution (e.g. :meth:`sdeflow.GaussianMixture.score_model`) overrides
        :meth:`sdeflow.ScoreModel.prior_sample` with the exact ``p_{t_max}``.
        """
        return randn(shape, generator, device, dtype) * self.prior_std(device, dtype)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """Log-density of ``N(0, sigma_{t_max}^2 I)`` at ``x``, summed over data dimensions (nats)."""
        s = self.prior_std(x.device, x.dtype)
        d = x[0].numel()
        flat = x.reshape(x.shape[0], -1)
        return -0.5 * (flat * flat).sum(1) / (s * s) - d * (torch.log(s) + 0.5 * math.log(2 * math.pi))

    def sample_training_time(self, n: int, generator: torch.Generator | None = None,
                             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Times for denoising score matching: ``t ~ U[t_min, t_max]`` (Song et al. 2021, Eq. 7).

        Discrete-time methods override this (DDPM draws ``t = i/N``, NCSN one of its levels).
        """
        t0, t1 = float(self.t_min), float(self.t_max)
        return t0 + (t1 - t0) * rand((n,), generator, device, dtype)

    def discrete_times(self) -> Tensor | None:
        """Times of a discrete-time method's chain or noise levels, descending (``None`` here).

        DDPM returns ``t_i = i/N``, NCSN its levels; samplers that walk a grid (ancestral,
        annealed Langevin) use it by default.
        """
        return None

    def network_condition(self, t: Tensor) -> Tensor:
        """What the network is conditioned on at time ``t`` (the ``t_cond`` of ``net(x, t_cond)``).

        Default: ``t`` itself. A process may condition on noise level or log-SNR instead.
        """
        return t

    def default_loss(self, score_model: "ScoreModel", x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The method's default training objective: :func:`sdeflow.denoising_score_matching`."""
        return denoising_score_matching(score_model, x0, generator=generator)

    def decode(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = False) -> Tensor:
        """The data a sampler's final state stands for: ``x`` itself here (continuous data).

        A process of discrete data (:attr:`data_levels`) overrides it with its decoder (VDM's
        ``p(x | z_0)``, Kingma et al. 2021). The command line's ``sample`` and the image demo call it;
        the samplers never do (their output stays the state of the SDE/ODE at ``t_end``).

        Args:
            x: final sampler states, shape ``(batch, *dims)``.
            generator: random source when ``sample``.
            sample: draw from the decoder instead of taking its most likely value.

        Returns:
            Data, shaped like ``x``.
        """
        return x

    # ------------------------------------------------------------------ derived dynamics
    def reverse_sde(self, score_fn: ScoreFn) -> ReverseSDE:
        """The reverse-time SDE of this process for the score ``score_fn(x, t)`` (Song et al. 2021, Eq. 6)."""
        return ReverseSDE(self, score_fn)

    def probability_flow(self, score_fn: ScoreFn) -> ProbabilityFlowODE:
        """The probability-flow ODE of this process for the score ``score_fn(x, t)`` (Song et al. 2021, Eq. 13)."""
        return ProbabilityFlowODE(self, score_fn)

    def extra_repr(self) -> str:
        return f"t_min={float(self.t_min):g}, t_max={float(self.t_max):g}"
