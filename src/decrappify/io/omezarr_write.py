"""OME-Zarr writing: an NGFF 0.5 image on Zarr v3, level 0 block by block, then a pyramid.

:func:`iter_write_ome_zarr` writes group attributes ``{"ome": {"version": "0.5",
"multiscales": [...]}}``, arrays with ``dimension_names``, Blosc-zstd compression:
level 0 block by block from numpy or dask, then a 2x pyramid in Y and X (Z and T are not
downsampled), each level built block by block from the previous stored level. Pyramid
pixels are the mean of each 2x2 group (edge pixels of odd sizes average what exists),
rounded half to even for integer dtypes, which keep their dtype. Level ``l`` has scale
``pixel_size * 2**l`` in Y/X and a translation of ``pixel_size * (2**l - 1) / 2`` so
pixel centres stay aligned. With a resume key, the partial store records finished
blocks and a rerun skips them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.events import Progress
from decrappify.io._blocks import Region, grid, iter_blocks, write_block_shape
from decrappify.io._units import normalize_unit
from decrappify.io.atomic import remove_path
from decrappify.io.omezarr import (
    DEFAULT_CHUNK,
    NGFF_VERSION,
    PYRAMID_MIN_SIZE,
    RESUME_DIR,
    downsample_yx,
)


def default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """Default chunk shape: one plane deep, 1024x1024 in Y/X (clipped to the shape)."""
    lead = (1,) * (len(shape) - 2)
    return (*lead, min(DEFAULT_CHUNK, int(shape[-2])), min(DEFAULT_CHUNK, int(shape[-1])))


def default_levels(shape: Sequence[int]) -> int:
    """Count pyramid levels: halve Y/X while the largest of them is above 256 pixels."""
    count, y, x = 1, int(shape[-2]), int(shape[-1])
    while max(y, x) > PYRAMID_MIN_SIZE:
        y, x = math.ceil(y / 2), math.ceil(x / 2)
        count += 1
    return count


def level_shapes(shape: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Shape of each pyramid level (Y and X halved, rounded up, per level)."""
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(1, levels):
        prev = shapes[-1]
        shapes.append((*prev[:-2], math.ceil(prev[-2] / 2), math.ceil(prev[-1] / 2)))
    return shapes


