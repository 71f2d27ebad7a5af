"""Tile geometry and blending weights for seamless tiled super-resolution (pure numpy).

A low-resolution (LR) plane of shape ``(H, W)`` is cut into overlapping windows of
``tile`` LR pixels that a network turns into ``tile × scale`` high-resolution (HR)
pixels. Consecutive windows overlap by ``overlap`` LR pixels (stride ``tile - overlap``)
and each overlap is split in three parts::

    window A     ├────────────────────────────────────┤
    window B                         ├────────────────────────────────────┤
    overlap                          ├─margin─┼──band──┼─margin─┤
    weight of A                          1     1 ↘ ↘ ↘ 0     0
    weight of B                          0     0 ↗ ↗ ↗ 1     1

* the outer ``margin`` on each side is *context only*: the tile whose edge is there
  gives it weight 0, so pixels predicted from a truncated neighbourhood are never used;
* across the central ``band`` the two tiles cross-fade with Hann ramps
  (``sin²`` / ``cos²``, evaluated at HR pixel centres), so the weights of all tiles
  sum to 1 (to rounding) at every output pixel and no seam can appear.

``blend`` is the fraction of the overlap used for the band (default one half:
``margin = overlap // 4``). If a network's output depends only on LR pixels within
``radius`` (its receptive-field radius), tiled prediction equals whole-image prediction
whenever ``margin >= radius``; :func:`default_overlap` gives the smallest such overlap.

At the borders of the image, windows extend past the image and are filled by
reflection (``numpy.pad(mode="reflect")``, :mod:`decrappify.predict.windows`), so every
window has the full tile size; there a window reads at least ``context`` pixels past the
border (the receptive field, where the capped margin is less: the cores then reach past
the border, and what they compute there is dropped), and weights are 1 (no ramp). Tiles
are shrunk to the smallest valid size that keeps their number (an image smaller than a
tile is one small tile, not a large padded one).

All geometry here is in LR pixels, ``[start, stop)`` per axis, in the coordinates of the
array the windows are read from; HR quantities are those times ``scale``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.predict.windows import border_extension

Span = tuple[int, int]
"""``(start, stop)`` of one axis, stop excluded."""

Bounds = tuple[Span, Span]
"""``((y0, y1), (x0, x1))``: a rectangle, stops excluded."""

DEFAULT_MULTIPLE = 32
"""The networks need ``tile × scale`` to be a multiple of this."""


@dataclass(frozen=True)
class Tile:
    """One network input window and the output pixels it contributes to.

    Parameters
    ----------
    index : tuple of int
        ``(row, column)`` of the tile in the grid.
    window : Bounds
        Input window in LR pixels, in the coordinates of the source array. It may
        extend past the array; the missing pixels are filled by reflection
        (:func:`~decrappify.predict.windows.extract_window`). All tiles of a plan have
        the same window size.
    core : Bounds
        LR pixels this tile contributes to (weight > 0), inside the planned region (which
        a ``context`` extends past the array's borders) and at least ``margin`` pixels
        from every window edge.
    ramps : Bounds
        Width in LR pixels of the cross-fade at the ``(start, stop)`` side of the core,
        per axis; 0 where the core meets the region border (weight 1 up to the border)
        or where tiles abut without a band.
    scale : int
        Super-resolution factor: HR pixels per LR pixel along each axis.
    """

    index: tuple[int, int]
    window: Bounds
    core: Bounds
    ramps: Bounds
    scale: int

    @property
    def shape(self) -> tuple[int, int]:
        """LR size ``(h, w)`` of the input window."""
        (y0, y1), (x0, x1) = self.window
        return (y1 - y0, x1 - x0)

    @property
    def output_shape(self) -> tuple[int, int]:
        """HR size of the core, the part of the network output that is kept."""
        (y0, y1), (x0, x1) = self.core
        return ((y1 - y0) * self.scale, (x1 - x0) * self.scale)

    def crop_slices(self) -> tuple[slice, slice]:
        """HR slices that cut the core out of the network output for this window.

        Returns
        -------
        tuple of slice
            Index the ``(h·scale, w·scale)`` network output with these.
        """
        s = self.scale
        return tuple(  # type: ignore[return-value]
            slice((c0 - w0) * s, (c1 - w0) * s)
            for (w0, _), (c0, c1) in zip(self.window, self.core, strict=True)
        )

    def output_slices(self, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
        """HR slices of the core in an output whose LR origin is ``origin``.

        Parameters
        ----------
        origin : tuple of int
            LR coordinates of the output's first pixel (the start of the planned
            region; ``(0, 0)`` for a whole plane).

        Returns
        -------
        tuple of slice
            Index the HR output array with these.
        """
        s = self.scale
        return tuple(  # type: ignore[return-value]
            slice((c0 - o) * s, (c1 - o) * s) for (c0, c1), o in zip(self.core, origin, strict=True)
        )

    def weights(self, dtype: Any = np.float32) -> np.ndarray:
        """Blending weights of the core, at HR resolution.

        Parameters
        ----------
        dtype : numpy dtype
            Data type of the result.

        Returns
        -------
        numpy.ndarray
            ``output_shape`` array, the outer product of the two axes' ramp profiles:
            1 inside, Hann ramps over the bands. Summed over the tiles of a plan, the
            weights are 1 at every output pixel.
        """
        profiles = [
            ramp_profile((c1 - c0) * self.scale, lo * self.scale, hi * self.scale, dtype)
            for (c0, c1), (lo, hi) in zip(self.core, self.ramps, strict=True)
        ]
        return np.multiply.outer(profiles[0], profiles[1])


def tile_quantum(scale: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """Smallest LR step of valid tile sizes: ``tile × scale`` must be a multiple of ``multiple``.

    Parameters
    ----------
    scale : int
        Super-resolution factor.
    multiple : int
        What the network needs its HR sides to be a multiple of.

    Returns
    -------
    int
        ``multiple / gcd(multiple, scale)``; valid tiles are its multiples.
    """
    return multiple // math.gcd(multiple, scale)


def validate_tile(
    tile: int | Sequence[int], scale: int, multiple: int = DEFAULT_MULTIPLE
) -> tuple[int, int]:
    """Check a tile size against the network's size rule.

    Parameters
    ----------
    tile : int or pair of int
        Tile side in LR pixels, or ``(height, width)``.
    scale : int
        Super-resolution factor.
    multiple : int
        The network needs ``tile × scale`` to be a multiple of this.

    Returns
    -------
    tuple of int
        ``(height, width)``.

    Raises
    ------
    InputError
        If a side is not positive or ``side × scale`` is not a multiple of ``multiple``.
    """
    check_positive_int(scale, "scale")
    check_positive_int(multiple, "multiple")
    pair = int_pair(tile, "tile")
    for side in pair:
        if side < 1:
            raise InputError(f"tile must be positive (got {side})")
        if (side * scale) % multiple:
            raise InputError(
                f"tile × scale must be a multiple of {multiple} "
                f"(tile {side} × scale {scale} = {side * scale})"
            )
    return pair


def split_overlap(overlap: int, blend: float = 0.5) -> tuple[int, int]:
    """Split an overlap into a context margin on each side and a central cross-fade band.

    Parameters
    ----------
    overlap : int
        Overlap of consecutive windows in LR pixels.
    blend : float
        Fraction of the overlap used for the cross-fade, in ``[0, 1]``: 0 cuts hard in
        the middle (exact soonest, but any residual error shows as a seam), 1 fades across
        the whole overlap (smoothest, but uses predictions right at the window edges).

    Returns
    -------
    tuple of int
        ``(margin, band)`` with ``2 × margin + band == overlap``.

    Raises
    ------
    InputError
        If ``overlap`` is negative or ``blend`` is outside ``[0, 1]``.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)):
        raise InputError(f"overlap must be an integer (got {overlap!r})")
    if overlap < 0:
        raise InputError(f"overlap must be >= 0 (got {overlap})")
    if not 0.0 <= float(blend) <= 1.0:
        raise InputError(f"blend must be between 0 and 1 (got {blend})")
    margin = math.floor(int(overlap) * (1.0 - float(blend)) / 2.0 + 1e-9)
    return margin, int(overlap) - 2 * margin


