"""Crappify whole images lazily, chunk by chunk, identically to the in-memory result."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify.pipeline import (
    Box,
    _check_seed,
    build_ops,
    halo,
    plan_regions,
    run_region,
    sample_params,
)
from decrappify.errors import InputError
from decrappify.io.image import Image
from decrappify.normalize import denormalize, normalize, percentile_range

__all__ = ["DEFAULT_CHUNK", "crappify_image"]

#: Default LR chunk side (HR chunks are ``scale`` times larger).
DEFAULT_CHUNK = 512


def crappify_image(
    image: Image,
    config: CrappifyConfig,
    *,
    seed: int,
    chunks: int | Sequence[int] | None = None,
) -> Image:
    """Crappify a 2D image or a stack into a lazy LR image of the same dtype.

    The intensity range ``lo, hi`` of the whole image is computed once
    (:func:`~decrappify.normalize.percentile_range` with the config's percentiles),
    every plane is normalised with it, degraded by the config's steps with parameters
    drawn once from ``seed`` (:func:`~decrappify.crappify.sample_params`; the plane
    index is part of the noise seeds), and mapped back to the input dtype with the same
    ``lo, hi`` (clipped and rounded for integer dtypes). Planes are processed in
    chunks with halos (``dask.array.map_overlap``): the result is bit-identical to
    processing each whole plane in memory, for any chunking, and memory is bounded by
    a few chunks.

    Parameters
    ----------
    image : Image
        2D (``YX``) or 3D (``ZYX``/``TYX``) image, numpy or dask; at least
        ``config.scale`` pixels along Y and X.
    config : CrappifyConfig
        The crappifier.
    seed : int
        Non-negative seed for the parameters and the noise.
    chunks : int or tuple of int or None
        LR chunk shape along (Y, X) of the result (a 3D tuple must start with 1:
        planes are processed one at a time); default 512. Chunks smaller than the
        steps' halo are merged with a neighbour.

    Returns
    -------
    Image
        Lazy (dask) record of shape ``(..., H // scale, W // scale)``, same dtype, axes
        and source, pixel size multiplied by ``scale`` along Y and X.

    Raises
    ------
    InputError
        For an image smaller than the scale, bad chunks, a physical blur without pixel
        size; when computed, for NaN/Inf values (naming the source and plane).
    """
    import dask.array as da

    seed = _check_seed(seed)
    scale = config.scale
    _check_image(image, scale)
    height, width = image.shape[-2:]
    dtype = image.dtype
    ops = _image_ops(image, config, seed)
    norm = config.normalization
    lo, hi = percentile_range(image.data, norm.low, norm.high)

    lr_shape = (height // scale, width // scale)
    chunk_y, chunk_x = _lr_chunk_shape(chunks, image)
    plans = [
        _axis_plan(ops, (height, width), lr_shape[axis], size, scale, axis)
        for axis, size in ((0, chunk_y), (1, chunk_x))
    ]
    (lr_y, hr_y, depth_y), (lr_x, hr_x, depth_x) = plans

    data = image.data if image.ndim == 3 else image.data[None]
    n_planes = data.shape[0]
    if isinstance(data, np.ndarray):
        data = da.from_array(data, chunks=(1, hr_y, hr_x))
    else:
        data = da.asarray(data).rechunk((1, hr_y, hr_x))
    block = partial(
        _crappify_block,
        ops=ops,
        seed=seed,
        lo=lo,
        hi=hi,
        dtype=dtype,
        shape=(height, width),
        lr_bounds=(_bounds(lr_y), _bounds(lr_x)),
        hr_bounds=(_bounds(hr_y), _bounds(hr_x)),
        depth=(depth_y, depth_x),
        source=image.source or "image",
    )
    out = da.map_overlap(
        block,
        data,
        depth={0: 0, 1: depth_y, 2: depth_x},
        boundary="none",
        trim=False,
        dtype=dtype,
        chunks=((1,) * n_planes, lr_y, lr_x),
        meta=np.empty((0, 0, 0), dtype=dtype),
    )
    if image.ndim == 2:
        out = out[0]
    return image.with_data(out, yx_factor=scale)


def _check_image(image: Image, scale: int) -> None:
    height, width = image.shape[-2:]
    if height < scale or width < scale:
        raise InputError(
            f"{image.source or 'image'}: image of {height}x{width} pixels is smaller than "
            f"the scale {scale}"
        )
    dtype = image.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputError(f"{image.source or 'image'}: expected a numeric image, got dtype {dtype}")


def _image_ops(image: Image, config: CrappifyConfig, seed: int) -> list[Any]:
    """Return the steps with their parameters drawn from ``seed``, at the image's pixel size."""
    params = sample_params(config, seed)
    pixel_size = image.pixel_size[-2:] if image.pixel_size is not None else None
    unit = image.units[-1] if image.units is not None else None
    return build_ops(params, pixel_size=pixel_size, pixel_unit=unit)


def _lr_chunk_shape(chunks: int | Sequence[int] | None, image: Image) -> tuple[int, int]:
    """Validate the ``chunks`` argument and return the LR (Y, X) chunk shape."""
    name = image.source or "image"
    if chunks is None:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    values = (chunks, chunks) if isinstance(chunks, int | np.integer) else tuple(chunks)
    if len(values) == 3:
        if image.ndim != 3 or values[0] != 1:
            raise InputError(
                f"{name}: chunks {tuple(values)} must be (y, x), or (1, y, x) for a stack "
                f"(planes are crappified one at a time)"
            )
        values = values[1:]
    if len(values) != 2 or any(int(v) != v or v < 1 for v in values):
        raise InputError(f"{name}: chunks must be positive integers (y, x), got {chunks!r}")
    return int(values[0]), int(values[1])


def _axis_plan(
    ops: Sequence[Any], shape: tuple[int, int], n_lr: int, size: int, scale: int, axis: int
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """LR chunks, HR chunks and halo depth along one axis.

    Every HR chunk must be at least as large as the halo (dask's overlap takes the halo
    from the neighbouring chunks only): the chunk size grows until it is, and a small
    last chunk is merged into the one before it.
    """
    while True:
        lr = [min(size, n_lr - start) for start in range(0, n_lr, size)]
        depth = halo(ops, shape, _bounds(tuple(lr)), axis) if len(lr) > 1 else 0
        if len(lr) > 1 and lr[-1] * scale + shape[axis] - n_lr * scale < depth:
            lr[-2:] = [lr[-2] + lr[-1]]
            depth = halo(ops, shape, _bounds(tuple(lr)), axis) if len(lr) > 1 else 0
        hr = [c * scale for c in lr]
        hr[-1] += shape[axis] - n_lr * scale
        if min(hr) >= depth:
            return tuple(lr), tuple(hr), depth
        size = max(size + 1, -(-depth // scale))


def _bounds(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk boundaries ``0, c0, c0 + c1, ...`` from chunk sizes."""
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(chunks)]))


def _crappify_block(
    block: np.ndarray,
    *,
    ops: Sequence[Any],
    seed: int,
    lo: float,
    hi: float,
    dtype: np.dtype,
    shape: tuple[int, int],
    lr_bounds: tuple[tuple[int, ...], tuple[int, ...]],
    hr_bounds: tuple[tuple[int, ...], tuple[int, ...]],
    depth: tuple[int, int],
    source: str,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Crappify the LR chunk of one overlapped HR block (runs inside a dask task)."""
    if block_info is None:  # pragma: no cover - dask always passes it with a meta given
        raise RuntimeError("block_info missing")
    z, iy, ix = block_info[None]["chunk-location"]
    plane = int(z)
    lr_box: Box = (
        (lr_bounds[0][iy], lr_bounds[0][iy + 1]),
        (lr_bounds[1][ix], lr_bounds[1][ix + 1]),
    )
    padded = tuple(
        (max(0, hr_bounds[a][i] - depth[a]), min(shape[a], hr_bounds[a][i + 1] + depth[a]))
        for a, i in ((0, iy), (1, ix))
    )
    expected = (padded[0][1] - padded[0][0], padded[1][1] - padded[1][0])
    if block.shape[1:] != expected:  # pragma: no cover - guards the overlap geometry
        raise RuntimeError(f"overlap block {block.shape} does not match the plan {expected}")
    boxes = plan_regions(ops, shape, lr_box)
    (y0, y1), (x0, x1) = boxes[0]
    region = block[0, y0 - padded[0][0] : y1 - padded[0][0], x0 - padded[1][0] : x1 - padded[1][0]]
    if np.issubdtype(region.dtype, np.floating) and not np.isfinite(region).all():
        raise InputError(
            f"{source}: contains NaN or Inf values (plane {plane}, rows {y0}-{y1}, "
            f"columns {x0}-{x1}); replace them before crappifying"
        )
    x = normalize(region, lo, hi)
    lr = run_region(x, ops, boxes, seed=seed, plane=plane)
    return denormalize(lr, lo, hi, dtype)[None]
