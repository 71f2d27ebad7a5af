"""What every job shares: computing lazy arrays chunk by chunk, and where results go.

Results up to :data:`~decrappify.config.predict.MAX_IN_MEMORY` bytes are computed into memory
(the limit of ``decrappify.api.iter_predict_image`` without an output file); larger ones are
written to OME-Zarr, in a folder the user chose or in a temporary folder removed when
Python exits (:func:`output_target`).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.events import Progress
from decrappify.io import Image

#: Temporary folders made for large results in this session, removed at exit.
_TEMP_DIRS: list[Path] = []


def iter_compute(
    data: Any, *, phase: str = "compute", batch: int | None = None
) -> Generator[Progress, None, np.ndarray]:
    """Compute a lazy array into a numpy array, a few chunks at a time.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        What to compute (numpy is returned as is).
    phase : str
        ``phase`` of the progress events.
    batch : int or None
        Chunks computed together (in parallel by dask's threads); default the number
        of CPUs, at most 8. Memory is the result plus ``batch`` chunks.

    Yields
    ------
    Progress
        One event per batch: ``step`` chunks done out of ``total``.

    Returns
    -------
    numpy.ndarray
        The computed array.
    """
    if isinstance(data, np.ndarray):
        return data
    import dask
    from dask.array.core import slices_from_chunks

    out = np.empty(data.shape, dtype=data.dtype)
    regions = slices_from_chunks(data.chunks)
    batch = batch or max(1, min(os.cpu_count() or 1, 8))
    total = len(regions)
    done = 0
    for start in range(0, total, batch):
        group = regions[start : start + batch]
        blocks = dask.compute(*(data[r] for r in group), scheduler="threads")
        for region, block in zip(group, blocks, strict=True):
            out[region] = block
        done += len(group)
        yield Progress(phase=phase, step=done, total=total, message=f"block {done}/{total}")
    return out


def nbytes(image: Image) -> int:
    """Bytes the pixels of ``image`` take in memory.

    Parameters
    ----------
    image : Image
        The record.

    Returns
    -------
    int
        ``prod(shape) * itemsize``.
    """
    return int(np.prod(image.shape, dtype=np.int64)) * image.dtype.itemsize


# ----------------------------------------------------------------------------- outputs


def safe_name(name: str) -> str:
    """A file-name-safe version of a layer name.

    Parameters
    ----------
    name : str
        The layer name.

    Returns
    -------
    str
        Letters, digits, ``-``, ``_`` and ``.`` kept, runs of anything else as ``_``.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "image"


def unique_path(folder: Path, stem: str, suffix: str = ".zarr") -> Path:
    """``folder/stem.zarr``, or ``stem_2.zarr``, ``stem_3.zarr`` ... if it exists.

    Parameters
    ----------
    folder : Path
        The folder.
    stem : str
        The name without suffix.
    suffix : str
        The suffix.

    Returns
    -------
    Path
        A path that does not exist yet.
    """
    for index in itertools.count(1):
        name = f"{stem}{suffix}" if index == 1 else f"{stem}_{index}{suffix}"
        path = folder / name
        if not os.path.lexists(path):
            return path
    raise AssertionError("unreachable")  # pragma: no cover


def session_temp_dir() -> Path:
    """A temporary folder for large results, removed when Python exits.

    Returns
    -------
    Path
        A new folder under the system's temporary directory.
    """
    path = Path(tempfile.mkdtemp(prefix="decrappify-napari-"))
    if not _TEMP_DIRS:
        atexit.register(_remove_temp_dirs)
    _TEMP_DIRS.append(path)
    return path


def _remove_temp_dirs() -> None:
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)
    _TEMP_DIRS.clear()


def output_target(out_dir: str | Path | None, stem: str) -> Path:
    """A new OME-Zarr path for a result: ``out_dir/<stem>.zarr``, or in a temporary folder.

    Parameters
    ----------
    out_dir : path or None
        The folder the user chose (created if missing); None: a temporary folder
        removed when Python exits.
    stem : str
        The name without suffix (made file-name safe; ``_2``, ``_3`` ... when taken).

    Returns
    -------
    Path
        A path that does not exist yet.
    """
    folder = Path(out_dir) if out_dir is not None else session_temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return unique_path(folder, safe_name(stem))


def central(region: slice, size: int) -> slice:
    """Return the central ``size`` indices of ``region`` (all of it when shorter).

    Parameters
    ----------
    region : slice
        Start and stop (no step).
    size : int
        Largest length.

    Returns
    -------
    slice
        The central part.
    """
    extra = region.stop - region.start - size
    if extra <= 0:
        return region
    start = region.start + extra // 2
    return slice(start, start + size)