def default_overlap(
    receptive_field_radius: int, scale: int, *, blend: float = 0.5, min_band: int = 16
) -> int:
    """Smallest overlap whose context margin covers a network's receptive field.

    Parameters
    ----------
    receptive_field_radius : int
        LR pixels on each side that an output pixel depends on (see
        ``decrappify.predict.receptive.estimate_receptive_field``).
    scale : int
        Super-resolution factor.
    blend : float
        Fraction of the overlap used for the cross-fade (see :func:`split_overlap`).
    min_band : int
        Narrowest cross-fade in HR pixels when the radius is positive, so that the
        residual error of a network whose influence decays slowly fades out smoothly.

    Returns
    -------
    int
        Overlap in LR pixels (0 for a pointwise network). With it, tiled prediction
        equals whole-image prediction for a network of that receptive field. U-Nets
        have a long, decaying field (a random-init ResNet18 U-Net ×4 measures about 70
        LR pixels at ``tol=1e-3``), which can ask for more than half a practical tile:
        cap it at ``tile // 2``; the small residual error is then blended, not cut.

    Raises
    ------
    InputError
        If the radius is negative or ``blend`` leaves no context margin (``blend == 1``
        with a positive radius).
    """
    check_positive_int(scale, "scale")
    if receptive_field_radius < 0:
        raise InputError(f"receptive_field_radius must be >= 0 (got {receptive_field_radius})")
    if receptive_field_radius == 0:
        return 0
    if float(blend) >= 1.0:
        raise InputError(f"blend must be below 1 to leave a context margin (got {blend})")
    min_band_lr = math.ceil(min_band / scale) if blend > 0 else 0
    overlap = 2 * int(receptive_field_radius)
    while True:
        margin, band = split_overlap(overlap, blend)
        if margin >= receptive_field_radius and band >= min_band_lr:
            return overlap
        overlap += 1


