"""Single images for a viewer: a lazy crappified record, synthetic samples, display levels.

The napari plugin shows results layer by layer instead of writing batches of files;
these are the calls it makes for that, thin doors onto :mod:`decrappify.crappify`,
:mod:`decrappify.sample` and :mod:`decrappify.normalize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from decrappify.io import Image


def crappify_image(
    image: Image, config: Any, *, seed: int, chunks: int | Sequence[int] | None = None
) -> Image:
    """Crappify one image lazily, chunk by chunk (:func:`decrappify.crappify.crappify_image`).

    Parameters
    ----------
    image : Image
        The HR record (numpy or dask).
    config : CrappifyConfig
        The crappifier.
    seed : int
        The seed; the values do not depend on ``chunks``.
    chunks : int, sequence of int or None
        LR chunks of the result (small ones keep a preview's work near its region).

    Returns
    -------
    Image
        Lazy LR record: pixel size times the scale, each pixel centred on the block it
        came from (``Image.with_data(yx_factor=scale)``).
    """
    from decrappify.crappify import crappify_image as lazy_crappify

    return lazy_crappify(image, config, seed=seed, chunks=chunks)


def sample_image(
    kind: Literal["em", "fluorescence"],
    shape: Sequence[int],
    *,
    seed: int = 0,
    chunks: int | Sequence[int] | None = None,
) -> Image:
    """A synthetic EM or fluorescence image (:func:`decrappify.sample.synthetic_image`).

    Parameters
    ----------
    kind : {"em", "fluorescence"}
        What to synthesise.
    shape : sequence of int
        ``(height, width)`` or ``(planes, height, width)``.
    seed : int
        Seed.
    chunks : int, sequence of int or None
        Chunks of a lazy result; None renders it at once.

    Returns
    -------
    Image
        The image with its pixel size and units.
    """
    from decrappify.sample import synthetic_image

    return synthetic_image(kind, shape, seed=seed, chunks=chunks)


def intensity_range(data: Any, low: float = 0.1, high: float = 99.9) -> tuple[float, float]:
    """The intensities decrappify normalises to: two percentiles, from a bounded sample.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The image (a lazy one is sampled, never loaded whole).
    low, high : float
        The percentiles.

    Returns
    -------
    (float, float)
        ``lo < hi`` (:func:`decrappify.normalize.percentile_range`).
    """
    from decrappify.normalize import percentile_range

    lo, hi = percentile_range(data, low, high)
    return float(lo), float(hi)
