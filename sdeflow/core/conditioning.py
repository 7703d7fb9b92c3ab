"""Conditioned views of a score model: class labels, classifier-free guidance, observed coordinates.

``score_model.given(labels, guidance=w, mask=m, values=v)`` returns a :class:`ConditionedScoreModel`:
a :class:`~sdeflow.ScoreModel` whose network output is

* with ``labels``: the conditional prediction ``eps(x, t, c)`` of a network called as
  ``net(x, t_cond, labels)`` (``labels`` an ``int64`` tensor ``(batch,)``; :data:`NULL_LABEL` marks
  "no label", the unconditional prediction of a network trained with label dropout);
* with ``guidance = w != 0``: classifier-free guidance (Ho & Salimans 2022, Eq. 6)
  ``(1 + w) eps(x, t, c) - w eps(x, t, null)``. It is defined in eps space; since every conversion
  between the parametrizations (``eps``, ``score``, ``x0``, ``v``) is affine in the network output for
  fixed ``(x, alpha_t, sigma_t)`` and the two weights sum to one, the same combination of the raw
  outputs *is* that eps combination, whatever the network predicts, and it is the score
  ``(1 + w) grad log p_t(x | c) - w grad log p_t(x) = grad log p_t(x | c) + w grad log p_t(c | x)``
  (Song et al. 2021, Eq. 14 with the implicit classifier ``p_t(c | x)^w``). Both predictions come
  from ONE network call on the doubled batch ``[x, x]`` with labels ``[c, null]`` (``batched=False``:
  two calls), so a guided score evaluation counts as one evaluation in a sampler's ``nfe`` and costs
  the network work of two;
* with ``mask`` and ``values``: imputation by the replacement method (Song et al. 2021, App. I.2):
  the observed coordinates (``mask`` True) get the prediction of the point mass at ``values`` (the
  forward marginal ``q(x_t | y) = N(alpha_t y, sigma_t^2 I)``: ``x0 = y``, ``eps = (x - alpha_t y) /
  sigma_t``), so every sampler moves them along the exact reverse dynamics of ``q``, whose marginal
  at every ``t`` is the noisy observation ``y_t``; the unobserved coordinates get the joint model's
  prediction at the current state ``[x^unobserved, y_t]``, the approximation
  ``grad log p_t(x^u | y) ~ grad_u log p_t([x^u, y_t])`` with ``y_t ~ q(y_t | y)``.

Nothing here is sampler-specific: every sampler, :func:`sdeflow.log_likelihood` and the benchmark
harness use the view as they use any score model.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import IncompatibleError, OptionError, ShapeError
from ..utils.shapes import append_dims, rand, randn
from . import parametrization as P
from .score_model import ScoreModel

#: the label value meaning "no label": the unconditional prediction (the null token of Ho & Salimans 2022)
NULL_LABEL: int = -1


def as_labels(labels: Any, num_classes: int | None, what: str = "labels") -> Tensor:
    """``labels`` (an int, a sequence of ints or an integer tensor) as a 1-D ``int64`` tensor, checked
    against ``num_classes`` (values ``0..num_classes-1``, or :data:`NULL_LABEL`).

    Raises:
        OptionError: non-integer labels, or values out of range (the message gives the valid range).
        ShapeError: more than one dimension.
    """
    try:
        t = labels if isinstance(labels, Tensor) else torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise OptionError(f"{what} must be integers (class indices), got {labels!r}") from exc
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise OptionError(f"{what} must be integers (class indices), got dtype {t.dtype}")
    if t.ndim > 1:
        raise ShapeError(f"{what} must be one label or a tensor (batch,), got shape {tuple(t.shape)}")
    t = t.reshape(-1).to(torch.int64)
    if t.numel() == 0:
        raise ShapeError(f"{what} is empty")
    if num_classes is not None:
        lo, hi = int(t.min()), int(t.max())  # once, at configuration time
        if lo < NULL_LABEL or hi >= num_classes:
            raise OptionError(f"{what} must lie in 0..{num_classes - 1} (or {NULL_LABEL}, no label, for the "
                              f"unconditional prediction); got values in [{lo}, {hi}]")
    return t


def _rows(v: Tensor, n: int, what: str) -> Tensor:
    """``v`` (one entry or ``(n, ...)``) for a batch of ``n``: shape metadata only, no device sync."""
    if v.shape[0] == n:
        return v
    if v.shape[0] == 1:
        return v.expand(n, *v.shape[1:])
    raise ShapeError(f"{what} has {v.shape[0]} rows but the batch has {n}; give one entry (used for every sample) "
                     f"or one per sample")


class ConditionedScoreModel(ScoreModel):
    """A score model conditioned on class labels and/or observed coordinates (see the module docstring).

    Build it with :meth:`sdeflow.ScoreModel.given`. It shares the base model's network and process
    (moving or casting either moves both) and is a :class:`~sdeflow.ScoreModel` in every respect:
    ``score``, ``eps``, ``x0``, ``v``, ``prior_sample``, ``loss`` (label views only), any sampler.

    Args:
        base: the unconditioned score model.
        labels: class labels, one (for every sample) or one per sample; :data:`NULL_LABEL` entries
            give the unconditional prediction. ``None``: no label.
        guidance: the classifier-free guidance scale ``w`` (a float, or one per sample): 0 samples
            ``p(x | c)``, ``w > 0`` sharpens towards the class (Ho & Salimans 2022, Eq. 6).
        negative: the labels whose prediction guidance moves away from, in place of the null label
            (``(1 + w) eps(x, c) - w eps(x, negative)``; the "negative prompt" of text-to-image
            models). ``None``: the null label.
        mask: observed coordinates, a boolean tensor of one sample's shape (or ``(batch, *dims)``);
            ``True`` = observed.
        values: the observed values, one sample's shape (or ``(batch, *dims)``); entries where
            ``mask`` is False are ignored.
        batched: evaluate the conditional and the unconditional prediction in one network call on
            the doubled batch (default) rather than in two calls.
        check: check the labels' range on the host (``False``: a training loop's labels, already known
            to be valid; no device synchronisation).
    """

    _base: ScoreModel

    def __init__(self, base: ScoreModel, labels: Any = None, guidance: float | Sequence[float] | Tensor = 0.0, *,
                 negative: Any = None, mask: Tensor | None = None, values: Tensor | None = None,
                 batched: bool = True, check: bool = True) -> None:
        if isinstance(base, ConditionedScoreModel):
            raise IncompatibleError("this score model is already conditioned; call given(...) once on the base "
                                    "model (view.base) with every condition: labels, guidance, mask and values")
        if not isinstance(base, ScoreModel):
            raise TypeError(f"base must be a sdeflow.ScoreModel, got {type(base).__name__}")
        super().__init__(base.network, base.process, base.parametrization, noise_floor=base.noise_floor)
        object.__setattr__(self, "_base", base)  # not a submodule: its network and process already are
        k = base.num_classes
        device = base.device
        w = _guidance(guidance)
        if labels is None and mask is None:
            raise OptionError("given() needs labels (class indices) and/or mask and values (observed coordinates)")
        if (labels is not None or negative is not None) and k is None:
            raise IncompatibleError(
                f"the network {type(base.network).__name__} takes no class labels (it has no num_classes); build a "
                "class-conditional one, e.g. sdeflow.create_model('mlp', dim=d, num_classes=k), and train it with "
                "labels")
        if labels is None and (negative is not None or bool((w != 0).any())):
            raise OptionError("guidance and negative labels need labels: given(labels, guidance=w)")
        limit = k if check else None
        self.labels = None if labels is None else as_labels(labels, limit).to(device)
        self.negative = None if negative is None else as_labels(negative, limit, "negative labels").to(device)
        self.guidance = w.to(device)
        self.guided = self.negative is not None or bool((w != 0).any())
        self.batched = bool(batched)
        if (mask is None) != (values is None):
            raise OptionError("imputation needs both mask (True = observed) and values")
        self.mask: Tensor | None = None
        self.values: Tensor | None = None
        if mask is not None:
            m = torch.as_tensor(mask, device=device)
            if m.dtype != torch.bool:
                raise OptionError(f"mask must be a boolean tensor (True = observed), got dtype {m.dtype}")
            v = torch.as_tensor(values, device=device)
            if not v.is_floating_point():
                v = v.to(torch.get_default_dtype())
            try:
                observed = torch.where(m, v, torch.zeros((), dtype=v.dtype, device=device))
            except RuntimeError as exc:
                raise ShapeError(f"mask {tuple(m.shape)} and values {tuple(v.shape)} do not have one shape") from exc
            if not bool(torch.isfinite(observed).all()):
                raise OptionError("values contain NaN/Inf where they are observed")
            self.mask, self.values = m, torch.nan_to_num(v)

    # ------------------------------------------------------------------ what it is
    @property
    def base(self) -> ScoreModel:
        """The unconditioned score model."""
        return self._base

    @property
    def num_classes(self) -> int | None:
        """The base model's number of classes."""
        return self.base.num_classes

    @property
    def score_t_min(self) -> float:
        """The base model's :attr:`~sdeflow.ScoreModel.score_t_min`; with observed coordinates at least the
        time where ``sigma_t / alpha_t`` reaches the noise floor (the point mass at the observed values
        has no finite score where ``sigma_t = 0``)."""
        t = self.base.score_t_min
        return t if self.mask is None else max(t, self._noise_floor_time())

    @property
    def device(self) -> torch.device:
        """The base model's device."""
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        """The base model's dtype."""
        return self.base.dtype

    def given(self, labels: Any = None, guidance: float | Sequence[float] | Tensor = 0.0, **kwargs: Any) -> ScoreModel:
        """Refused: condition the base model once, with every condition (see :attr:`base`)."""
        raise IncompatibleError("this score model is already conditioned; call given(...) once on the base model "
                                "(view.base) with every condition: labels, guidance, mask and values")

    # ------------------------------------------------------------------ the conditioned prediction
    def _labels(self, n: int, device: torch.device) -> Tensor | None:
        return None if self.labels is None else _rows(self.labels.to(device), n, "labels")

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """The conditioned prediction in the base model's parametrization (module docstring)."""
        base, n = self.base, x.shape[0]
        labels = self._labels(n, x.device)
        if labels is None:
            out = base.network_output(x, t)
        elif not self.guided:
            out = base.conditional_output(x, t, labels)
        else:
            neg = (torch.full_like(labels, NULL_LABEL) if self.negative is None
                   else _rows(self.negative.to(x.device), n, "negative labels"))
            if self.batched:
                both = base.conditional_output(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, neg]))
                cond, other = both[:n], both[n:]
            else:
                cond, other = base.conditional_output(x, t, labels), base.conditional_output(x, t, neg)
            w = append_dims(_rows(self.guidance.to(device=x.device, dtype=x.dtype), n, "guidance"), x.ndim)
            out = cond + w * (cond - other)  # (1 + w) cond - w other
        if self.mask is None:
            return out
        mask, values = self.observed(x)
        point = P.from_x0(self.parametrization, values, x, **self.coefficients(t, x.ndim))
        return torch.where(mask, point, out)

    def observed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mask, values)`` broadcast to ``x`` (one sample's shape or one per sample)."""
        assert self.mask is not None and self.values is not None
        out = []
        for v, what in ((self.mask, "mask"), (self.values, "values")):
            if v.dim() == x.dim() - 1 and v.shape == x.shape[1:]:
                v = v.unsqueeze(0)
            if v.dim() != x.dim() or v.shape[1:] != x.shape[1:]:
                raise ShapeError(f"{what} has shape {tuple(v.shape)}; the samples are {tuple(x.shape)}: give one "
                                 f"sample's shape {tuple(x.shape[1:])} or one per sample {tuple(x.shape)}")
            out.append(_rows(v.to(device=x.device, dtype=x.dtype if v.is_floating_point() else v.dtype), x.shape[0],
                             what))
        return out[0], out[1]

    def fill_observed(self, x: Tensor) -> Tensor:
        """``x`` with its observed coordinates set to the known values (an imputation's final answer).

        A sampler returns the state at its end time, whose observed coordinates are a draw of
        ``q(x_{t_end} | y) = N(alpha y, sigma^2 I)`` up to the sampler's own error: exactly ``y`` for the
        data-prediction steps that end at ``t = 0`` or denoise (``ancestral``, ``repaint``), within
        ``sigma_{t_end}`` otherwise. The point mass's dynamics are stiff near ``t_min`` (its score has
        Lipschitz constant ``1 / sigma_t^2``): the exponential-integrator samplers (``ddim``,
        ``dpm_solver``, ``unipc``, ``ancestral``) follow them exactly, adaptive ODE/SDE solvers to their
        tolerance, few-step explicit Runge-Kutta methods not at all.
        """
        if self.mask is None:
            return x
        mask, values = self.observed(x)
        return torch.where(mask, values, x)

    # ------------------------------------------------------------------ prior and training
    def prior_sample(self, shape: Sequence[int], generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """``x_{t_max}``: the base model's prior given the labels (an exact mixture's class component at
        ``t_max``; a trained model's process prior), with the observed coordinates drawn from
        ``q(x_{t_max} | y) = N(alpha y, sigma^2 I)``."""
        device, dtype = device or self.device, dtype or self.dtype
        labels = self._labels(int(shape[0]), torch.device(device))
        x = self.base.conditional_prior_sample(shape, labels, generator, device, dtype)
        if self.mask is None:
            return x
        mask, values = self.observed(x)
        t = torch.full((x.shape[0],), float(self.process.t_max), device=x.device, dtype=x.dtype)
        a, s = (append_dims(c, x.ndim) for c in self.process.marginal(t))
        noisy = a * values + s * randn(x.shape, generator, x.device, x.dtype)
        return torch.where(mask, noisy, x)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """Log-density of the prior given the labels (the base model's, see :meth:`prior_sample`)."""
        return self.base.conditional_prior_log_prob(x, self._labels(x.shape[0], x.device))

    def loss(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The base model's training objective with the labels as the network's condition.

        Raises:
            IncompatibleError: a guided or imputing view (train the label view; guidance and
                imputation are sampling-time choices).
        """
        if self.guided or self.mask is not None:
            raise IncompatibleError("a guided or imputing view cannot be trained: train score_model.given(labels) "
                                    "(with label dropout) and guide or impute at sampling time")
        return super().loss(x0, generator)

    def extra_repr(self) -> str:
        parts = []
        if self.labels is not None:
            parts.append(f"labels={self.labels.tolist() if self.labels.numel() <= 8 else tuple(self.labels.shape)}")
        if self.guided:
            w = self.guidance
            parts.append(f"guidance={float(w[0]) if w.numel() == 1 else tuple(w.shape)}")
        if self.mask is not None:
            parts.append(f"observed={int(self.mask.sum())} of {self.mask.numel()} values")
        return ", ".join(parts)


ScoreModel.view_class = ConditionedScoreModel


def _guidance(guidance: float | Sequence[float] | Tensor) -> Tensor:
    if isinstance(guidance, bool):
        raise OptionError(f"guidance must be a number (or one per sample), got {guidance!r}")
    try:
        w = torch.as_tensor(guidance, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise OptionError(f"guidance must be a number (or one per sample), got {guidance!r}") from exc
    if w.numel() == 0 or not bool(torch.isfinite(w).all()):
        raise OptionError(f"guidance must be finite numbers, got {guidance!r}")
    return w


def drop_labels(labels: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> Tensor:
    """Label dropout for classifier-free guidance (Ho & Salimans 2022, Algorithm 1): each label is
    replaced by :data:`NULL_LABEL` with probability ``p_uncond``, so one network learns the
    conditional and the unconditional prediction.

    Args:
        labels: ``int64`` labels ``(batch,)``.
        p_uncond: the dropout probability, in ``[0, 1]``.
        generator: random source (one uniform draw per label).
    """
    if not 0.0 <= float(p_uncond) <= 1.0 or math.isnan(float(p_uncond)):
        raise OptionError(f"p_uncond must lie in [0, 1], got {p_uncond!r}")
    if p_uncond == 0.0:
        return labels
    u = rand((labels.shape[0],), generator, labels.device, torch.float32)
    return torch.where(u < float(p_uncond), torch.full_like(labels, NULL_LABEL), labels)


__all__ = ["ConditionedScoreModel", "NULL_LABEL", "as_labels", "drop_labels"]