def plan_tiles(
    shape: Sequence[int],
    tile: int | Sequence[int],
    overlap: int | Sequence[int],
    *,
    scale: int = 1,
    multiple: int = DEFAULT_MULTIPLE,
    blend: float = 0.5,
    region: Bounds | Sequence[slice] | None = None,
    grid: int = 1,
    context: int = 0,
) -> list[Tile]:
    """Plan the tiles that cover a 2D LR plane (or a region of it).

    Parameters
    ----------
    shape : pair of int
        ``(H, W)`` of the LR array the windows are read from.
    tile : int or pair of int
        Largest window side in LR pixels; ``tile × scale`` must be a multiple of
        ``multiple``. Windows are shrunk, in steps of :func:`tile_quantum`, to the
        smallest size that needs no more tiles.
    overlap : int or pair of int
        Overlap of consecutive windows in LR pixels, at most half the tile (stride
        ``tile - overlap``).
    scale : int
        Super-resolution factor.
    multiple : int
        The network needs ``tile × scale`` to be a multiple of this.
    blend : float
        Fraction of the overlap used for cross-fading (see :func:`split_overlap`).
    region : Bounds or pair of slice, optional
        LR rectangle to produce (default: the whole array). Tiles cover only this
        region; their windows read context around it from the array, and past the
        array's borders by reflection.
    grid : int
        The network's downsampling in LR pixels (``2**levels`` of a U-Net on the LR
        grid; 1 for none): with an overlap that is a multiple of it, every window starts
        on a multiple of it, where the network computes what it computes on the whole
        image.

    Returns
    -------
    list of Tile
        Row-major. Their cores cover the region, their weights sum to 1 at every HR
        pixel of it, and all windows have the same shape.

    Raises
    ------
    InputError
        For an empty shape or region, a tile that breaks the size rule, an overlap that
        is negative or more than half the tile, or ``blend`` outside ``[0, 1]``.
    """
    if len(tuple(shape)) != 2:
        raise InputError(f"shape: expected (H, W), got {tuple(shape)}")
    size = tuple(int(n) for n in shape)
    if min(size) < 1:
        raise InputError(f"shape: expected a non-empty plane, got {size}")
    tiles = validate_tile(tile, scale, multiple)
    overlaps = int_pair(overlap, "overlap")
    bounds = normalize_bounds(region, size) if region is not None else ((0, size[0]), (0, size[1]))
    quantum = tile_quantum(scale, multiple)
    margins = [split_overlap(o, blend)[0] for o in overlaps]
    extension = border_extension(bounds, size, margins, context, grid)
    axes = []
    for n, t, o, (r0, r1), (e0, e1) in zip(size, tiles, overlaps, bounds, extension, strict=True):
        # plan the extended region in an array extended alike (e0 is on the grid), shift back
        axis = _plan_axis(n + e0 + e1, t, o, blend, (r0, r1 + e0 + e1), quantum, grid)
        axes.append([tuple((a - e0, b - e0) for a, b in spans[:2]) + spans[2:] for spans in axis])
    plan = []
    for iy, (wy, cy, ry) in enumerate(axes[0]):
        for ix, (wx, cx, rx) in enumerate(axes[1]):
            plan.append(
                Tile(index=(iy, ix), window=(wy, wx), core=(cy, cx), ramps=(ry, rx), scale=scale)
            )
    return plan


