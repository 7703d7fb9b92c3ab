"""Data sets by name or file for the command line: a small registry and a resolver.

``--data NAME`` picks a registered set (the toys of :mod:`sdeflow.data.datasets` and scikit-learn's
``digits`` images are built in); ``--data PATH`` reads a ``.pt`` / ``.pth`` / ``.npz`` / ``.npy``
file of shape ``(N, *dims)`` (4-D arrays are images, read through :mod:`sdeflow.data.images`) or a
folder of PNG images. Options come from ``--data-opt KEY=VALUE``. More sets plug in by name with
:func:`register_dataset`::

    register_dataset("my_set", build, "what it is", {"n": None, "scale": 1.0})

where ``build(dtype=..., **options)`` returns a tensor ``(N, *dims)`` or an object with
``sample(n, generator)`` (a distribution: training then draws fresh samples every step).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
import torch
from torch import Tensor

from ..data import GaussianMixture
from ..data import datasets as toys
from ..data.images import DequantizedImages
from ..errors import SdeflowError

FILE_SUFFIXES = (".pt", ".pth", ".npz", ".npy")
TORCH_SUFFIXES = (".pt", ".pth")
#: options of a data file (``value_range`` and ``layout`` for image arrays) and of a PNG folder
FILE_OPTIONS = ("key", "n", "value_range", "layout", "labels_key")
FOLDER_OPTIONS = ("channels", "size", "pattern", "n")
#: keys tried, in order, when a file holds several arrays and no ``key`` option is given
DEFAULT_KEYS = ("samples", "data", "x", "images")
#: keys of the class labels in a data file (``--labels``), tried in order unless ``labels_key`` is given
LABEL_KEYS = ("y", "labels")
#: what ``--labels`` can train on, for messages
LABELLED_SOURCES = ("the analytic mixtures (nine_gaussians, gaussian_1d, anisotropic_mixture: the component is the "
                    "label), digits and digits16 (the digit), a .npz/.pt file with a 'y' (or 'labels') array, a folder "
                    "with one sub-folder of PNGs per class")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: ``build(dtype=..., **options)`` and its options with defaults."""

    name: str
    build: Callable[..., Any]
    description: str
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, build: Callable[..., Any], description: str,
                     options: dict[str, Any] | None = None) -> None:
    """Make ``--data name`` build a data set.

    Args:
        name: the name (must not be taken).
        build: ``build(dtype=torch.dtype, **options)`` returning a tensor ``(N, *dims)`` or an
            object with ``sample(n, generator) -> Tensor``.
        description: one line for help texts and ``--data`` errors.
        options: accepted options and their defaults (anything else is a usage error).
    """
    if name in _REGISTRY:
        raise ValueError(f"data set {name!r} is already registered ({_REGISTRY[name].description})")
    _REGISTRY[name] = DatasetEntry(name, build, description, dict(options or {}))


def dataset_names() -> list[str]:
    """Registered data-set names, sorted."""
    return sorted(_REGISTRY)


def dataset_entries() -> list[DatasetEntry]:
    """Registered data sets, sorted by name."""
    return [_REGISTRY[k] for k in dataset_names()]


class SampledSet:
    """A sample-based toy as a distribution: ``sample(n, generator)`` calls ``fn(n, generator, **options)``."""

    def __init__(self, fn: Callable[..., Tensor], **options: Any) -> None:
        self.fn, self.options = fn, options

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.fn(n, generator, **self.options)


def _fixed_or_stream(dist: Any, n: int | None, sample_seed: int) -> Any:
    """``n`` fixed samples (seeded by ``sample_seed``) or the distribution itself."""
    if n is None:
        return dist
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise click.BadParameter(f"n must be a positive integer (rows of a fixed set), got {n!r}",
                                 param_hint="--data-opt")
    return dist.sample(n, torch.Generator().manual_seed(int(sample_seed)))


def _mixture(factory: Callable[..., GaussianMixture]) -> Callable[..., Any]:
    def build(dtype: torch.dtype, n: int | None = None, sample_seed: int = 0, **options: Any) -> Any:
        return _fixed_or_stream(factory(dtype=dtype, **options), n, sample_seed)
    return build


def _sampled(fn: Callable[..., Tensor]) -> Callable[..., Any]:
    def build(dtype: torch.dtype, n: int | None = None, sample_seed: int = 0, **options: Any) -> Any:
        return _fixed_or_stream(SampledSet(fn, dtype=dtype, **options), n, sample_seed)
    return build


