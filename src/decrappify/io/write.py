"""``iter_write_image`` / ``write_image``: atomic, chunked OME-Zarr and OME-TIFF output."""

from __future__ import annotations

import errno
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end
from decrappify.io._blocks import iter_blocks, round_up
from decrappify.io.atomic import commit, partial_path, remove_path, write_errno, write_failure
from decrappify.io.chunks import settle_pending_writes
from decrappify.io.image import Image
from decrappify.io.locks import lock_outputs
from decrappify.io.omezarr_write import default_chunks, default_levels, iter_write_ome_zarr
from decrappify.io.paths import check_output_path, image_stem, output_format
from decrappify.io.read import read_image
from decrappify.io.tiff_write import BIGTIFF_MIN_BYTES, DEFAULT_TILE, TileWriter


def iter_write_image(
    image: Image | Any,
    path: str | Path,
    *,
    format: str | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    resume_key: str | None = None,
    client: Any = None,
    levels: int | None = None,
) -> Generator[Progress, None, Path]:
    """Write an image as OME-Zarr or OME-TIFF, block by block, yielding progress.

    The output is written under ``.<name>.partial`` beside ``path`` and renamed to
    ``path`` at the end (an existing ``path`` is replaced only with ``overwrite=True``,
    and only once the new output is complete). An error, an exception raised while
    computing the pixels, or closing the generator (Cancel, Ctrl-C) leaves nothing under
    ``path`` and removes the temporary output, except for OME-Zarr with ``resume_key``,
    whose partial store is kept so that a rerun can finish it.

    Memory is bounded by the block size: numpy input is sliced, dask input is computed
    one block at a time with the threaded scheduler (or a few at a time on a
    dask.distributed ``client``).

    **OME-Zarr** (``.zarr``/``.ome.zarr``, ``format="zarr"``): NGFF 0.5 on Zarr v3,
    chunks of ``chunks`` (default one plane deep and 1024x1024 in Y/X), Blosc-zstd
    compressed, a 2x Y/X pyramid of ``levels`` levels (default: halve until the largest
    of Y, X is at most 256), pixel size and units in the multiscale transformations.
    Level-0 blocks are whole chunks and, when the dask chunks nest with ``chunks``, whole
    dask chunks, so each input chunk is computed once. With ``resume_key``, the partial
    store records each finished level-0 block; a rerun with the same key (and the same
    shape, dtype, chunks, levels and metadata) computes only the missing blocks and
    gives the same output as an uninterrupted run; another key discards the partial.

    **OME-TIFF** (``.tif``/``.tiff``, ``format="tiff"``): tiled (``chunks`` gives the Y/X
    tile, default 256x256), zlib-compressed, BigTIFF when the pixels take 1.875 GiB or
    more, OME-XML with PhysicalSizeX/Y/Z (or TimeIncrement) and units plus resolution
    tags. Pixels are computed in bands of whole tile rows, as tall as the input's dask
    chunks (memory: one band, i.e. chunk height x image width), and handed to the writer
    tile by tile. ``resume_key`` and ``levels`` do not apply: an interrupted TIFF is
    written again from the start.

    Parameters
    ----------
    image : Image or array
        What to write (arrays are wrapped with :func:`read_image`).
    path : str or Path
        The output file (``.tif``/``.tiff``) or store (``.zarr``/``.ome.zarr``).
    format : str or None
        ``"tiff"`` or ``"zarr"``; None to decide from the ending of ``path``.
    chunks : sequence of int or None
        OME-Zarr chunk shape (one entry per axis, or two for Y/X) or TIFF tile shape
        (Y/X, multiples of 16).
    overwrite : bool
        Replace an existing ``path``.
    resume_key : str or None
        Make an OME-Zarr write resumable (see above).
    client : distributed.Client or None
        Compute blocks of dask input on this cluster; the caller writes them as they
        arrive.
    levels : int or None
        Number of OME-Zarr resolution levels, including level 0.

    Yields
    ------
    Progress
        ``phase="write"``, one event per block (OME-Zarr) or tile row (TIFF).

    Returns
    -------
    Path
        ``path``, once complete.

    Raises
    ------
    OutputError
        Existing output without ``overwrite``, output inside or over the input, folder
        not writable, write failure.
    InputError
        Bad ``chunks``/``levels``, empty image or unsupported pixel type.
    """
    if not isinstance(image, Image):
        image = read_image(image)
    path = Path(path).expanduser()
    fmt = output_format(path, format)
    data = _writable(image)
    check_output_path(path, [image.source] if image.source else [], is_folder=False)
    if os.path.lexists(path) and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it")
    blocks = _format_writer(
        image, data, path, fmt, chunks=chunks, levels=levels, resume_key=resume_key, client=client
    )
    with lock_outputs([path]):  # one writer per output: a second run fails here, at once
        yield from _written(
            blocks, path, fmt, overwrite=overwrite, resumable=resume_key is not None
        )
    return path


