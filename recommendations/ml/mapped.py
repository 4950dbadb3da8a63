"""Arrays shared by every process through the page cache: plain ``.npy`` files opened with ``mmap_mode="r"``.

A web server runs several processes; each one that loads a model artifact into its
own memory holds a private copy of every array (at a million products, hundreds of
megabytes per process). Memory-mapped ``.npy`` files are read from one copy in the
operating system's page cache instead, however many processes map them.

An artifact stays one compressed, pickle-free ``.npz`` (what :meth:`Recommender.save`
writes); :func:`unpack` copies its arrays once into a folder of uncompressed ``.npy``
files next to it. Every file is written to a temporary name and renamed into place
(``os.replace``), so a file that exists is complete, and processes that race to write
the same file each rename a whole, identical one: a reader maps one or the other.
Arrays under :data:`MMAP_MIN_BYTES` are read into memory (their page-size rounding
would cost more than a copy).
"""

from __future__ import annotations

import mmap
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Arrays smaller than this are read into each process's memory rather than mapped.
MMAP_MIN_BYTES = 1 << 20

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


def mapped_dir(artifact: str | Path) -> Path:
    """The folder of ``.npy`` files derived from ``artifact`` (``als-1a2b.npz`` -> ``als-1a2b.mmap``)."""
    artifact = Path(artifact)
    return artifact.with_name(f"{artifact.stem}.mmap")


def is_mapped(array: np.ndarray) -> bool:
    """Whether ``array``'s data lives in a memory-mapped file (it owns no memory of its own)."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False


def _path(directory: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid array name")
    return directory / f"{name}.npy"


def write_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` under a temporary name in the same folder, then rename it to ``path``."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"{path.name}: object arrays cannot be stored pickle-free")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_array(path: Path, mmap_mode: bool = True) -> np.ndarray:
    """An ``.npy`` file: memory-mapped read-only (a plain ``ndarray`` view of the map) when large enough.

    The view is returned rather than the ``np.memmap``: numpy functions hand a memmap
    back as a new object on every call (``np.asarray``), which defeats caches keyed by
    an array's identity; the view keeps the data mapped.
    """
    if mmap_mode and path.stat().st_size >= MMAP_MIN_BYTES:
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    return np.load(path, allow_pickle=False)


def cached_array(directory: Path, name: str, compute: Callable[[], np.ndarray], mmap_mode: bool = True) -> np.ndarray:
    """The array ``name`` of ``directory``, computed and written (atomically) by the first process that asks."""
    path = _path(directory, name)
    if not path.exists():
        write_array(path, compute())
    return read_array(path, mmap_mode)


def unpack(npz: str | Path, directory: str | Path | None = None, mmap_mode: bool = True) -> dict[str, np.ndarray]:
    """Every array of ``npz``, read from its ``.npy`` copy in ``directory`` (default :func:`mapped_dir`).

    Members not yet copied are copied first (one member of a compressed ``.npz`` is
    decompressed at a time, so memory stays at the largest array).
    """
    npz = Path(npz)
    directory = Path(directory) if directory is not None else mapped_dir(npz)
    with np.load(npz, allow_pickle=False) as data:
        names = list(data.files)
        for name in names:
            if not _path(directory, name).exists():
                write_array(_path(directory, name), data[name])
    return {name: read_array(_path(directory, name), mmap_mode) for name in names}
