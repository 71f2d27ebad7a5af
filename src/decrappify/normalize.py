"""Percentile normalisation: intensities to *normalised units* and back.

Degradations and networks work on float32 images in normalised units,
``(x - lo) / (hi - lo)``, where ``lo`` and ``hi`` are low and high percentiles of
the image (0.1 and 99.9 by default): 0 is the background level and 1 the bright
signal level. Results are mapped back with the same ``lo, hi`` and clipped to the
range of the output dtype.

Percentiles of large or lazy (dask) images are computed from a deterministic
sample of at most ``max_samples`` values, so memory stays bounded by a few chunks
whatever the image size. The module is pure numpy (no torch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from decrappify.errors import InputError

__all__ = ["DEFAULT_MAX_SAMPLES", "denormalize", "normalize", "percentile_range"]

#: Default bound on the number of values used to estimate percentiles.
DEFAULT_MAX_SAMPLES = 2**22
#: Minimum number of chunks a lazy array is sampled from (when it has that many).
_MIN_SAMPLED_BLOCKS = 16


def percentile_range(
    data: Any,
    low: float = 0.1,
    high: float = 99.9,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[float, float]:
    """Low and high percentiles of an image, with ``hi > lo`` guaranteed.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The image (any number of dimensions). Non-finite values (NaN, Inf) are
        ignored.
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    max_samples : int
        Most values used. Arrays with at most this many values give exact
        percentiles. Larger arrays are sampled deterministically: a numpy array
        with a fixed flat stride; a dask array from at most
        ``max(16, max_samples // chunk size)`` chunks spread evenly over its chunk
        grid, each subsampled with a flat stride, so only those chunks are read
        and memory is bounded by ``max_samples`` plus a few chunks.

    Returns
    -------
    lo, hi : float
        The percentiles as Python floats, ``hi > lo``.

    Raises
    ------
    InputError
        If the percentiles are out of order or ``max_samples`` is not positive.

    Notes
    -----
    Fallback for flat images: when the two percentiles are equal (an image that is
    mostly one value), the minimum and maximum of the (sampled) finite values are
    used instead; when those are equal too (a constant image) or there are no
    finite values at all, ``hi = lo + 1`` (with ``lo = 0`` if nothing is finite).
    A constant image therefore normalises to 0 everywhere.
    """
    if not 0.0 <= low < high <= 100.0:
        raise InputError(
            f"percentiles must satisfy 0 <= low < high <= 100 (got low={low}, high={high})"
        )
    if max_samples < 1:
        raise InputError(f"max_samples must be >= 1 (got {max_samples})")
    values = _sample_values(data, max_samples)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _sample_values(data: Any, max_samples: int) -> np.ndarray:
    """Return at most about ``max_samples`` values of ``data`` as a flat float64 array."""
    size = math.prod(data.shape)
    if isinstance(data, np.ndarray) or not hasattr(data, "chunks"):
        arr = np.asarray(data)
        if size <= max_samples:
            return arr.astype(np.float64, copy=False).ravel()
        step = math.ceil(size / max_samples)
        flat = arr.reshape(-1) if arr.flags.c_contiguous else arr.ravel()
        return flat[::step].astype(np.float64)
    return _sample_dask(data, max_samples)


def _sample_dask(data: Any, max_samples: int) -> np.ndarray:
    """Deterministic sample of a dask array: evenly spread chunks, strided within each."""
    import dask

    size = math.prod(data.shape)
    if size <= max_samples:
        return np.asarray(data.compute(), dtype=np.float64).ravel()
    n_blocks = math.prod(data.numblocks)
    largest = max(math.prod(shape) for shape in _block_shapes(data.chunks))
    n_chosen = min(n_blocks, max(_MIN_SAMPLED_BLOCKS, max_samples // max(largest, 1)))
    flat_ids = np.unique(np.round(np.linspace(0, n_blocks - 1, n_chosen)).astype(np.int64))
    per_block = max(1, max_samples // len(flat_ids))
    parts = []
    for flat_id in flat_ids:
        index = np.unravel_index(int(flat_id), data.numblocks)
        block = data.blocks[tuple(int(i) for i in index)]
        step = max(1, math.ceil(math.prod(block.shape) / per_block))
        parts.append(block.ravel()[::step])
    computed = dask.compute(*parts)
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in computed])


def _block_shapes(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    """Distinct chunk shapes of a dask chunk specification (one per combination of sizes)."""
    import itertools

    return list(itertools.product(*(sorted(set(c)) for c in chunks)))


def normalize(x: Any, lo: float, hi: float) -> Any:
    """Map intensities to normalised units, ``(x - lo) / (hi - lo)``, as float32.

    Parameters
    ----------
    x : numpy.ndarray or dask.array.Array
        Intensities (any dtype).
    lo, hi : float
        The values mapped to 0 and 1, ``hi > lo`` (see :func:`percentile_range`).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32 array of the same shape (lazy for dask input). The computation is
        elementwise, so a chunk normalised alone equals the same pixels of the
        whole image normalised at once.

    Raises
    ------
    InputError
        If ``hi <= lo`` or either is not finite.
    """
    _check_range(lo, hi)
    return (x.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)


def denormalize(y: Any, lo: float, hi: float, dtype: Any) -> Any:
    """Map normalised units back to intensities, ``y * (hi - lo) + lo``, in ``dtype``.

    Parameters
    ----------
    y : numpy.ndarray or dask.array.Array
        Values in normalised units.
    lo, hi : float
        The values that 0 and 1 map to (the ones used by :func:`normalize`).
    dtype : numpy dtype
        Output dtype. Integer dtypes are rounded to the nearest integer and clipped
        to their range (0-255 for uint8, 0-65535 for uint16); float dtypes are
        clipped to their finite range. NaN stays NaN for float outputs and becomes
        0 for integer outputs.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Array of ``dtype`` (lazy for dask input), computed in float64 elementwise.

    Raises
    ------
    InputError
        If ``hi <= lo`` or the dtype is neither integer nor floating point.
    """
    _check_range(lo, hi)
    dtype = np.dtype(dtype)
    scaled = y.astype(np.float64) * (hi - lo) + lo
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded = np.rint(scaled)
        if hasattr(rounded, "chunks"):
            rounded = rounded.map_blocks(np.nan_to_num, nan=0.0, dtype=np.float64)
        else:
            rounded = np.nan_to_num(rounded, nan=0.0)
        return rounded.clip(info.min, info.max).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        finfo = np.finfo(dtype)
        return scaled.clip(float(finfo.min), float(finfo.max)).astype(dtype)
    raise InputError(f"denormalize: dtype must be an integer or float dtype (got {dtype})")


def _check_range(lo: float, hi: float) -> None:
    """Raise InputError unless ``lo < hi`` are finite."""
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise InputError(f"normalisation range must have finite lo < hi (got lo={lo}, hi={hi})")