def _format_writer(
    image: Image,
    data: Any,
    path: Path,
    fmt: str,
    *,
    chunks: Sequence[int] | None,
    levels: int | None,
    resume_key: str | None,
    client: Any,
) -> Generator[Progress, None, Any]:
    """Return the generator that writes ``data`` in ``fmt`` to the partial output of ``path``.

    Its settings are checked here, before anything is written.
    """
    if fmt == "zarr":
        return iter_write_ome_zarr(
            data,
            partial_path(path),
            axes=image.axes,
            pixel_size=image.pixel_size,
            units=image.units,
            translate=image.translate,
            name=image.name if image.source else image_stem(path),
            chunks=zarr_chunks(chunks, data.shape),
            levels=_check_levels(levels, data.shape),
            resume_key=resume_key,
            client=client,
            label=path.name,
        )
    tile = tiff_tile(chunks)
    return _iter_write_tiff(
        data, partial_path(path), image, tile=tile, client=client, label=path.name
    )


def _written(
    blocks: Generator[Progress, None, Any],
    path: Path,
    fmt: str,
    *,
    overwrite: bool,
    resumable: bool,
) -> Generator[Progress, None, None]:
    """Run a writer into ``path``'s temporary, then move it in place; clean up on failure.

    A failure of the file system becomes one :class:`OutputError` line; the temporary is
    deleted unless it is a resumable OME-Zarr (and the line then says where it is kept).
    """
    tmp = partial_path(path)
    keep_partial = fmt == "zarr" and resumable
    finished = False
    try:
        yield from blocks
        commit(tmp, path, overwrite=overwrite)
        finished = True
    except InputError:
        raise
    except Exception as err:  # a full disk, a file size limit ... as one line
        failure = write_failure(path, err)
        if failure is None:
            raise
        keep_partial = keep_partial and write_errno(err) != errno.ENAMETOOLONG
        if keep_partial and os.path.lexists(tmp):
            failure = OutputError(
                f"{failure}; what was written is kept in {tmp}: rerun with --resume to finish "
                "it, or delete it"
            )
        raise failure from err
    finally:
        blocks.close()
        if not finished and fmt == "zarr":
            settle_pending_writes()  # chunk writes zarr still runs would recreate the store
        if not finished and not keep_partial:
            remove_path(tmp)


def write_image(
    image: Image | Any,
    path: str | Path,
    *,
    format: str | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    resume_key: str | None = None,
    client: Any = None,
    levels: int | None = None,
) -> Path:
    """Write an image to the end without progress; see :func:`iter_write_image`.

    Parameters
    ----------
    image : Image or array
        What to write.
    path : str or Path
        The output.
    format, chunks, overwrite, resume_key, client, levels
        As for :func:`iter_write_image`.

    Returns
    -------
    Path
        ``path``.
    """
    result = run_to_end(
        iter_write_image(
            image,
            path,
            format=format,
            chunks=chunks,
            overwrite=overwrite,
            resume_key=resume_key,
            client=client,
            levels=levels,
        )
    )
    assert result is not None
    return result


