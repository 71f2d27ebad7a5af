"""``read_image``: one entry point for every image source decrappify accepts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, short_message
from decrappify.io.image import Image
from decrappify.io.omezarr import read_zarr
from decrappify.io.paths import TIFF_SUFFIXES, is_zarr_path, not_an_image_file
from decrappify.io.tiff import read_tiff, read_tiff_folder
from decrappify.io.validate import (
    check_axes_argument,
    coerce_dtype,
    physical_pixel_size,
    resolve_layout,
)


def read_image(source: Any, *, axes: str | None = None) -> Image:
    """Read an image from a file, a folder, a Zarr store, an array or an :class:`Image`.

    Sources
    -------
    * TIFF file (``.tif``/``.tiff``, OME-TIFF, ImageJ hyperstacks, BigTIFF): the first
      series. Up to 16 MiB it is read into memory; larger files are lazy dask arrays
      that read only the tiles/strips of the blocks computed.
    * Zarr v2/v3 array, or OME-Zarr image (NGFF 0.4 and 0.5): the first resolution
      level, lazily.
    * Folder of 2D TIFF files: a lazy ZYX stack in natural order (``img2`` before
      ``img10``); all files must share shape and dtype.
    * numpy or dask array: 2D is ``YX``, 3D ``ZYX`` (``(Y, X, 3)`` and ``(Y, X, 4)`` are
      refused as colour images).
    * :class:`Image`: returned as is (relabelled when ``axes`` is given).

    Axes are ``YX`` for 2D and ``ZYX`` for 3D unless the metadata says time (OME/ImageJ
    ``T``, NGFF ``type: time``) or ``axes`` is given. Axes of length 1 in files (such as
    NGFF ``t``/``c``) are dropped. Pixel size and units come from OME-XML, ImageJ
    metadata, TIFF resolution tags or NGFF transformations; None when unknown.

    dtypes ``uint8``, ``uint16`` and ``float32`` are kept. ``bool`` becomes ``uint8``;
    other integers become the smallest of ``uint8``/``uint16`` holding their values, or
    ``float32`` if negative or above 65535; ``float16``/``float64`` become ``float32``
    (see :mod:`decrappify.io.validate`).

    Parameters
    ----------
    source : str, Path, numpy.ndarray, dask.array.Array or Image
        What to read.
    axes : str or None
        ``"YX"``, ``"ZYX"`` or ``"TYX"`` to override the axes found.

    Returns
    -------
    Image
        The image record.

    Raises
    ------
    InputError
        Missing file, not an image, corrupt or truncated TIFF, multi-channel or RGB data
        (the message names the axis), 4D+ or empty data.
    """
    check_axes_argument(axes)
    if isinstance(source, Image):
        return _relabel(source, axes)
    if isinstance(source, str | Path):
        return _read_path(Path(source).expanduser(), axes)
    if _is_array(source):
        return read_array(source, axes=axes)
    raise InputError(
        f"expected a path, a numpy/dask array or an Image, got {type(source).__name__}"
    )


def read_array(data: Any, *, axes: str | None = None, source: str | None = None) -> Image:
    """Wrap a numpy or dask array as an :class:`Image` after the usual checks.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The pixels.
    axes : str or None
        ``"YX"``, ``"ZYX"`` or ``"TYX"``; by default ``YX`` for 2D and ``ZYX`` for 3D.
    source : str or None
        Where the array came from (a layer name ...), kept in the record and used in
        messages (``"array"`` when None).

    Returns
    -------
    Image
        The image (no pixel size).
    """
    label = source or "array"
    layout = resolve_layout(data.shape, None, label, axes, squeeze=False)
    if len(layout.keep) != data.ndim:
        data = data[layout.index(data.ndim)]
    return Image(coerce_dtype(data, label), axes=layout.axes, source=source)


def _relabel(image: Image, axes: str | None) -> Image:
    if axes is None or axes == image.axes:
        return image
    if len(axes) != image.ndim:
        raise InputError(
            f"{image.name}: axes {axes!r} given, but the image has axes {image.axes!r}"
        )
    if image.pixel_size is None:
        return replace(image, axes=axes)
    units = image.units or (None,) * image.ndim
    sizes = {
        axis: (size, unit)
        for axis, size, unit in zip(image.axes[-2:], image.pixel_size[-2:], units[-2:], strict=True)
    }
    pixel_size, new_units = physical_pixel_size(axes, sizes)
    return replace(image, axes=axes, pixel_size=pixel_size, units=new_units)


def _is_array(obj: Any) -> bool:
    if isinstance(obj, np.ndarray):
        return True
    module = type(obj).__module__ or ""
    return module.startswith("dask.") and hasattr(obj, "chunks") and hasattr(obj, "dtype")


def _read_path(path: Path, axes: str | None) -> Image:
    try:
        return _read_existing(path, axes)
    except InputError:
        raise
    except Exception as err:  # a library's error on damaged data the checks did not foresee
        kind = "Zarr store" if path.is_dir() else "file"
        raise InputError(f"{path}: cannot read this {kind} ({short_message(err)})") from err


def _read_existing(path: Path, axes: str | None) -> Image:
    problem = not_an_image_file(path)  # a FIFO would block when opened, a loop fail oddly
    if problem == "missing":
        raise InputError(f"{path}: file not found")
    if problem:
        raise InputError(f"{path}: {problem}; expected a TIFF file, a Zarr store or a folder")
    if path.is_dir():
        if is_zarr_path(path):
            return read_zarr(path, axes=axes)
        if path.name.lower().endswith(".zarr"):
            raise InputError(f"{path}: not a Zarr store (no zarr.json, .zarray or .zgroup)")
        return read_tiff_folder(path, axes=axes)
    if path.name.lower().endswith(TIFF_SUFFIXES):
        return read_tiff(path, axes=axes)
    try:
        return read_tiff(path, axes=axes)
    except InputError as err:
        if "not a readable TIFF file" not in str(err):
            raise
        raise InputError(
            f"{path}: not a TIFF file or Zarr store; decrappify reads .tif/.tiff files, "
            ".zarr/.ome.zarr stores and folders of .tif files"
        ) from err
