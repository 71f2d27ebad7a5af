"""Zarr and OME-Zarr reading: Zarr v2/v3 arrays and NGFF 0.4/0.5 images.

Reading
-------
:func:`read_zarr` opens a plain Zarr array (axes from ``dimension_names`` or xarray's
``_ARRAY_DIMENSIONS`` when present) or an OME-Zarr image: the first resolution level of
the first multiscale, the axes and their units from ``axes``, the pixel size from the
``scale`` coordinate transformations (dataset and multiscale level multiplied).
bioformats2raw layouts open their first image. An array path inside an OME-Zarr image
(``image.zarr/1``) reads that level with its own pixel size.

Writing is :mod:`decrappify.io.omezarr_write`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, short_message
from decrappify.io._units import TIME_UNITS, normalize_unit
from decrappify.io.chunks import ZarrChunks, install_checked_codecs, store_token
from decrappify.io.image import Image
from decrappify.io.paths import is_zarr_path
from decrappify.io.tiff import dask_chunks
from decrappify.io.validate import coerce_dtype, physical_pixel_size, resolve_layout

#: NGFF version written.
NGFF_VERSION = "0.5"
#: Default chunk edge along Y and X of written arrays.
DEFAULT_CHUNK = 1024
#: Pyramid levels are added while the largest of Y, X is above this size.
PYRAMID_MIN_SIZE = 256
#: Folder inside a partial store that holds the resume state (removed before commit).
RESUME_DIR = ".decrappify-resume"
NGFF_AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class Multiscale:
    """The first multiscale of an OME-Zarr image, normalised across NGFF versions.

    Parameters
    ----------
    version : str
        NGFF version (``"0.4"``, ``"0.5"`` ...).
    name : str or None
        Image name.
    axes : tuple of str
        Axis names (``"t"``, ``"c"``, ``"z"``, ``"y"``, ``"x"`` ...).
    types : tuple of str or None
        Axis types (``"time"``, ``"channel"``, ``"space"``), None where not given.
    units : tuple of str or None
        NGFF unit per axis, None where not given.
    paths : tuple of str
        Array path of each level, highest resolution first.
    scales : tuple of tuple of float
        Scale of each level (dataset and multiscale transformations multiplied).
    translations : tuple of tuple of float
        Translation of each level (zeros where not given).
    group : str
        Path of the image group inside the store (``""`` or ``"0"`` for bioformats2raw).
    """

    version: str
    name: str | None
    axes: tuple[str, ...]
    types: tuple[str | None, ...]
    units: tuple[str | None, ...]
    paths: tuple[str, ...]
    scales: tuple[tuple[float, ...], ...]
    translations: tuple[tuple[float, ...], ...]
    group: str = ""

    @property
    def labels(self) -> str:
        """One upper-case letter per axis (``Q`` for an axis of unknown meaning)."""
        letters = []
        for name, kind in zip(self.axes, self.types, strict=True):
            letter = NGFF_AXIS_LETTERS.get(name.lower())
            if letter is None:
                letter = {"time": "T", "channel": "C"}.get(kind or "", "Q")
            letters.append(letter)
        return "".join(letters)


def read_ome_zarr_metadata(path: str | Path) -> Multiscale:
    """Read and normalise the multiscales metadata of an OME-Zarr image (NGFF 0.1-0.5).

    Parameters
    ----------
    path : str or Path
        The image (or bioformats2raw) group.

    Returns
    -------
    Multiscale
        The first multiscale.

    Raises
    ------
    InputError
        When the path is not an OME-Zarr image or its metadata is malformed.
    """
    import zarr

    install_checked_codecs()
    path = Path(path)
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as err:
        raise InputError(f"{path}: not an OME-Zarr image ({short_message(err)})") from err
    return _multiscale_of_group(group, path)


def _ome_attrs(attrs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    if isinstance(attrs.get("ome"), dict):
        ome = attrs["ome"]
        return ome, ome.get("version")
    return attrs, None


def _multiscale_of_group(group: Any, path: Path) -> Multiscale:
    attrs, version = _ome_attrs(dict(group.attrs))
    prefix = ""
    if "multiscales" not in attrs and "bioformats2raw.layout" in attrs and "0" in group:
        group, prefix = group["0"], "0"
        attrs, version = _ome_attrs(dict(group.attrs))
    if "plate" in attrs or "well" in attrs:
        raise InputError(
            f"{path}: OME-Zarr plates and wells are not supported; open one image inside it"
        )
    multiscales = attrs.get("multiscales")
    if not multiscales:
        arrays = _array_names(group)
        hint = f"; open one of its arrays ({', '.join(arrays[:5])})" if arrays else ""
        raise InputError(f"{path}: Zarr group without OME-NGFF multiscales metadata{hint}")
    try:
        return _parse_multiscale(multiscales, version, group, prefix)
    except _MetadataError as err:
        raise InputError(f"{path}: invalid OME-Zarr metadata: {err}") from None


class _MetadataError(ValueError):
    """What is wrong with the multiscales metadata, naming the key (``datasets[0].path``)."""


def _need(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _MetadataError(f"{where} must be {what} (got {_shown(value)})")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | list | dict) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_multiscale(multiscales: Any, version: str | None, group: Any, prefix: str) -> Multiscale:
    _need(multiscales, list, "multiscales", "a list of objects")
    ms = _need(multiscales[0], dict, "multiscales[0]", "an object")
    where = "multiscales[0]"
    version = str(version or ms.get("version") or "0.4")
    if "datasets" not in ms:
        raise _MetadataError(f"{where} has no datasets")
    datasets = _need(ms["datasets"], list, f"{where}.datasets", "a list of objects")
    if not datasets:
        raise _MetadataError(f"{where}.datasets is empty")
    paths = []
    for i, dataset in enumerate(datasets):
        key = f"{where}.datasets[{i}]"
        _need(dataset, dict, key, "an object with a path")
        if "path" not in dataset:
            raise _MetadataError(f"{key} has no path")
        paths.append(str(_need(dataset["path"], str | int, f"{key}.path", "a string")))
    ndim = len(_dataset_array(group, paths[0], where).shape)
    for dataset_path in paths[1:]:
        _dataset_array(group, dataset_path, where)
    raw_axes = ms.get("axes") or list("tczyx")[-ndim:]
    _need(raw_axes, list, f"{where}.axes", "a list")
    names, types, units = [], [], []
    for i, axis in enumerate(raw_axes):
        if isinstance(axis, str):
            names.append(axis)
            types.append(None)
            units.append(None)
            continue
        _need(axis, dict, f"{where}.axes[{i}]", "a name or an object with a name")
        if "name" not in axis:
            raise _MetadataError(f"{where}.axes[{i}] has no name")
        names.append(str(axis["name"]))
        types.append(axis.get("type"))
        units.append(normalize_unit(axis.get("unit")))
    if len(names) != ndim:
        raise _MetadataError(
            f"{where}.axes names {len(names)} axes, but the array {paths[0]!r} has {ndim}"
        )
    global_scale, global_shift = _transforms(
        ms.get("coordinateTransformations"), ndim, f"{where}.coordinateTransformations"
    )
    scales, shifts = [], []
    for i, dataset in enumerate(datasets):
        scale, shift = _transforms(
            dataset.get("coordinateTransformations"),
            ndim,
            f"{where}.datasets[{i}].coordinateTransformations",
        )
        scales.append(tuple(a * b for a, b in zip(scale, global_scale, strict=True)))
        shifts.append(
            tuple(s * g + t for s, g, t in zip(shift, global_scale, global_shift, strict=True))
        )
    return Multiscale(
        version=version,
        name=ms.get("name"),
        axes=tuple(names),
        types=tuple(types),
        units=tuple(units),
        paths=tuple(paths),
        scales=tuple(scales),
        translations=tuple(shifts),
        group=prefix,
    )


def _dataset_array(group: Any, path: str, where: str) -> Any:
    """Open the array a dataset path names, or say why it cannot be opened."""
    import zarr

    try:
        node = group[path]
    except KeyError:
        found = ", ".join(_array_names(group)[:5]) or "none"
        raise _MetadataError(
            f"{where}.datasets names the array {path!r}, which is not in the store "
            f"(arrays found: {found})"
        ) from None
    except Exception as err:  # zarr parses the array's metadata: JSON, unicode, value errors
        raise _MetadataError(
            f"the metadata of the array {path!r} is damaged ({short_message(err)})"
        ) from None
    if not isinstance(node, zarr.Array):
        raise _MetadataError(f"{where}.datasets names {path!r}, which is a group, not an array")
    return node


def _array_names(group: Any) -> list[str]:
    try:
        return sorted(group.array_keys())
    except Exception:  # an array with damaged metadata among them
        return []


def _transforms(items: Any, ndim: int, where: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    scale = [1.0] * ndim
    shift = [0.0] * ndim
    for i, item in enumerate(_need(items or [], list, where, "a list of objects")):
        _need(item, dict, f"{where}[{i}]", "an object")
        kind = item.get("type")
        if kind in ("scale", "translation") and kind in item:
            values = _need(item[kind], list, f"{where}[{i}].{kind}", f"a list of {ndim} numbers")
            if len(values) != ndim or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise _MetadataError(
                    f"{where}[{i}].{kind} must be a list of {ndim} numbers (got {_shown(values)})"
                )
            if kind == "scale":
                scale = [a * float(b) for a, b in zip(scale, values, strict=True)]
                shift = [a * float(b) for a, b in zip(shift, values, strict=True)]
            else:
                shift = [a + float(b) for a, b in zip(shift, values, strict=True)]
    return tuple(scale), tuple(shift)


# --------------------------------------------------------------------------- reading


def read_zarr(path: str | Path, *, axes: str | None = None) -> Image:
    """Read a Zarr array or the first level of an OME-Zarr image, lazily.

    Parameters
    ----------
    path : str or Path
        A Zarr v2/v3 array, an OME-Zarr image group, or an array inside one.
    axes : str or None
        ``"YX"``, ``"ZYX"`` or ``"TYX"`` to override the metadata.

    Returns
    -------
    Image
        A lazy image (dask blocks of whole Zarr chunks, about 1024 px in Y/X).

    Raises
    ------
    InputError
        For stores that are not images (see :func:`read_ome_zarr_metadata`),
        multi-channel, 4D+ or empty arrays.
    """
    import zarr

    install_checked_codecs()
    path = Path(path)
    try:
        node = zarr.open(path, mode="r")
    except Exception as err:
        raise InputError(f"{path}: not a readable Zarr store ({short_message(err)})") from err
    if isinstance(node, zarr.Group):
        meta = _multiscale_of_group(node, path)
        array_path = f"{meta.group}/{meta.paths[0]}".lstrip("/")
        return _image_from_multiscale(node[array_path], meta, 0, path, axes)
    parent = _parent_multiscale(path)
    if parent is not None:
        meta, level = parent
        return _image_from_multiscale(node, meta, level, path, axes)
    labels = _array_labels(node)
    layout = resolve_layout(node.shape, labels, str(path), axes, squeeze=labels is not None)
    data = _dask_from_zarr(node, path)[layout.index(node.ndim)]
    return Image(coerce_dtype(data, str(path)), axes=layout.axes, source=str(path))


def _image_from_multiscale(
    array: Any, meta: Multiscale, level: int, path: Path, axes: str | None
) -> Image:
    layout = resolve_layout(array.shape, meta.labels, str(path), axes)
    scale = meta.scales[level]
    sizes: dict[str, tuple[float, str | None]] = {}
    if any(u is not None for u in meta.units) or any(s != 1.0 for s in scale):
        for axis, i in zip(layout.axes, layout.keep, strict=True):
            stored, unit = meta.labels[i], meta.units[i]
            is_time = unit in TIME_UNITS
            if scale[i] <= 0 or (stored != axis and not (stored == "Q" and axis == "Z")):
                continue  # the caller relabelled this axis: its stored spacing means nothing
            if (axis == "T") != is_time and unit is not None:
                unit = None
            sizes[axis] = (scale[i], unit)
    pixel_size, units = physical_pixel_size(layout.axes, sizes)
    shift = tuple(meta.translations[level][i] for i in layout.keep)
    data = _dask_from_zarr(array, path)[layout.index(array.ndim)]
    return Image(
        coerce_dtype(data, str(path)),
        axes=layout.axes,
        pixel_size=pixel_size,
        units=units,
        source=str(path),
        translate=shift if any(shift) else None,
    )


def _parent_multiscale(path: Path) -> tuple[Multiscale, int] | None:
    parent = path.parent
    if not is_zarr_path(parent):
        return None
    try:
        meta = read_ome_zarr_metadata(parent)
    except InputError:
        return None
    relative = path.name if not meta.group else None
    if relative in meta.paths:
        return meta, meta.paths.index(relative)
    return None


def _array_labels(array: Any) -> str | None:
    names = getattr(array.metadata, "dimension_names", None)
    if not names or any(n is None for n in names):
        names = array.attrs.get("_ARRAY_DIMENSIONS")
    if not names or len(names) != array.ndim:
        return None
    letters = [NGFF_AXIS_LETTERS.get(str(n).lower()) for n in names]
    if any(letter is None for letter in letters):
        return None
    return "".join(letters)  # type: ignore[arg-type]


def _dask_from_zarr(array: Any, store: Path) -> Any:
    """Lazy dask array over ``array`` of the store opened at ``store``; errors name the chunk."""
    source = ZarrChunks(array, str(store))
    return source.to_dask(dask_chunks(array.shape, array.chunks), store_token(store, array))


def downsample_yx(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Halve the last two axes by 2x2 means; odd edges average the pixels that exist.

    Parameters
    ----------
    block : numpy.ndarray
        Pixels, Y and X last.
    dtype : numpy.dtype
        Output dtype; integer outputs are the exact mean rounded half to even.

    Returns
    -------
    numpy.ndarray
        The downsampled block, shape ``ceil(Y/2), ceil(X/2)`` in Y/X.
    """
    dtype = np.dtype(dtype)
    y, x = block.shape[-2:]
    if y % 2 or x % 2:
        pad = [(0, 0)] * (block.ndim - 2) + [(0, y % 2), (0, x % 2)]
        block = np.pad(block, pad, mode="edge")
    if dtype.kind == "f":
        work = block.astype(np.float64)
        total = work[..., 0::2, 0::2] + work[..., 1::2, 0::2]
        total += work[..., 0::2, 1::2]
        total += work[..., 1::2, 1::2]
        return (total * 0.25).astype(dtype)
    wide = np.int32 if dtype.itemsize <= 2 else np.int64
    total = block[..., 0::2, 0::2].astype(wide)
    total += block[..., 1::2, 0::2]
    total += block[..., 0::2, 1::2]
    total += block[..., 1::2, 1::2]
    quotient = total >> 2  # floor division by 4
    remainder = total & 3
    quotient += (remainder > 2) | ((remainder == 2) & (quotient & 1 == 1))
    return quotient.astype(dtype)