def zarr_chunks(chunks: Sequence[int] | None, shape: Sequence[int]) -> tuple[int, ...]:
    """Validate an OME-Zarr chunk shape (one entry per axis, or Y/X only) for ``shape``.

    Parameters
    ----------
    chunks : sequence of int or None
        Requested chunks; None for :func:`~decrappify.io.omezarr_write.default_chunks`.
    shape : sequence of int
        Image shape.

    Returns
    -------
    tuple of int
        Chunk shape, clipped to ``shape``.
    """
    if chunks is None:
        return default_chunks(shape)
    values = _positive_ints(chunks, "chunks")
    if len(values) == 2:
        values = (1,) * (len(shape) - 2) + values
    if len(values) != len(shape):
        raise InputError(
            f"chunks needs {len(shape)} entries (or 2 for Y/X) for shape {tuple(shape)}, "
            f"got {tuple(chunks)}"
        )
    return tuple(min(c, int(s)) for c, s in zip(values, shape, strict=True))


def tiff_tile(chunks: Sequence[int] | None) -> tuple[int, int]:
    """Validate a TIFF tile shape: the last two entries of ``chunks``, multiples of 16.

    Parameters
    ----------
    chunks : sequence of int or None
        Requested chunks; None for 256x256.

    Returns
    -------
    tuple of int
        ``(tile_y, tile_x)``.
    """
    if chunks is None:
        return DEFAULT_TILE
    values = _positive_ints(chunks, "chunks")
    if len(values) < 2 or any(v % 16 for v in values[-2:]):
        raise InputError(f"chunks for TIFF tiles must be multiples of 16, got {tuple(chunks)}")
    return values[-2], values[-1]


def _positive_ints(values: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        result = tuple(int(v) for v in values)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be a sequence of integers, got {values!r}") from err
    if not result or any(v < 1 for v in result) or any(int(v) != v for v in values):
        raise InputError(f"{name} must be positive integers, got {tuple(values)}")
    return result


def _check_levels(levels: int | None, shape: Sequence[int]) -> int:
    if levels is None:
        return default_levels(shape)
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 1:
        raise InputError(f"levels must be an integer of at least 1, got {levels!r}")
    return int(levels)


def _writable(image: Image) -> Any:
    data = image.data
    if any(int(s) == 0 for s in data.shape):
        raise InputError(f"{image.name}: image is empty (shape {image.shape})")
    dtype = np.dtype(data.dtype)
    if dtype.kind == "b":
        return data.astype(np.uint8)
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise InputError(f"{image.name}: cannot write pixel type {dtype}")
    return data


def _iter_write_tiff(
    data: Any,
    tmp: Path,
    image: Image,
    *,
    tile: tuple[int, int],
    client: Any,
    label: str,
) -> Generator[Progress, None, None]:
    shape = tuple(int(s) for s in data.shape)
    dtype = np.dtype(data.dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    band = _band_height(data, tile[0])
    planes = list(np.ndindex(*shape[:-2]))
    items = [
        ((plane, y0), (*plane, slice(y0, min(y0 + band, shape[-2])), slice(None)))
        for plane in planes
        for y0 in range(0, shape[-2], band)
    ]
    tile_rows = -(-shape[-2] // tile[0])
    total = len(planes) * tile_rows
    tiles_per_row = -(-shape[-1] // tile[1])
    writer = TileWriter(
        tmp,
        shape=shape,
        dtype=dtype,
        axes=image.axes,
        pixel_size=image.pixel_size,
        units=image.units,
        translate=image.translate,
        tile=tile,
        bigtiff=nbytes >= BIGTIFF_MIN_BYTES,
        queue_size=2 * tiles_per_row,
    )
    step = 0
    blocks = iter_blocks(data, items, client=client, ordered=True)
    try:
        for _, values in blocks:
            for r0 in range(0, values.shape[0], tile[0]):
                for c0 in range(0, shape[-1], tile[1]):
                    writer.put(values[r0 : r0 + tile[0], c0 : c0 + tile[1]])
                step += 1
                yield Progress(
                    "write",
                    step,
                    total,
                    message=f"{label}: tile row {step} of {total}",
                    info={"tile_row": step},
                )
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        blocks.close()


def _band_height(data: Any, tile_y: int) -> int:
    if isinstance(data, np.ndarray):
        return tile_y
    rows = data.chunks[-2]
    return round_up(max(int(rows[0]), tile_y), tile_y)
