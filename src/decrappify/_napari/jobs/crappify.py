"""The Crappify widget's jobs: a preview of the visible region, and the whole layer."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify import api
from decrappify._napari._viewer_geometry import lr_region
from decrappify._napari.jobs.compute import (
    central,
    iter_compute,
    nbytes,
    output_target,
)
from decrappify.config.predict import MAX_IN_MEMORY
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image

#: LR chunk side of the preview: small, so only the visible region is computed.
PREVIEW_CHUNK = 128
#: Largest preview side in LR pixels (a zoomed-out view previews its central part).
PREVIEW_MAX = 2048


@dataclass(frozen=True)
class Preview:
    """A crappified region of one plane.

    Parameters
    ----------
    data : numpy.ndarray
        The LR pixels, 2D (or 3D with one plane for a stack).
    image : Image
        Record placing ``data`` in the world (pixel size and translate of the region).
    region : tuple of slice
        The region of the full LR result it equals.
    """

    data: np.ndarray
    image: Image
    region: tuple[slice, ...]


def iter_crappify_preview(
    image: Image,
    config: Any,
    seed: int,
    *,
    box: tuple[tuple[float, float], tuple[float, float]],
    plane: int = 0,
) -> Generator[Progress, None, Preview]:
    """Crappify only the LR pixels over ``box`` of one plane (at most 2048 x 2048).

    The lazy crappifier gives the same values whatever the chunks, so the preview
    equals the same region of the full result; small chunks (:data:`PREVIEW_CHUNK`)
    keep the work near the region.

    Parameters
    ----------
    image : Image
        The HR record.
    config : CrappifyConfig
        The crappifier.
    seed : int
        The seed.
    box : ((y0, y1), (x0, x1))
        The visible region in HR data coordinates.
    plane : int
        Plane of a stack.

    Yields
    ------
    Progress
        ``phase="preview"``, one event per computed batch of chunks.

    Returns
    -------
    Preview
        The pixels and their placement.

    Raises
    ------
    InputError
        When the box does not meet the image.
    """
    yield Progress(phase="preview", step=0, total=None, message="intensity range")
    lr = api.crappify_image(image, config, seed=seed, chunks=PREVIEW_CHUNK)
    ys, xs = (central(s, PREVIEW_MAX) for s in lr_region(box, config.scale, lr.shape[-2:]))
    if ys.stop <= ys.start or xs.stop <= xs.start:
        raise InputError(f"preview: layer {image.source!r} is not in view; pan to it first")
    region: tuple[slice, ...] = (ys, xs) if lr.ndim == 2 else (slice(plane, plane + 1), ys, xs)
    data = yield from iter_compute(lr.data[region], phase="preview")
    starts = [r.start for r in region]
    translate = tuple(
        t + start * s for t, start, s in zip(_origin(lr), starts, lr.scale, strict=True)
    )
    placed = lr.with_data(data, translate=translate)
    return Preview(data=data, image=placed, region=region)


def iter_crappify_layer(
    image: Image,
    config: Any,
    seed: int,
    *,
    out_dir: str | Path | None = None,
    memory_limit: int = MAX_IN_MEMORY,
    name: str = "image",
) -> Generator[Progress, None, Image]:
    """Crappify a whole image, into memory when small, else into an OME-Zarr store.

    Parameters
    ----------
    image : Image
        The HR record (numpy or dask).
    config : CrappifyConfig
        The crappifier.
    seed : int
        The seed.
    out_dir : path or None
        Write the result to ``out_dir/<name>_crappified.zarr`` (a new name if taken)
        and return it lazily. None: compute into memory when the result takes at most
        ``memory_limit`` bytes, else write to a temporary folder removed at exit.
    memory_limit : int
        Largest in-memory result, in bytes.
    name : str
        Stem of the output store.

    Yields
    ------
    Progress
        ``phase="crappify"`` (in memory) or ``"write"`` (OME-Zarr), one per block.

    Returns
    -------
    Image
        The LR record: numpy in memory, or lazy from the written store. Closing the
        generator early (Cancel) leaves no store behind.
    """
    from decrappify.io import iter_write_image, read_image

    yield Progress(phase="crappify", step=0, total=None, message="intensity range")
    lr = api.crappify_image(image, config, seed=seed)
    if out_dir is None and nbytes(lr) <= memory_limit:
        data = yield from iter_compute(lr.data, phase="crappify")
        return lr.with_data(data)
    target = output_target(out_dir, f"{name}_crappified")
    # the layer name is no path: keep it out of the writer's input-overlap check
    written = yield from iter_write_image(replace(lr, source=None), target)
    stored = read_image(written)
    return lr.with_data(stored.data, source=str(written))


def _origin(image: Image) -> tuple[float, ...]:
    return tuple(float(t) for t in (image.translate or (0.0,) * image.ndim))
