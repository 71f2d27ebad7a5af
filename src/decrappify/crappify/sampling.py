"""Integer downsampling of 2D float32 images: area (block mean) and bilinear.

:func:`downsample` is the degradation step; :func:`bilinear_region` computes one region
of a bilinear downsampling exactly as the whole image would (for chunked crappifying).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.crappify._checks import as_image as _as_image
from decrappify.crappify._checks import check as _check
from decrappify.crappify.fields import RandomSource
from decrappify.errors import InputError

__all__ = [
    "area_downsample",
    "bilinear_downsample",
    "bilinear_positions",
    "bilinear_region",
    "downsample",
]


def downsample(
    img: Any, *, rng: RandomSource | None = None, scale: int, method: str = "area"
) -> np.ndarray:
    """Downsample by an integer factor.

    Parameters
    ----------
    img : array_like
        2D image of shape (H, W), at least ``scale`` pixels on each side.
    rng : ignored
        Accepted for a uniform signature.
    scale : int
        Integer factor (>= 1).
    method : {"area", "bilinear"}
        See :func:`area_downsample` and :func:`bilinear_downsample`.

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``(H // scale, W // scale)``.
    """
    if method == "area":
        return area_downsample(img, scale)
    if method == "bilinear":
        return bilinear_downsample(img, scale)
    raise InputError(f"downsample: method must be 'area' or 'bilinear' (got {method!r})")


def _check_scale(x: np.ndarray, scale: int, name: str) -> int:
    """Validate an integer downsampling factor against the image size."""
    _check(name, "scale", scale, int(scale) == scale and scale >= 1, "an integer >= 1")
    scale = int(scale)
    if min(x.shape) < scale:
        raise InputError(f"{name}: image of shape {x.shape} is smaller than the scale {scale}")
    return scale


def area_downsample(img: Any, scale: int) -> np.ndarray:
    """Mean of each ``scale x scale`` block (a camera pixel integrating light).

    Rows and columns beyond the last full block are dropped. The block sum is
    accumulated in float64 in a fixed order, so a block's value does not depend on the
    rest of the image.

    Parameters
    ----------
    img : array_like
        2D image.
    scale : int
        Block size (>= 1).

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``(H // scale, W // scale)``; it preserves the mean.
    """
    x = _as_image(img, "downsample")
    s = _check_scale(x, scale, "downsample")
    h, w = x.shape[0] // s, x.shape[1] // s
    acc = np.zeros((h, w), dtype=np.float64)
    for i in range(s):
        for j in range(s):
            acc += x[i : h * s : s, j : w * s : s]
    return (acc / (s * s)).astype(np.float32)


def bilinear_positions(start: int, stop: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation indices and weights of LR pixels ``start..stop-1`` on the HR grid.

    The centre of LR pixel ``j`` lies at HR coordinate ``(j + 0.5) * scale - 0.5``.

    Parameters
    ----------
    start, stop : int
        Range of LR indices (global).
    scale : int
        Integer factor.

    Returns
    -------
    index : numpy.ndarray
        int64 HR index of the left/top neighbour.
    weight : numpy.ndarray
        float32 weight of the right/bottom neighbour, in [0, 1).
    """
    coords = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale - 0.5
    index = np.floor(coords)
    return index.astype(np.int64), (coords - index).astype(np.float32)


def bilinear_downsample(img: Any, scale: int) -> np.ndarray:
    """Sample at LR pixel centres with linear interpolation (no anti-aliasing).

    The centre of LR pixel ``j`` lies at HR coordinate ``(j + 0.5) * scale - 0.5``. For
    an even ``scale`` each LR pixel is the mean of the 2x2 HR pixels around its centre;
    for an odd one it is the centre pixel. A linear ramp is reproduced exactly.

    Parameters
    ----------
    img : array_like
        2D image of shape (H, W).
    scale : int
        Integer factor (>= 1).

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``(H // scale, W // scale)``.
    """
    x = _as_image(img, "downsample")
    s = _check_scale(x, scale, "downsample")
    box = ((0, x.shape[0] // s), (0, x.shape[1] // s))
    return bilinear_region(x, s, in_start=(0, 0), out_box=box)


def bilinear_region(
    x: np.ndarray,
    scale: int,
    *,
    in_start: tuple[int, int],
    out_box: tuple[tuple[int, int], tuple[int, int]],
) -> np.ndarray:
    """Bilinear downsampling of a region: LR pixels ``out_box`` from HR pixels of ``x``.

    Parameters
    ----------
    x : numpy.ndarray
        float32 HR region whose first pixel has global position ``in_start``; it must
        contain every interpolation neighbour of the requested LR pixels.
    scale : int
        Integer factor.
    in_start : tuple of int
        Global HR (y, x) position of ``x[0, 0]``.
    out_box : tuple of (start, stop)
        Global LR ranges along y and x.

    Returns
    -------
    numpy.ndarray
        float32 array of the LR region; each value depends only on its global position.
    """
    out = x
    for axis in (0, 1):
        index, weight = bilinear_positions(out_box[axis][0], out_box[axis][1], scale)
        index = index - in_start[axis]
        upper = np.minimum(index + 1, out.shape[axis] - 1)
        lower_vals = np.take(out, index, axis=axis)
        upper_vals = np.take(out, upper, axis=axis)
        wgt = weight.reshape((-1, 1) if axis == 0 else (1, -1))
        out = lower_vals + wgt * (upper_vals - lower_vals)
    return out.astype(np.float32, copy=False)
