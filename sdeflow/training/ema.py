"""Exponential moving average of model weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every optimiser step
    (Polyak averaging; the EMA used by Ho et al. 2020 and Song et al. 2021 with decay 0.9999).

    With ``warmup=True`` the effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so early averages are not dominated by the initialisation.

    Args:
        model: the module whose parameters and floating buffers are averaged.
        decay: the decay rate in ``[0, 1)``.
        warmup: use the warm-up schedule above.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }
        self._keys = list(self.shadow)

    def current_decay(self) -> float:
        """Decay used by the next update."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current weights."""
        d = self.current_decay()
        state = model.state_dict()
        shadow = [self.shadow[k] for k in self._keys]
        current = [state[k].detach().to(self.shadow[k].dtype) for k in self._keys]
        if shadow:
            torch._foreach_lerp_(shadow, current, 1.0 - d)  # v += (1 - d) (theta - v), one fused pass
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model``."""
        state = model.state_dict()
        for k, v in self.shadow.items():
            state[k].copy_(v)

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the averaged weights."""
        out = copy.deepcopy(model)
        self.copy_to(out)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (the shadow weights)."""
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore the shadow weights and the update count."""
        missing = set(self.shadow) - set(tensors)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        for k in self.shadow:
            self.shadow[k].copy_(tensors[k])
        self.num_updates = int(num_updates)
