"""Windows read past an array's edges by reflection, and how far past the borders (pure numpy).

A window of :mod:`decrappify.predict.tile_geometry` may extend past the array it is read
from; :func:`extract_window` fills what lies outside by reflection
(``numpy.pad(mode="reflect")``). Between two tiles a window keeps ``margin`` pixels of
context, which may be less than the network's receptive field where the overlap is capped
at half the tile: the cross-fade hides that residual. At the image's borders there is no
neighbour to fade into, so the pixels there would carry it whole: windows reach ``context``
pixels past those borders instead (:func:`border_extension`), as far as a bioimage.io
consumer pads the image by its halo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["border_extension", "extract_window", "reflect_indices"]

Bounds = tuple[tuple[int, int], tuple[int, int]]


def border_extension(
    region: Bounds, shape: Sequence[int], margins: Sequence[int], context: int, grid: int = 1
) -> Bounds:
    """LR pixels by which tiles extend a region at each side to read ``context`` past a border.

    Parameters
    ----------
    region : Bounds
        ``((y0, y1), (x0, x1))``: the rectangle to produce, inside ``shape``.
    shape : pair of int
        ``(H, W)`` of the array the windows are read from.
    margins : pair of int
        The windows' context margin per axis (what they keep without an extension).
    context : int
        Least context in LR pixels past the region's sides that lie within ``context`` of
        the array's edges (there the array has less to give and windows read reflection).
        At most the margin: nothing to extend.
    grid : int
        The network's downsampling: extensions are multiples of it, so that windows stay
        on its grid.

    Returns
    -------
    Bounds
        ``((top, bottom), (left, right))``: the tiles' cores cover the region extended by
        these (outside it, computed and dropped).
    """
    ext = []
    for (r0, r1), n, margin in zip(region, shape, margins, strict=True):
        need = max(0, int(context) - int(margin))
        need = -(-need // grid) * grid
        ext.append((need if r0 < context else 0, need if n - r1 < context else 0))
    return (ext[0], ext[1])


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Map ``range(start, stop)`` to indices of an axis of ``length``, reflecting at the ends.

    Parameters
    ----------
    start, stop : int
        Virtual range, which may extend past ``[0, length)`` by any amount.
    length : int
        Length of the real axis (at least 1).

    Returns
    -------
    numpy.ndarray
        Integer indices in ``[0, length)``, as ``numpy.pad(mode="reflect")`` would
        fill them (the edge pixel is not repeated; an axis of length 1 is repeated).
    """
    idx = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(idx)
    period = 2 * (length - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= length, period - idx, idx)


def extract_window(array: Any, window: Bounds) -> np.ndarray:
    """Read an LR window from an array, filling what lies outside by reflection.

    Parameters
    ----------
    array : array-like
        numpy, zarr or dask array with Y and X as its last two axes (leading axes, such
        as the frames of a 2.5D input, are kept whole). Only the rows and columns the
        window needs are read, with basic slicing.
    window : Bounds
        ``((y0, y1), (x0, x1))``, possibly extending past the array.

    Returns
    -------
    numpy.ndarray
        ``array.shape[:-2] + (y1 - y0, x1 - x0)``, the array's dtype.
    """
    lead = (slice(None),) * (len(array.shape) - 2)
    (y0, y1), (x0, x1) = window
    h, w = array.shape[-2:]
    if 0 <= y0 and y1 <= h and 0 <= x0 and x1 <= w:
        return np.asarray(array[(*lead, slice(y0, y1), slice(x0, x1))])
    iy = reflect_indices(y0, y1, h)
    ix = reflect_indices(x0, x1, w)
    ylo, xlo = int(iy.min()), int(ix.min())
    block = np.asarray(array[(*lead, slice(ylo, int(iy.max()) + 1), slice(xlo, int(ix.max()) + 1))])
    return block[(*lead, (iy - ylo)[:, None], (ix - xlo)[None, :])]
