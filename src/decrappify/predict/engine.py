"""Chunked super-resolution of images larger than memory (torch + dask).

The output is a lazy dask array whose blocks are whole output chunks (2048² HR pixels by
default, one plane deep). Each block is computed on its own from the low-resolution (LR)
rectangle under it plus a halo of ``overlap`` LR pixels (an explicit block plan, see
:func:`decrappify.predict.tiling.input_region_for_output`): the LR pixels are read,
normalised with the image's percentiles (computed once per image), cut into tiles that
go to the device in batches and are blended back with weights that sum to one
(:func:`decrappify.predict.tiles.predict_region`), mapped back to intensities and handed
to :func:`decrappify.io.iter_write_image`, which stores them chunk by chunk (OME-Zarr
with a pyramid, or tiled BigTIFF). Memory is bounded by the block and batch sizes, never
by the image size.

* **Local runs** overlap input, compute and output: a reading thread fetches the next
  block's input while a compute thread runs the model on the current one, and the
  caller's thread stores the previous result. The model runs in
  one thread at a time with torch's intra-op parallelism (torch threads = available
  cores); dask threads only move data.
* **Distributed runs** (a ``dask.distributed`` client) build one task per block whose
  inputs are the LR slices it needs (read on the workers). Each worker loads the model
  once (a per-process cache keyed by the model file's SHA-256) and runs one forward pass
  at a time. The output is identical to a local run.
* **Resume**: with ``resume=True`` the OME-Zarr partial output records finished blocks
  under a key derived from the model file's digest, the input's identity, the
  normalisation range and every setting that changes the pixels
  (:func:`decrappify.predict.identity.resume_key`); a rerun computes only the missing
  blocks and gives the same bytes as an uninterrupted run.

2.5D models (``n_frames > 1``) take the planes around each plane of a ZYX/TYX stack,
mirrored at the ends as in training (:func:`decrappify.data.patches.neighbour_planes`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decrappify.data.patches import neighbour_planes
from decrappify.errors import Cancelled, InputError, OutputError
from decrappify.events import Progress
from decrappify.io import (
    Image,
    check_finite,
    check_output_path,
    iter_write_image,
    output_format,
    read_image,
)
from decrappify.normalize import denormalize, normalize, percentile_range
from decrappify.predict import model as model_module
from decrappify.predict.blocks import BlockGrid
from decrappify.predict.identity import input_identity, resume_key
from decrappify.predict.model import ModelHandle, check_image, model_handle, worker_net
from decrappify.predict.receptive import auto_overlap, max_overlap, needed_probe, receptive_radius
from decrappify.predict.settings import Overlap, PredictSettings, resolve_settings
from decrappify.predict.tiles import TileSettings, predict_region
from decrappify.predict.tiling import (
    Bounds,
    input_region_for_output,
    normalize_bounds,
    split_overlap,
)

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "BlockPredictor",
    "PredictResult",
    "iter_predict_image",
    "lazy_prediction",
    "predict_image_region",
]

log = logging.getLogger("decrappify")

#: Largest result :func:`iter_predict_image` keeps in memory when given no output path.
DEFAULT_MAX_MEMORY = 2 * 2**30


# --------------------------------------------------------------------------- block predictor

_FORWARD_LOCK = threading.Lock()  # one forward pass at a time per process (torch threads)


class BlockPredictor:
    """Computes one output block from its LR input: the per-block work of prediction.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        The LR image (Y and X last).
    grid : BlockGrid
        The output blocks.
    handle : ModelHandle
        The model.
    settings : PredictSettings
        Tiling, device and dtype.
    lo, hi : float
        Normalisation range of the image.
    token : str
        Identity of this prediction (the dask name of the output).
    """

    def __init__(
        self,
        data: Any,
        grid: BlockGrid,
        handle: ModelHandle,
        settings: PredictSettings,
        lo: float,
        hi: float,
        token: str,
    ) -> None:
        self.grid = grid
        self.scale = handle.scale
        self.n_frames = handle.n_frames
        self.model_path = str(handle.path) if handle.path is not None else None
        self.digest = handle.digest
        self.settings = settings
        self.lo, self.hi = float(lo), float(hi)
        self.token = token
        self._data = data
        self._net = handle.net
        self._prepared: Any = None
        self._tile = (settings.tile, settings.tile)
        self._batch = settings.batch
        self._cancel = threading.Event()
        self.blocks_computed = 0
        self.compute_seconds = 0.0

    # pickled for distributed workers: settings and geometry only; data and the network
    # travel as task inputs (or are loaded on the worker from the model file).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_data", "_net", "_prepared"):
            state[name] = None
        state["_cancel"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cancel = threading.Event()

    def __dask_tokenize__(self) -> str:
        return self.token

    def planes(self, index: Sequence[int]) -> tuple[int, ...] | None:
        """Planes of the input a block needs (None for a 2D image).

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        tuple of int or None
            ``n_frames`` planes centred on the block's plane, mirrored at the stack ends.
        """
        return self.planes_around(int(index[0])) if self.grid.lead else None

    def planes_around(self, plane: int) -> tuple[int, ...]:
        """List the ``n_frames`` input planes centred on ``plane`` (mirrored at the ends).

        Parameters
        ----------
        plane : int
            The plane to predict.

        Returns
        -------
        tuple of int
            Plane indices, as in training (:func:`~decrappify.data.patches.neighbour_planes`).
        """
        if self.n_frames == 1:
            return (plane,)
        return neighbour_planes(plane, self.n_frames, (0, self.grid.lead[0]))

    def input_bounds(self, index: Sequence[int]) -> tuple[Bounds, Bounds]:
        """LR rectangle to read for a block, and the block's footprint inside it.

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        tuple of Bounds
            ``(read, region)`` as :func:`~decrappify.predict.tiling.input_region_for_output`.
        """
        return input_region_for_output(
            self.grid.bounds(index),
            scale=self.scale,
            halo=self.settings.overlap,
            lr_shape=self.grid.lr_shape,
        )

    def input_slices(self, index: Sequence[int]) -> list[tuple[Any, ...]]:
        """Index the distinct input planes a block reads, in plane order.

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        list of tuple
            One index per distinct plane (one for a 2D image).
        """
        read, _ = self.input_bounds(index)
        return _plane_slices(read, self.planes(index))

    def read(self, index: Sequence[int]) -> list[np.ndarray]:
        """Read the raw input planes of a block (local runs).

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        list of numpy.ndarray
            The distinct planes, as :meth:`input_slices`.
        """
        return [_fetch(self._data, item) for item in self.input_slices(index)]

    def compute(self, index: Sequence[int], parts: Sequence[np.ndarray], net: Any = None) -> Any:
        """Super-resolve one block from its raw input planes.

        Parameters
        ----------
        index : sequence of int
            Block index.
        parts : sequence of numpy.ndarray
            The distinct input planes (:meth:`read`).
        net : torch.nn.Module or None
            The network prepared for the device (default: this process's one).

        Returns
        -------
        numpy.ndarray
            The block in the output dtype, with length-1 leading axes.
        """
        _, region = self.input_bounds(index)
        out = self.super_resolve(parts, self.planes(index), region, net)
        self.blocks_computed += 1
        return out.reshape((1,) * len(self.grid.lead) + out.shape)

    def super_resolve(
        self,
        parts: Sequence[np.ndarray],
        planes: Sequence[int] | None,
        region: Bounds,
        net: Any = None,
    ) -> np.ndarray:
        """Normalise an LR rectangle, predict a region of it and map it back to intensities.

        Parameters
        ----------
        parts : sequence of numpy.ndarray
            Raw LR rectangles of the distinct planes in ``planes`` (sorted), or one
            rectangle for a 2D image.
        planes : sequence of int or None
            The frames in network order (repeats allowed), None for a 2D image.
        region : Bounds
            The rectangle of the parts to super-resolve (the rest is context).
        net : torch.nn.Module or None
            The network prepared for the device (default: this process's one).

        Returns
        -------
        numpy.ndarray
            2D HR result in the output dtype.
        """
        net = net if net is not None else self._local_net()
        if planes is None:
            frames = np.asarray(parts[0])[None]
        else:
            order = {p: i for i, p in enumerate(sorted(set(planes)))}
            frames = np.stack([np.asarray(parts[order[p]]) for p in planes])
        lr = normalize(frames, self.lo, self.hi)
        start = time.perf_counter()
        with _FORWARD_LOCK:
            out = predict_region(
                net,
                lr if self.n_frames > 1 else lr[0],
                region,
                tile=self._tile,
                overlap=self.settings.overlap,
                batch_size=self._batch,
                device=self.settings.device,
                amp=self.settings.amp,
                channels_last=self.settings.channels_last,
                blend=self.settings.blend,
                progress=self._check_cancel,
                on_retry=self._remember,
            )
        self.compute_seconds += time.perf_counter() - start
        return denormalize(out, self.lo, self.hi, np.dtype(self.settings.out_dtype))

    def cancel(self) -> None:
        """Make a running block stop after its current batch (raises ``Cancelled``)."""
        self._cancel.set()

    def _check_cancel(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise Cancelled("prediction cancelled")

    def _remember(self, failed: TileSettings, following: TileSettings) -> None:
        log.warning(
            "out of memory with tile %s and batch %d: retrying with tile %s and batch %d",
            failed.tile,
            failed.batch_size,
            following.tile,
            following.batch_size,
        )
        self._tile, self._batch = following.tile, following.batch_size

    def _local_net(self) -> Any:
        # the caller's own network (its training flag is restored after each block), or a
        # compiled wrapper kept in the process cache for the next images of a batch
        if self._prepared is None:
            s = self.settings
            if self._net is not None and not s.compile:
                net = self._net
            else:
                net = worker_net(
                    self.model_path, self.digest, s.device, s.compile, shipped=self._net
                )
            self._prepared = _TimedNet(net) if torch.device(s.device).type == "cpu" else net
        return self._prepared

    @property
    def forward_seconds(self) -> float | None:
        """Seconds spent in the network's forward passes in this process (CPU runs)."""
        prepared = self._prepared
        return prepared.seconds if isinstance(prepared, _TimedNet) else None


class _TimedNet(torch.nn.Module):
    """Wraps a network and adds up the time of its forward passes (CPU: synchronous)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.inner = net
        self.scale = net.scale
        self.n_frames = getattr(net, "n_frames", 1)
        self.multiple = getattr(net, "multiple", 32)
        self.seconds = 0.0
        self.training = net.training  # so that restoring the mode restores the caller's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self.inner(x)
        finally:
            self.seconds += time.perf_counter() - start


def _plane_slices(read: Bounds, planes: Sequence[int] | None) -> list[tuple[Any, ...]]:
    (y0, y1), (x0, x1) = read
    yx = (slice(y0, y1), slice(x0, x1))
    if planes is None:
        return [yx]
    return [(p, *yx) for p in sorted(set(planes))]


def _fetch(data: Any, item: tuple[Any, ...]) -> np.ndarray:
    region = data[item]
    if hasattr(region, "compute"):
        region = region.compute(scheduler="sync")
    return np.asarray(region)


def _remote_block(
    predictor: BlockPredictor, index: tuple[int, ...], shipped: Any, *parts: np.ndarray
) -> np.ndarray:
    """Task of a distributed block: get this worker's network, then compute."""
    s = predictor.settings
    threads = model_module.WORKER_TORCH_THREADS
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # per thread: set in the worker's task thread
    net = worker_net(predictor.model_path, predictor.digest, s.device, s.compile, shipped)
    return predictor.compute(index, parts, net)


class _Pipeline:
    """Local read → compute overlap: one reading thread, one compute thread, one block ahead.

    ``get(index)`` returns the block (computing it if needed) and starts reading and
    computing the next block in row-major order, so that while the caller stores a block
    the model already runs on the next one and the reader fetches the one after.
    """

    def __init__(self, predictor: BlockPredictor, threads: int | None = None) -> None:
        self.predictor = predictor
        order = predictor.grid.indices()
        self._next = dict(zip(order, order[1:], strict=False))
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="decrappify-read")
        # torch's intra-op thread count is a per-thread setting: set it where the model runs
        self._worker = ThreadPoolExecutor(
            1,
            thread_name_prefix="decrappify-predict",
            initializer=torch.set_num_threads if threads else None,
            initargs=(threads,) if threads else (),
        )
        self._inputs: dict[tuple[int, ...], Future[Any]] = {}
        self._outputs: collections.OrderedDict[tuple[int, ...], Future[Any]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, index: tuple[int, ...]) -> np.ndarray:
        index = tuple(int(i) for i in index)
        with self._lock:
            future = self._outputs.pop(index, None)
            if future is None:
                future = self._submit(index)
            following = self._next.get(index)
            if following is not None and following not in self._outputs:
                self._outputs[following] = self._submit(following)
            while len(self._outputs) > 2:  # guesses nobody asked for: drop the oldest
                stale, old = self._outputs.popitem(last=False)
                old.cancel()
                self._inputs.pop(stale, None)
        return future.result()

    def _submit(self, index: tuple[int, ...]) -> Future[Any]:
        if index not in self._inputs:
            self._inputs[index] = self._reader.submit(self.predictor.read, index)
        return self._worker.submit(self._compute, index, self._inputs[index])

    def _compute(self, index: tuple[int, ...], parts: Future[Any]) -> np.ndarray:
        with self._lock:
            self._inputs.pop(index, None)
        return self.predictor.compute(index, parts.result())

    def close(self) -> None:
        self.predictor.cancel()
        with self._lock:
            for future in self._outputs.values():
                future.cancel()
            self._outputs.clear()
            self._inputs.clear()
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._reader.shutdown(wait=True, cancel_futures=True)


class _LocalBlocks:
    """The dask block function of a local run (delegates to the pipeline)."""

    def __init__(self, pipeline: _Pipeline, token: str) -> None:
        self.pipeline = pipeline
        self.token = token

    def __call__(self, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        assert block_id is not None
        return self.pipeline.get(tuple(block_id))

    def __dask_tokenize__(self) -> str:
        return self.token


def lazy_prediction(predictor: BlockPredictor, *, client: Any = None) -> tuple[Any, Any]:
    """Build the output of a prediction as a lazy dask array, one task per block.

    Parameters
    ----------
    predictor : BlockPredictor
        The per-block work (it holds the input).
    client : distributed.Client or None
        Build tasks for this cluster (inputs read on the workers, the model loaded once
        per worker); None for a local run (a read/compute pipeline in this process).

    Returns
    -------
    data : dask.array.Array
        The HR output, chunked by blocks.
    closer : callable
        Stops the local pipeline's threads (call it when done).
    """
    import dask.array as da

    grid = predictor.grid
    dtype = np.dtype(predictor.settings.out_dtype)
    meta = np.empty((0,) * len(grid.out_shape), dtype=dtype)
    name = f"decrappify-predict-{predictor.token}"
    if client is None:
        pipeline = _Pipeline(predictor, _local_threads(predictor.settings))
        data = da.map_blocks(
            _LocalBlocks(pipeline, predictor.token),
            chunks=grid.chunks,
            dtype=dtype,
            meta=meta,
            name=name,
        )
        return data, pipeline.close
    return _distributed_array(predictor, client, name, dtype, meta), lambda: None


def _distributed_array(
    predictor: BlockPredictor, client: Any, name: str, dtype: np.dtype, meta: np.ndarray
) -> Any:
    import dask.array as da
    from dask import delayed

    source = predictor._data
    if isinstance(source, np.ndarray):
        source = da.from_array(source, chunks=_input_chunks(source.shape))
    shipped = None
    if predictor.model_path is None:
        # an in-memory network: sent to every worker once, not with every task
        shipped = client.scatter(predictor._net, broadcast=True, hash=False)
    grid = predictor.grid
    blocks = np.empty(grid.counts, dtype=object)
    for index in grid.indices():
        parts = [source[item] for item in predictor.input_slices(index)]
        key = f"{name}-{'-'.join(str(i) for i in index)}"
        task = delayed(_remote_block, pure=True)(
            predictor, index, shipped, *parts, dask_key_name=key
        )
        shape = tuple(s.stop - s.start for s in grid.slices(index))
        blocks[index] = da.from_delayed(task, shape=shape, dtype=dtype, meta=meta)
    return da.block(blocks.tolist())


def _input_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    lead = (1,) * (len(shape) - 2)
    return (*lead, *(min(1024, int(n)) for n in shape[-2:]))


# --------------------------------------------------------------------------- whole images


@dataclass(frozen=True)
class PredictResult:
    """What :func:`iter_predict_image` returns.

    Parameters
    ----------
    image : Image
        The super-resolved image: in memory (numpy) without an output path, else the
        written file opened lazily. Its pixel size is the input's divided by the scale
        and its translation puts it over the input.
    path : Path or None
        The written file.
    stats : dict
        Figures of the run: ``blocks``, ``blocks_computed``, ``blocks_resumed``,
        ``seconds``, ``pixels_per_s`` (output pixels computed per second, end to end),
        ``compute_seconds`` (time predicting tiles: reading windows, forward passes and
        blending; local runs), ``forward_seconds`` (time in the network's forward passes;
        local CPU runs), ``tile``, ``overlap``,
        ``radius``, ``lo``/``hi``, ``device``, ``input_shape``, ``output_shape``, ``dtype``.
    """

    image: Image
    path: Path | None
    stats: dict[str, Any] = field(default_factory=dict)


def iter_predict_image(
    model: Any,
    image: Image | Any,
    out_path: str | Path | None = None,
    *,
    fmt: str | None = None,
    tile: int = 128,
    overlap: Overlap = "auto",
    batch: int = 8,
    device: str = "auto",
    amp: bool | None = None,
    compile: bool = False,
    out_dtype: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    client: Any = None,
    chunk: int | None = None,
    block: int | None = None,
    threads: int | None = None,
    scale: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    blend: float = 0.5,
) -> Generator[Progress, None, PredictResult]:
    """Super-resolve one image, block by block, into a file or into memory.

    Parameters
    ----------
    model : LoadedModel, str, Path or torch.nn.Module
        The model (see :func:`model_handle`).
    image : Image or array
        The LR image (2D, or a ZYX/TYX stack predicted plane by plane); lazy inputs are
        read block by block.
    out_path : str, Path or None
        ``.zarr``/``.ome.zarr`` (OME-Zarr with a pyramid) or ``.tif``/``.tiff`` (tiled
        BigTIFF); None to return the result in memory (at most ``max_memory`` bytes).
    fmt : {"zarr", "tiff"} or None
        Output format; None to decide from ``out_path``.
    tile : int
        Tile side in LR pixels; ``tile × scale`` must be a multiple of 32.
    overlap : int or "auto"
        Overlap of neighbouring tiles in LR pixels (at most ``tile // 2``); "auto" covers
        the model's receptive field when it fits, else ``tile // 2``
        (:func:`decrappify.predict.receptive.auto_overlap`).
    batch : int
        Tiles per forward pass (halved, then the tile, on device out-of-memory).
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    amp : bool or None
        Autocast to float16 (CUDA) / bfloat16; None: on for CUDA.
    compile : bool
        ``torch.compile`` the network first (slow to start, faster per tile).
    out_dtype : {"uint8", "uint16", "float32"} or None
        Output dtype (default: the input's). Integer outputs are rounded and clipped;
        float32 keeps the normalised→raw mapping unclipped.
    resume : bool
        Make an OME-Zarr output resumable: an interrupted run started again with the same
        arguments computes only the missing blocks.
    overwrite : bool
        Replace an existing output.
    client : distributed.Client or None
        Compute blocks on this cluster (file outputs only).
    chunk : int or None
        Stored OME-Zarr chunk side in HR pixels (default 1024).
    block : int or None
        Computed block side in HR pixels, rounded to a multiple of the chunk and of the
        scale (default 2048).
    threads : int or None
        torch threads of a local CPU run (default: the cores this process may use).
    scale : int or None
        Refuse the model unless it upsamples by this factor.
    max_memory : int
        Largest in-memory result in bytes.
    blend : float
        Fraction of the overlap used for cross-fading (the rest is context margin, see
        :func:`decrappify.predict.tiling.split_overlap`); 0 cuts tiles hard.

    Yields
    ------
    Progress
        ``phase="predict"``: preparation, one event per block (``info["rate"]`` is the
        output rate as text, ``info["pixels_per_s"]`` the number), then the pyramid.

    Returns
    -------
    PredictResult
        The result image, the path written and the run's figures.

    Raises
    ------
    InputError
        For bad settings, a model that does not fit the image (2.5D model on a 2D image,
        another scale than ``scale``), NaN/Inf pixels, an in-memory result above
        ``max_memory``, or nothing fitting in device memory.
    OutputError
        For an existing output (without ``overwrite``) or one inside the input.
    ModelFileError
        For a missing or corrupted model.
    """
    started = time.perf_counter()
    handle = model_handle(model)
    if not isinstance(image, Image):
        image = read_image(image)
    if scale is not None and scale != handle.scale:
        raise InputError(
            f"model {handle.name} upsamples ×{handle.scale}, but scale {scale} was asked"
        )
    check_image(image, handle)
    settings = resolve_settings(
        handle,
        image,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        amp=amp,
        compile=compile,
        out_dtype=out_dtype,
        chunk=chunk,
        block=block,
        threads=threads,
        blend=blend,
    )
    grid = BlockGrid.plan(image.shape, handle.scale, chunk=settings.chunk, block=settings.block)
    out_nbytes = math.prod(grid.out_shape) * np.dtype(settings.out_dtype).itemsize
    if out_path is None and out_nbytes > max_memory:
        raise InputError(
            f"{image.name}: the result would take {out_nbytes / 2**30:.1f} GiB in memory "
            f"(limit {max_memory / 2**30:.1f} GiB); give an output path (.zarr or .tif)"
        )
    if out_path is not None:
        _check_output(Path(out_path), fmt, image, overwrite)
    name = image.name
    if overlap == "auto":
        yield Progress("predict", 0, None, message=f"{name}: receptive field of the model")
        with _torch_threads(_local_threads(settings)):
            settings = _with_auto_overlap(settings, handle)
    yield Progress("predict", 0, None, message=f"{name}: intensity range")
    if image.dtype.kind == "f":
        check_finite(image.data, image.source or name)
    norm = handle.normalization
    lo, hi = percentile_range(image.data, norm.low, norm.high)
    key = None
    if resume and out_path is not None:
        key = resume_key(
            {
                "model": handle.digest,
                "input": input_identity(image.source, image.data),
                "axes": image.axes,
                "lo": lo,
                "hi": hi,
                "settings": settings.key_parts(),
                "grid": [grid.block[0], grid.block[1]],
            }
        )
    token = key.rsplit("-", 1)[-1][:32] if key else uuid.uuid4().hex
    predictor = BlockPredictor(image.data, grid, handle, settings, lo, hi, token)
    stats: dict[str, Any] = {
        "input_shape": image.shape,
        "output_shape": grid.out_shape,
        "dtype": settings.out_dtype,
        "device": settings.device,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "radius": settings.radius,
        "batch": settings.batch,
        "lo": lo,
        "hi": hi,
        "blocks": len(grid.indices()),
    }
    with contextlib.ExitStack() as stack:
        counter = _RateCounter(grid, name)
        if out_path is None:
            pipeline = _Pipeline(predictor, _local_threads(settings))
            stack.callback(pipeline.close)
            data = np.empty(grid.out_shape, dtype=np.dtype(settings.out_dtype))
            indices = grid.indices()
            for step, index in enumerate(indices, start=1):
                data[grid.slices(index)] = pipeline.get(index)
                yield counter.block(step, len(indices), index)
            result_image = image.with_data(data, yx_factor=1.0 / handle.scale)
            path = None
        else:
            lazy, close = lazy_prediction(predictor, client=client)
            stack.callback(close)
            path = yield from _write(
                image.with_data(lazy, yx_factor=1.0 / handle.scale),
                Path(out_path),
                fmt=fmt,
                settings=settings,
                grid=grid,
                overwrite=overwrite,
                key=key,
                client=client,
                counter=counter,
            )
            result_image = read_image(path)
    stats.update(counter.summary())
    stats["seconds"] = time.perf_counter() - started
    local = client is None or out_path is None
    stats["compute_seconds"] = predictor.compute_seconds if local else None
    stats["forward_seconds"] = predictor.forward_seconds if local else None
    return PredictResult(image=result_image, path=path, stats=stats)


def _check_output(path: Path, fmt: str | None, image: Image, overwrite: bool) -> None:
    """Refuse a bad output before any work (the writer checks again when it starts)."""
    output_format(path, fmt)
    check_output_path(path, [image.source] if image.source else [], is_folder=False)
    if os.path.lexists(path) and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it")


def _write(
    image: Image,
    out_path: Path,
    *,
    fmt: str | None,
    settings: PredictSettings,
    grid: BlockGrid,
    overwrite: bool,
    key: str | None,
    client: Any,
    counter: _RateCounter,
) -> Generator[Progress, None, Path]:
    kind = output_format(out_path, fmt)
    chunks = None
    if kind == "zarr":
        side = [min(settings.chunk, n) for n in grid.out_shape[-2:]]
        chunks = (*((1,) * len(grid.lead)), *side)
    events = iter_write_image(
        image,
        out_path,
        format=kind,
        chunks=chunks,
        overwrite=overwrite,
        resume_key=key,
        client=client,
    )
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return Path(stop.value)
            yield counter.write_event(event, kind)
    finally:
        events.close()


class _RateCounter:
    """Turns writer events into prediction progress with output pixels per second.

    The clock starts when the blocks start (after the model, the receptive field and the
    intensity range are ready) and restarts after a resume event, so the rate counts only
    blocks computed in this run.
    """

    def __init__(self, grid: BlockGrid, name: str) -> None:
        self.grid = grid
        self.name = name
        self.start = time.perf_counter()
        self.end: float | None = None
        self.pixels = 0
        self.computed = 0
        self.resumed = 0
        self.total_pixels = math.prod(grid.out_shape)
        self.blocks = len(grid.indices())

    def rate(self) -> float:
        """Output pixels computed per second so far."""
        elapsed = (self.end or time.perf_counter()) - self.start
        return self.pixels / elapsed if elapsed > 0 else 0.0

    def _event(self, step: int, total: int | None, message: str, **info: Any) -> Progress:
        rate = self.rate()
        return Progress(
            "predict",
            step,
            total,
            message=message,
            info={"rate": f"{rate / 1e6:.2f} MPix/s", "pixels_per_s": rate, **info},
        )

    def block(self, step: int, total: int, index: Sequence[int]) -> Progress:
        """Count one block of an in-memory result."""
        self.computed += 1
        self.pixels += self.grid.pixels(index)
        return self._event(step, total, f"{self.name}: block {step} of {total}", level=0)

    def write_event(self, event: Progress, kind: str) -> Progress:
        """Translate one event of the writer."""
        info = event.info
        level = info.get("level")
        if "resumed" in info:
            self.resumed = int(info["resumed"])
            self.start = time.perf_counter()
            message = f"{self.name}: resuming, {self.resumed} block(s) already written"
        elif level == 0:
            self.computed += 1
            self.pixels += self.grid.pixels(info["block"])
            message = f"{self.name}: block {self.computed + self.resumed} of {self.blocks}"
        elif kind == "tiff":
            self.pixels = int(self.total_pixels * (event.step / (event.total or 1)))
            message = f"{self.name}: tile row {event.step} of {event.total}"
        else:
            if self.end is None:
                self.end = time.perf_counter()  # level 0 done: the rate is final
            message = f"{self.name}: pyramid level {level}"
        return self._event(event.step, event.total, message, level=level)

    def summary(self) -> dict[str, Any]:
        """Figures of the run.

        Returns
        -------
        dict
            ``blocks_computed``, ``blocks_resumed``, ``pixels_computed`` and
            ``pixels_per_s`` (output pixels of the blocks computed here per second, from
            the first block to the last one written, pyramid excluded).
        """
        return {
            "blocks_computed": self.computed,
            "blocks_resumed": self.resumed,
            "pixels_computed": self.pixels,
            "pixels_per_s": self.rate(),
        }


def _with_auto_overlap(settings: PredictSettings, handle: ModelHandle) -> PredictSettings:
    margin, _ = split_overlap(max_overlap(settings.tile), settings.blend)
    record = receptive_radius(
        handle.net,
        digest=handle.digest,
        model_path=handle.path,
        probe=needed_probe(settings.tile, handle.scale, handle.multiple, blend=settings.blend),
        needed=margin,
    )
    overlap = auto_overlap(record.radius, handle.scale, settings.tile, blend=settings.blend)
    return replace(settings, overlap=overlap, radius=record.radius)


def _local_threads(settings: PredictSettings) -> int | None:
    """Threads for torch in a local run: the given cores on CPU, the default elsewhere."""
    return settings.threads if torch.device(settings.device).type == "cpu" else None


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads of this thread for a block of code."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- one region


def predict_image_region(
    model: Any,
    image: Image | Any,
    region: Bounds | Sequence[slice],
    *,
    plane: int | None = None,
    tile: int = 128,
    overlap: Overlap = "auto",
    batch: int = 8,
    device: str = "auto",
    amp: bool | None = None,
    out_dtype: str | None = None,
    lo_hi: tuple[float, float] | None = None,
    threads: int | None = None,
) -> Image:
    """Super-resolve one LR rectangle of one plane (a quick preview of the current view).

    Parameters
    ----------
    model : LoadedModel, str, Path or torch.nn.Module
        The model.
    image : Image or array
        The LR image.
    region : Bounds or pair of slice
        LR rectangle ``((y0, y1), (x0, x1))`` of the plane.
    plane : int or None
        Plane of a stack (required for ZYX/TYX images).
    tile, overlap, batch, device, amp, out_dtype, threads
        As for :func:`iter_predict_image`.
    lo_hi : tuple of float or None
        The image's normalisation range, if already known (default: computed from the
        whole image, as the full prediction does, so the preview matches it).

    Returns
    -------
    Image
        2D ``YX`` image of the HR region, with pixel size and translation placing it over
        the region of the input. Context around the region is read from the image (a
        halo of ``overlap``), so it equals the same region of the full prediction up to
        the residual tiling difference (exactly when the overlap covers the receptive
        field).
    """
    handle = model_handle(model)
    if not isinstance(image, Image):
        image = read_image(image)
    check_image(image, handle)
    settings = resolve_settings(
        handle,
        image,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        amp=amp,
        out_dtype=out_dtype,
        threads=threads,
    )
    if overlap == "auto":
        with _torch_threads(_local_threads(settings)):
            settings = _with_auto_overlap(settings, handle)
    lr_shape = image.shape[-2:]
    bounds = normalize_bounds(region, lr_shape)
    if image.ndim == 3:
        if plane is None or not 0 <= int(plane) < image.shape[0]:
            raise InputError(
                f"{image.name}: plane must be in [0, {image.shape[0]}) for a "
                f"{image.axes} image (got {plane!r})"
            )
    norm = handle.normalization
    lo, hi = lo_hi if lo_hi is not None else percentile_range(image.data, norm.low, norm.high)
    s = handle.scale
    grid = BlockGrid(tuple(image.shape[:-2]), (int(lr_shape[0]), int(lr_shape[1])), s, (s, s))
    predictor = BlockPredictor(image.data, grid, handle, settings, lo, hi, "region")
    hr = tuple((a * s, b * s) for a, b in bounds)
    read, inner = input_region_for_output(hr, scale=s, halo=settings.overlap, lr_shape=lr_shape)
    planes = predictor.planes_around(int(plane)) if plane is not None and image.ndim == 3 else None
    parts = [_fetch(image.data, item) for item in _plane_slices(read, planes)]
    with _torch_threads(_local_threads(settings)):
        out = predictor.super_resolve(parts, planes, inner)
    return _region_image(image, out, bounds, s)


def _region_image(image: Image, out: np.ndarray, bounds: Bounds, scale: int) -> Image:
    """Wrap the HR result of an LR rectangle as a 2D image placed over that rectangle."""
    px = image.scale[-2:]
    shift = (image.translate or (0.0,) * image.ndim)[-2:]
    origin = tuple(t + start * p for t, (start, _), p in zip(shift, bounds, px, strict=True))
    lr = Image(
        np.zeros((1, 1), dtype=out.dtype),
        axes="YX",
        pixel_size=tuple(image.pixel_size[-2:]) if image.pixel_size is not None else None,
        units=tuple(image.units[-2:]) if image.units is not None else None,
        source=image.source,
        translate=origin,
    )
    return lr.with_data(out, yx_factor=1.0 / scale)
