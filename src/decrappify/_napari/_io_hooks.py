"""npe2 reader, writer and sample-data hooks.

* The reader opens TIFF/OME-TIFF files, Zarr/OME-Zarr stores and folders of 2D TIFF
  files with :func:`decrappify.io.read_image`: big files stay lazy (dask), the pixel size
  becomes the layer ``scale``, with ``translate`` and ``units``; OME-Zarr pyramids open
  as multiscale layers (one lazy array per level). It never raises: paths it does not
  handle give None, and a path that looked readable but fails is logged, reported as a
  warning notification and gives None (napari then tries its other readers).
* The writer saves an image layer as OME-Zarr (NGFF 0.5) with its scale, translate and
  units.
* The sample data are synthetic EM and fluorescence images (no download).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decrappify import api
from decrappify._napari._layers import META_KEY, PIXEL_UNIT, image_layer_kwargs
from decrappify.errors import InputError
from decrappify.io import Image

logger = logging.getLogger("decrappify")

LayerData = tuple[Any, dict[str, Any], str]
#: File suffixes the reader claims (directories are checked for Zarr or TIFF content).
TIFF_SUFFIXES = (".tif", ".tiff")
#: Shape of the 2D sample images.
SAMPLE_SHAPE = (1024, 1024)
#: Shape of the lazy 3D fluorescence sample.
SAMPLE_STACK_SHAPE = (32, 512, 512)


# ----------------------------------------------------------------------------- reader


def _as_paths(path: Any) -> list[Path] | None:
    items = [path] if isinstance(path, str | Path) else list(path or [])
    if not items or not all(isinstance(p, str | Path) for p in items):
        return None
    if any("://" in str(p) for p in items):
        return None
    return [Path(p) for p in items]


def _readable(path: Path) -> bool:
    """Whether decrappify should try ``path``: a TIFF file, a Zarr store, a TIFF folder."""
    from decrappify.io.paths import is_zarr_path

    try:
        if path.is_dir():
            if is_zarr_path(path):
                return True
            return any(
                child.suffix.lower() in TIFF_SUFFIXES and not child.name.startswith(".")
                for child in path.iterdir()
                if child.is_file()
            )
        return path.is_file() and path.suffix.lower() in TIFF_SUFFIXES
    except OSError:
        return False


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData] | None] | None:
    """Return a reader for TIFF / Zarr / OME-Zarr paths, or None for anything else.

    Parameters
    ----------
    path : str or list of str
        What napari asks to open.

    Returns
    -------
    callable or None
        :func:`read_layers`, or None when decrappify cannot read the path (other
        suffixes, missing files, URLs, folders without Zarr metadata or TIFF files).
    """
    paths = _as_paths(path)
    if not paths or not all(_readable(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | Sequence[str]) -> list[LayerData] | None:
    """Read paths into image layers: lazy when big, with scale, translate and units.

    Parameters
    ----------
    path : str or list of str
        Paths accepted by :func:`get_reader`.

    Returns
    -------
    list of tuple or None
        One ``(data, kwargs, "image")`` per readable path; None when none could be read
        (each failure is logged and shown as a warning notification).
    """
    paths = _as_paths(path) or []
    layers = []
    for item in paths:
        try:
            layers.append(read_layer(item))
        except Exception as err:  # a reader never raises
            _report(item, err)
    return layers or None


def read_layer(path: str | Path) -> LayerData:
    """Read one path into an image layer tuple.

    Parameters
    ----------
    path : str or Path
        A TIFF file, a Zarr / OME-Zarr store or a folder of 2D TIFF files.

    Returns
    -------
    tuple
        ``(data, kwargs, "image")``; ``data`` is a list of arrays (highest resolution
        first) for an OME-Zarr pyramid, with ``multiscale=True``.

    Raises
    ------
    InputError
        What :func:`decrappify.io.read_image` raises.
    """
    from decrappify.io import read_image

    path = Path(path)
    image = read_image(path)
    levels = _pyramid(path, image)
    data = levels if levels is not None else image.data
    kwargs = image_layer_kwargs(image, name=image.name)
    if levels is not None:
        kwargs["multiscale"] = True
    limits = contrast_limits(levels[-1] if levels is not None else image.data)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    return data, kwargs, "image"


def _pyramid(path: Path, image: Image) -> list[Any] | None:
    """The levels of an OME-Zarr pyramid as lazy arrays, or None (not a usable pyramid)."""
    from decrappify.io import read_image, read_ome_zarr_metadata
    from decrappify.io.paths import is_zarr_path

    if not is_zarr_path(path):
        return None
    try:
        meta = read_ome_zarr_metadata(path)
    except InputError:
        return None
    if len(meta.paths) < 2:
        return None
    root = path / meta.group if meta.group else path
    levels = [image.data]
    for level_path in meta.paths[1:]:
        try:
            level = read_image(root / level_path, axes=image.axes).data
        except InputError as err:
            logger.info("%s: opening level 0 only (level %s: %s)", path, level_path, err)
            return None
        previous = levels[-1]
        if (
            level.ndim != previous.ndim
            or level.dtype != previous.dtype
            or any(a > b for a, b in zip(level.shape, previous.shape, strict=True))
        ):
            logger.info("%s: opening level 0 only (level %s is not smaller)", path, level_path)
            return None
        levels.append(level)
    return levels


def contrast_limits(data: Any) -> tuple[float, float] | None:
    """Display range of an image: its 0.1 and 99.9 percentiles, from bounded samples.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The image; for a lazy 3D stack only its middle plane is sampled.

    Returns
    -------
    (float, float) or None
        The percentiles (:func:`decrappify.api.intensity_range`), or None when
        they cannot be computed (napari then chooses).
    """
    sample = data
    if not isinstance(data, np.ndarray) and data.ndim == 3:
        sample = data[data.shape[0] // 2]
    try:
        return api.intensity_range(sample)
    except Exception as err:  # display only: never fail a read for it
        logger.debug("contrast limits: %s", err)
        return None


def _report(path: Path, err: BaseException) -> None:
    from napari.utils.notifications import show_warning

    message = f"decrappify could not read {path}: {err}"
    if isinstance(err, InputError):
        logger.warning(message)
    else:
        logger.warning(message, exc_info=(type(err), err, err.__traceback__))
    show_warning(message)


# ----------------------------------------------------------------------------- writer


def write_ome_zarr(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write an image layer to OME-Zarr (NGFF 0.5) with its scale, translate and units.

    Parameters
    ----------
    path : str
        Target path (``.zarr`` added when missing). An existing store is replaced
        (napari's save dialog has asked).
    data : array or list of arrays
        The layer data (numpy or dask, written block by block; multiscale layers write
        their full-resolution level and a new pyramid is built).
    meta : dict
        Layer attributes (``scale``, ``translate``, ``units``, ``name``, ``rgb``,
        ``metadata``).

    Returns
    -------
    list of str
        The written path.

    Raises
    ------
    InputError
        For RGB layers, layers that are not 2D or 3D, or unsupported pixel types.
    OutputError
        When the store cannot be written.
    """
    from decrappify.io import coerce_dtype, write_image

    name = str(meta.get("name") or Path(path).stem)
    if meta.get("rgb"):
        raise InputError(f"{name}: RGB layers cannot be saved as single-channel OME-Zarr")
    if isinstance(data, list | tuple):  # multiscale: the full-resolution level
        data = data[0]
    if data.ndim not in (2, 3):
        raise InputError(f"{name}: expected a 2D or 3D image, got shape {tuple(data.shape)}")
    info = (meta.get("metadata") or {}).get(META_KEY) or {}
    axes = info.get("axes")
    if not isinstance(axes, str) or len(axes) != data.ndim:
        axes = "YX" if data.ndim == 2 else "ZYX"
    scale = tuple(float(s) for s in (meta.get("scale") if meta.get("scale") is not None else ()))
    units = tuple(str(u) for u in (meta.get("units") or ()))
    known_units = units if len(units) == data.ndim and PIXEL_UNIT not in units else None
    pixel_size = scale if len(scale) == data.ndim else None
    if pixel_size is not None and known_units is None and all(s == 1.0 for s in pixel_size):
        pixel_size = None
    translate = tuple(
        float(t) for t in (meta.get("translate") if meta.get("translate") is not None else ())
    )
    image = Image(
        coerce_dtype(data, name),
        axes=axes,
        pixel_size=pixel_size,
        units=known_units if pixel_size is not None else None,
        translate=translate if len(translate) == data.ndim and any(translate) else None,
    )
    target = Path(path)
    if not target.name.lower().endswith(".zarr"):
        target = target.with_name(target.name + ".zarr")
    written = write_image(image, target, format="zarr", overwrite=True)
    return [str(written)]


