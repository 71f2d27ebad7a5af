"""TIFF writing: a tiled, zlib-compressed OME-TIFF from a stream of tiles.

:class:`TileWriter` writes in a background thread, so the caller can report progress
tile row by tile row and cancel at any tile; BigTIFF is used when the file may exceed
4 GiB. :func:`ome_metadata` and :func:`resolution_tags` carry the pixel size, and the
plane positions of the OME-XML the translation (:mod:`decrappify.io.ome_xml`).
"""

from __future__ import annotations

import inspect
import math
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from decrappify.errors import OutputError, short_message
from decrappify.io._units import (
    LENGTH_UNITS,
    MICROMETERS_PER_UNIT,
    TIME_UNITS,
    normalize_unit,
    ome_symbol,
)
from decrappify.io.ome_xml import plane_positions, size_unit_symbol

#: Data this large (uncompressed) is written as BigTIFF.
BIGTIFF_MIN_BYTES = 2**31 - 2**27
#: Default tile shape of written TIFFs.
DEFAULT_TILE = (256, 256)


def ome_metadata(
    axes: str,
    pixel_size: Sequence[float] | None,
    units: Sequence[str] | None,
    *,
    shape: Sequence[int] | None = None,
    translate: Sequence[float] | None = None,
) -> dict[str, Any]:
    """OME-XML metadata for ``tifffile``: axes, physical sizes, units and plane positions.

    Sizes are written only with a unit OME can name: OME-XML readers take a size without
    a unit as micrometres, which would be wrong. A pixel size without a physical unit
    (a derived image's pixels counted in its source's pixels) is written in OME's
    ``pixel`` unit. The translation goes into each plane's position
    (:func:`decrappify.io.ome_xml.plane_positions`).

    Parameters
    ----------
    axes : str
        Image axes.
    pixel_size : sequence of float or None
        Pixel size per axis.
    units : sequence of str or None
        NGFF unit per axis.
    shape : sequence of int or None
        Image shape (needed for the plane positions).
    translate : sequence of float or None
        World position of the first pixel's centre per axis.

    Returns
    -------
    dict
        The ``metadata`` argument of :meth:`tifffile.TiffWriter.write`.
    """
    meta: dict[str, Any] = {"axes": axes}
    if pixel_size is None:
        return meta
    for i, (axis, size) in enumerate(zip(axes, pixel_size, strict=True)):
        unit = units[i] if units is not None else None
        name = normalize_unit(unit)
        if axis in "XYZ" and (unit is None or name in LENGTH_UNITS):
            meta[f"PhysicalSize{axis}"] = float(size)
            meta[f"PhysicalSize{axis}Unit"] = size_unit_symbol(unit)
        elif axis == "T" and name in TIME_UNITS:
            meta["TimeIncrement"] = float(size)
            meta["TimeIncrementUnit"] = ome_symbol(unit)
    if shape is not None:
        plane = plane_positions(axes, shape, pixel_size, units, translate)
        if plane:
            meta["Plane"] = plane
    return meta


def resolution_tags(
    pixel_size: Sequence[float] | None, units: Sequence[str] | None
) -> dict[str, Any]:
    """TIFF resolution tags (pixels per centimetre) for readers that ignore OME-XML.

    Parameters
    ----------
    pixel_size : sequence of float or None
        Pixel size per axis (Y and X last).
    units : sequence of str or None
        NGFF unit per axis.

    Returns
    -------
    dict
        ``resolution`` and ``resolutionunit`` arguments, or an empty dict.
    """
    if pixel_size is None or units is None:
        return {}
    scale_y = MICROMETERS_PER_UNIT.get(normalize_unit(units[-2]) or "")
    scale_x = MICROMETERS_PER_UNIT.get(normalize_unit(units[-1]) or "")
    if scale_y is None or scale_x is None:
        return {}
    return {
        "resolution": (1e4 / (pixel_size[-1] * scale_x), 1e4 / (pixel_size[-2] * scale_y)),
        "resolutionunit": "CENTIMETER",
    }


class _Abort(Exception):
    """Raised inside the writer thread to stop ``tifffile`` when the write is cancelled."""


