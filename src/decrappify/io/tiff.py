"""TIFF reading: lazy reading of single files and folder stacks (writing: :mod:`.tiff_write`).

Reading
-------
A file up to :data:`EAGER_MAX_BYTES` is read into memory. A larger one becomes a dask
array whose blocks are read on demand: uncompressed contiguous data through a memory
map, anything else (tiled, compressed) through ``tifffile``'s Zarr store, so reading
one block decodes only the tiles or strips under it. The dask graph holds only the
file path (the file is reopened where the block is computed), so it can be sent to
dask.distributed workers.

Metadata is taken, in order of preference, from OME-XML (``PhysicalSizeX/Y/Z``,
``TimeIncrement`` and their units), ImageJ metadata (``spacing``, ``finterval``,
``unit`` with the X/Y resolution tags) and the plain TIFF resolution tags (centimetre,
millimetre, micrometre or inch; inch resolutions of 72, 96, 150, 300, 600 or 1200 dpi
are screen/print defaults and are ignored). The translation comes from the OME-XML plane
positions (:mod:`decrappify.io.ome_xml`).
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from decrappify.errors import InputError, short_message
from decrappify.io._units import (
    LENGTH_UNITS,
    normalize_unit,
)
from decrappify.io.image import Image
from decrappify.io.ome_xml import positive_number, read_sizes, read_translation
from decrappify.io.paths import TIFF_SUFFIXES, natural_key
from decrappify.io.validate import (
    Layout,
    coerce_dtype,
    physical_pixel_size,
    resolve_layout,
    several_series,
)

#: Files up to this many bytes of pixels are read eagerly into numpy.
EAGER_MAX_BYTES = 16 * 2**20
#: Target size of a lazy block along Y and X (rounded to whole tiles/strips).
BLOCK_TARGET = 1024
#: Screen/print default resolutions (pixels per inch) that say nothing about the sample.
_DEFAULT_DPI = frozenset({72.0, 96.0, 150.0, 300.0, 600.0, 1200.0})
_OPEN_LOCK = threading.Lock()
#: How ``tifffile.imread`` opens a Zarr store: ``return_as="zarr"`` from tifffile 2026.5
#: (``aszarr`` is deprecated there), ``aszarr=True`` before.
_AS_ZARR: dict[str, Any] = (
    {"return_as": "zarr"}
    if "return_as" in inspect.signature(tifffile.imread).parameters
    else {"aszarr": True}
)


# --------------------------------------------------------------------------- reading


def read_tiff(path: str | Path, *, axes: str | None = None) -> Image:
    """Read the first image series of a TIFF file (eagerly if small, else lazily).

    Parameters
    ----------
    path : str or Path
        The TIFF file.
    axes : str or None
        ``"YX"``, ``"ZYX"`` or ``"TYX"`` to override what the metadata says.

    Returns
    -------
    Image
        The image, its pixel size and units when the metadata has them.

    Raises
    ------
    InputError
        Not a TIFF, truncated or corrupt data, multi-channel/RGB, 4D+ or empty images.
    """
    path = Path(path)
    with _open_tiff(path) as tif:
        series = _first_series(tif, path)
        shape, labels = _squeezed_shape_axes(series)
        layout = resolve_layout(shape, labels, str(path), axes)
        _check_complete(tif, series, path)
        pixel_size, units = physical_pixel_size(layout.axes, tiff_physical_sizes(tif, series))
        shift = read_translation(tif.ome_metadata, layout.axes, units) if tif.is_ome else None
        if series.dtype is None:
            raise InputError(f"{path}: unsupported TIFF pixel format")
        if int(np.prod(shape)) * series.dtype.itemsize <= EAGER_MAX_BYTES:
            data = _read_eager(series, path)[layout.index(len(shape))]
        else:
            data = TiffSource.from_series(path, tif, series, layout).to_dask()
    data = coerce_dtype(data, str(path))
    return Image(
        data,
        axes=layout.axes,
        pixel_size=pixel_size,
        units=units,
        source=str(path),
        translate=shift,
    )


def read_tiff_folder(path: str | Path, *, axes: str | None = None) -> Image:
    """Read a folder of 2D TIFF files as a lazy ZYX (or TYX) stack, one slice per file.

    Files are ordered naturally (``img2`` before ``img10``); hidden files are skipped.
    Every file must hold one 2D single-channel image of the same shape and dtype. The
    pixel size is taken from the first file; the Z spacing is unknown (1.0 in the Y/X
    unit).

    Parameters
    ----------
    path : str or Path
        The folder.
    axes : str or None
        ``"ZYX"`` (default) or ``"TYX"``.

    Returns
    -------
    Image
        A lazy image, one dask block per file (or per tile group for large files).

    Raises
    ------
    InputError
        No TIFF files, a file that is not 2D single-channel, or files that differ in
        shape or dtype.
    """
    folder = Path(path)
    if axes == "YX":
        raise InputError(f"{folder}: a folder of TIFF files is a stack; use axes 'ZYX' or 'TYX'")
    files = sorted(
        (p for p in folder.iterdir() if _is_tiff_name(p.name) and p.is_file()),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputError(f"{folder}: folder contains no .tif or .tiff files")
    sources: list[TiffSource] = []
    sizes: dict[str, tuple[float, str | None]] = {}
    for index, file in enumerate(files):
        with _open_tiff(file) as tif:
            series = _first_series(tif, file)
            shape, labels = _squeezed_shape_axes(series)
            layout = resolve_layout(shape, labels, str(file))
            if layout.axes != "YX":
                raise InputError(
                    f"{folder}: a folder stack needs 2D TIFF files, but {file.name} has "
                    f"shape {shape}"
                )
            _check_complete(tif, series, file)
            source = TiffSource.from_series(file, tif, series, layout, keep_open=False)
            if index == 0:
                sizes = tiff_physical_sizes(tif, series)
        if sources and (source.shape, source.dtype) != (sources[0].shape, sources[0].dtype):
            first = sources[0]
            raise InputError(
                f"{folder}: all TIFF files of a folder stack must have the same shape and "
                f"dtype; {files[0].name} is {first.shape} {first.dtype}, {file.name} is "
                f"{source.shape} {source.dtype}"
            )
        sources.append(source)
    stack = TiffStackSource(sources)
    final_axes = axes or "ZYX"
    pixel_size, units = physical_pixel_size(
        final_axes, {k: v for k, v in sizes.items() if k in "YX"}
    )
    data = coerce_dtype(stack.to_dask(), str(folder))
    return Image(data, axes=final_axes, pixel_size=pixel_size, units=units, source=str(folder))


def _is_tiff_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(TIFF_SUFFIXES)


def _open_tiff(path: Path) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError as err:
        raise InputError(f"{path}: file not found") from err
    except IsADirectoryError as err:
        raise InputError(f"{path}: is a folder, expected a TIFF file") from err
    except Exception as err:  # tifffile raises TiffFileError, ValueError, struct.error ...
        raise InputError(f"{path}: not a readable TIFF file ({short_message(err)})") from err


def _first_series(tif: tifffile.TiffFile, path: Path) -> tifffile.TiffPageSeries:
    try:
        series = tif.series
        if callable(series):  # tifffile >= 2026.5: squeezing is chosen when listing series
            series = series(squeeze=True)
        listed = [series[i] for i in range(len(series))]  # the listing is lazy from 2026.5
    except Exception as err:
        raise InputError(f"{path}: corrupt TIFF file ({short_message(err)})") from err
    if not listed:
        raise InputError(f"{path}: TIFF file contains no image")
    if len(listed) > 1:  # several images (positions, a thumbnail): which one is meant?
        raise InputError(several_series(path, listed))
    return listed[0]


def _squeezed_shape_axes(series: tifffile.TiffPageSeries) -> tuple[tuple[int, ...], str]:
    """Shape and axes of a series from :func:`_first_series` without length-1 axes.

    Y and X are always kept. tifffile before 2026.5 holds both forms on every series
    (``get_shape(True)``; ``shape`` is not squeezed for tifffile's own "shaped" files);
    later versions squeeze the whole series when it is listed, as :func:`_first_series`
    asks for.
    """
    if hasattr(series, "get_shape"):
        return tuple(series.get_shape(True)), series.get_axes(True)
    return tuple(series.shape), series.axes


def _check_complete(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> None:
    """Raise when the image data of ``series`` extends past the end of the file."""
    size = tif.filehandle.size
    end = 0
    try:
        offset = series.dataoffset
        if offset is not None:
            end = offset + series.nbytes
        else:
            for page in series.pages:
                if page is None:
                    continue
                for start, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                    if count:
                        end = max(end, start + count)
    except Exception as err:
        raise InputError(f"{path}: corrupt TIFF file ({short_message(err)})") from err
    if end > size:
        raise InputError(
            f"{path}: truncated or corrupt TIFF (image data ends at byte {end}, the file has "
            f"{size} bytes)"
        )


def _read_eager(series: tifffile.TiffPageSeries, path: Path) -> np.ndarray:
    try:
        data = series.asarray()
    except Exception as err:
        raise InputError(f"{path}: cannot decode TIFF data ({short_message(err)})") from err
    return np.asarray(data).reshape(_squeezed_shape_axes(series)[0])


def tiff_physical_sizes(
    tif: tifffile.TiffFile, series: tifffile.TiffPageSeries
) -> dict[str, tuple[float, str | None]]:
    """Physical size per axis letter (``X``, ``Y``, ``Z``, ``T``) from a TIFF's metadata.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.
    series : tifffile.TiffPageSeries
        The image series.

    Returns
    -------
    dict
        Axis letter to ``(size, NGFF unit name or None)``; empty when unknown.
    """
    if tif.is_ome and tif.ome_metadata:
        sizes = read_sizes(tif.ome_metadata)
        if sizes:
            return sizes
    page = series.keyframe
    if tif.is_imagej and tif.imagej_metadata is not None:
        sizes = _imagej_sizes(tif.imagej_metadata, page)
        if sizes:
            return sizes
    return _resolution_sizes(page)


def _imagej_sizes(meta: dict[str, Any], page: Any) -> dict[str, tuple[float, str | None]]:
    unit = normalize_unit(meta.get("unit"))
    if unit not in LENGTH_UNITS or "XResolution" not in page.tags:
        return {}
    xres, yres = page.resolution
    sizes: dict[str, tuple[float, str | None]] = {}
    if xres > 0 and yres > 0:
        sizes["X"] = (1.0 / xres, unit)
        sizes["Y"] = (1.0 / yres, unit)
    spacing = positive_number(meta.get("spacing"))
    if spacing is not None:
        sizes["Z"] = (spacing, unit)
    interval = positive_number(meta.get("finterval"))
    if interval is not None:
        sizes["T"] = (interval, normalize_unit(meta.get("tunit", "s")) or "second")
    return sizes


def _resolution_sizes(page: Any) -> dict[str, tuple[float, str | None]]:
    if "XResolution" not in page.tags or "YResolution" not in page.tags:
        return {}
    xres, yres = page.resolution
    per_unit = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}.get(int(page.resolutionunit))
    if per_unit is None or xres <= 0 or yres <= 0:
        return {}
    if int(page.resolutionunit) == 2 and (xres in _DEFAULT_DPI or yres in _DEFAULT_DPI):
        return {}
    return {"X": _nice_length(per_unit / xres), "Y": _nice_length(per_unit / yres)}


def _nice_length(micrometers: float) -> tuple[float, str]:
    if micrometers < 0.1:
        return micrometers * 1e3, "nanometer"
    return micrometers, "micrometer"


def dask_chunks(shape: Sequence[int], native: Sequence[int]) -> tuple[int, ...]:
    """Dask chunk shape: whole native chunks, about :data:`BLOCK_TARGET` pixels in Y/X.

    Leading axes get one native chunk (usually one plane) per block.

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    native : sequence of int
        Shape of the stored chunks (TIFF tiles/strips, Zarr chunks).

    Returns
    -------
    tuple of int
        Chunk shape for dask.
    """
    chunks = []
    ndim = len(shape)
    for i, (size, unit) in enumerate(zip(shape, native, strict=True)):
        unit = max(1, min(int(unit), int(size)))
        if i >= ndim - 2 and unit < BLOCK_TARGET:
            unit *= max(1, BLOCK_TARGET // unit)
        chunks.append(min(unit, int(size)))
    return tuple(chunks)


class TiffSource:
    """Picklable array-like over one TIFF image series, read region by region.

    Parameters
    ----------
    path : str
        The file.
    shape : tuple of int
        Shape of the image (after dropping singleton axes).
    dtype : numpy.dtype
        Pixel dtype (native byte order).
    index : tuple
        Index applied to the stored series to drop singleton axes (``0`` entries).
    native : tuple of int
        Shape of the stored chunks, in image axes.
    memmap : tuple or None
        ``(offset, stored_shape, stored_dtype)`` when the data is contiguous and
        uncompressed (read through a memory map), else None (read through tifffile's
        Zarr store).
    keep_open : bool
        Keep the file open between reads (single files) or reopen it for every read
        (folder stacks, so that thousands of files do not exhaust file handles).
    """

    def __init__(
        self,
        path: str,
        *,
        shape: tuple[int, ...],
        dtype: np.dtype,
        index: tuple[Any, ...],
        native: tuple[int, ...],
        memmap: tuple[int, tuple[int, ...], str] | None,
        keep_open: bool = True,
    ) -> None:
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.index = index
        self.native = native
        self.memmap = memmap
        self.keep_open = keep_open
        self._reader: Any = None
        self._pid: int | None = None

    @classmethod
    def from_series(
        cls,
        path: Path,
        tif: tifffile.TiffFile,
        series: tifffile.TiffPageSeries,
        layout: Layout,
        *,
        keep_open: bool = True,
    ) -> TiffSource:
        """Describe ``series`` of an open file for later region reads.

        Parameters
        ----------
        path : Path
            The file.
        tif : tifffile.TiffFile
            The open file.
        series : tifffile.TiffPageSeries
            The series to read.
        layout : Layout
            Axes kept by the image.
        keep_open : bool
            See the class parameters.

        Returns
        -------
        TiffSource
            The source.
        """
        stored_shape = _squeezed_shape_axes(series)[0]
        index = layout.index(len(stored_shape))
        shape = tuple(stored_shape[i] for i in layout.keep)
        page = series.keyframe
        if page.is_tiled:
            plane = (page.tilelength, page.tilewidth)
        else:
            plane = (min(page.rowsperstrip, page.imagelength), page.imagewidth)
        native = (1,) * (len(shape) - 2) + plane
        memmap = None
        if series.dataoffset is not None and page.is_memmappable:
            stored_dtype = series.dtype.newbyteorder(tif.byteorder).str
            memmap = (int(series.dataoffset), stored_shape, stored_dtype)
        return cls(
            str(path),
            shape=shape,
            dtype=series.dtype.newbyteorder("="),
            index=index,
            native=native,
            memmap=memmap,
            keep_open=keep_open,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        state["_pid"] = None
        return state

    def __getitem__(self, key: Any) -> np.ndarray:
        stored_key = self._stored_key(key)
        try:
            if self.keep_open:
                region = self._open()[stored_key]
            else:
                region = self._read_once(stored_key)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{self.path}: cannot read TIFF data ({short_message(err)})") from err
        return np.asarray(region, dtype=self.dtype)

    def _stored_key(self, key: Any) -> tuple[Any, ...]:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        parts = iter(key)
        return tuple(next(parts) if entry != 0 else 0 for entry in self.index)

    def _open(self) -> Any:
        # a reader opened before a fork (DataLoader workers) shares its file position
        # with the parent: reopen it in each process
        if self._reader is None or self._pid != os.getpid():
            with _OPEN_LOCK:
                if self._reader is None or self._pid != os.getpid():
                    self._reader = self._make_reader()
                    self._pid = os.getpid()
        return self._reader

    def _make_reader(self) -> Any:
        if self.memmap is not None:
            offset, shape, dtype = self.memmap
            return np.memmap(self.path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
        import zarr

        store = tifffile.imread(self.path, series=0, level=0, squeeze=True, **_AS_ZARR)
        return zarr.open_array(store, mode="r")

    def _read_once(self, stored_key: tuple[Any, ...]) -> np.ndarray:
        reader = self._make_reader()
        try:
            return np.array(reader[stored_key])
        finally:
            if self.memmap is None:
                reader.store.close()

    def to_dask(self) -> Any:
        """Lazy dask array over the whole image, chunked by :func:`dask_chunks`.

        Returns
        -------
        dask.array.Array
            The image.
        """
        import dask.array as da
        from dask.base import tokenize

        stat = Path(self.path).stat()
        name = "tiff-" + tokenize(self.path, stat.st_mtime_ns, stat.st_size, self.index)
        return da.from_array(
            self,
            chunks=dask_chunks(self.shape, self.native),
            name=name,
            asarray=False,
            fancy=False,
            meta=np.empty((0,) * self.ndim, dtype=self.dtype),
        )


class TiffStackSource:
    """Picklable array-like stacking 2D TIFF files along a new first axis.

    Parameters
    ----------
    sources : list of TiffSource
        One 2D source per slice, all of the same shape and dtype.
    """

    def __init__(self, sources: list[TiffSource]) -> None:
        self.sources = sources
        self.shape = (len(sources), *sources[0].shape)
        self.dtype = sources[0].dtype
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        first, region = key[0], key[1:]
        if isinstance(first, int | np.integer):
            return self.sources[int(first)][region]
        planes = [self.sources[i][region] for i in range(len(self.sources))[first]]
        if not planes:
            empty_shape = np.empty(self.shape[1:], dtype=np.uint8)[region].shape
            return np.empty((0, *empty_shape), dtype=self.dtype)
        return np.stack(planes)

    def to_dask(self) -> Any:
        """Lazy dask array of the stack, one slice (or tile group of a slice) per block.

        Returns
        -------
        dask.array.Array
            The stack.
        """
        import dask.array as da
        from dask.base import tokenize

        first = self.sources[0]
        plane = self.shape[1:]
        if int(np.prod(plane)) * self.dtype.itemsize <= EAGER_MAX_BYTES:
            chunks = (1, *plane)
        else:
            chunks = (1, *dask_chunks(plane, first.native))
        stats = [Path(s.path).stat() for s in self.sources]
        name = "tiffstack-" + tokenize(
            [s.path for s in self.sources], [(st.st_mtime_ns, st.st_size) for st in stats]
        )
        return da.from_array(
            self,
            chunks=chunks,
            name=name,
            asarray=False,
            fancy=False,
            meta=np.empty((0, 0, 0), dtype=self.dtype),
        )