def multiscale_attributes(
    axes: str,
    pixel_size: Sequence[float] | None,
    units: Sequence[str] | None,
    *,
    levels: int,
    name: str,
    dtype: np.dtype,
    translate: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Zarr v3 group attributes of an NGFF 0.5 image with ``levels`` 2x pyramid levels.

    Parameters
    ----------
    axes : str
        Image axes.
    pixel_size : sequence of float or None
        Level-0 pixel size (1.0 per axis when None).
    units : sequence of str or None
        NGFF unit per axis (omitted when None).
    levels : int
        Number of resolution levels.
    translate : sequence of float or None
        Level-0 position of the first pixel centre (0 per axis when None).
    name : str
        Image name.
    dtype : numpy.dtype
        Pixel dtype (decides how the pyramid is described).

    Returns
    -------
    dict
        ``{"ome": {"version": "0.5", "multiscales": [...]}}``.
    """
    base = [float(p) for p in pixel_size] if pixel_size is not None else [1.0] * len(axes)
    axes_meta = []
    for i, axis in enumerate(axes):
        entry: dict[str, Any] = {"name": axis.lower(), "type": "time" if axis == "T" else "space"}
        if units is not None:
            entry["unit"] = normalize_unit(units[i]) or units[i]
        axes_meta.append(entry)
    origin = [float(t) for t in translate] if translate is not None else [0.0] * len(axes)
    datasets = []
    for level in range(levels):
        factor = 2**level
        scale = [*base[:-2], base[-2] * factor, base[-1] * factor]
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        shift = origin[:-2] + [
            o + b * (factor - 1) / 2 for o, b in zip(origin[-2:], base[-2:], strict=True)
        ]
        if any(shift):
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    rounding = ", rounded half to even" if np.dtype(dtype).kind in "iub" else ""
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [
                {
                    "name": name,
                    "axes": axes_meta,
                    "datasets": datasets,
                    "type": "mean",
                    "metadata": {
                        "description": f"2x2 mean in Y and X{rounding}; Z and T not downsampled",
                        "method": "decrappify.io.omezarr.downsample_yx",
                    },
                }
            ],
        }
    }


@dataclass
class _ResumeState:
    folder: Path
    state: dict[str, Any]

    @property
    def log(self) -> Path:
        return self.folder / "done.txt"

    def matches(self) -> bool:
        try:
            return json.loads((self.folder / "state.json").read_text()) == self.state
        except (OSError, ValueError):
            return False

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, sort_keys=True))
        os.replace(tmp, self.folder / "state.json")

    def done(self) -> set[tuple[int, ...]]:
        if not self.log.exists():
            return set()
        finished = set()
        for line in self.log.read_text().splitlines():
            try:
                finished.add(tuple(int(v) for v in line.split(",")))
            except ValueError:
                continue  # a line cut short by a crash
        return finished

    def mark(self, index: tuple[int, ...]) -> None:
        with self.log.open("a") as handle:
            handle.write(",".join(str(i) for i in index) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def iter_write_ome_zarr(
    data: Any,
    store: Path,
    *,
    axes: str,
    pixel_size: Sequence[float] | None,
    units: Sequence[str] | None,
    name: str,
    chunks: tuple[int, ...],
    translate: Sequence[float] | None = None,
    levels: int,
    resume_key: str | None = None,
    client: Any = None,
    label: str = "",
) -> Generator[Progress, None, None]:
    """Write an NGFF 0.5 OME-Zarr image into ``store`` (a temporary path), block by block.

    The caller renames ``store`` to its final name afterwards and removes it on failure
    (see :func:`decrappify.io.write.iter_write_image`).

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        Level-0 pixels.
    store : Path
        Folder of the store to write (created; removed first unless resuming).
    axes : str
        Image axes.
    pixel_size, units : sequence or None
        Physical metadata.
    name : str
        Image name stored in the metadata.
    translate : sequence of float or None
        Level-0 position of the first pixel centre.
    chunks : tuple of int
        Chunk shape of every level.
    levels : int
        Number of resolution levels (1 = no pyramid).
    resume_key : str or None
        When given, ``store`` keeps a record of finished level-0 blocks; an existing
        ``store`` written with the same key and parameters is completed instead of
        restarted, one with another key is discarded.
    client : distributed.Client or None
        Compute level-0 blocks on this cluster.
    label : str
        Name of the output for progress messages.

    Yields
    ------
    Progress
        ``phase="write"``, one event per block written: ``step`` of ``total`` counts the
        level-0 blocks, then (from 1 again) the pyramid's blocks, as the message says.
    """
    import zarr

    shape = tuple(int(s) for s in data.shape)
    dtype = np.dtype(data.dtype)
    shapes = level_shapes(shape, levels)
    block = write_block_shape(data, chunks)
    attrs = multiscale_attributes(
        axes, pixel_size, units, levels=levels, name=name, dtype=dtype, translate=translate
    )
    level0 = grid(shape, block)
    pyramid = [
        grid(s, tuple(min(c, n) for c, n in zip(chunks, s, strict=True))) for s in shapes[1:]
    ]

    resume = None
    if resume_key is not None:
        resume = _ResumeState(
            store / RESUME_DIR,
            {
                "resume_key": resume_key,
                "shape": list(shape),
                "dtype": dtype.str,
                "chunks": list(chunks),
                "block": list(block),
                "levels": levels,
                "attributes": attrs,
            },
        )
    done: set[tuple[int, ...]] = set()
    if resume is not None and store.exists() and resume.matches():
        group = zarr.open_group(store, mode="r+")
        arrays = [group[str(level)] for level in range(levels)]
        done = resume.done()
    else:
        arrays = _create_arrays(store, attrs, shapes, chunks, dtype, axes)
        if resume is not None:
            resume.save()

    # the bar counts level-0 blocks, then the pyramid's
    yield from _iter_level0(data, arrays[0], level0, block, done, resume, client, label)
    yield from _iter_pyramid(arrays, pyramid, dtype, label)
    if resume is not None:
        remove_path(resume.folder)


def _iter_level0(
    data: Any,
    target: Any,
    level0: list[Any],
    block: tuple[int, ...],
    done: set[tuple[int, ...]],
    resume: _ResumeState | None,
    client: Any,
    label: str,
) -> Generator[Progress, None, None]:
    """Write the level-0 blocks not ``done`` yet, recording each one once it is written."""
    shape = tuple(int(s) for s in data.shape)
    step, n0 = len(done), len(level0)
    if done:
        yield Progress(
            "write",
            step,
            n0,
            message=f"{label}: resuming, {step} of {n0} blocks already written",
            info={"level": 0, "resumed": step},
        )
    todo = [(index, region) for index, region in level0 if index not in done]
    with closing(iter_blocks(data, todo, client=client)) as blocks:
        for index, values in blocks:
            target[_region(index, block, shape)] = values
            if resume is not None:
                resume.mark(index)  # type: ignore[arg-type]
            step += 1
            yield Progress(
                "write",
                step,
                n0,
                message=f"{label}: level 0, block {step} of {n0}",
                info={"level": 0, "block": index},
            )


def _iter_pyramid(
    arrays: list[Any], pyramid: list[Any], dtype: np.dtype, label: str
) -> Generator[Progress, None, None]:
    """Fill levels 1, 2, ... block by block from the level above (2x2 means)."""
    total, step = sum(len(level_grid) for level_grid in pyramid), 0
    for level, level_grid in enumerate(pyramid, start=1):
        source, target = arrays[level - 1], arrays[level]
        for index, region in level_grid:
            target[region] = downsample_yx(source[_double(region, source.shape)], dtype)
            step += 1
            yield Progress(
                "write",
                step,
                total,
                message=f"{label}: pyramid level {level} of {len(arrays) - 1}, block {step} "
                f"of {total}",
                info={"level": level, "block": index},
            )


def _create_arrays(
    store: Path,
    attrs: dict[str, Any],
    shapes: list[tuple[int, ...]],
    chunks: Sequence[int],
    dtype: np.dtype,
    axes: str,
) -> list[Any]:
    """Create the store anew with one Blosc-zstd array per level."""
    import zarr
    from zarr.codecs import BloscCodec

    if store.exists() or store.is_symlink():
        remove_path(store)
    group = zarr.create_group(store=store, zarr_format=3, attributes=attrs)
    compressor = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    return [
        group.create_array(
            name=str(level),
            shape=level_shape,
            chunks=tuple(min(c, n) for c, n in zip(chunks, level_shape, strict=True)),
            dtype=dtype,
            compressors=compressor,
            fill_value=0,
            dimension_names=tuple(a.lower() for a in axes),
        )
        for level, level_shape in enumerate(shapes)
    ]


def _region(index: Sequence[int], block: Sequence[int], shape: Sequence[int]) -> Region:
    return tuple(
        slice(i * b, min((i + 1) * b, s)) for i, b, s in zip(index, block, shape, strict=True)
    )


def _double(region: Region, shape: Sequence[int]) -> Region:
    lead, yx = region[:-2], region[-2:]
    doubled = tuple(
        slice(2 * r.start, min(2 * r.stop, n)) for r, n in zip(yx, shape[-2:], strict=True)
    )
    return (*lead, *doubled)