_COMMON = {"n": None, "sample_seed": 0}
register_dataset("nine_gaussians", _mixture(toys.nine_gaussians),
                 "2-D mixture of 9 Gaussians on {-2,0,2}^2 (exact density known)", {**_COMMON, "seed": 23})
register_dataset("gaussian_1d", _mixture(toys.gaussian_1d), "1-D N(mean, std^2) (exact density known)",
                 {**_COMMON, "mean": 5.0, "std": 2.0})
register_dataset("anisotropic_mixture", _mixture(toys.anisotropic_mixture),
                 "mixture with random full covariances in any dimension (exact density known)",
                 {**_COMMON, "dim": 4, "n_components": 4, "seed": 0, "scale": 2.0})
register_dataset("two_moons", _sampled(toys.two_moons), "2-D two interleaving half circles", {**_COMMON, "noise": 0.1})
register_dataset("swiss_roll", _sampled(toys.swiss_roll), "2-D swiss roll", {**_COMMON, "noise": 0.5})
register_dataset("checkerboard", _sampled(toys.checkerboard), "2-D 4x4 checkerboard", dict(_COMMON))


def _digits(default_size: int) -> Callable[..., Any]:
    def build(dtype: torch.dtype, size: int = default_size, split: str = "train", n: int | None = None) -> Any:
        from ..data.images import DIGITS_LEVELS, load_digits_split

        try:
            levels, labels = load_digits_split(split, size, return_labels=True)  # type: ignore[misc]
        except SdeflowError as exc:
            raise ValueError(str(exc)) from exc
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= levels.shape[0]:
                raise ValueError(f"n must be an integer in [1, {levels.shape[0]}] (images of the {split!r} split), "
                                 f"got {n!r}")
            levels, labels = levels[:n], labels[:n]
        return DequantizedImages(levels, DIGITS_LEVELS, dtype=dtype, labels=labels)
    return build


_DIGITS = ("scikit-learn's 8x8 handwritten digits, 17 gray levels{}; split train (1,438 images, the image demo's) / "
           "test (359) / all; dequantized for continuous processes, on the level grid for vdm")
register_dataset("digits", _digits(8), _DIGITS.format(""), {"size": 8, "split": "train", "n": None})
register_dataset("digits16", _digits(16), _DIGITS.format(", padded to 16x16"),
                 {"size": 16, "split": "train", "n": None})


