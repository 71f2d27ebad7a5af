"""The OME-XML of TIFF files: pixel sizes, and where the image lies as ``Plane`` positions.

OME-Zarr stores an image's translation in its coordinate transformations; OME-TIFF has
no such field, but every ``Plane`` of the OME-XML has a ``PositionX/Y/Z`` with a unit.
decrappify writes there the world position of the centre of the plane's first pixel
(napari's ``translate``, NGFF's translation), in the unit of the pixel size, and reads it
back the same way. This is what keeps a crappified OME-TIFF over its source: a pixel of
a 4x downsampled image sits over the centre of the 4x4 block it came from, 1.5 source
pixels from the source's first pixel.

Images whose pixel size has no physical unit (a plain TIFF crappified into one with
4x larger pixels) write their sizes and positions in OME's ``pixel`` unit, which reads
back as a pixel size without a unit.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from typing import Any

from decrappify.io._units import LENGTH_UNITS, MICROMETERS_PER_UNIT, normalize_unit

#: OME's unit of lengths counted in pixels (of the reference frame), for images without a
#: physical unit.
PIXEL_UNIT = "pixel"

__all__ = [
    "PIXEL_UNIT",
    "plane_positions",
    "positive_number",
    "read_sizes",
    "read_translation",
    "size_unit_symbol",
]


def plane_positions(
    axes: str,
    shape: Sequence[int],
    pixel_size: Sequence[float] | None,
    units: Sequence[str] | None,
    translate: Sequence[float] | None,
) -> dict[str, list[Any]]:
    """Make the ``Plane`` entry of ``tifffile``'s OME metadata: one position per plane.

    Parameters
    ----------
    axes : str
        ``"YX"``, ``"ZYX"`` or ``"TYX"``.
    shape : sequence of int
        The image shape.
    pixel_size : sequence of float or None
        Pixel size per axis (the Z positions step by it).
    units : sequence of str or None
        NGFF unit per axis; None writes positions in OME's ``pixel`` unit.
    translate : sequence of float or None
        World position of the first pixel's centre per axis.

    Returns
    -------
    dict
        ``PositionX``, ``PositionY`` (and ``PositionZ`` for Z stacks) with their units,
        one entry per plane; empty when there is no translation or a unit OME cannot
        name.
    """
    if translate is None or not any(translate):
        return {}
    symbols = _symbols(axes, units)
    if symbols is None:
        return {}
    n_planes = math.prod(int(s) for s in shape[:-2])
    plane: dict[str, list[Any]] = {}
    for axis, index in (("Y", -2), ("X", -1)):
        plane[f"Position{axis}"] = [float(translate[index])] * n_planes
        plane[f"Position{axis}Unit"] = [symbols[index]] * n_planes
    if axes == "ZYX":
        step = float(pixel_size[0]) if pixel_size is not None else 1.0
        plane["PositionZ"] = [float(translate[0]) + k * step for k in range(n_planes)]
        plane["PositionZUnit"] = [symbols[0]] * n_planes
    return plane


def size_unit_symbol(unit: str | None) -> str | None:
    """OME symbol of a pixel-size unit: ``µm``, ``nm`` ..., or ``pixel`` when it is unknown.

    Parameters
    ----------
    unit : str or None
        NGFF unit name (None: the image has no physical unit).

    Returns
    -------
    str or None
        The symbol, or None for a unit that is not a length.
    """
    if unit is None:
        return PIXEL_UNIT
    name = normalize_unit(unit)
    return LENGTH_UNITS.get(name) if name is not None else None


def _symbols(axes: str, units: Sequence[str] | None) -> list[str] | None:
    symbols = []
    for i, axis in enumerate(axes):
        if axis == "T":
            symbols.append("")  # no position along time
            continue
        symbol = size_unit_symbol(units[i] if units is not None else None)
        if symbol is None:
            return None
        symbols.append(symbol)
    return symbols


def read_translation(
    xml: str | None, axes: str, units: Sequence[str] | None
) -> tuple[float, ...] | None:
    """Read the translation of an OME-XML's first ``Plane``, in the image's units.

    Parameters
    ----------
    xml : str or None
        The file's OME-XML.
    axes : str
        The image's axes.
    units : sequence of str or None
        The image's units (None: no physical unit; only positions in ``pixel`` or
        without a unit are then read).

    Returns
    -------
    tuple of float or None
        One entry per axis (0 for T and for axes without a position), or None when the
        file records no position, or one in a unit that cannot be converted.
    """
    plane = _first_plane(xml)
    if plane is None:
        return None
    shift = []
    for i, axis in enumerate(axes):
        value = plane.get(f"Position{axis}") if axis in "XYZ" else None
        if value is None:
            shift.append(0.0)
            continue
        try:
            number = float(value)
        except ValueError:
            return None
        factor = _factor(plane.get(f"Position{axis}Unit"), units[i] if units else None)
        if factor is None or not math.isfinite(number):
            return None
        shift.append(number * factor)
    if not any(shift):
        return None
    return tuple(shift)


def read_sizes(xml: str) -> dict[str, tuple[float, str | None]]:
    """Physical sizes of the ``Pixels`` element: axis letter to ``(size, NGFF unit or None)``.

    Parameters
    ----------
    xml : str
        The file's OME-XML.

    Returns
    -------
    dict
        ``X``, ``Y``, ``Z`` (``PhysicalSize*``, micrometres when no unit is given, None
        for OME's ``pixel``) and ``T`` (``TimeIncrement``); empty when unreadable.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return {}
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}
    sizes: dict[str, tuple[float, str | None]] = {}
    for axis in "XYZ":
        value = positive_number(pixels.get(f"PhysicalSize{axis}"))
        if value is not None:
            sizes[axis] = (value, normalize_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
    value = positive_number(pixels.get("TimeIncrement"))
    if value is not None:
        sizes["T"] = (value, normalize_unit(pixels.get("TimeIncrementUnit", "s")))
    return sizes


def positive_number(value: Any) -> float | None:
    """Read a metadata value as a finite positive number, or None (missing, text, 0, NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _first_plane(xml: str | None) -> dict[str, str] | None:
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    planes = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Plane"]
    for plane in planes:
        if all(plane.get(k, "0") == "0" for k in ("TheZ", "TheT", "TheC")):
            return dict(plane.attrib)
    return dict(planes[0].attrib) if planes else None


def _factor(position_unit: str | None, image_unit: str | None) -> float | None:
    """Factor from a position's unit to the image's unit (None: not convertible)."""
    if position_unit is None or position_unit == PIXEL_UNIT:
        return 1.0 if image_unit is None or position_unit is None else None
    if image_unit is None:
        return None
    source, target = normalize_unit(position_unit), normalize_unit(image_unit)
    if source not in MICROMETERS_PER_UNIT or target not in MICROMETERS_PER_UNIT:
        return None
    return MICROMETERS_PER_UNIT[source] / MICROMETERS_PER_UNIT[target]
