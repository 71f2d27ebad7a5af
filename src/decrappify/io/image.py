"""The :class:`Image` record: pixels plus the axes and pixel size that travel with them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from decrappify.errors import InputError

#: Axes decrappify understands. Y and X are always the last two.
VALID_AXES = ("YX", "ZYX", "TYX")
#: dtypes kept end to end.
SUPPORTED_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))


@dataclass(frozen=True)
class Image:
    """A single-channel 2D or 3D image with its physical metadata.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        Pixels, shape matching ``axes``. Large images are lazy dask arrays.
    axes : str
        ``"YX"``, ``"ZYX"`` or ``"TYX"``.
    pixel_size : tuple of float or None
        Physical size of one pixel along each axis (same length as ``axes``),
        or None when unknown.
    units : tuple of str or None
        Unit of each entry of ``pixel_size`` (``"nanometer"``, ``"micrometer"``,
        ``"second"`` ...), or None when unknown.
    source : str or None
        Where the pixels came from (a path, a layer name), for messages and reports.
    translate : tuple of float or None
        World position of the centre of the first pixel along each axis, in the units
        of ``pixel_size`` (napari's ``translate``, NGFF's translation), or None for 0.
    """

    data: Any
    axes: str = "YX"
    pixel_size: tuple[float, ...] | None = None
    units: tuple[str, ...] | None = None
    source: str | None = None
    translate: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        name = self.source or "image"
        if self.axes not in VALID_AXES:
            raise InputError(f"{name}: axes must be one of {VALID_AXES}, got {self.axes!r}")
        if self.data.ndim != len(self.axes):
            raise InputError(
                f"{name}: axes {self.axes!r} need a {len(self.axes)}D array, "
                f"got shape {tuple(self.data.shape)}"
            )
        for label, value in (
            ("pixel_size", self.pixel_size),
            ("units", self.units),
            ("translate", self.translate),
        ):
            if value is not None and len(value) != len(self.axes):
                raise InputError(
                    f"{name}: {label} needs one entry per axis {self.axes!r}, got {value!r}"
                )
        if self.pixel_size is not None and any(not (p > 0) for p in self.pixel_size):
            raise InputError(f"{name}: pixel_size must be positive, got {self.pixel_size!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the pixel array."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """Pixel dtype (``numpy.dtype``)."""
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.axes)

    @property
    def is_lazy(self) -> bool:
        """Whether the pixels are a lazy dask array."""
        return not isinstance(self.data, np.ndarray)

    @property
    def name(self) -> str:
        """A short name for messages: the file stem or the source string."""
        if not self.source:
            return "image"
        from pathlib import Path

        path = Path(self.source)
        return path.name.removesuffix(".ome.zarr").removesuffix(".zarr").split(".")[0] or "image"

    @property
    def scale(self) -> tuple[float, ...]:
        """Pixel size per axis, with 1.0 where unknown (napari's ``scale``)."""
        return tuple(self.pixel_size) if self.pixel_size is not None else (1.0,) * self.ndim

    def with_data(self, data: Any, *, yx_factor: float = 1.0, **changes: Any) -> Image:
        """Return a copy with new pixels; the Y/X pixel size is multiplied by ``yx_factor``.

        The translation moves by ``(yx_factor - 1) / 2`` old pixels in Y and X, so that
        the new pixel centres overlay the old ones: a pixel of a 4x downsampled image
        sits over the centre of the 4x4 block it came from, and a 4x super-resolved
        image over its input. An unknown pixel size becomes ``yx_factor`` (in input
        pixels) so the derived image still lines up with its source.

        Parameters
        ----------
        data : array
            New pixels with the same axes.
        yx_factor : float
            Factor applied to the pixel size of the last two axes (4 for a 4x
            downsampling, 1/4 for a 4x super-resolution).
        **changes
            Other fields to replace (``source``, ``units`` ...).

        Returns
        -------
        Image
            The new record.
        """
        if yx_factor == 1.0:
            return replace(self, data=data, **changes)
        old = self.scale
        pixel_size = (*old[:-2], old[-2] * yx_factor, old[-1] * yx_factor)
        shift = self.translate or (0.0,) * self.ndim
        translate = (
            *shift[:-2],
            shift[-2] + (yx_factor - 1) / 2 * old[-2],
            shift[-1] + (yx_factor - 1) / 2 * old[-1],
        )
        return replace(self, data=data, pixel_size=pixel_size, translate=translate, **changes)