# --------------------------------------------------------------------------- resolution
@dataclass
class ResolvedData:
    """A data set ready for training or evaluation.

    Attributes:
        data: a tensor ``(N, *dims)`` or a distribution with ``sample(n, generator)``.
        sample_shape: the shape of one sample.
        spec: ``{"name": ..., "options": ...}`` (stored in checkpoints and configs).
        target: the exact density when the set is a :class:`sdeflow.GaussianMixture`, else ``None``.
        labels: the class labels of a fixed labelled set (one per row of ``data``); ``None`` for
            unlabelled data and for distributions (which draw labels with ``sample_labelled``).
        class_names: the names of the classes when the data were resolved with labels, else ``None``.
    """

    data: Any
    sample_shape: tuple[int, ...]
    spec: dict[str, Any]
    target: GaussianMixture | None = None
    labels: Tensor | None = None
    class_names: list[str] | None = None

    @property
    def num_classes(self) -> int | None:
        """Number of classes of labelled data, else ``None``."""
        return None if self.class_names is None else len(self.class_names)

    def training_data(self) -> Any:
        """What :class:`sdeflow.training.Trainer` takes: ``(x, labels)`` for a fixed labelled set, else :attr:`data`."""
        return (self.data, self.labels) if self.labels is not None else self.data

    @property
    def bins(self) -> int | None:
        """How many levels the data are quantised to when the set says so (``digits``: 17), else ``None``."""
        return int(self.data.bins) if isinstance(self.data, DequantizedImages) else None

    def for_process(self, process: Any) -> "ResolvedData":
        """The data as ``process`` models them.

        Quantised images (:class:`sdeflow.data.images.DequantizedImages`, e.g. ``digits``) stay uniformly
        dequantized for a process of continuous data, so that its density bounds the discrete
        likelihood (Theis et al. 2016); a process of discrete data (:attr:`~sdeflow.ForwardProcess.data_levels`,
        e.g. ``vdm``'s ``bins``, whose decoder scores the levels themselves, Kingma et al. 2021) gets their
        level values ``lo + k (hi - lo) / (bins - 1)`` instead, as a fixed set. Other data are
        returned unchanged.

        Raises:
            click.BadParameter: the process models another number of levels than the data have.
        """
        from ..data.images import levels_to_signed

        want = process.data_levels
        if want is None or not isinstance(self.data, DequantizedImages):
            return self
        have = self.data.bins
        if want != have:
            raise click.BadParameter(f"the process models {want} levels but data set {self.spec['name']!r} has {have}; "
                                     f"pass --process-opt bins={have}", param_hint="--process-opt")
        values = levels_to_signed(self.data.levels, have - 1, self.data.dtype, self.data.data_range, check=False)
        labels = self.data.labels if self.class_names is not None else None
        return dataclasses.replace(self, data=values, labels=labels)

    @property
    def size(self) -> int | None:
        """Rows of a fixed set (a tensor, or the images of quantised images); ``None`` for a distribution."""
        if isinstance(self.data, Tensor):
            return int(self.data.shape[0])
        return len(self.data) if isinstance(self.data, DequantizedImages) else None

    def rows(self, n: int | None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` rows to evaluate: the first ``n`` of a tensor (all when ``None``), the first ``n``
        quantised images each dequantized once with ``generator``, or ``n`` fresh samples of a
        distribution (``n`` required)."""
        size = self.size
        if size is not None:
            if n is not None and n > size:
                raise click.BadParameter(f"asked for {n} rows but the data set has {size}", param_hint="-n")
            if isinstance(self.data, Tensor):
                return self.data if n is None else self.data[:n]
            from ..core.likelihood import dequantize

            d = self.data
            levels = d.levels if n is None else d.levels[:n]
            return dequantize(levels, d.bins, d.data_range, generator=generator, dtype=d.dtype)
        if n is None:
            raise click.BadParameter(f"data set {self.spec['name']!r} is a distribution: say how many samples to draw",
                                     param_hint="-n")
        return self.data.sample(n, generator)


def _looks_like_file(text: str) -> bool:
    return Path(text).suffix.lower() in FILE_SUFFIXES or Path(text).exists() or "/" in text


def resolve_data(name: str, options: dict[str, Any], dtype: torch.dtype, flag: str = "--data",
                 labels: bool = False) -> ResolvedData:
    """The data set ``name`` (registered name or file path) with ``options``.

    With ``labels``, also the class labels (for a class-conditional model): see
    :data:`LABELLED_SOURCES`.

    Raises:
        click.BadParameter: an unknown name (the message lists the registered ones), an unknown
            option (lists the valid ones), a missing, unreadable or malformed file, or (with
            ``labels``) data that have no labels.
    """
    resolved = _resolve(name, options, dtype, flag, labels)
    if labels and resolved.class_names is None:
        raise click.BadParameter(f"data set {name!r} has no class labels; labelled data: {LABELLED_SOURCES}",
                                 param_hint="--labels")
    return resolved


def _resolve(name: str, options: dict[str, Any], dtype: torch.dtype, flag: str, labels: bool) -> ResolvedData:
    if name in _REGISTRY:
        entry = _REGISTRY[name]
        bad = sorted(set(options) - set(entry.options))
        if bad:
            listing = ", ".join(f"{k}={v!r}" for k, v in entry.options.items())
            raise click.BadParameter(f"data set {name!r} got unknown option(s) {', '.join(bad)}; valid options: "
                                     f"{listing or '(none)'}", param_hint=f"{flag}-opt")
        try:
            data = entry.build(dtype=dtype, **options)
            shape = _sample_shape(data)  # draws once: options checked at sampling time fail here
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(f"data set {name!r}: {exc}", param_hint=f"{flag}-opt") from exc
        target = data if isinstance(data, GaussianMixture) else None
        if target is None and isinstance(data, Tensor) and "n" in options:
            # a fixed set drawn from an analytic mixture keeps its density
            base = entry.build(dtype=dtype, **{k: v for k, v in options.items() if k not in ("n", "sample_seed")})
            target = base if isinstance(base, GaussianMixture) else None
        resolved = ResolvedData(data, shape, {"name": name, "options": dict(options)}, target)
        return _with_labels(resolved, options) if labels else resolved
    if not _looks_like_file(name):
        listing = "; ".join(f"{e.name} ({e.description})" for e in dataset_entries())
        raise click.BadParameter(f"unknown data set {name!r}; valid names: {listing}; or a file ending in "
                                 f"{', '.join(FILE_SUFFIXES)}, or a folder of PNG images", param_hint=flag)
    path = Path(name)
    y: Tensor | None = None
    names: list[str] | None = None
    if path.is_dir():
        if labels:
            x, y, names = load_png_folder(path, options, dtype, flag, labels=True)
        else:
            x = load_png_folder(path, options, dtype, flag)
    else:
        bad = sorted(set(options) - set(FILE_OPTIONS))
        if bad:
            raise click.BadParameter(f"a data file takes options key (array name), n (first n rows), labels_key (the "
                                     f"labels' array, with --labels), and for image arrays value_range and layout; got "
                                     f"{', '.join(bad)}", param_hint=f"{flag}-opt")
        x = load_array_file(path, options.get("key"), flag)
        x = as_images(x, path, options, dtype, flag) if x.ndim == 4 else _plain(x, path, options, dtype, flag)
        if labels:
            y, names = load_label_array(path, options.get("labels_key"), x.shape[0], flag)
    n = options.get("n")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= x.shape[0]:
            raise click.BadParameter(f"n must be an integer in [1, {x.shape[0]}], got {n!r}", param_hint=f"{flag}-opt")
        x = x[:n]
        y = None if y is None else y[:n]
    return ResolvedData(x, tuple(x.shape[1:]), {"name": str(name), "options": dict(options)}, None, y, names)


def _with_labels(resolved: ResolvedData, options: dict[str, Any]) -> ResolvedData:
    """A registered set with its labels: a mixture's component, the digits' digit (no names: unlabelled)."""
    data = resolved.data
    if isinstance(data, GaussianMixture):
        return dataclasses.replace(resolved, class_names=[str(k) for k in range(data.n_components)])
    if isinstance(data, DequantizedImages) and data.labels is not None:
        count = int(data.labels.max()) + 1
        return dataclasses.replace(resolved, class_names=[str(k) for k in range(count)])
    if isinstance(data, Tensor) and resolved.target is not None:
        # a fixed set drawn from a mixture: the same draw with its components
        x, y = resolved.target.to(dtype=data.dtype).sample_labelled(
            data.shape[0], torch.Generator().manual_seed(int(options.get("sample_seed", 0))))
        if not torch.equal(x, data):  # pragma: no cover - sample and sample_labelled share one draw
            raise RuntimeError("the labelled draw differs from the fixed set")
        return dataclasses.replace(resolved, labels=y,
                                   class_names=[str(k) for k in range(resolved.target.n_components)])
    return resolved


def load_label_array(path: Path, key: str | None, rows: int, flag: str = "--data") -> tuple[Tensor, list[str]]:
    """The class labels stored next to the data in ``path`` (array ``key``, else ``y`` or ``labels``):
    ``rows`` non-negative integers; the classes are ``0..max``.

    Raises:
        click.BadParameter: no such array (lists the file's arrays), or not ``rows`` non-negative integers.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raise click.BadParameter(f"data file {path} holds one array; --labels needs the labels in the same file: a "
                                 f".npz or .pt with arrays x and y", param_hint=flag)
    candidates = (key,) if key is not None else LABEL_KEYS
    arrays: list[str] = []
    for k in candidates:
        try:
            y = load_array_file(path, k, flag)
            break
        except click.BadParameter as exc:
            arrays.append(str(exc))
    else:
        names = " or ".join(map(repr, candidates))
        raise click.BadParameter(f"data file {path} has no labels array ({names}; pick one "
                                 f"with {flag}-opt labels_key=NAME): {arrays[-1]}", param_hint=flag)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.shape[0] != rows or y.is_floating_point() and not bool((y == y.round()).all()):
        raise click.BadParameter(f"data file {path}: the labels must be {rows} integers (one per row), got shape "
                                 f"{tuple(y.shape)} {y.dtype}", param_hint=flag)
    y = y.to(torch.int64)
    if bool((y < 0).any()):
        raise click.BadParameter(f"data file {path}: the labels must be class indices 0, 1, ...; got {int(y.min())}",
                                 param_hint=flag)
    return y, [str(k) for k in range(int(y.max()) + 1)]


def _plain(x: Tensor, path: Path, options: dict[str, Any], dtype: torch.dtype, flag: str) -> Tensor:
    """A non-image array: the image options do not apply."""
    given = [k for k in ("value_range", "layout") if k in options]
    if given:
        raise click.BadParameter(f"data file {path}: {', '.join(given)} apply to image arrays (N, C, H, W) or "
                                 f"(N, H, W, C); this one has shape {tuple(x.shape)}", param_hint=f"{flag}-opt")
    return x.to(dtype)


def as_images(x: Tensor, path: Path, options: dict[str, Any], dtype: torch.dtype, flag: str = "--data") -> Tensor:
    """A 4-D array as images ``(N, C, H, W)`` (:func:`sdeflow.data.images.images_from_array`): ``uint8`` pixels
    ``0..255`` onto ``[-1, 1]``; floating values mapped from ``value_range`` onto ``[-1, 1]`` when the
    option is given, else taken as they are (so the outputs of ``sdeflow sample`` feed back unchanged);
    ``layout`` ``auto`` (default), ``nchw`` or ``nhwc``.

    Raises:
        click.BadParameter: an integer dtype other than ``uint8``, values outside ``value_range``,
            an ambiguous or non-square layout (sdeflow.data.images' message).
    """
    from ..data.images import images_from_array, to_nchw

    layout = options.get("layout", "auto")
    value_range = options.get("value_range")
    try:
        if value_range is not None:
            if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
                raise click.BadParameter(f"value_range must be a pair [lo, hi], got {value_range!r}",
                                         param_hint=f"{flag}-opt")
            value_range = (float(value_range[0]), float(value_range[1]))
        if x.dtype == torch.uint8 or value_range is not None:
            return images_from_array(x, str(path), value_range, layout, dtype)
        if not x.is_floating_point():
            raise click.BadParameter(f"data file {path}: image arrays must be uint8 (0..255) or floating, "
                                     f"got {x.dtype}; "
                                     "convert integer images to uint8", param_hint=flag)
        return to_nchw(x, layout, str(path)).to(dtype).contiguous()
    except SdeflowError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from exc


def load_png_folder(path: Path, options: dict[str, Any], dtype: torch.dtype, flag: str = "--data",
                    labels: bool = False) -> Any:
    """Every PNG of a folder as images ``(N, C, H, W)`` in ``[-1, 1]`` (:func:`sdeflow.data.images.load_image_folder`;
    options ``channels``, ``size``, ``pattern``; ``n`` is applied by the caller). With ``labels``: one
    sub-folder per class, ``(images, labels, class names)``
    (:func:`sdeflow.data.images.load_labelled_image_folder`).

    Raises:
        click.BadParameter: unknown options, or sdeflow.data.images' error (no images, unreadable files,
            sizes that differ, non-square images).
    """
    from ..data.images import load_image_folder, load_labelled_image_folder

    bad = sorted(set(options) - set(FOLDER_OPTIONS))
    if bad:
        raise click.BadParameter(f"an image folder takes options {', '.join(FOLDER_OPTIONS)}; got {', '.join(bad)}",
                                 param_hint=f"{flag}-opt")
    try:
        load = load_labelled_image_folder if labels else load_image_folder
        return load(path, channels=options.get("channels"), size=options.get("size"),
                    pattern=options.get("pattern", "*.png"), dtype=dtype)
    except SdeflowError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from exc


def _sample_shape(data: Any) -> tuple[int, ...]:
    if isinstance(data, Tensor):
        return tuple(data.shape[1:])
    return tuple(data.sample(1, torch.Generator().manual_seed(0)).shape[1:])


def load_array_file(path: Path, key: str | None = None, flag: str = "--data", allow_bool: bool = False) -> Tensor:
    """A tensor ``(N, *dims)`` from a ``.pt`` / ``.pth`` (tensor or dict of tensors, read with
    ``weights_only=True``), ``.npz`` or ``.npy`` file; a 1-D array of ``N`` values becomes ``(N, 1)``;
    the dtype is kept (booleans are refused unless ``allow_bool``: masks).

    Raises:
        click.BadParameter: a missing, unreadable or malformed file, or an unknown ``key``.
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise click.BadParameter(f"data file {path} does not exist (a data file ends in {', '.join(FILE_SUFFIXES)}; "
                                 "an image folder must exist)", param_hint=flag)
    if suffix not in FILE_SUFFIXES:
        raise click.BadParameter(f"data file {path}: unsupported suffix {suffix!r}; valid: {', '.join(FILE_SUFFIXES)}",
                                 param_hint=flag)
    try:
        if suffix in TORCH_SUFFIXES:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            arrays = obj if isinstance(obj, dict) else {"": obj}
        else:
            import numpy as np

            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as loaded:
                    arrays = {k: loaded[k] for k in loaded.files}
            else:
                arrays = {"": np.load(path, allow_pickle=False)}
    except Exception as exc:  # noqa: BLE001 - torch/numpy raise many types for a bad file
        raise click.BadParameter(f"data file {path} cannot be read as {suffix}: {type(exc).__name__}: {exc}",
                                 param_hint=flag) from exc
    x = _pick_array(arrays, key, path, flag)
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise click.BadParameter(f"data file {path}: {key or 'the array'} is not numeric ({exc})",
                                 param_hint=flag) from exc
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
            or (allow_bool and t.dtype == torch.bool)):
        raise click.BadParameter(f"data file {path}: dtype {t.dtype} is not numeric", param_hint=flag)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim < 2 or t.shape[0] < 1 or math.prod(t.shape[1:]) < 1:
        raise click.BadParameter(f"data file {path}: expected an array (N, *dims) with N >= 1, got shape "
                                 f"{tuple(t.shape)}", param_hint=flag)
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise click.BadParameter(f"data file {path} contains NaN or Inf", param_hint=flag)
    return t


def _pick_array(arrays: dict[str, Any], key: str | None, path: Path, flag: str) -> Any:
    if key is not None:
        if key not in arrays:
            raise click.BadParameter(f"data file {path} has no array {key!r}; it has: {', '.join(map(repr, arrays))}",
                                     param_hint=f"{flag}-opt")
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    for k in DEFAULT_KEYS:
        if k in arrays:
            return arrays[k]
    raise click.BadParameter(f"data file {path} holds several arrays ({', '.join(map(repr, arrays))}); pick one "
                             f"with {flag}-opt key=NAME", param_hint=flag)


def dataset_help() -> str:
    """One line per registered set, for help texts."""
    return "; ".join(f"{e.name}: {e.description}" for e in dataset_entries())


def infer_process_options(process: str, data: ResolvedData, options: dict[str, Any]) -> dict[str, Any]:
    """Fill ``bins`` (the number of data levels) for a process of discrete data that takes it
    (``vdm``) from data that know it (``digits``: 17), unless given."""
    from ..plugins.api import component_options

    out = dict(options)
    if data.bins is None or "bins" in out:
        return out
    try:
        known = component_options("process", process)
    except Exception:  # noqa: BLE001 - an unknown process is reported when it is built
        return out
    if "bins" in known:
        out["bins"] = data.bins
    return out


def infer_model_options(model: str, sample_shape: tuple[int, ...], options: dict[str, Any],
                        num_classes: int | None = None) -> dict[str, Any]:
    """Fill the size options a network needs from the data's sample shape, unless given:
    ``dim = prod(sample_shape)`` for networks that take ``dim`` (``mlp``), ``in_channels`` and
    ``image_size`` from ``(c, s, s)`` for those that take them (``unet``); and ``num_classes`` of
    labelled data.

    Raises:
        click.BadParameter: labelled data for a network that takes no ``num_classes``.
    """
    from ..plugins.api import component_options

    try:
        known = component_options("model", model)
    except Exception:  # noqa: BLE001 - an unknown model is reported when it is built
        return dict(options)
    out = dict(options)
    if num_classes is not None:
        if "num_classes" not in known:
            raise click.BadParameter(f"model {model!r} takes no num_classes, so it cannot learn from labels; use a "
                                     "class-conditional network (mlp, unet) or drop --labels", param_hint="--labels")
        out.setdefault("num_classes", int(num_classes))
    if "dim" in known and "dim" not in out:
        out["dim"] = int(math.prod(sample_shape))
    if len(sample_shape) == 3 and sample_shape[1] == sample_shape[2]:
        if "in_channels" in known and "in_channels" not in out:
            out["in_channels"] = int(sample_shape[0])
        if "image_size" in known and "image_size" not in out:
            out["image_size"] = int(sample_shape[1])
    return out


__all__ = ["DatasetEntry", "ResolvedData", "SampledSet", "as_images", "dataset_entries", "dataset_names",
           "dataset_help", "infer_model_options", "infer_process_options", "load_array_file", "load_png_folder",
           "register_dataset", "resolve_data"]
