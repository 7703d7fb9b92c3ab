"""``sdeflow sample``'s conditions: ``--class`` and ``--guidance`` (a class-conditional model),
``--known`` and ``--mask`` (imputation), turned into :meth:`sdeflow.ScoreModel.given` arguments."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from ..core.score_model import ScoreModel
from .data import load_array_file

#: array names tried for --known and --mask in a file holding several arrays
KNOWN_KEYS = ("known", "x", "values", "samples", "data", "images")
MASK_KEYS = ("mask",)


@dataclass
class Conditions:
    """What to condition the samples on.

    Attributes:
        classes: class indices; the ``n`` samples are split evenly among them, in order.
        guidance: classifier-free guidance scale.
        mask: observed coordinates, one sample's shape or ``(n, *shape)`` (``True`` = observed).
        values: the known values, same shapes as ``mask``.
        class_names: the names of ``classes`` (for messages and metadata).
        per_sample: ``values`` (and ``mask``, when it has as many dimensions) hold one row per sample.
    """

    classes: list[int] | None = None
    guidance: float = 0.0
    mask: Tensor | None = None
    values: Tensor | None = None
    class_names: list[str] | None = None
    per_sample: bool = False

    @property
    def active(self) -> bool:
        """Whether anything is conditioned on."""
        return self.classes is not None or self.mask is not None

    def labels(self, n: int) -> Tensor | None:
        """The label of each of ``n`` samples: the classes in equal consecutive blocks."""
        if self.classes is None:
            return None
        k = len(self.classes)
        return torch.tensor(self.classes, dtype=torch.int64)[torch.arange(n) * k // n]

    def model(self, model: ScoreModel, n: int, start: int, stop: int) -> ScoreModel:
        """``model`` given the conditions of samples ``start..stop`` of ``n``."""
        if not self.active:
            return model
        labels = self.labels(n)
        mask, values = self.mask, self.values
        if self.per_sample and mask is not None and values is not None:
            mask = mask if mask.dim() < values.dim() else mask[start:stop]
            values = values[start:stop]
        return model.given(None if labels is None else labels[start:stop], guidance=self.guidance, mask=mask,
                           values=values)

    def metadata(self) -> dict[str, Any]:
        """What the sample file records about the conditions."""
        out: dict[str, Any] = {}
        if self.classes is not None:
            out.update({"classes": self.classes, "class_names": self.class_names, "guidance": self.guidance})
        if self.mask is not None:
            out["observed_values"] = int(self.mask.sum())
        return out


def resolve_classes(values: tuple[str, ...], num_classes: int | None,
                    names: list[str] | None) -> tuple[list[int], list[str]]:
    """``--class`` values (indices or class names) as indices and names.

    Raises:
        click.BadParameter: an unconditional model, or a class it does not have (lists the valid ones).
    """
    if num_classes is None:
        raise click.BadParameter("this model is not class-conditional (train it with `sdeflow train ... --labels`)",
                                 param_hint="--class")
    names = names or [str(k) for k in range(num_classes)]
    out = []
    for v in values:
        if v in names:
            out.append(names.index(v))
            continue
        try:
            k = int(v)
        except ValueError:
            k = -2
        if not 0 <= k < num_classes:
            raise click.BadParameter(f"unknown class {v!r}; valid: indices 0..{num_classes - 1} or the names "
                                     f"{', '.join(names)}", param_hint="--class")
        out.append(k)
    return out, [names[k] for k in out]


def _array(path: Path, keys: tuple[str, ...], flag: str, allow_bool: bool = False) -> Tensor:
    """An array from a .npz/.pt/.npy file (the first of ``keys`` it holds, or its only array)."""
    for key in keys:
        try:
            return load_array_file(path, key, flag, allow_bool)
        except click.BadParameter:
            continue
    return load_array_file(path, None, flag, allow_bool)


def _shaped(x: Tensor, shape: tuple[int, ...], n: int, path: Path, flag: str) -> Tensor:
    """``x`` as one sample ``shape`` or ``(n, *shape)``."""
    size = math.prod(shape)
    if x.numel() == size:
        return x.reshape(shape)
    if x.numel() == n * size:
        return x.reshape(n, *shape)
    raise click.BadParameter(f"{path} holds {x.numel()} values ({tuple(x.shape)}); the model's samples are {shape}: "
                             f"give one sample ({size} values) or one per sample ({n} x {size})", param_hint=flag)


def load_known(path: str, shape: tuple[int, ...], n: int, dtype: torch.dtype) -> Tensor:
    """``--known``: the known values, from a PNG (images: pixels onto ``[-1, 1]``) or an array file
    (``known``/``x``/... array; values as the model's data, e.g. ``[-1, 1]`` for images)."""
    p = Path(path)
    if p.suffix.lower() == ".png":
        return _png(p, shape, "--known", dtype)
    return _shaped(_array(p, KNOWN_KEYS, "--known").to(dtype), shape, n, p, "--known")


def load_mask(path: str, shape: tuple[int, ...], n: int) -> Tensor:
    """``--mask``: ``True`` where observed, from a PNG (white = observed; one gray channel applies to
    every channel) or an array file (``mask`` array; booleans or 0/1)."""
    p = Path(path)
    if p.suffix.lower() == ".png":
        m = _png(p, (1, *shape[1:]) if len(shape) == 3 else shape, "--mask", torch.float64) > 0
        return m.expand(shape) if len(shape) == 3 else m
    raw = _array(p, MASK_KEYS, "--mask", allow_bool=True)
    if raw.is_floating_point() and not bool(((raw == 0) | (raw == 1)).all()):
        raise click.BadParameter(f"{p}: a mask holds booleans or 0/1 values", param_hint="--mask")
    return _shaped(raw != 0, shape, n, p, "--mask")


def _png(path: Path, shape: tuple[int, ...], flag: str, dtype: torch.dtype) -> Tensor:
    from ..data.images import load_image
    from ..errors import SdeflowError

    if len(shape) != 3 or shape[1] != shape[2]:
        raise click.BadParameter(f"a PNG {flag} needs a model of square images; its samples are {shape}",
                                 param_hint=flag)
    try:
        return load_image(path, channels=shape[0], size=shape[1], dtype=dtype)
    except SdeflowError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from exc


__all__ = ["Conditions", "load_known", "load_mask", "resolve_classes"]
