"""``ScoreModel``: a network plus the process it was trained for.

The network follows one contract, ``net(x, t_cond)``, and predicts one of five quantities
(``eps``, ``score``, ``x0``, ``v``, ``velocity``); :mod:`sdeflow.core.parametrization` converts
between them, so every architecture works with every method (the k-diffusion wrapper idea).

Where the process has no noise at ``t_min`` (``sigma_{t_min} = 0``: VE at ``t = 0``), a network that
predicts ``eps``, ``x0`` or ``v`` has no finite score there (``score = -eps / sigma_t``), although
the true score (the data's) is finite. :attr:`ScoreModel.score_t_min` is the smallest time at
which the score-evaluating integrators (``ode``, ``sde``, annealed Langevin, and
:func:`sdeflow.log_likelihood`) use the score; samplers integrate down to it and take one exact
data-prediction step the rest of the way (:meth:`sdeflow.solvers.SamplingRun.finish`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from ..errors import IncompatibleError, OptionError, ShapeError
from ..utils.shapes import append_dims
from . import parametrization as P
from .noise_levels import EDM_SIGMA_MIN, scaled_sigma, t_from_scaled_sigma
from .process import ForwardProcess


class ScoreModel(nn.Module):
    """A score model ``s_theta(x, t) ~ grad_x log p_t(x)`` (Song et al. 2021, Eq. 7).

    Args:
        network: module called as ``network(x, t_cond)`` returning a tensor shaped like ``x``;
            ``t_cond`` is ``process.network_condition(t)`` (the time by default).
        process: the forward process the model belongs to (registered as a submodule, so a
            learned schedule's parameters are part of :meth:`parameters`).
        parametrization: what the network predicts: ``"eps"``, ``"score"``, ``"x0"``, ``"v"``
            (Salimans & Ho 2022) or ``"velocity"`` (the flow ``dx_t/dt``, Lipman et al. 2023);
            ``None``: the process's ``default_parametrization`` (``"eps"``; ``"velocity"`` for
            ``rectified_flow``).
        noise_floor: the noise level ``sigma_t / alpha_t`` at which integration stops when the
            process has ``sigma_{t_min} = 0`` and the network predicts ``eps``, ``x0`` or ``v``
            (see :attr:`score_t_min`); ``None``: EDM's smallest level, 0.002
            (:data:`sdeflow.solvers.EDM_SIGMA_MIN`).
    """

    def __init__(self, network: nn.Module, process: ForwardProcess, parametrization: str | None = None, *,
                 noise_floor: float | None = None) -> None:
        super().__init__()
        if not isinstance(process, ForwardProcess):
            raise TypeError(f"process must be a sdeflow.ForwardProcess, got {type(process).__name__}")
        if not callable(network):
            raise TypeError(f"network must be callable as network(x, t_cond), got {type(network).__name__}")
        self.network = network
        self.process = process
        if parametrization is None:
            parametrization = getattr(process, "default_parametrization", "eps")
        self.parametrization = P.check_parametrization(parametrization)
        if noise_floor is not None and (isinstance(noise_floor, bool) or not math.isfinite(float(noise_floor))
                                        or not float(noise_floor) > 0):
            raise OptionError(f"noise_floor must be a positive finite noise level sigma/alpha or None, "
                              f"got {noise_floor!r}")
        self.noise_floor = None if noise_floor is None else float(noise_floor)

    # ------------------------------------------------------------------ where the score is evaluated
    @property
    def score_t_min(self) -> float:
        """The smallest time at which integrators evaluate this model's score.

        ``process.t_min``, unless the process has no noise there (``sigma_{t_min} = 0``, VE at
        ``t = 0``) and the network predicts ``eps``, ``x0``, ``v`` or ``velocity``: then
        ``score = -eps / sigma_t`` is infinite at ``t_min``, and this is the time at which the noise level
        ``sigma_t / alpha_t`` reaches :attr:`noise_floor` (default EDM's smallest level 0.002, Karras et al.
        2022, Table 1).
        Samplers that evaluate the score at their end time stop at ``max(t_end, score_t_min)`` and
        take one exact data-prediction step to ``t_end``; :func:`sdeflow.log_likelihood` evaluates
        ``log p`` here by default (``docs/samplers.md``, where the noise is zero). Computed on the host
        at configuration time, never inside a step loop.

        Returns:
            A time in ``[t_min, t_max)``.
        """
        if self.parametrization == "score":
            return float(self.process.t_min)
        return self._noise_floor_time()

    def _noise_floor_time(self) -> float:
        """``t_min``, or where the process has no noise there, the time at which ``sigma_t / alpha_t``
        reaches :attr:`noise_floor` (see :attr:`score_t_min`)."""
        process = self.process
        t_min, t_max = float(process.t_min), float(process.t_max)
        bottom, top = scaled_sigma(process, torch.tensor([t_min, t_max], dtype=torch.float64)).tolist()
        if bottom > 0:
            return t_min
        level = EDM_SIGMA_MIN if self.noise_floor is None else self.noise_floor
        t = float(t_from_scaled_sigma(process, torch.tensor([level], dtype=torch.float64))[0]) if level < top else t_max
        if not t_min < t < t_max:
            raise OptionError(
                f"{type(process).__name__} has no noise at t_min={t_min:g}, where the score of a network "
                f"predicting {self.parametrization!r} is infinite, and its noise level sigma/alpha = {level:g} "
                "(noise_floor) is not "
                f"reached inside ({t_min:g}, {t_max:g}) (sigma/alpha at t_max: {top:.6g}); pass a smaller noise_floor")
        return t

    # ------------------------------------------------------------------ raw output
    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """Raw network prediction (in the model's parametrization) at times ``t`` of shape ``(batch,)``."""
        out = self.network(x, self.process.network_condition(t))
        if out.shape != x.shape:
            raise ShapeError(
                f"network {type(self.network).__name__} returned shape {tuple(out.shape)} for input "
                f"{tuple(x.shape)}; it must return a tensor shaped like its input"
            )
        return out

    # ------------------------------------------------------------------ conditioning
    #: the class of the views :meth:`given` returns, called as ``view_class(model, labels, guidance, **options)``:
    #: :class:`sdeflow.ConditionedScoreModel`, set when :mod:`sdeflow.core.conditioning` is imported (as
    #: ``import sdeflow`` does); a subclass may name its own
    view_class: ClassVar[Callable[..., "ScoreModel"] | None] = None

    @property
    def num_classes(self) -> int | None:
        """Number of classes of a class-conditional network (its ``num_classes`` attribute), else ``None``.

        A class-conditional network is called as ``network(x, t_cond, labels)`` with ``labels`` an
        ``int64`` tensor ``(batch,)`` of values ``0..num_classes-1`` or ``-1`` (no label:
        :data:`sdeflow.NULL_LABEL`), and as ``network(x, t_cond)`` it gives the unconditional
        prediction (see ``docs/conditioning.md``).
        """
        k = getattr(self.network, "num_classes", None)
        return int(k) if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else None

    def conditional_output(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """Raw network prediction given class ``labels`` (``int64``, ``(batch,)``; ``-1``: no label).

        A subclass that is not a network (an exact mixture score) overrides this.

        Raises:
            IncompatibleError: the network takes no labels (it has no ``num_classes``).
        """
        if self.num_classes is None:
            raise IncompatibleError(f"network {type(self.network).__name__} takes no class labels (no num_classes)")
        out = self.network(x, self.process.network_condition(t), labels)
        if out.shape != x.shape:
            raise ShapeError(
                f"network {type(self.network).__name__} returned shape {tuple(out.shape)} for input "
                f"{tuple(x.shape)}; it must return a tensor shaped like its input"
            )
        return out

    def conditional_prior_sample(self, shape: Sequence[int], labels: Tensor | None,
                                 generator: torch.Generator | None = None, device: torch.device | str | None = None,
                                 dtype: torch.dtype | None = None) -> Tensor:
        """Initial samples at ``t_max`` given the labels: :meth:`prior_sample` (the process's prior does
        not depend on the data); an exact mixture draws the labels' components at ``t_max``."""
        return self.prior_sample(shape, generator, device, dtype)

    def conditional_prior_log_prob(self, x: Tensor, labels: Tensor | None) -> Tensor:
        """Log-density of :meth:`conditional_prior_sample` (nats, ``(batch,)``)."""
        return self.prior_log_prob(x)

    def given(self, labels: Any = None, guidance: float | Sequence[float] | Tensor = 0.0, *, negative: Any = None,
              mask: Tensor | None = None, values: Tensor | None = None, batched: bool = True,
              check: bool = True) -> "ScoreModel":
        """This model conditioned on class labels and/or observed coordinates: a view that every
        sampler, :func:`sdeflow.log_likelihood` and the benchmark use like any score model.

        * ``labels``: sample ``p(x | c)`` (a class-conditional network trained with labels, or an
          exact mixture, whose labels are component indices);
        * ``guidance=w``: classifier-free guidance ``(1 + w) eps(x, c) - w eps(x, null)``
          (Ho & Salimans 2022, Eq. 6), one batched network call per evaluation;
        * ``mask`` and ``values``: imputation of the unobserved coordinates by the replacement
          method (Song et al. 2021, App. I.2); the ``repaint`` sampler adds resampling.

        See :class:`sdeflow.ConditionedScoreModel` for the arguments (``check=False`` skips the host-side
        range check of the labels, for training loops that build a view every step).
        """
        view = type(self).view_class
        if view is None:  # pragma: no cover - `import sdeflow` imports sdeflow.core.conditioning, which sets it
            raise IncompatibleError("no conditioned view class: import sdeflow.core.conditioning")
        return view(self, labels, guidance, negative=negative, mask=mask, values=values, batched=batched,
                    check=check)

    def coefficients(self, t: Tensor, ndim: int, derivatives: bool | None = None) -> dict[str, Tensor]:
        """The marginal's coefficients at ``t`` broadcast to ``ndim`` dimensions, as the keyword
        arguments of :mod:`sdeflow.core.parametrization`'s conversions: ``{"a", "s"}``, plus
        ``{"da", "ds"}`` (``d alpha_t/dt``, ``d sigma_t/dt``) when ``derivatives`` (default: when
        this model's parametrization needs them, i.e. ``velocity``).

        Args:
            t: times, shape ``(batch,)``.
            ndim: number of dimensions of the data (``x.ndim``).
            derivatives: also return the time derivatives.
        """
        if derivatives is None:
            derivatives = self.parametrization in P.NEEDS_DERIVATIVES
        if derivatives:
            a, s, da, ds = self.process.marginal_and_derivatives(t)
            return {"a": append_dims(a, ndim), "s": append_dims(s, ndim), "da": append_dims(da, ndim),
                    "ds": append_dims(ds, ndim)}
        a, s = self.process.marginal(t)
        return {"a": append_dims(a, ndim), "s": append_dims(s, ndim)}

    def _prepare(self, x: Tensor, t: Tensor | float, check: bool,
                 derivatives: bool | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The network output at ``(x, t)`` and the coefficients its conversion needs."""
        if check:
            if not isinstance(x, Tensor) or x.ndim < 2:
                raise ShapeError(
                    f"x must be a tensor of shape (batch, *dims), got "
                    f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
                )
            t = self.process.check_time(t, x.shape[0], like=x)
        elif not isinstance(t, Tensor):
            raise ShapeError(f"t must be a tensor of shape (batch,) when check=False, got {type(t).__name__}")
        coeffs = self.coefficients(t, x.ndim, derivatives)
        return self.network_output(x, t), coeffs

    # ------------------------------------------------------------------ converted outputs
    def score(self, x: Tensor, t: Tensor | float, *, check: bool = True) -> Tensor:
        """Score ``grad_x log p_t(x)`` (Song et al. 2021, Eq. 7), converted from the network output.

        Args:
            x: state, shape ``(batch, *dims)``.
            t: times, shape ``(batch,)`` (a float is broadcast).
            check: validate shapes and the time range (samplers pass ``False`` inside their
                loops, where times are already clamped, to avoid host synchronisation).

        Returns:
            Tensor shaped like ``x``.
        """
        out, c = self._prepare(x, t, check)
        return P.to_score(self.parametrization, out, x, **c)

    def eps(self, x: Tensor, t: Tensor | float, *, check: bool = True) -> Tensor:
        """Noise prediction ``eps = -sigma_t * score`` (Ho et al. 2020, Eq. 11)."""
        out, c = self._prepare(x, t, check)
        return P.to_eps(self.parametrization, out, x, **c)

    def x0(self, x: Tensor, t: Tensor | float, *, check: bool = True) -> Tensor:
        """Denoised estimate ``E[x_0 | x_t] = (x_t + sigma_t^2 score) / alpha_t`` (Tweedie's formula)."""
        out, c = self._prepare(x, t, check)
        return P.to_x0(self.parametrization, out, x, **c)

    def v(self, x: Tensor, t: Tensor | float, *, check: bool = True) -> Tensor:
        """Velocity ``v = alpha_t eps - sigma_t x_0`` (Salimans & Ho 2022, Eq. 9)."""
        out, c = self._prepare(x, t, check)
        return P.to_v(self.parametrization, out, x, **c)

    def velocity(self, x: Tensor, t: Tensor | float, *, check: bool = True) -> Tensor:
        """The flow's velocity ``u = E[(d alpha_t/dt) x_0 + (d sigma_t/dt) eps | x_t]`` (Lipman et al.
        2023, Eq. 15-16; Liu et al. 2022, Eq. 1): the vector field of the probability-flow ODE
        ``f - g^2 score / 2`` (Song et al. 2021, Eq. 13), ``E[eps - x_0 | x_t]`` for ``rectified_flow``."""
        out, c = self._prepare(x, t, check, derivatives=True)
        return P.to_velocity(self.parametrization, out, x, **c)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Same as :meth:`score`."""
        return self.score(x, t)

    # ------------------------------------------------------------------ training and prior
    def loss(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The method's default training objective on a batch ``x0`` (delegates to the process)."""
        if not isinstance(x0, Tensor) or x0.ndim < 2:
            raise ShapeError("x0 must be a tensor of shape (batch, *dims)")
        return self.process.default_loss(self, x0, generator)

    def prior_sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Initial samples at ``t_max`` for reverse-time samplers (the process's prior by default)."""
        return self.process.prior_sample(shape, generator, device or self.device, dtype or self.dtype)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """Log-density of the prior at ``x`` (nats, shape ``(batch,)``)."""
        return self.process.prior_log_prob(x)

    # ------------------------------------------------------------------ placement
    def _first_tensor(self) -> Tensor | None:
        for p in self.parameters():
            return p
        for b in self.buffers():
            return b
        return None

    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter or buffer (CPU when it has none)."""
        ref = self._first_tensor()
        return ref.device if ref is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's first parameter or buffer (the default dtype when it has none)."""
        ref = self._first_tensor()
        return ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype()