def _plan_axis(
    length: int, tile: int, overlap: int, blend: float, region: Span, quantum: int, grid: int = 1
) -> list[tuple[Span, Span, Span]]:
    """Windows, cores and ramps along one axis: the 1D plan behind :func:`plan_tiles`."""
    if 2 * overlap > tile:
        raise InputError(f"overlap must be at most half the tile (tile {tile}, overlap {overlap})")
    margin, band = split_overlap(overlap, blend)
    r0, r1 = region
    extent = r1 - r0
    stride = tile - overlap
    # Fewest tiles whose cores (window minus the margins) cover the region.
    count = 1 if extent <= stride + band else 1 + math.ceil((extent - stride - band) / stride)
    if count == 1:
        size = _round_up(extent + 2 * margin, quantum)
    else:
        needed = math.ceil((extent - band) / count) + overlap
        size = _round_up(max(needed, 2 * overlap), quantum)
    size = min(size, tile)
    stride = size - overlap
    excess = count * stride + band - extent  # how far the cores overhang the region
    # Centre the windows in the available array, keeping the region covered.
    span = (count - 1) * stride + size
    ideal = (length - span) // 2 + margin
    first = min(max(ideal, r0 - excess), r0)
    if grid > 1 and overlap % grid == 0 and (first - margin) % grid:
        first, count, size = _onto_grid(tile, overlap, blend, region, (grid, quantum), count, size)
        stride = size - overlap
    plan = []
    for i in range(count):
        core0 = first + i * stride
        core1 = core0 + stride + band
        window = (core0 - margin, core0 - margin + size)
        core = (max(core0, r0), min(core1, r1))
        ramps = (band if i > 0 else 0, band if i < count - 1 else 0)
        plan.append((window, core, ramps))
    return plan


def _onto_grid(
    tile: int, overlap: int, blend: float, region: Span, steps: tuple[int, int], *layout: int
) -> tuple[int, int, int]:
    """Move the windows onto the network's grid (starts on multiples of ``grid`` LR pixels).

    A U-Net that downsamples by ``grid`` computes the same output for a pixel only at the
    same place in that grid: windows off it differ from each other and from the whole image
    far beyond the 1e-4 the tiles promise. With the overlap on the grid so are the strides:
    the first start moves down onto it, and the windows grow (``quantum``) or one more is
    added when the cores would no longer reach the region's end. Returns the first core's
    start, the count and the size.
    """
    count, size = layout
    grid, quantum = steps
    margin, band = split_overlap(overlap, blend)
    r0, r1 = region
    first = r0 - (r0 - margin) % grid  # the first core starts at or before r0
    while first + count * (size - overlap) + band < r1:
        if count == 1 and size + quantum <= tile:
            size += quantum
        else:
            count += 1
    return first, count, size


