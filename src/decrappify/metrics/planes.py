"""The 2D planes every metric works on: one plane as numpy, and a plane on another grid.

These are the primitives the metric modules share (pair metrics, FRC, spectra, baselines,
error maps); they import no other metric module, so the modules that combine them can
import each other in one direction only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io.image import Image


def as_plane(array: Any, name: str) -> np.ndarray:
    """Return a 2D array as numpy, computing it if it is lazy.

    Parameters
    ----------
    array : array-like
        A numpy or dask array, or a :class:`decrappify.io.Image` record.
    name : str
        What to call the array in error messages (``"pred"``, ``"gt"`` ...).

    Returns
    -------
    numpy.ndarray
        The pixels, dtype unchanged.

    Raises
    ------
    InputError
        If the array is not 2D.
    """
    data = array.data if isinstance(array, Image) else array
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    if data.ndim != 2:  # checked before computing: never materialise a whole stack
        raise InputError(f"{name}: expected a 2D (YX) image, got shape {tuple(data.shape)}")
    if not isinstance(data, np.ndarray) and hasattr(data, "compute"):
        data = data.compute()
    return np.asarray(data)


def resize_plane(plane: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample one 2D plane onto a ``shape`` grid spanning the same field of view.

    Parameters
    ----------
    plane : numpy.ndarray
        2D input, any real dtype.
    shape : tuple of int
        Output (Y, X) shape.
    order : int
        Spline order (0 nearest, 1 bilinear, 3 bicubic).

    Returns
    -------
    numpy.ndarray
        float32 plane of ``shape``; no anti-aliasing, reflect borders, values clipped to
        the input's range.
    """
    from skimage.transform import resize

    out = resize(
        np.asarray(plane, dtype=np.float32),
        tuple(int(s) for s in shape),
        order=order,
        mode="reflect",
        anti_aliasing=False,
        preserve_range=True,
    )
    return np.asarray(out, dtype=np.float32)