_ABORT = object()
#: How ``TiffWriter`` is asked for OME-TIFF: ``kind="ome"`` from tifffile 2026.5 (``ome``
#: is deprecated there), ``ome=True`` before.
_OME: dict[str, Any] = (
    {"kind": "ome"}
    if "kind" in inspect.signature(tifffile.TiffWriter.__init__).parameters
    else {"ome": True}
)


class TileWriter:
    """Write a tiled OME-TIFF from tiles handed over one by one, in a background thread.

    ``tifffile`` consumes an iterator of tiles (row-major within each page, pages in
    order) in one call; running that call in a thread lets the caller compute tiles,
    report progress between them and cancel at any point. A bounded queue keeps at most
    ``queue_size`` tiles in flight.

    Parameters
    ----------
    path : Path
        File to create.
    shape : tuple of int
        Image shape (Y and X last).
    dtype : numpy.dtype
        Pixel dtype.
    axes : str
        Image axes.
    pixel_size, units, translate : sequence or None
        Physical metadata and placement (see :func:`ome_metadata`).
    tile : tuple of int
        Tile shape (multiples of 16).
    bigtiff : bool
        Write BigTIFF.
    queue_size : int
        Tiles buffered between the caller and the writer thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        shape: tuple[int, ...],
        dtype: np.dtype,
        axes: str,
        pixel_size: Sequence[float] | None,
        units: Sequence[str] | None,
        translate: Sequence[float] | None = None,
        tile: tuple[int, int],
        bigtiff: bool,
        queue_size: int,
    ) -> None:
        self.path = path
        self.shape = shape
        self.tile = tile
        tiles_y = math.ceil(shape[-2] / tile[0])
        tiles_x = math.ceil(shape[-1] / tile[1])
        self.n_tiles = int(np.prod(shape[:-2], dtype=np.int64)) * tiles_y * tiles_x
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._error: BaseException | None = None
        self._kwargs = {
            "shape": shape,
            "dtype": np.dtype(dtype),
            "tile": tile,
            "compression": "zlib",
            "photometric": "minisblack",
            "metadata": ome_metadata(axes, pixel_size, units, shape=shape, translate=translate),
            "buffersize": 16 * 2**20,
            **resolution_tags(pixel_size, units),
        }
        try:
            self._writer = tifffile.TiffWriter(path, bigtiff=bigtiff, **_OME)
        except OSError as err:
            raise OutputError(f"{path}: cannot create TIFF file ({err.strerror or err})") from err
        self._thread = threading.Thread(
            target=self._run, name="decrappify-tiff-writer", daemon=True
        )
        self._thread.start()

    def _tiles(self) -> Any:
        for _ in range(self.n_tiles):
            item = self._queue.get()
            if item is _ABORT:
                raise _Abort
            yield item

    def _run(self) -> None:
        try:
            with self._writer as writer:
                writer.write(self._tiles(), **self._kwargs)
        except BaseException as err:  # handed to the caller's thread
            self._error = err

    def put(self, tile: np.ndarray) -> None:
        """Hand one tile to the writer (blocks while the queue is full).

        Parameters
        ----------
        tile : numpy.ndarray
            The next tile, at most ``tile`` in shape (edge tiles are zero-padded).

        Raises
        ------
        OutputError
            When the writer thread failed (disk full, permission ...).
        """
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(tile, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None or not self._thread.is_alive():
            self._thread.join()
            error = self._error
            if error is None:
                raise OutputError(f"{self.path}: TIFF writer stopped unexpectedly")
            raise OutputError(f"{self.path}: cannot write TIFF ({short_message(error)})") from error

    def finish(self) -> None:
        """Wait for the writer to write the last tiles and close the file.

        Raises
        ------
        OutputError
            When writing failed.
        """
        self._thread.join()
        if self._error is not None:
            raise OutputError(
                f"{self.path}: cannot write TIFF ({short_message(self._error)})"
            ) from self._error

    def abort(self) -> None:
        """Stop the writer thread and wait for it (the partial file is left to the caller)."""
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            try:
                self._queue.put(_ABORT, timeout=0.1)
            except queue.Full:
                continue
            self._thread.join(timeout=0.5)
        self._thread.join()
