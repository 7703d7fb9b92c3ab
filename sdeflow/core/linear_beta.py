"""The linear ``beta(t)`` schedule shared by the VP and sub-VP SDEs (Song et al. 2021, Eq. 11 and 17)."""

from __future__ import annotations

from torch import Tensor

from ..errors import OptionError
from ..utils.shapes import append_dims


def _check_beta(beta_min: float, beta_max: float, t_min: float) -> None:
    """Validate a linear beta schedule and ``t_min``."""
    if not (beta_min >= 0 and beta_max > beta_min):
        raise OptionError(f"need 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
    if not 0 < t_min < 1:
        raise OptionError(f"t_min must lie in (0, 1), got {t_min}")


class LinearBeta:
    """Mixin for a :class:`sdeflow.ForwardProcess` with ``beta(t) = beta_min + t (beta_max - beta_min)``
    and the drift ``f(x, t) = -1/2 beta(t) x`` (Song et al. 2021, Eq. 11 and 17; both SDEs share it).

    List it before the base class: ``class MyVP(sdeflow.LinearBeta, sdeflow.ForwardProcess)``; the
    subclass adds ``diffusion`` and ``marginal`` (in terms of :meth:`beta` and :meth:`integral`).

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        t_min: smallest time (sampling ends and training draws start here).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        super().__init__()
        _check_beta(beta_min, beta_max, t_min)
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)`` (Song et al. 2021, Eq. 11)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta(s) ds = beta_min t + (beta_max - beta_min) t^2 / 2``."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = -1/2 beta(t) x`` (Song et al. 2021, Eq. 11 and 17)."""
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

    def extra_repr(self) -> str:
        return f"beta_min={self.beta_min:g}, beta_max={self.beta_max:g}, " + super().extra_repr()  # type: ignore[misc]


__all__ = ["LinearBeta"]
