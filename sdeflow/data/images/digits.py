"""scikit-learn's 8x8 handwritten digits: the embedded image data set (nothing is downloaded).

``sklearn.datasets.load_digits`` ships 1,797 grayscale 8x8 images of the digits 0-9 (the UCI
"optical recognition of handwritten digits" test set) with 17 gray levels ``0..16`` (each pixel
counts the set pixels of a 4x4 block of a 32x32 bitmap). They are small enough to train a UNet
on a CPU in minutes, which makes them the default image set of the tests and the image demo.
"""

from __future__ import annotations

import functools
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.likelihood import dequantize
from ...errors import OptionError
from .convert import levels_to_signed

#: number of gray levels of the digits (``0..16``)
DIGITS_LEVELS = 17
#: side of the digits images
DIGITS_SIZE = 8
RESIZE_MODES = ("pad", "resize")


@overload
def load_digits_levels(return_labels: Literal[False] = ...) -> Tensor: ...
@overload
def load_digits_levels(return_labels: Literal[True]) -> tuple[Tensor, Tensor]: ...
def load_digits_levels(return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The digits as integer levels: ``uint8`` tensor ``(1797, 1, 8, 8)`` with values ``0..16``.

    Args:
        return_labels: also return the digit labels (``int64`` ``(1797,)``).
    """
    levels, labels = _digits_cached()
    return (levels.clone(), labels.clone()) if return_labels else levels.clone()


@functools.lru_cache(maxsize=1)
def _digits_cached() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    levels = torch.as_tensor(bunch.images, dtype=torch.float64).round().to(torch.uint8).reshape(-1, 1, 8, 8)
    return levels, torch.as_tensor(bunch.target, dtype=torch.int64)


def resize_images(images: Tensor, size: int, mode: str = "pad", fill: float = -1.0) -> Tensor:
    """Bring square images ``(N, C, s, s)`` to ``(N, C, size, size)``.

    Args:
        images: floating images.
        size: target side.
        mode: ``"pad"``: centre them on a ``size x size`` canvas of ``fill`` (``size >= s``; the
            digits' background is level 0, i.e. ``-1``); ``"resize"``: bilinear interpolation
            (antialiased when shrinking).
        fill: canvas value for ``"pad"``.

    Returns:
        The resized images.
    """
    if mode not in RESIZE_MODES:
        raise OptionError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise OptionError(f"size must be a positive integer, got {size!r}")
    size, s = int(size), images.shape[-1]
    if size == s:
        return images
    if mode == "resize":
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=size < s)
    if size < s:
        raise OptionError(f"cannot pad {s}x{s} images to the smaller size {size}; use mode='resize'")
    before = (size - s) // 2
    after = size - s - before
    return F.pad(images, (before, after, before, after), value=float(fill))


@overload
def load_digits(size: int = ..., mode: str = ..., dtype: torch.dtype = ...,
                return_labels: Literal[False] = ...) -> Tensor: ...
@overload
def load_digits(size: int = ..., mode: str = ..., dtype: torch.dtype = ..., *,
                return_labels: Literal[True]) -> tuple[Tensor, Tensor]: ...
def load_digits(size: int = DIGITS_SIZE, mode: str = "pad", dtype: torch.dtype = torch.float32,
                return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The digits scaled to ``[-1, 1]`` (level ``k -> k / 8 - 1``), shape ``(1797, 1, size, size)``.

    Args:
        size: image side: 8 (native), or larger/smaller through ``mode``.
        mode: ``"pad"`` (centre on a background canvas; 16 gives a 4-pixel border) or
            ``"resize"`` (bilinear), see :func:`resize_images`.
        dtype: floating dtype.
        return_labels: also return the labels.
    """
    levels, labels = load_digits_levels(return_labels=True)
    x = resize_images(levels_to_signed(levels, DIGITS_LEVELS - 1, dtype), size, mode)
    return (x, labels) if return_labels else x


def split_holdout(x: Tensor, test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random split of the first dimension into ``(train, held_out)``.

    Args:
        x: data ``(N, ...)``.
        test_fraction: share of the held-out part, in ``(0, 1)`` (rounded, at least one each).
        seed: seed of the permutation.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise OptionError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    n = x.shape[0]
    if n < 2:
        raise OptionError(f"need at least 2 items to split, got {n}")
    n_test = min(n - 1, max(1, round(n * float(test_fraction))))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return x[perm[n_test:]], x[perm[:n_test]]


#: the parts :func:`load_digits_split` hands out
DIGITS_SPLITS = ("train", "test", "all")


@overload
def load_digits_split(split: str = ..., size: int = ..., return_labels: Literal[False] = ...) -> Tensor: ...
@overload
def load_digits_split(split: str = ..., size: int = ..., *, return_labels: Literal[True]) -> tuple[Tensor, Tensor]: ...
def load_digits_split(split: str = "train", size: int = DIGITS_SIZE,
                      return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Integer levels of the image demo's fixed split: ``split_holdout(levels, 0.2, seed=0)`` of the
    1,797 digits, i.e. 1,438 ``"train"`` and 359 ``"test"`` images (or ``"all"``), padded with
    background (level 0) to ``size x size``.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"``.
        size: image side, at least 8 (the digits are padded, never shrunk).
        return_labels: also return the digit labels of the same images.

    Returns:
        ``uint8`` levels ``(N, 1, size, size)`` with values ``0..16`` (and ``int64`` labels ``(N,)``).
    """
    if split not in DIGITS_SPLITS:
        raise OptionError(f"unknown digits split {split!r}; valid: {', '.join(DIGITS_SPLITS)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < DIGITS_SIZE:
        raise OptionError(f"size must be an integer >= {DIGITS_SIZE} (the digits are padded with background, "
                          f"not shrunk), got {size!r}")
    levels, labels = load_digits_levels(return_labels=True)
    levels = resize_images(levels, size, mode="pad", fill=0)
    if split != "all":
        # split the labels with the same permutation: attach them as one more column
        both = torch.cat([levels.reshape(levels.shape[0], -1).long(), labels[:, None]], dim=1)
        train, test = split_holdout(both, 0.2, seed=0)
        chosen = train if split == "train" else test
        levels = chosen[:, :-1].to(torch.uint8).reshape(-1, 1, size, size)
        labels = chosen[:, -1].clone()
    return (levels, labels) if return_labels else levels


class DequantizedImages:
    """Integer images served as uniformly dequantized batches ``lo + (hi - lo) (k + u) / bins``.

    Training on dequantized data gives a continuous density on ``[lo, hi]^D`` whose likelihood
    bounds the discrete one (Theis et al. 2016, Eq. 11; Ho et al. 2020 and Song et al. 2021 for
    images); :func:`sdeflow.core.likelihood.dequantize` draws ``u ~ U[0, 1)`` and
    :func:`sdeflow.bits_per_dim` with the same ``bins`` and range turns ``log p`` into bits per
    dimension. Has ``sample(n, generator)``, so :class:`sdeflow.training.Trainer` takes it as
    training data (images drawn uniformly with replacement, fresh ``u`` every batch).

    Args:
        levels: integer images ``(N, C, H, W)`` with values in ``0..bins-1``.
        bins: number of levels (17 for the digits, 256 for 8-bit images).
        data_range: ``(lo, hi)``.
        dtype: floating dtype of the batches.
        labels: class labels of the images (``(N,)`` integers), served by :meth:`sample_labelled`
            (class-conditional training).
    """

    def __init__(self, levels: Tensor, bins: int, data_range: tuple[float, float] = (-1.0, 1.0),
                 dtype: torch.dtype = torch.float32, labels: Tensor | None = None) -> None:
        if levels.ndim < 2 or levels.shape[0] < 1:
            raise OptionError(f"levels must have shape (N, ...) with N >= 1, got {tuple(levels.shape)}")
        if levels.is_floating_point() and bool((levels != levels.round()).any()):
            raise OptionError("levels must hold integers")
        if bool((levels < 0).any()) or bool((levels > bins - 1).any()):
            raise OptionError(f"levels must lie in 0..{bins - 1} (bins={bins}), got values in "
                              f"[{int(levels.min())}, {int(levels.max())}]")
        self.levels, self.bins, self.data_range, self.dtype = levels, int(bins), data_range, dtype
        if labels is not None:
            labels = torch.as_tensor(labels).reshape(-1)
            if labels.shape[0] != levels.shape[0] or labels.is_floating_point():
                raise OptionError(f"labels must be {levels.shape[0]} integers (one per image), got "
                                  f"{tuple(labels.shape)} {labels.dtype}")
            labels = labels.to(torch.int64)
        self.labels = labels

    def __len__(self) -> int:
        return int(self.levels.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` dequantized images (indices uniform with replacement), shape ``(n, C, H, W)``."""
        idx = torch.randint(0, len(self), (int(n),), generator=generator)
        return dequantize(self.levels[idx], self.bins, self.data_range, generator=generator, dtype=self.dtype)

    def sample_labelled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The images :meth:`sample` draws from the same generator state, and their labels.

        Raises:
            OptionError: the images were given without labels.
        """
        if self.labels is None:
            raise OptionError("these images have no labels (pass labels=... to DequantizedImages)")
        idx = torch.randint(0, len(self), (int(n),), generator=generator)
        x = dequantize(self.levels[idx], self.bins, self.data_range, generator=generator, dtype=self.dtype)
        return x, self.labels[idx]
