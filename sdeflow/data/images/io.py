"""Reading and writing image batches: folders of PNG files and ``.npz`` / ``.npy`` / ``.pt`` tensor files.

Everything returned is a floating tensor ``(N, C, H, W)`` in ``[-1, 1]`` (see :mod:`.convert`);
files are written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import OptionError, ShapeError
from ...utils.atomic import atomic_write
from .convert import _check_range, check_images, levels_to_signed, to_uint8

TENSOR_SUFFIXES = (".npz", ".npy", ".pt", ".pth")
LAYOUTS = ("auto", "nchw", "nhwc")
#: Pillow modes read as 8-bit, by channel count
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_GRAY_MODES = ("1", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N")


def _read_png(path: Path, channels: int | None, size: int | None) -> np.ndarray:
    """One PNG as ``float64`` ``(C, H, W)`` in ``[0, 1]`` (8- or 16-bit)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if channels is None:
                channels = 1 if mode in _GRAY_MODES else 3
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.LANCZOS)
            if mode.startswith("I;16") and channels == 1:
                arr = np.asarray(img, dtype=np.float64) / 65535.0
            else:
                if mode.startswith("I;16") or mode in ("I", "F"):
                    raise OptionError(f"{path}: unsupported PNG mode {mode!r} for {channels} channel(s); "
                                      "valid: 8-bit gray/RGB/RGBA/palette, or 16-bit gray read as 1 channel")
                arr = np.asarray(img.convert(_MODES[channels]), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise OptionError(f"cannot read image {path}: {exc}") from exc
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return arr


def load_image_folder(folder: str | Path, channels: int | None = None, size: int | None = None,
                      pattern: str = "*.png", dtype: torch.dtype = torch.float32) -> Tensor:
    """Every PNG of ``folder`` (sorted by name) as one batch ``(N, C, H, W)`` in ``[-1, 1]``.

    Args:
        folder: the folder.
        channels: 1 (gray), 3 (RGB) or 4 (RGBA); ``None``: 1 when every file is a grayscale PNG
            (modes ``1``, ``L``, ``LA``, 16-bit gray), else 3 (palette and color images as RGB,
            alpha dropped). 16-bit gray PNGs keep their precision (``k / 65535``).
        size: resize every image to ``size x size`` (Lanczos); ``None``: all images must be
            square and of one size.
        pattern: glob pattern of the files.
        dtype: floating dtype.

    Raises:
        OptionError: missing folder, no matching file, an unreadable file, bad ``channels``.
        ShapeError: images that are not square or differ in size (without ``size``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise OptionError(f"image folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    if not files:
        raise OptionError(f"no files matching {pattern!r} in {root}")
    return _load_files(files, root, channels, size, dtype)


def load_labelled_image_folder(folder: str | Path, channels: int | None = None, size: int | None = None,
                               pattern: str = "*.png", dtype: torch.dtype = torch.float32
                               ) -> tuple[Tensor, Tensor, list[str]]:
    """A folder with one sub-folder of PNGs per class (``folder/<class name>/*.png``, the layout of
    torchvision's ``ImageFolder``) as images, labels and class names.

    The classes are the sub-folders holding at least one matching file, sorted by name; class ``k``
    is the ``k``-th name. Options as :func:`load_image_folder` (one channel decision for all images).

    Returns:
        ``(images (N, C, H, W) in [-1, 1], labels int64 (N,), class names)``.

    Raises:
        OptionError: a missing folder, no sub-folder with matching files (the message says what was
            found), an unreadable file.
        ShapeError: as :func:`load_image_folder`.
    """
    root = Path(folder)
    if not root.is_dir():
        raise OptionError(f"image folder {root} does not exist or is not a folder")
    groups = [(d.name, sorted(p for p in d.glob(pattern) if p.is_file())) for d in sorted(root.iterdir()) if d.is_dir()]
    groups = [(name, files) for name, files in groups if files]
    if not groups:
        loose = len([p for p in root.glob(pattern) if p.is_file()])
        raise OptionError(f"labelled images need one sub-folder per class ({root}/<class>/{pattern}); {root} has no "
                          f"sub-folder with files matching {pattern!r}" + (f" ({loose} files lie in the folder itself)"
                                                                           if loose else ""))
    files = [f for _, fs in groups for f in fs]
    labels = torch.tensor([k for k, (_, fs) in enumerate(groups) for _ in fs], dtype=torch.int64)
    return _load_files(files, root, channels, size, dtype), labels, [name for name, _ in groups]


def load_image(path: str | Path, channels: int | None = None, size: int | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """One PNG as ``(C, H, W)`` in ``[-1, 1]`` (options as :func:`load_image_folder`).

    Raises:
        OptionError: a missing or unreadable file, bad ``channels``.
    """
    p = Path(path)
    if not p.is_file():
        raise OptionError(f"image {p} does not exist")
    if channels is not None and channels not in _MODES:
        raise OptionError(f"channels must be 1, 3, 4 or None, got {channels!r}")
    return torch.as_tensor(_read_png(p, channels, size), dtype=torch.float64).mul(2.0).sub(1.0).to(dtype)


def _load_files(files: list[Path], root: Path, channels: int | None, size: int | None, dtype: torch.dtype) -> Tensor:
    """The PNG ``files`` as one batch (see :func:`load_image_folder`)."""
    if channels is not None and channels not in _MODES:
        raise OptionError(f"channels must be 1, 3, 4 or None, got {channels!r}")
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
        raise OptionError(f"size must be a positive integer or None, got {size!r}")
    if channels is None:
        # one decision for the whole folder: gray only when every image is gray
        firsts = [_read_png(p, None, size) for p in files]
        channels = 1 if all(a.shape[0] == 1 for a in firsts) else 3
        arrays = [a if a.shape[0] == channels else _read_png(p, channels, size) for p, a in zip(files, firsts)]
    else:
        arrays = [_read_png(p, channels, size) for p in files]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        by = {a.shape[1:]: p.name for p, a in zip(files, arrays)}
        listing = ", ".join(f"{name} is {h}x{w}" for (h, w), name in by.items())
        raise ShapeError(f"images in {root} differ in size ({listing}); pass size=... to resize them")
    h, w = shapes.pop()
    if h != w:
        raise ShapeError(f"images in {root} are {h}x{w}; square images are needed (crop them, or pass size=...)")
    return torch.as_tensor(np.stack(arrays), dtype=torch.float64).mul(2.0).sub(1.0).to(dtype)


def save_images(images: Tensor, folder: str | Path, prefix: str = "image",
                value_range: tuple[float, float] = (-1.0, 1.0)) -> list[Path]:
    """Write each image of a batch ``(N, C, H, W)`` (``C`` = 1, 3 or 4) as ``folder/{prefix}_{i:05d}.png`` (8-bit).

    Returns:
        The paths written, in batch order.
    """
    images = check_images(images)
    c = images.shape[1]
    if c not in _MODES:
        raise ShapeError(f"PNG images need 1, 3 or 4 channels, got {c} (shape {tuple(images.shape)})")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images.detach().cpu(), value_range).permute(0, 2, 3, 1).numpy()
    paths = []
    for i, arr in enumerate(pixels):
        path = out / f"{prefix}_{i:05d}.png"
        atomic_write(path, encode_png(arr[..., 0] if c == 1 else arr))
        paths.append(path)
    return paths


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` array ``(H, W)`` (gray), ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def to_nchw(arr: Tensor, layout: str = "auto", source: str = "images") -> Tensor:
    """An image array ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` as ``(N, C, H, W)`` (values untouched).

    Args:
        arr: the array.
        layout: ``"nchw"``, ``"nhwc"`` or ``"auto"`` (the axis of size <= 4 holds the channels;
            when both ends qualify, the one that leaves square images).
        source: what to call the array in errors (e.g. the file name).

    Raises:
        ShapeError: another number of dimensions, images that are not square, or an ambiguous shape
            under ``"auto"``.
        OptionError: an unknown layout.
    """
    if layout not in LAYOUTS:
        raise OptionError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim != 4:
        raise ShapeError(f"{source}: images must have shape (N, H, W), (N, C, H, W) or (N, H, W, C), "
                         f"got {tuple(arr.shape)}")
    if layout == "auto":
        # channels: the axis (1 or 3) of size <= 4; when both qualify, the one leaving square images
        nchw, nhwc = arr.shape[1] <= 4, arr.shape[3] <= 4
        if nchw and nhwc:
            nchw, nhwc = arr.shape[2] == arr.shape[3], arr.shape[1] == arr.shape[2]
        if nchw == nhwc:
            raise ShapeError(f"{source}: cannot tell channels from pixels in shape {tuple(arr.shape)}; "
                             "pass layout='nchw' or layout='nhwc'")
        layout = "nchw" if nchw else "nhwc"
    if layout == "nhwc":
        arr = arr.permute(0, 3, 1, 2)
    if arr.shape[2] != arr.shape[3] or min(arr.shape) < 1:
        raise ShapeError(f"{source}: images must be square with N, C >= 1; got (N, C, H, W) = {tuple(arr.shape)}")
    return arr


def _pick(obj: Any, key: str | None, source: str) -> Any:
    """The array of a file holding one array or a mapping of arrays (``key`` selects)."""
    if isinstance(obj, dict) or hasattr(obj, "files"):
        names = list(obj.files) if hasattr(obj, "files") else list(obj)
        if key is None:
            if len(names) != 1:
                raise OptionError(f"{source} holds {len(names)} arrays ({', '.join(map(str, names)) or 'none'}); "
                                  "pass key=... to choose one")
            key = names[0]
        if key not in names:
            raise OptionError(f"{source} has no array {key!r}; it holds: {', '.join(map(str, names))}")
        return obj[key]
    if key is not None:
        raise OptionError(f"{source} holds a single array, not a mapping; leave key=None")
    return obj


def load_image_tensor(path: str | Path, key: str | None = None, value_range: tuple[float, float] | None = None,
                      layout: str = "auto", dtype: torch.dtype = torch.float32) -> Tensor:
    """Images from a ``.npz`` / ``.npy`` (``numpy.load(allow_pickle=False)``) or ``.pt`` / ``.pth`` file
    (``torch.load(weights_only=True)``), as ``(N, C, H, W)`` in ``[-1, 1]``.

    Args:
        path: the file; it holds one array, or a mapping of arrays (``key`` selects one).
        key: the array's name in a ``.npz`` archive or a saved ``dict``.
        value_range: the range of floating data, mapped onto ``[-1, 1]`` (default ``(-1, 1)``:
            taken as is); ``uint8`` data are always ``0..255``.
        layout: ``"nchw"``, ``"nhwc"`` or ``"auto"`` (decided from which axes are square;
            ``(N, H, W)`` is one channel).
        dtype: floating dtype of the result.

    Raises:
        OptionError: unknown suffix, unreadable file, several arrays and no key, a dtype other
            than ``uint8`` or floating, values outside ``value_range`` or not finite.
        ShapeError: not ``(N, H, W)`` / ``(N, C, H, W)`` / ``(N, H, W, C)``, or not square.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise OptionError(f"{p}: unknown image tensor file type {suffix!r}; valid: {', '.join(TENSOR_SUFFIXES)}")
    if not p.is_file():
        raise OptionError(f"image tensor file {p} does not exist")
    try:
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                raw: Any = np.asarray(_pick(archive, key, str(p)))
        elif suffix == ".npy":
            raw = _pick(np.load(p, allow_pickle=False), key, str(p))
        else:
            raw = _pick(torch.load(p, map_location="cpu", weights_only=True), key, str(p))
    except OptionError:
        raise
    except Exception as exc:  # a corrupt or foreign file fails in many ways (pickle, zip, struct, OS errors)
        raise OptionError(f"cannot read image tensor file {p}: {type(exc).__name__}: {exc}") from exc
    if isinstance(raw, np.ndarray):
        if raw.dtype != np.uint8 and raw.dtype.kind != "f":
            raise OptionError(f"{p}: unsupported dtype {raw.dtype}; valid: uint8 (0..255) or floating (values in "
                              "value_range, default [-1, 1]); convert integer images to uint8 first")
        raw = torch.from_numpy(raw)
    if not isinstance(raw, Tensor):
        raise OptionError(f"{p}: expected a tensor, found {type(raw).__name__}")
    arr = raw
    return images_from_array(arr, str(p), value_range, layout, dtype)


def images_from_array(arr: Tensor, source: str = "images", value_range: tuple[float, float] | None = None,
                      layout: str = "auto", dtype: torch.dtype = torch.float32) -> Tensor:
    """Validate and convert an array of images to ``(N, C, H, W)`` in ``[-1, 1]`` (see :func:`load_image_tensor`)."""
    if arr.dtype == torch.uint8:
        if value_range is not None:
            raise OptionError(f"{source}: uint8 data are 0..255; value_range applies to floating data only")
        return levels_to_signed(to_nchw(arr, layout, source), 255, dtype, check=False)  # uint8: always levels
    if not arr.is_floating_point():
        raise OptionError(f"{source}: unsupported dtype {arr.dtype}; valid: uint8 (0..255) or floating "
                          "(values in value_range, default [-1, 1]); convert integer images to uint8 first")
    lo, hi = _check_range(value_range if value_range is not None else (-1.0, 1.0))
    x = to_nchw(arr, layout, source).to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise OptionError(f"{source}: the images contain NaN or Inf")
    vmin, vmax = float(x.min()), float(x.max())
    tol = 1e-6 * (hi - lo)
    if vmin < lo - tol or vmax > hi + tol:
        raise OptionError(f"{source}: values span [{vmin:g}, {vmax:g}], outside value_range=({lo:g}, {hi:g}); "
                          "pass the data's range, e.g. value_range=(0, 1) or (0, 255)")
    return ((x - lo) * (2.0 / (hi - lo)) - 1.0).clamp(-1.0, 1.0).to(dtype)


def save_image_tensor(images: Tensor, path: str | Path, value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Write a batch ``(N, C, H, W)`` as ``uint8`` (``0..255``) to ``.npz`` (key ``"images"``), ``.npy``
    or ``.pt`` / ``.pth``, in NCHW layout; :func:`load_image_tensor` reads it back."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise OptionError(f"{p}: unknown image tensor file type {suffix!r}; valid: {', '.join(TENSOR_SUFFIXES)}")
    pixels = to_uint8(check_images(images).detach().cpu(), value_range)
    buf = io.BytesIO()
    if suffix == ".npz":
        np.savez_compressed(buf, images=pixels.numpy())
    elif suffix == ".npy":
        np.save(buf, pixels.numpy(), allow_pickle=False)
    else:
        torch.save(pixels, buf)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, buf.getvalue())
    return p
