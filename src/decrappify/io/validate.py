"""Checks shared by every reader: axes and channels, dtype rule, finite values.

The dtype rule
--------------
decrappify keeps ``uint8``, ``uint16`` and ``float32`` end to end. Other dtypes are
converted once, when an image is read:

* ``bool`` becomes ``uint8`` (0 and 1).
* Signed and wide integers (``int8``, ``int16``, ``int32``, ``int64``, ``uint32``,
  ``uint64``) become the smallest of ``uint8`` / ``uint16`` that holds the *values actually
  present* (their minimum and maximum, computed once, block by block for lazy data), or
  ``float32`` when the values are negative or above 65535. ``float32`` represents every
  integer up to 2**24 exactly; larger magnitudes are rounded to float32 precision.
* ``float16`` and ``float64`` become ``float32``.
* Anything else (complex, strings, objects) is refused with an :class:`InputError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io.image import SUPPORTED_DTYPES, VALID_AXES

#: Axis letters that hold channels (tifffile: C = channel, S = samples such as RGB).
CHANNEL_LABELS = frozenset("CS")


@dataclass(frozen=True)
class Layout:
    """Which axes of a stored array make the decrappify image, and what they are.

    Parameters
    ----------
    axes : str
        The image axes, ``"YX"``, ``"ZYX"`` or ``"TYX"``.
    keep : tuple of int
        Indices of the stored axes that are kept, in order; every other stored axis has
        length 1 and is dropped.
    """

    axes: str
    keep: tuple[int, ...]

    def index(self, ndim: int) -> tuple[Any, ...]:
        """Index that drops the singleton axes of an ``ndim``-dimensional stored array."""
        return tuple(slice(None) if i in self.keep else 0 for i in range(ndim))


def check_axes_argument(axes: str | None) -> None:
    """Raise :class:`InputError` unless ``axes`` is None or one of ``YX``, ``ZYX``, ``TYX``.

    Parameters
    ----------
    axes : str or None
        The axes a caller asked for.
    """
    if axes is not None and axes not in VALID_AXES:
        raise InputError(f"axes must be one of 'YX', 'ZYX' or 'TYX', got {axes!r}")


def guess_labels(shape: Sequence[int]) -> str:
    """Axis letters for an array without metadata: ``...YX``, or ``...YXC`` when channels-last.

    A last axis of length 2 to 4 after a longer one is read as colour channels (an RGB(A)
    image), since no microscopy image is 4 pixels wide.

    Parameters
    ----------
    shape : sequence of int
        Array shape.

    Returns
    -------
    str
        One letter per axis; ``Q`` marks an axis of unknown meaning.
    """
    ndim = len(shape)
    if ndim >= 3 and 2 <= shape[-1] <= 4 and shape[-2] > 4:
        return "Q" * (ndim - 3) + "YXC"
    return "Q" * (ndim - 2) + "YX"


def resolve_layout(
    shape: Sequence[int],
    labels: str | None,
    source: str,
    axes: str | None = None,
    *,
    squeeze: bool = True,
) -> Layout:
    """Decide how a stored array maps to a 2D/3D single-channel image, or explain why not.

    Parameters
    ----------
    shape : sequence of int
        Shape of the stored array.
    labels : str or None
        One upper-case letter per stored axis from the file's metadata (``"ZYX"``,
        ``"TCZYX"``, ``"YXS"`` ...); None to guess (arrays without metadata).
    source : str
        Name for messages (the file).
    axes : str or None
        Axes the caller asked for; overrides whether the leading axis is Z or T.
    squeeze : bool
        Drop leading axes of length 1 (true for files; arrays keep a 3D shape of
        ``(1, Y, X)``).

    Returns
    -------
    Layout
        The image axes and the stored axes kept.

    Raises
    ------
    InputError
        Empty array, multi-channel/RGB data (names the axis), 1D or 4D+ data, or axes
        that do not fit the data.
    """
    shape = tuple(int(s) for s in shape)
    check_axes_argument(axes)
    if len(shape) < 2:
        raise InputError(f"{source}: expected a 2D or 3D single-channel image, got shape {shape}")
    if any(s == 0 for s in shape):
        raise InputError(f"{source}: image is empty (shape {shape})")
    guessed = labels is None
    labels = guess_labels(shape) if labels is None else labels.upper()
    if len(labels) != len(shape):
        labels = guess_labels(shape)
    for i, (label, size) in enumerate(zip(labels, shape, strict=True)):
        if label in CHANNEL_LABELS and size > 1:
            raise InputError(
                f"{source}: has {size} channels on axis {i} (shape {shape}); decrappify needs "
                "a single-channel image — split the channels first"
            )
    y_index, x_index = _yx_indices(labels, shape, source)
    leading = [
        i
        for i, label in enumerate(labels)
        if i not in (y_index, x_index) and label not in CHANNEL_LABELS
    ]
    if any(i > y_index for i in leading if shape[i] > 1):
        raise InputError(
            f"{source}: Y and X must be the last axes, got axes {labels} for shape {shape}"
        )
    big = [i for i in leading if shape[i] > 1]
    described = "" if guessed else f" (axes {labels})"
    if len(big) > 1:
        raise InputError(
            f"{source}: expected a 2D or 3D single-channel image, got shape {shape}{described}"
        )
    if axes is not None:
        keep = _keep_for_axes(axes, big, leading, labels, shape, source)
        return Layout(axes=axes, keep=(*keep, y_index, x_index))
    keep = big
    if not keep and not squeeze and leading:
        keep = [leading[-1]]
    if not keep:
        return Layout(axes="YX", keep=(y_index, x_index))
    first = "T" if labels[keep[0]] == "T" else "Z"
    return Layout(axes=f"{first}YX", keep=(keep[0], y_index, x_index))


def _yx_indices(labels: str, shape: tuple[int, ...], source: str) -> tuple[int, int]:
    if "Y" in labels and "X" in labels:
        y_index, x_index = labels.rindex("Y"), labels.rindex("X")
        if y_index < x_index:
            return y_index, x_index
    raise InputError(f"{source}: cannot find the Y and X axes in axes {labels} (shape {shape})")


def _keep_for_axes(
    axes: str,
    big: list[int],
    leading: list[int],
    labels: str,
    shape: tuple[int, ...],
    source: str,
) -> list[int]:
    if len(axes) == 2:
        if big:
            raise InputError(f"{source}: axes 'YX' given, but the image has shape {shape}")
        return []
    if big:
        return big
    if not leading:
        raise InputError(f"{source}: axes {axes!r} given, but the image is 2D (shape {shape})")
    matching = [i for i in leading if labels[i] == axes[0]]
    return [matching[-1] if matching else leading[-1]]


def coerce_dtype(data: Any, source: str) -> Any:
    """Convert pixels to uint8, uint16 or float32 following the module's dtype rule.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        Pixels of any real dtype.
    source : str
        Name for messages.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``data`` itself when its dtype is supported, else the converted array (lazy
        for dask input).

    Raises
    ------
    InputError
        For complex, string or object dtypes.
    """
    dtype = np.dtype(data.dtype)
    if dtype in SUPPORTED_DTYPES:
        return data
    if dtype.kind == "b":
        return data.astype(np.uint8)
    if dtype.kind == "f":
        return _to_float32(data, source)
    if dtype.kind in "iu":
        return data.astype(integer_target(*_min_max(data)))
    raise InputError(
        f"{source}: unsupported pixel type {dtype}; expected integer or real floating-point pixels"
    )


def _to_float32(data: Any, source: str) -> Any:
    """float64 (or float16) pixels as float32; finite values beyond its range are refused.

    numpy would turn them into infinities (with a ``RuntimeWarning``), and the image would
    then be refused as "infinite". Lazy data is checked block by block when computed.
    """
    if isinstance(data, np.ndarray):
        return _checked_float32(data, source)
    return data.map_blocks(_checked_float32, source, dtype=np.float32)


def _checked_float32(block: np.ndarray, source: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        out = block.astype(np.float32)
    overflow = np.isinf(out) & np.isfinite(block)
    if overflow.any():
        largest = float(np.abs(block[overflow]).max())
        raise InputError(
            f"{source}: has pixel values up to {largest:.3g}, beyond the float32 range "
            f"(±{float(np.finfo(np.float32).max):.3g}) decrappify works in; rescale the "
            "image (e.g. divide it by a power of 10) and save it again"
        )
    return out


def several_series(path: Any, series: list[Any], limit: int = 8) -> str:
    """Word the refusal of a TIFF file that holds several images (series).

    Parameters
    ----------
    path : str or Path
        The file.
    series : list of tifffile.TiffPageSeries
        Its series.
    limit : int
        Most series listed.

    Returns
    -------
    str
        ``x.tif: holds 2 images (series 0: 64x64 uint8; series 1: 3x512x512 uint16
        'Position 2'); decrappify reads one image per file: save each ...``.
    """
    listed = []
    for index, item in enumerate(series[:limit]):
        shape = "x".join(str(n) for n in item.shape)
        name = getattr(item, "name", "") or ""
        listed.append(f"series {index}: {shape} {item.dtype}" + (f" {name!r}" if name else ""))
    more = f"; and {len(series) - limit} more" if len(series) > limit else ""
    return (
        f"{path}: holds {len(series)} images ({'; '.join(listed)}{more}); decrappify reads one "
        "image per file: save each series (position) as its own TIFF (Fiji: Bio-Formats "
        "Importer, 'Open all series'; Python: tifffile.imread(path, series=N)) and pass those"
    )


def integer_target(low: int, high: int) -> np.dtype:
    """Smallest of uint8/uint16 holding the integer range ``[low, high]``, else float32.

    Parameters
    ----------
    low, high : int
        Smallest and largest value present.

    Returns
    -------
    numpy.dtype
        The target dtype.
    """
    if low >= 0 and high <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if low >= 0 and high <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.float32)


def _min_max(data: Any) -> tuple[int, int]:
    if isinstance(data, np.ndarray):
        return int(data.min()), int(data.max())
    import dask

    low, high = dask.compute(data.min(), data.max())
    return int(low), int(high)


def check_finite(data: Any, source: Any) -> None:
    """Raise :class:`InputError` when the pixels contain NaN or infinite values.

    Integer and boolean arrays are accepted at once. Dask arrays are checked block by
    block (one pass over the data, memory bounded by the chunk size); large numpy arrays
    slab by slab along the first axis.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The pixels.
    source : str or Path or None
        Name of the image for the message.

    Raises
    ------
    InputError
        ``"<source>: has N NaN and M infinite pixel values; ..."``.
    """
    dtype = np.dtype(data.dtype)
    if dtype.kind in "biu":
        return
    if isinstance(data, np.ndarray):
        n_nan, n_inf = _count_nonfinite_numpy(data)
    else:
        import dask
        import dask.array as da

        n_nan, n_inf = dask.compute(da.isnan(data).sum(), da.isinf(data).sum())
    if n_nan or n_inf:
        name = source if source else "image"
        raise InputError(
            f"{name}: has {int(n_nan)} NaN and {int(n_inf)} infinite pixel values; "
            "replace them with finite values first"
        )


def _count_nonfinite_numpy(data: np.ndarray, slab_bytes: int = 64 * 2**20) -> tuple[int, int]:
    if data.ndim == 0 or data.nbytes <= slab_bytes:
        return int(np.isnan(data).sum()), int(np.isinf(data).sum())
    step = max(1, int(slab_bytes // max(1, data[0].nbytes)))
    n_nan = n_inf = 0
    for start in range(0, data.shape[0], step):
        part = data[start : start + step]
        n_nan += int(np.isnan(part).sum())
        n_inf += int(np.isinf(part).sum())
    return n_nan, n_inf


def physical_pixel_size(
    axes: str, sizes: dict[str, tuple[float, str | None]]
) -> tuple[tuple[float, ...] | None, tuple[str, ...] | None]:
    """Assemble an image's ``pixel_size`` and ``units`` from what the metadata knows.

    The pixel size is None unless Y and X are both known. A missing Z spacing is taken
    as 1.0 in the Y/X unit (ImageJ's convention); a missing T interval as 1.0 with
    ``units`` None (no unit is invented for time). ``units`` is None when any unit is
    unknown.

    Parameters
    ----------
    axes : str
        ``"YX"``, ``"ZYX"`` or ``"TYX"``.
    sizes : dict
        Axis letter to ``(size, unit)`` for the axes the metadata describes; ``unit``
        is an NGFF unit name or None.

    Returns
    -------
    tuple
        ``(pixel_size, units)``.
    """
    if "Y" not in sizes or "X" not in sizes:
        return None, None
    entries = []
    for axis in axes:
        if axis in sizes:
            entries.append(sizes[axis])
        elif axis == "Z":
            entries.append((1.0, sizes["X"][1]))
        else:
            entries.append((1.0, None))
    pixel_size = tuple(float(size) for size, _ in entries)
    units = tuple(unit for _, unit in entries)
    if any(unit is None for unit in units):
        return pixel_size, None
    return pixel_size, units  # type: ignore[return-value]
