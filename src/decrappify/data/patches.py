"""Lazy random patch sampling from arbitrarily large images (pure: numpy, no torch).

Training patches are drawn from :class:`Region` boxes of the input images (a whole
image, a block of planes of a stack, or a strip of a single 2D image held out for
validation). A :class:`PatchSampler` draws positions uniformly over every valid patch
position of every region, which chooses an image with probability proportional to its
number of positions. :func:`read_window` reads only the window of a patch from a numpy,
zarr or dask array, so memory is bounded by the patch size, never by the image size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io.image import Image

#: Entropy key of the train/validation split stream (see :func:`split_by_image`).
SPLIT_KEY = 3


@dataclass(frozen=True)
class Region:
    """A box of one image that patches are drawn from.

    Parameters
    ----------
    image : int
        Index of the image in the list the region refers to.
    planes : tuple of int
        Half-open range ``[z0, z1)`` of planes; ``(0, 1)`` for a 2D image.
    rows : tuple of int
        Half-open range ``[y0, y1)`` of rows.
    cols : tuple of int
        Half-open range ``[x0, x1)`` of columns.
    """

    image: int
    planes: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def n_planes(self) -> int:
        """Number of planes in the region."""
        return self.planes[1] - self.planes[0]

    @property
    def height(self) -> int:
        """Number of rows in the region."""
        return self.rows[1] - self.rows[0]

    @property
    def width(self) -> int:
        """Number of columns in the region."""
        return self.cols[1] - self.cols[0]

    def n_positions(self, patch_size: int, grid: int = 1) -> int:
        """Count the valid patch positions (top-left corners on the ``grid``).

        Parameters
        ----------
        patch_size : int
            Side of the square patch.
        grid : int
            Patch corners are multiples of ``grid`` in image coordinates.

        Returns
        -------
        int
            Planes times row positions times column positions (0 when the patch does
            not fit).
        """
        rows = _axis_positions(self.rows, patch_size, grid)
        cols = _axis_positions(self.cols, patch_size, grid)
        return self.n_planes * len(rows) * len(cols)

    def to_dict(self) -> dict[str, Any]:
        """Return the region as plain JSON-friendly data.

        Returns
        -------
        dict
            ``image``, ``planes``, ``rows``, ``cols``.
        """
        return {
            "image": self.image,
            "planes": list(self.planes),
            "rows": list(self.rows),
            "cols": list(self.cols),
        }


@dataclass(frozen=True)
class PatchPosition:
    """Where one patch lies.

    Parameters
    ----------
    region : int
        Index of the region in the sampler.
    image : int
        Index of the image.
    plane : int
        Plane index (0 for 2D images); the target plane in 2.5D.
    row : int
        Top row of the patch.
    col : int
        Left column of the patch.
    """

    region: int
    image: int
    plane: int
    row: int
    col: int


def n_planes(shape: Sequence[int]) -> int:
    """Return the number of planes of a 2D (1) or 3D (first axis) image shape.

    Parameters
    ----------
    shape : sequence of int
        Array shape, Y and X last.

    Returns
    -------
    int
        1 for 2D shapes, ``shape[0]`` for 3D shapes.
    """
    return 1 if len(shape) == 2 else int(shape[0])


def whole_region(index: int, shape: Sequence[int]) -> Region:
    """Return the region covering a whole image.

    Parameters
    ----------
    index : int
        Index of the image.
    shape : sequence of int
        Its shape (2D or 3D, Y and X last).

    Returns
    -------
    Region
        All planes, rows and columns.
    """
    return Region(index, (0, n_planes(shape)), (0, int(shape[-2])), (0, int(shape[-1])))


def split_by_image(
    images: Sequence[Image],
    *,
    val_fraction: float = 0.1,
    val_count: int | None = None,
    seed: int = 0,
    patch_size: int = 1,
    grid: int = 1,
) -> tuple[list[Region], list[Region]]:
    """Split images into training and validation regions, by image, never by patch.

    With two or more images, ``val_count`` images (or ``round(val_fraction * n)``, at
    least one when ``val_fraction > 0``) chosen at random from ``seed`` are held out
    whole. With a single stack, the last planes are held out (``val_count`` planes, or
    a ``val_fraction`` of them, at least one). With a single 2D image, as a fallback, a
    strip along the end of its longer axis (``val_fraction`` of it, at least one patch)
    is held out; the two parts are disjoint but come from the same field of view, so the
    validation score is optimistic: give several images when you can.

    Parameters
    ----------
    images : sequence of Image
        The training images (HR images in paired mode).
    val_fraction : float
        Fraction held out, in ``[0, 1)``; 0 gives no validation data.
    val_count : int or None
        Number of images (planes of a single stack) held out; overrides
        ``val_fraction``. For a single 2D image only ``val_count == 0`` matters (no
        validation); the strip size comes from ``val_fraction``.
    seed : int
        Seed of the choice of validation images.
    patch_size : int
        Both parts of a spatial split must hold at least one patch of this size.
    grid : int
        Split points of a spatial split are multiples of ``grid`` (the scale in paired
        mode, so that LR and HR regions align).

    Returns
    -------
    train, validation : list of Region
        Disjoint regions; ``validation`` is empty when nothing is held out.

    Raises
    ------
    InputError
        If no image is given, or what is held out would leave nothing to train on.
    """
    if not images:
        raise InputError("training data: expected at least one image, got none")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation.fraction: must be in [0, 1) (got {val_fraction})")
    if val_count is not None and val_count < 0:
        raise InputError(f"validation.count: must be >= 0 (got {val_count})")
    regions = [whole_region(i, image.shape) for i, image in enumerate(images)]
    if len(images) > 1:
        n_val = _held_out(len(images), val_fraction, val_count)
        if n_val >= len(images):
            raise InputError(
                f"validation.count: holding out {n_val} of {len(images)} images leaves none "
                "for training"
            )
        order = np.random.default_rng([seed, SPLIT_KEY]).permutation(len(images))
        held = set(order[:n_val].tolist())
        train = [r for r in regions if r.image not in held]
        val = [r for r in regions if r.image in held]
        return train, val
    (region,) = regions
    if region.n_planes > 1:
        return _split_planes(images[0], region, val_fraction, val_count)
    if val_count == 0 or (val_count is None and val_fraction == 0):
        return [region], []
    return _split_spatial(images[0], region, val_fraction, patch_size, grid)


def _held_out(n: int, fraction: float, count: int | None) -> int:
    if count is not None:
        return count
    if fraction == 0:
        return 0
    return max(1, round(fraction * n))


def _split_planes(
    image: Image, region: Region, fraction: float, count: int | None
) -> tuple[list[Region], list[Region]]:
    z = region.n_planes
    n_val = _held_out(z, fraction, count)
    if n_val >= z:
        raise InputError(
            f"{image.source or 'image'}: holding out {n_val} of its {z} planes for validation "
            "leaves none for training"
        )
    if n_val == 0:
        return [region], []
    cut = z - n_val
    train = Region(region.image, (0, cut), region.rows, region.cols)
    val = Region(region.image, (cut, z), region.rows, region.cols)
    return [train], [val]


def _split_spatial(
    image: Image, region: Region, fraction: float, patch_size: int, grid: int
) -> tuple[list[Region], list[Region]]:
    height, width = region.height, region.width
    along_rows = height >= width
    length = height if along_rows else width
    val_length = max(patch_size, math.ceil(fraction * length))
    cut = (length - val_length) // grid * grid
    if cut < patch_size or length - cut < patch_size:
        raise InputError(
            f"{image.source or 'image'}: a single {height}x{width} image is too small to split "
            f"into training and validation parts of at least patch_size={patch_size} pixels; "
            "give more images or set validation.fraction to 0"
        )
    if along_rows:
        train = Region(region.image, region.planes, (0, cut), region.cols)
        val = Region(region.image, region.planes, (cut, length), region.cols)
    else:
        train = Region(region.image, region.planes, region.rows, (0, cut))
        val = Region(region.image, region.planes, region.rows, (cut, length))
    return [train], [val]


def _axis_positions(span: tuple[int, int], patch_size: int, grid: int) -> range:
    """Top-left coordinates along one axis: multiples of ``grid`` with the patch inside."""
    first = -(-span[0] // grid)
    last = (span[1] - patch_size) // grid
    return range(first * grid, last * grid + 1, grid) if last >= first else range(0)


class PatchSampler:
    """Draw patch positions uniformly over all valid positions of a set of regions.

    An image (region) is chosen with probability proportional to its number of valid
    positions (planes times rows times columns), then a plane and a position uniformly.

    Parameters
    ----------
    regions : sequence of Region
        Where patches may lie.
    patch_size : int
        Side of the square patch.
    grid : int
        Patch corners are multiples of ``grid`` (the scale in paired mode).
    names : sequence of str or None
        Image names for error messages, indexed by ``Region.image``.

    Raises
    ------
    InputError
        If there is no region, or a region is smaller than the patch.
    """

    def __init__(
        self,
        regions: Sequence[Region],
        patch_size: int,
        *,
        grid: int = 1,
        names: Sequence[str] | None = None,
    ) -> None:
        if not regions:
            raise InputError("training data: expected at least one image region, got none")
        if patch_size < 1 or grid < 1:
            raise InputError(f"patch_size and grid must be >= 1 (got {patch_size}, {grid})")
        self.regions = tuple(regions)
        self.patch_size = int(patch_size)
        self.grid = int(grid)
        counts = []
        for region in self.regions:
            count = region.n_positions(patch_size, grid)
            if count == 0:
                name = names[region.image] if names is not None else f"image {region.image}"
                raise InputError(
                    f"{name}: region of {region.height}x{region.width} pixels is smaller than "
                    f"the patch_size {patch_size}; use a smaller patch_size or larger images"
                )
            counts.append(count)
        self.counts = np.asarray(counts, dtype=np.float64)
        self.probabilities = self.counts / self.counts.sum()

    @property
    def n_positions(self) -> int:
        """Total number of distinct patch positions."""
        return int(self.counts.sum())

    def draw(self, rng: np.random.Generator) -> PatchPosition:
        """Draw one position.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness (consumes exactly four draws).

        Returns
        -------
        PatchPosition
            The position.
        """
        index = int(rng.choice(len(self.regions), p=self.probabilities))
        region = self.regions[index]
        rows = _axis_positions(region.rows, self.patch_size, self.grid)
        cols = _axis_positions(region.cols, self.patch_size, self.grid)
        plane = int(rng.integers(region.planes[0], region.planes[1]))
        row = rows[int(rng.integers(len(rows)))]
        col = cols[int(rng.integers(len(cols)))]
        return PatchPosition(index, region.image, plane, row, col)


def neighbour_planes(plane: int, n_frames: int, planes: tuple[int, int]) -> tuple[int, ...]:
    """Planes of a 2.5D input centred on ``plane``, mirrored at the ends of ``planes``.

    The mirror does not repeat the end plane (``numpy.pad`` mode ``"reflect"``): with
    planes ``[0, 5)``, the 5 frames around plane 0 are ``(2, 1, 0, 1, 2)``. A range of
    one plane repeats it.

    Parameters
    ----------
    plane : int
        The centre (target) plane.
    n_frames : int
        Number of frames, odd.
    planes : tuple of int
        Half-open range ``[z0, z1)`` the frames must stay in (a region's planes, so that
        training inputs never see held-out validation planes).

    Returns
    -------
    tuple of int
        ``n_frames`` plane indices, centre in the middle.
    """
    z0, z1 = planes
    if not z0 <= plane < z1:
        raise InputError(f"plane {plane} is outside the planes [{z0}, {z1})")
    n = z1 - z0
    half = n_frames // 2
    if n == 1:
        return (z0,) * n_frames
    period = 2 * (n - 1)
    frames = []
    for offset in range(-half, half + 1):
        m = (plane - z0 + offset) % period
        frames.append(z0 + (m if m < n else period - m))
    return tuple(frames)


def read_window(
    data: Any, planes: Sequence[int] | None, row: int, col: int, size: int
) -> np.ndarray:
    """Read a square window of some planes, touching only the chunks it overlaps.

    Parameters
    ----------
    data : array-like
        A 2D or 3D numpy, zarr or dask array (Y and X last).
    planes : sequence of int or None
        Planes to read, in order (repeats allowed); None or ``(0,)`` for 2D data.
    row, col : int
        Top-left corner.
    size : int
        Side of the window.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(planes), size, size)`` (``(1, size, size)`` for None), the
        array's dtype. The contiguous plane range ``[min, max]`` is read once.
    """
    rows = slice(row, row + size)
    cols = slice(col, col + size)
    if data.ndim == 2:
        count = 1 if planes is None else len(planes)
        if planes is not None and any(p != 0 for p in planes):
            raise InputError(f"a 2D image has only plane 0 (asked for planes {list(planes)})")
        window = materialize(data[rows, cols])[None]
        return np.repeat(window, count, axis=0) if count > 1 else window
    if planes is None:
        raise InputError("reading a window of a 3D image needs the planes")
    first, last = min(planes), max(planes)
    block = materialize(data[first : last + 1, rows, cols])
    if list(planes) == list(range(first, last + 1)):
        return block
    return block[np.asarray(planes) - first]


def materialize(array: Any) -> np.ndarray:
    """Turn a (small) numpy, zarr or dask array into a numpy array.

    Dask arrays are computed with the synchronous scheduler: patch reads are small,
    and this keeps DataLoader workers from spawning thread pools or shipping patch
    reads to a distributed cluster.

    Parameters
    ----------
    array : array-like
        The (already sliced) array.

    Returns
    -------
    numpy.ndarray
        The values.
    """
    if hasattr(array, "compute"):
        array = array.compute(scheduler="synchronous")
    return np.asarray(array)
