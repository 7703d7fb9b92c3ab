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
        self._shadow_list = [self.shadow[k] for k in self._keys]
        self._slots = _state_slots(model, self._keys)
        self._model_id = id(model)

    def _live(self, model: nn.Module) -> list[torch.Tensor]:
        """The model's current tensors in ``_keys`` order, read from the owning modules' own
        dictionaries (always the live objects, also after ``.to()`` replaced a buffer; no
        ``state_dict()`` walk per step)."""
        if id(model) != self._model_id:
            self._slots, self._model_id = _state_slots(model, self._keys), id(model)
        if self._slots is None:  # a module with custom state_dict entries: take the slow, general path
            state = model.state_dict()
            return [state[k].detach() for k in self._keys]
        return [table[name].detach() for table, name in self._slots]

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
        if self._shadow_list:
            current = self._live(model)
            if any(c.dtype != v.dtype for c, v in zip(current, self._shadow_list)):
                current = [c.to(v.dtype) for c, v in zip(current, self._shadow_list)]
            torch._foreach_lerp_(self._shadow_list, current, 1.0 - d)  # v += (1 - d) (theta - v), one fused pass
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


def _state_slots(model: nn.Module, keys: list[str]) -> list[tuple[dict, str]] | None:
    """For each ``state_dict`` key, the ``(module._parameters or module._buffers, name)`` holding it
    (``None`` when some key is neither, e.g. a module that overrides ``_save_to_state_dict``)."""
    slots: dict[str, tuple[dict, str]] = {}
    for prefix, mod in model.named_modules(remove_duplicate=False):
        head = f"{prefix}." if prefix else ""
        for name, p in mod._parameters.items():
            if p is not None:
                slots.setdefault(head + name, (mod._parameters, name))
        for name, b in mod._buffers.items():
            if b is not None:
                slots.setdefault(head + name, (mod._buffers, name))
    if any(k not in slots for k in keys):
        return None
    return [slots[k] for k in keys]
