"""Predict: super-resolve images larger than memory with a trained model, tile by tile.

``iter_predict`` runs a batch of files (each into ``out_dir/<stem>.zarr`` or ``.tif``);
``iter_predict_image`` one image (a file, an array or a napari layer's
:class:`~decrappify.io.Image`), into a file or into memory; ``predict_region`` one
rectangle of one plane, for a quick preview. See ``docs/predict.md``.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Literal

from decrappify.api.common import FileResult, Format, PathLike, iter_batch
from decrappify.events import Progress, run_to_end

Overlap = int | Literal["auto"]


def iter_predict(
    model: Any,
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    *,
    fmt: Format = "zarr",
    tile: int = 128,
    overlap: Overlap = "auto",
    batch: int = 8,
    device: str = "auto",
    resume: bool = False,
    scheduler: Any = None,
    cluster: Literal["local"] | None = None,
    workers: int | None = None,
    out_dtype: str | None = None,
    compile: bool = False,
    overwrite: bool = False,
    amp: bool | None = None,
    threads: int | None = None,
    scale: int | None = None,
    chunk: int | None = None,
    block: int | None = None,
) -> Generator[Progress, None, list[FileResult]]:
    """Super-resolve each input into ``out_dir/<stem>.<fmt>``; one bad input fails alone.

    The model is read and the settings are checked once, before any input (a missing or
    corrupted model file, or a tile whose ``tile × scale`` is not a multiple of 32, stops
    the batch with one error). Then each input is predicted block by block
    (:func:`decrappify.predict.engine.iter_predict_image`); an input that fails
    (unreadable, RGB, a 2D image for a 2.5D model, ...) is reported in its
    :class:`FileResult` and the others still run.

    Parameters
    ----------
    model : str, Path or LoadedModel
        A model file/folder written by :func:`decrappify.models.save_model`, or the
        loaded model.
    inputs : sequence of path
        TIFF files, Zarr/OME-Zarr stores, folders (their images) or glob patterns.
    out_dir : path
        Output folder (created if missing; it must not lie inside an input).
    fmt : {"zarr", "tif"}
        OME-Zarr (chunked, with a pyramid, resumable) or tiled BigTIFF.
    tile : int
        Tile side in LR (input) pixels; the network sees ``tile × scale`` pixels, which
        must be a multiple of 32.
    overlap : int or "auto"
        Tile overlap in LR pixels, at most ``tile // 2``; "auto" covers the model's
        receptive field when it fits, else ``tile // 2``.
    batch : int
        Tiles per forward pass.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    resume : bool
        Finish interrupted outputs instead of restarting them (OME-Zarr); outputs that
        already exist are kept and reported as skipped.
    scheduler : str, distributed.Client or None
        Address of a dask.distributed scheduler to compute blocks on (or a client).
    cluster : {"local"} or None
        Start a local cluster (one worker per GPU, or ``workers`` CPU workers).
    workers : int or None
        Workers of the local cluster.
    out_dtype : {"uint8", "uint16", "float32"} or None
        Output dtype (default: each input's).
    compile : bool
        ``torch.compile`` the network.
    overwrite : bool
        Replace existing outputs.
    amp : bool or None
        Mixed precision (None: on for CUDA).
    threads : int or None
        torch threads of a local CPU run (default: the available cores).
    scale : int or None
        Refuse the model unless it upsamples by this factor.
    chunk, block : int or None
        OME-Zarr chunk side and computed block side in HR pixels (defaults 1024, 2048).

    Yields
    ------
    Progress
        Per block of each file (``phase`` is the file name, ``info["rate"]`` the output
        rate as text such as ``"3.20 MPix/s"``, ``info["pixels_per_s"]`` the number).

    Returns
    -------
    list of FileResult
        One per input, in order; ``info`` holds ``input_shape``, ``output_shape``,
        ``dtype``, ``mpix_per_s``, ``blocks``, ``blocks_computed``, ``blocks_resumed``,
        ``tile``, ``overlap`` and ``device`` (or ``skipped``).
    """
    import torch

    from decrappify.predict.cluster import open_client
    from decrappify.predict.engine import iter_predict_image
    from decrappify.predict.model import model_handle
    from decrappify.predict.settings import resolve_device, resolve_settings

    handle = model_handle(model)
    resolve_settings(
        handle,
        None,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        amp=amp,
        out_dtype=out_dtype,
        chunk=chunk,
        block=block,
        threads=threads,
    )
    device_type = torch.device(resolve_device(device)).type

    def work(path: Path, out_path: Path) -> Generator[Progress, None, dict[str, Any]]:
        if resume and not overwrite and os.path.lexists(out_path):
            return {"skipped": "output exists (kept by --resume)"}
        result = yield from iter_predict_image(
            handle,
            path,
            out_path,
            fmt=fmt,
            tile=tile,
            overlap=overlap,
            batch=batch,
            device=device,
            amp=amp,
            compile=compile,
            out_dtype=out_dtype,
            resume=resume,
            overwrite=overwrite,
            client=client,
            chunk=chunk,
            block=block,
            threads=threads,
            scale=scale,
        )
        stats = result.stats
        keys = (
            "input_shape",
            "output_shape",
            "dtype",
            "blocks",
            "blocks_computed",
            "blocks_resumed",
            "tile",
            "overlap",
            "radius",
            "batch",
            "device",
            "lo",
            "hi",
            "compute_seconds",
        )
        info = {k: stats[k] for k in keys if k in stats}
        info["mpix_per_s"] = stats["pixels_per_s"] / 1e6
        return info

    with open_client(scheduler, cluster, workers=workers, device=device_type) as client:
        return (yield from iter_batch(inputs, out_dir, fmt, work))


def predict(
    model: Any, inputs: Sequence[PathLike], out_dir: PathLike, **kwargs: Any
) -> list[FileResult]:
    """Run :func:`iter_predict` to the end.

    Parameters
    ----------
    model : str, Path or LoadedModel
        The model.
    inputs : sequence of path
        Input files, folders or globs.
    out_dir : path
        Output folder.
    **kwargs
        As :func:`iter_predict`.

    Returns
    -------
    list of FileResult
        One per input.
    """
    return run_to_end(iter_predict(model, inputs, out_dir, **kwargs)) or []


def iter_predict_image(
    model: Any, image: Any, out_path: PathLike | None = None, **kwargs: Any
) -> Generator[Progress, None, Any]:
    """Super-resolve one image into a file, or into memory when ``out_path`` is None.

    Parameters
    ----------
    model : str, Path, LoadedModel or torch.nn.Module
        The model.
    image : Image, array or path
        The LR image (a napari layer wrapped as an :class:`~decrappify.io.Image` keeps its
        pixel size and translation; the result overlays it).
    out_path : path or None
        ``.zarr``/``.ome.zarr`` or ``.tif``; None for an in-memory numpy result (refused
        above ``max_memory`` bytes, 2 GiB by default).
    **kwargs
        Settings of :func:`decrappify.predict.engine.iter_predict_image` (``tile``,
        ``overlap``, ``batch``, ``device``, ``out_dtype``, ``resume``, ``client`` ...).

    Yields
    ------
    Progress
        ``phase="predict"``, one event per block.

    Returns
    -------
    PredictResult
        ``image`` (the result), ``path`` and ``stats``.
    """
    from decrappify.predict.engine import iter_predict_image as engine_iter

    return (yield from engine_iter(model, image, out_path, **kwargs))


def predict_region(
    model: Any,
    image: Any,
    region: Any,
    *,
    plane: int | None = None,
    tile: int = 128,
    overlap: Overlap = "auto",
    batch: int = 8,
    device: str = "auto",
    out_dtype: str | None = None,
    lo_hi: tuple[float, float] | None = None,
) -> Any:
    """Super-resolve one LR rectangle of one plane: napari's "preview current view".

    Parameters
    ----------
    model : str, Path, LoadedModel or torch.nn.Module
        The model.
    image : Image or array
        The LR image.
    region : pair of (start, stop) or pair of slice
        LR rectangle of the plane.
    plane : int or None
        Plane of a ZYX/TYX stack.
    tile, overlap, batch, device, out_dtype
        As for :func:`iter_predict`.
    lo_hi : tuple of float or None
        The image's normalisation range when already known (saves a pass over it).

    Returns
    -------
    Image
        2D HR image of the region, placed over it (pixel size / scale, translation).
    """
    from decrappify.predict.engine import predict_image_region

    return predict_image_region(
        model,
        image,
        region,
        plane=plane,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        out_dtype=out_dtype,
        lo_hi=lo_hi,
    )