@lru_cache(maxsize=256)
def _ramp_profile_cached(length: int, lo: int, hi: int, dtype_name: str) -> np.ndarray:
    profile = np.ones(length, dtype=np.float64)
    if lo:
        profile[:lo] = np.sin(0.5 * np.pi * (np.arange(lo) + 0.5) / lo) ** 2
    if hi:
        profile[length - hi :] = np.cos(0.5 * np.pi * (np.arange(hi) + 0.5) / hi) ** 2
    profile = profile.astype(dtype_name)
    profile.flags.writeable = False
    return profile


def ramp_profile(
    length: int, ramp_start: int, ramp_stop: int, dtype: Any = np.float64
) -> np.ndarray:
    """1D blending profile: Hann ramp up, plateau of 1, Hann ramp down.

    Parameters
    ----------
    length : int
        Number of pixels.
    ramp_start, ramp_stop : int
        Widths of the rising ramp at the start and the falling ramp at the end
        (0 for none). The rising ramp is ``sin²(π/2 · (i + ½) / n)`` and the falling
        one ``cos²`` of the same argument, so two tiles fading across the same band add
        up to 1.
    dtype : numpy dtype
        Data type of the result.

    Returns
    -------
    numpy.ndarray
        Read-only (cached) array of ``length`` weights in ``(0, 1]``.

    Raises
    ------
    InputError
        If the ramps overlap or do not fit in ``length``.
    """
    if min(length, ramp_start, ramp_stop) < 0 or ramp_start + ramp_stop > length:
        raise InputError(
            f"ramps {ramp_start} + {ramp_stop} do not fit in a profile of length {length}"
        )
    return _ramp_profile_cached(int(length), int(ramp_start), int(ramp_stop), np.dtype(dtype).name)


def normalize_bounds(region: Bounds | Sequence[slice], shape: Sequence[int]) -> Bounds:
    """Check a rectangle against a shape and return it as ``((y0, y1), (x0, x1))``.

    Parameters
    ----------
    region : Bounds or pair of slice
        ``((y0, y1), (x0, x1))`` or ``(slice(y0, y1), slice(x0, x1))`` (no steps,
        no negative or missing bounds other than a missing start/stop).
    shape : pair of int
        ``(H, W)`` the region must lie in.

    Returns
    -------
    Bounds
        The region as integer spans.

    Raises
    ------
    InputError
        If the region is not two spans, is empty, or leaves ``shape``.
    """
    items = tuple(region)
    if len(items) != 2:
        raise InputError(f"region: expected two (start, stop) spans, got {region!r}")
    spans = []
    for item, n in zip(items, shape, strict=True):
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise InputError(f"region: slices must have no step, got {item!r}")
            span = (0 if item.start is None else item.start, n if item.stop is None else item.stop)
        else:
            span = tuple(item)
            if len(span) != 2:
                raise InputError(f"region: expected two (start, stop) spans, got {region!r}")
        spans.append((int(span[0]), int(span[1])))
    bounds: Bounds = (spans[0], spans[1])
    for (lo, hi), n in zip(bounds, shape, strict=True):
        if not 0 <= lo < hi <= n:
            raise InputError(
                f"region: expected a non-empty rectangle inside {tuple(shape)}, got {bounds}"
            )
    return bounds


def _round_up(value: int, quantum: int) -> int:
    return max(quantum, -(-value // quantum) * quantum)


def int_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """Read an integer or a pair of integers as a pair (``name`` for the message)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        items = ()
    if len(items) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
    ):
        raise InputError(f"{name} must be an integer or a pair of integers (got {value!r})")
    return (int(items[0]), int(items[1]))


def check_positive_int(value: int, name: str) -> None:
    """Raise ``InputError`` unless ``value`` is a positive integer (``name`` for the message)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer (got {value!r})")