# ----------------------------------------------------------------------------- samples


def _sample(kind: str, shape: tuple[int, ...], name: str, chunks: Any = None) -> list[LayerData]:
    image = api.sample_image(kind, shape, seed=0, chunks=chunks)  # type: ignore[arg-type]
    kwargs = image_layer_kwargs(image, name=name)
    limits = contrast_limits(image.data)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    return [(image.data, kwargs, "image")]


def sample_em() -> list[LayerData]:
    """Synthetic ssTEM-like image of neural tissue, 1024 x 1024 uint8, 4 nm pixels.

    Returns
    -------
    list of tuple
        One image layer.
    """
    return _sample("em", SAMPLE_SHAPE, "synthetic em")


def sample_fluorescence() -> list[LayerData]:
    """Synthetic widefield fluorescence image, 1024 x 1024 uint16, 65 nm pixels.

    Returns
    -------
    list of tuple
        One image layer.
    """
    return _sample("fluorescence", SAMPLE_SHAPE, "synthetic fluorescence")


def sample_fluorescence_stack() -> list[LayerData]:
    """Lazy synthetic fluorescence focal series, 32 x 512 x 512 uint16 (0.2 um Z steps).

    Planes are rendered when napari shows them.

    Returns
    -------
    list of tuple
        One lazy image layer.
    """
    return _sample(
        "fluorescence", SAMPLE_STACK_SHAPE, "synthetic fluorescence stack", chunks=(1, 512, 512)
    )
