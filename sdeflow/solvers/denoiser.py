"""The data prediction ``x0_theta(x_t, t)`` as a counted, watched evaluation (for DDIM, DPM-Solver++, EDM)."""

from __future__ import annotations

from torch import Tensor

from .evaluator import ScoreEvaluator


class Denoiser:
    """``x0_theta(x_t, t) = (x_t + sigma_t^2 score) / alpha_t`` (Tweedie's formula; the "data
    prediction" of DPM-Solver++, Lu et al. 2022b, Eq. 8, and EDM's ``D(x; sigma)``, Karras et al.
    2022, Eq. 3), converted from the network's own parametrization by
    :meth:`sdeflow.ScoreModel.x0`, counted in ``evaluator.nfe`` and watched for NaN/Inf.

    Args:
        evaluator: the sampler's :class:`~sdeflow.solvers.evaluator.ScoreEvaluator`.
        clip_x0: clamp the prediction to ``[-clip_x0, clip_x0]`` (images in ``[-1, 1]``: 1.0).
    """

    def __init__(self, evaluator: ScoreEvaluator, clip_x0: float | None = None) -> None:
        self.evaluator, self.clip_x0 = evaluator, clip_x0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """``x0_theta`` at ``x`` and times ``t`` (shape ``(batch,)``, inside ``[t_min, t_max]``)."""
        ev = self.evaluator
        ev.nfe += 1
        out = ev.score_model.x0(x, t, check=False)
        if ev.check_finite:
            ev.watch(out, t)
        return out.clamp(-self.clip_x0, self.clip_x0) if self.clip_x0 is not None else out
