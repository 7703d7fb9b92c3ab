"""NCSN (Song & Ermon 2019): Gaussian perturbations at geometric noise levels, as a VE SDE."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sdeflow import ForwardProcess, ScoreModel, denoising_score_matching, rand
from sdeflow.errors import OptionError


class NCSNProcess(ForwardProcess):
    """Noise levels ``sigma_1 > ... > sigma_L`` in geometric progression from ``sigma_max`` to
    ``sigma_min`` (Song & Ermon 2019, Sec. 4.2), with ``q_sigma(x~ | x) = N(x, sigma^2 I)``.

    In continuous time ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, the levels sit at
    ``t_i = i / (L - 1)``, and the process is the VE SDE ``dx = sqrt(d sigma^2/dt) dw``
    (Song et al. 2021, Eq. 9) whose marginal std is ``sigma(t)`` itself (``t_min = 0`` already
    carries ``sigma_min`` of noise, as in NCSN), so the generic samplers apply.

    Args:
        sigma_min: smallest noise level (0.01 in the paper).
        sigma_max: largest noise level (1.0 in the paper).
        num_scales: number of levels ``L`` (10 in the paper).
    """

    t_min = 0.0

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 1.0, num_scales: int = 10) -> None:
        super().__init__()
        if not 0 < sigma_min < sigma_max:
            raise OptionError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if int(num_scales) != num_scales or num_scales < 2:
            raise OptionError(f"num_scales must be an integer >= 2, got {num_scales!r}")
        self.sigma_min, self.sigma_max, self.num_scales = float(sigma_min), float(sigma_max), int(num_scales)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sigma_min (sigma_max / sigma_min)^t``."""
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def sigmas(self) -> Tensor:
        """The levels ``sigma_1 > ... > sigma_L`` (float64)."""
        return self.sigma(self.discrete_times())

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f = 0``."""
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(d sigma^2/dt) = sigma(t) sqrt(2 log(sigma_max/sigma_min))``."""
        return self.sigma(t) * math.sqrt(2.0 * self.log_ratio)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha_t = 1``, ``sigma_t = sigma(t)`` (Song & Ermon 2019, Sec. 4.2)."""
        return torch.ones_like(t), self.sigma(t)

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = -2 log sigma(t)``."""
        return -2.0 * (math.log(self.sigma_min) + t * self.log_ratio)

    def t_from_log_snr(self, lam: Tensor, iters: int = 0) -> Tensor:
        """Closed-form inverse of :meth:`log_snr`."""
        return (-0.5 * lam - math.log(self.sigma_min)) / self.log_ratio

    def discrete_times(self) -> Tensor:
        """Times of the levels, descending: ``t_i = (L - i) / (L - 1)``, ``i = 1..L``."""
        return torch.arange(self.num_scales - 1, -1, -1, dtype=torch.float64) / (self.num_scales - 1)

    def sample_training_time(self, n: int, generator: torch.Generator | None = None,
                             device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """A level drawn uniformly for each sample (Song & Ermon 2019, Eq. 6)."""
        u = rand((n,), generator, device, torch.float64)
        i = torch.floor(u * self.num_scales).clamp(max=self.num_scales - 1)
        return (i / (self.num_scales - 1)).to(dtype)

    def default_loss(self, score_model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """NCSN's objective: denoising score matching with ``lambda(sigma) = sigma^2`` (Eq. 6)."""
        return denoising_score_matching(score_model, x0, generator=generator, weighting="sigma2")

    def extra_repr(self) -> str:
        return (f"sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g}, num_scales={self.num_scales}, "
                + super().extra_repr())
