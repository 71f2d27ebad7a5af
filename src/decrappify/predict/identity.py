"""Identities of models, inputs and runs: what a resumed prediction must match (pure).

A prediction can only be resumed when everything that decides its pixels is the same:
the model (its file content), the input (its path, size and modification time, or its
content for in-memory arrays), the normalisation range and the tiling, device and dtype
settings. :func:`resume_key` folds them into one hex digest that
:func:`decrappify.io.iter_write_image` stores with the partial output; a rerun with
another key starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decrappify import __version__
from decrappify.errors import ModelFileError

__all__ = ["file_digest", "input_identity", "path_digest", "resume_key"]

#: Bytes read at a time while hashing files.
_HASH_CHUNK = 8 * 2**20
_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content, cached in this process by path, size and mtime.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    str
        Hex digest.

    Raises
    ------
    ModelFileError
        If the file cannot be read.
    """
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with _DIGESTS_LOCK:
            if key in _DIGESTS:
                return _DIGESTS[key]
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                sha.update(chunk)
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the file ({err.strerror or err})") from err
    digest = sha.hexdigest()
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
    return digest


def path_digest(
    path: str | Path, names: Sequence[str] = ("model.safetensors", "model.json")
) -> str:
    """SHA-256 of a model file, or of the named files of a model folder.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file or a model folder.
    names : sequence of str
        For a folder: the files that make the model (other files, such as a cached
        receptive field, do not change its identity).

    Returns
    -------
    str
        Hex digest of the content (names and per-file digests for folders).
    """
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    sha = hashlib.sha256()
    for name in sorted(names):
        child = path / name
        if child.is_file():
            sha.update(name.encode())
            sha.update(file_digest(child).encode())
    return sha.hexdigest()


def input_identity(source: str | None, data: Any) -> str:
    """Describe an input image so that any change to it changes the description.

    Parameters
    ----------
    source : str or None
        The image's path (or layer name).
    data : numpy.ndarray or dask.array.Array
        Its pixels.

    Returns
    -------
    str
        For an existing path: the resolved path with the size and modification time of
        the path and, for folders (Zarr stores, TIFF folders), of their direct entries,
        plus the shape and dtype. For in-memory data: a hash of the pixels (numpy) or the
        dask graph name (dask arrays are named by their content or source).
    """
    shape = [int(s) for s in data.shape]
    dtype = np.dtype(data.dtype).str
    if source is not None and os.path.exists(source):
        path = Path(source).resolve()
        parts = [str(path), *_stat_entries(path)]
        return json.dumps({"path": parts, "shape": shape, "dtype": dtype})
    if isinstance(data, np.ndarray):
        sha = hashlib.sha256(np.ascontiguousarray(data).view(np.uint8).ravel())
        content = sha.hexdigest()
    else:
        content = str(getattr(data, "name", ""))
    return json.dumps({"data": content, "shape": shape, "dtype": dtype})


def _stat_entries(path: Path) -> Iterable[str]:
    stat = path.stat()
    yield f"{stat.st_size}:{stat.st_mtime_ns}"
    if path.is_dir():
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            entry_stat = entry.stat()
            yield f"{entry.name}:{entry_stat.st_size}:{entry_stat.st_mtime_ns}"


def resume_key(parts: Mapping[str, Any]) -> str:
    """Digest of everything that decides a prediction's pixels.

    Parameters
    ----------
    parts : mapping
        JSON-serialisable description (model digest, input identity, normalisation
        range, tile, overlap, batch, device, dtype, block shape ...).

    Returns
    -------
    str
        ``"decrappify-predict-<sha256>"``; the decrappify version is included.
    """
    text = json.dumps({"version": __version__, **parts}, sort_keys=True, default=str)
    return "decrappify-predict-" + hashlib.sha256(text.encode()).hexdigest()
