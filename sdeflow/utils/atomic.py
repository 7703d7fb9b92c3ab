"""Atomic file writes: a temporary file in the target's folder, flushed, fsync'ed and renamed over it.

``os.replace`` is atomic on POSIX (and on Windows for files on one volume), so a reader sees either
the old file or the complete new one, never a half-written file under the final name; an
interrupted write leaves at most a hidden temporary file (``.NAME.XXXX.tmp``), which is removed
when the writer fails with an exception. The folder is fsync'ed after the rename so that the rename
itself survives a crash. Checkpoints (:mod:`sdeflow.training.checkpoint`), image files
(:mod:`sdeflow.data.images`) and the command line's outputs are written this way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed over ``path`` when the block ends.

    For writers that want a file name (``torch.save(obj, tmp)``, ``fig.savefig(tmp)``, ...). The
    temporary file lies in ``path``'s folder (created if missing) and is named
    ``.NAME.XXXXXXXX.tmp`` (writers that pick a format from the suffix need it passed explicitly,
    e.g. ``savefig(tmp, format="png")``). When the block raises, the temporary file is deleted and
    ``path`` is untouched.

    Args:
        path: the final file name.

    Yields:
        The temporary path (an empty file that the block overwrites).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # flush whatever the writer left in the OS cache to disk
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); ``str`` is written as UTF-8.

    Args:
        path: the file (its folder is created if missing).
        data: the complete new content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    return Path(path)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be fsync'ed)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass
    finally:
        os.close(dfd)


__all__ = ["atomic_path", "atomic_write"]
