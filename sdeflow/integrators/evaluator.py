"""Counting score evaluations and watching for non-finite values without host syncs."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NonFiniteError
from ..score_model import ScoreModel


class ScoreEvaluator:
    """Calls ``score_model.score(x, t, check=False)``, counts calls and records the first
    non-finite output.

    The record lives in device tensors updated with ``torch.where``, so the step loop never
    synchronises with the host; :meth:`raise_if_nonfinite` looks once, after the loop.

    Args:
        score_model: the model to evaluate.
        check_finite: watch outputs for NaN/Inf.
    """

    def __init__(self, score_model: ScoreModel, check_finite: bool = True) -> None:
        self.score_model = score_model
        self.check_finite = check_finite
        self.nfe = 0
        self._bad: Tensor | None = None
        self._bad_t: Tensor | None = None
        self._bad_nfe: Tensor | None = None

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """Score at ``x`` and times ``t`` (shape ``(batch,)``, already inside ``[t_min, t_max]``)."""
        self.nfe += 1
        out = self.score_model.score(x, t, check=False)
        if self.check_finite:
            self.watch(out, t[0])
        return out

    def watch(self, out: Tensor, t: Tensor) -> None:
        """Record ``t`` and the evaluation count if ``out`` is the first non-finite output."""
        bad = ~torch.isfinite(out).all()
        if self._bad is None:
            self._bad = torch.zeros((), dtype=torch.bool, device=out.device)
            self._bad_t = torch.full((), float("nan"), dtype=t.dtype, device=out.device)
            self._bad_nfe = torch.zeros((), dtype=torch.long, device=out.device)
        new = bad & ~self._bad
        self._bad_t = torch.where(new, t.to(self._bad_t.dtype), self._bad_t)
        self._bad_nfe = torch.where(new, torch.full_like(self._bad_nfe, self.nfe), self._bad_nfe)
        self._bad = self._bad | bad

    def first_nonfinite(self) -> tuple[float, int] | None:
        """``(t, evaluation number)`` of the first non-finite output, or ``None`` (one host sync)."""
        if self._bad is None or not bool(self._bad):
            return None
        return float(self._bad_t), int(self._bad_nfe)

    def raise_if_nonfinite(self, where: str, step_of: "callable | None" = None, samples: Tensor | None = None) -> None:
        """Raise :class:`NonFiniteError` if a score output or ``samples`` is not finite.

        Args:
            where: who is sampling, for the message (e.g. ``"sampler 'sde' (method='euler')"``).
            step_of: maps the time of the first bad evaluation to a step description.
            samples: final samples to check as well.
        """
        first = self.first_nonfinite()
        if first is not None:
            t, k = first
            step = f"{step_of(t)}, " if step_of is not None else ""
            raise NonFiniteError(
                f"{where}: the score became NaN/Inf at {step}t={t:.6g} (score evaluation {k} of {self.nfe}); "
                "check the model, the time range (t_end) and the step size"
            )
        if samples is not None and not bool(torch.isfinite(samples).all()):
            raise NonFiniteError(f"{where}: the samples contain NaN/Inf after {self.nfe} score evaluations "
                                 "although every score output was finite; the step size may be unstable")
