"""Chunked super-resolution of images larger than memory (torch + dask).

The output is a lazy array whose blocks are whole output chunks (2048² HR pixels by
default, one plane deep). Each block is computed on its own from the low-resolution (LR)
rectangle under it plus a halo of ``overlap`` LR pixels (an explicit block plan, see
:mod:`decrappify.predict.block_geometry`): the LR pixels are read, normalised with the
image's percentiles (computed once per image), cut into tiles that go to the device in
batches and are blended back with weights that sum to one
(:mod:`decrappify.predict.block_predictor`, :mod:`decrappify.predict.tile_predictor`),
mapped back to intensities and handed to :func:`decrappify.io.iter_write_image`, which
stores them chunk by chunk (OME-Zarr with a pyramid, or tiled BigTIFF). Memory is
bounded by the block and batch sizes, never by the image size.

This module runs one image from start to end (:func:`iter_predict_image`) from its
:class:`~decrappify.predict.plan.PredictPlan` (resolved once from a
:class:`~decrappify.config.predict.PredictConfig`), or one rectangle of one plane
(:func:`predict_image_region`):

* **local runs** overlap input, compute and output in threads
  (:mod:`decrappify.predict.local_pipeline`);
* **distributed runs** (a ``dask.distributed`` client) compute one task per block on the
  workers (:mod:`decrappify.predict.dask_graph`); the output is identical;
* **resume**: with ``resume`` the OME-Zarr partial output records finished blocks under
  the plan's resume key (the model file's digest, the input's identity, the
  normalisation range and every setting that changes the pixels); a rerun computes only
  the missing blocks and gives the same bytes as an uninterrupted run.

2.5D models (``n_frames > 1``) take the planes around each plane of a ZYX/TYX stack,
mirrored at the ends as in training (:func:`decrappify.data.patches.neighbour_planes`).

**Trust maps** (:mod:`decrappify.predict.trust_maps`): with ``tta`` the tiles' spread
over the 8 dihedral transforms goes to a spread sink while the prediction runs; with
``consistency`` (and a model that records its crappifier) the data-consistency map is
computed after it from the result and the input. Both are written beside the output (or
kept in memory) and summarised in the result's ``stats["trust"]``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.config.predict import MAX_IN_MEMORY, PredictConfig
from decrappify.devices import torch_threads
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image, iter_write_image, read_image
from decrappify.io.atomic import remove_path
from decrappify.normalize import percentile_range
from decrappify.predict.block_geometry import BlockGrid, input_region_for_output
from decrappify.predict.block_predictor import BlockPredictor, fetch, plane_slices
from decrappify.predict.dask_graph import lazy_prediction
from decrappify.predict.local_pipeline import BlockPipeline
from decrappify.predict.plan import PredictPlan, iter_plan, measure_overlap, resolve
from decrappify.predict.tile_geometry import Bounds, normalize_bounds
from decrappify.predict.trust import TrustPlan, open_sink, remove_stale_maps
from decrappify.predict.trust_maps import iter_trust_maps

__all__ = [
    "PredictResult",
    "iter_predict_image",
    "lazy_prediction",
    "predict_image_region",
]

#: Largest by-product of the blocks for the trust maps kept in memory (else on disk).
SINK_MEMORY = 64 * 2**20


@dataclass(frozen=True)
class PredictResult:
    """What :func:`iter_predict_image` returns.

    Parameters
    ----------
    image : Image
        The super-resolved image: in memory (numpy) without an output path, else the
        written file, opened when first asked for (a batch of files never reads its
        outputs back). Its pixel size is the input's divided by the scale and its
        translation puts it over the input.
    path : Path or None
        The written file.
    maps : dict of str to Image
        The trust maps (``uncertainty`` on the output's grid, ``consistency`` on the
        input's), in memory or opened lazily from where they were written.
    stats : dict
        Figures of the run: ``blocks``, ``blocks_computed``, ``blocks_resumed``,
        ``seconds``, ``pixels_per_s`` (output pixels computed per second, end to end),
        ``compute_seconds`` (time predicting tiles: reading windows, forward passes and
        blending; local runs), ``forward_seconds`` (time in the network's forward passes;
        local CPU runs), ``oom_retries`` (the tile and batch each out-of-memory error
        stepped down to; local runs), ``tile``, ``overlap``,
        ``radius``, ``lo``/``hi``, ``device``, ``input_shape``, ``output_shape``, ``dtype``;
        ``trust`` (map name to its summary, or ``{"skipped": reason}``), ``maps`` (map
        name to its path) and ``trust_seconds`` (time making the maps: degrading the
        blocks for the consistency map while they are in memory, local runs, and the
        maps after the prediction) when maps were asked for.
    """

    _image: Image | None
    path: Path | None
    stats: dict[str, Any] = field(default_factory=dict)
    maps: dict[str, Image] = field(default_factory=dict)

    @property
    def image(self) -> Image:
        """The super-resolved image (a written file is opened on first use)."""
        if self._image is None:
            assert self.path is not None
            object.__setattr__(self, "_image", read_image(self.path))
        assert self._image is not None
        return self._image


def iter_predict_image(
    model: Any,
    image: Image | Any,
    out_path: str | Path | None = None,
    config: PredictConfig | None = None,
    *,
    client: Any = None,
    max_memory: int = MAX_IN_MEMORY,
) -> Generator[Progress, None, PredictResult]:
    """Super-resolve one image, block by block, into a file or into memory.

    Parameters
    ----------
    model : LoadedModel, str, Path or torch.nn.Module
        The model (see :func:`~decrappify.predict.network.model_handle`).
    image : Image or array
        The LR image (2D, or a ZYX/TYX stack predicted plane by plane); lazy inputs are
        read block by block.
    out_path : str, Path or None
        ``.zarr``/``.ome.zarr`` (OME-Zarr with a pyramid) or ``.tif``/``.tiff`` (tiled
        BigTIFF); None to return the result in memory (at most ``max_memory`` bytes).
    config : PredictConfig or None
        The settings (None: the defaults): ``tile``, ``overlap``, ``batch``, ``device``,
        ``amp``, ``compile``, ``dtype``, ``threads``, ``chunk``, ``block``, ``blend``,
        ``scale`` (refuse another model factor), ``resume`` (make an OME-Zarr output
        resumable), ``overwrite``, ``tta`` and ``consistency`` (the trust maps);
        ``format`` when given explicitly, else the path's ending decides.
    client : distributed.Client or None
        Compute blocks on this cluster (file outputs only).
    max_memory : int
        Largest in-memory result in bytes.

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
    plan = yield from iter_plan(model, image, out_path, config, max_memory=max_memory)
    output = plan.output
    maps: dict[str, Image] = {}
    written: list[Path] = []
    with contextlib.ExitStack() as stack:
        sinks = _open_sinks(plan, stack, client, keep=lambda: not written)
        predictor = BlockPredictor(plan, sinks.get("spread"), sinks.get("degraded"))
        counter = RateCounter(plan.grid, plan.name)
        stats = _plan_stats(plan)
        result_image = None
        if output is None:
            result_image = yield from _iter_in_memory(plan, predictor, counter, stack)
        else:
            path = yield from _iter_write(plan, predictor, counter, stack, client)
            written.append(path)
        if plan.trust.names or plan.trust.skipped:
            begun = time.perf_counter()
            maps, stats["trust"] = yield from iter_trust_maps(plan, sinks)
            stats["maps"] = {k: str(m.source) for k, m in maps.items() if m.source}
            local = predictor.trust_seconds if client is None or output is None else 0.0
            stats["trust_seconds"] = time.perf_counter() - begun + local
        if output is not None and plan.settings.overwrite:  # the maps of the output replaced
            remove_stale_maps(output.path, output.kind, list(maps))
    stats.update(counter.summary())
    stats["seconds"] = time.perf_counter() - started
    local = client is None or output is None
    stats["compute_seconds"] = predictor.compute_seconds if local else None
    stats["forward_seconds"] = predictor.forward_seconds if local else None
    stats["oom_retries"] = predictor.retries if local else None
    path = written[0] if written else None
    return PredictResult(result_image, path=path, stats=stats, maps=maps)


def _open_sinks(
    plan: PredictPlan, stack: contextlib.ExitStack, client: Any, keep: Callable[[], bool]
) -> dict[str, Any]:
    """Open the arrays the blocks leave for the trust maps (TTA spread, degraded shares).

    They are kept in memory when that takes at most :data:`SINK_MEMORY` bytes and
    nothing else needs them on disk; a resumable output (a rerun reuses them) and a
    cluster (its workers write them) get scratch stores beside the output. A scratch
    store is kept while ``keep()`` says a resumable output is unfinished; otherwise it is
    removed when the run ends.
    """
    output = plan.output
    key = output.resume_key if output is not None else None
    shapes = {}
    if plan.trust.tta:
        grid = plan.grid
        shapes["spread"] = (grid.out_shape, (*((1,) * len(grid.lead)), *grid.block))
    slots = plan.degraded_slots
    if slots is not None:
        shapes["degraded"] = (slots.shape, slots.chunks)
    sinks = {}
    for name, (shape, chunks) in shapes.items():
        on_disk = key is not None or client is not None or math.prod(shape) * 4 > SINK_MEMORY
        path = output.path if output is not None and on_disk else None
        sinks[name], scratch = open_sink(name, shape, chunks, path, key)
        if scratch is not None:
            stack.callback(_remove_scratch, scratch, lambda: key is not None and keep())
    return sinks


def _plan_stats(plan: PredictPlan) -> dict[str, Any]:
    """Collect the figures of a run known from its plan."""
    settings, grid = plan.settings, plan.grid
    return {
        "input_shape": plan.image.shape,
        "output_shape": grid.out_shape,
        "dtype": settings.out_dtype,
        "device": str(settings.device),
        "tile": settings.tile,
        "overlap": settings.overlap,
        "radius": settings.radius,
        "context": settings.context,
        "batch": settings.batch,
        "lo": plan.lo,
        "hi": plan.hi,
        "blocks": len(grid.indices()),
    }


def _remove_scratch(scratch: Path, kept: Callable[[], bool]) -> None:
    if not kept():
        remove_path(scratch)


def _iter_in_memory(
    plan: PredictPlan,
    predictor: BlockPredictor,
    counter: RateCounter,
    stack: contextlib.ExitStack,
) -> Generator[Progress, None, Image]:
    """Compute the blocks into one numpy array (a result without an output file)."""
    grid = plan.grid
    pipeline = BlockPipeline(predictor)
    stack.callback(pipeline.close)
    data = np.empty(grid.out_shape, dtype=np.dtype(plan.settings.out_dtype))
    indices = grid.indices()
    for step, index in enumerate(indices, start=1):
        data[grid.slices(index)] = pipeline.get(index)
        yield counter.block(step, len(indices), index)
    return plan.image.with_data(data, yx_factor=1.0 / plan.scale)


def _iter_write(
    plan: PredictPlan,
    predictor: BlockPredictor,
    counter: RateCounter,
    stack: contextlib.ExitStack,
    client: Any,
) -> Generator[Progress, None, Path]:
    """Write the lazy prediction block by block into the plan's output; its path."""
    output = plan.output
    assert output is not None
    lazy, close = lazy_prediction(predictor, client=client)
    stack.callback(close)
    events = iter_write_image(
        plan.image.with_data(lazy, yx_factor=1.0 / plan.scale),
        output.path,
        format=output.kind,
        chunks=output.chunks,
        overwrite=plan.settings.overwrite,
        resume_key=output.resume_key,
        client=client,
    )
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return Path(stop.value)
            yield counter.write_event(event, output.kind)
    finally:
        events.close()


class RateCounter:
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


def predict_image_region(
    model: Any,
    image: Image | Any,
    region: Bounds | Sequence[slice],
    config: PredictConfig | None = None,
    *,
    plane: int | None = None,
    lo_hi: tuple[float, float] | None = None,
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
    config : PredictConfig or None
        The settings, as for :func:`iter_predict_image` (those of files are unused).
    plane : int or None
        Plane of a stack (required for ZYX/TYX images).
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
    handle, image, settings = resolve(model, image, config)
    settings = measure_overlap(settings, handle)
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
    plan = PredictPlan(handle, image, settings, grid, TrustPlan(), lo, hi, "region")
    predictor = BlockPredictor(plan)
    hr = tuple((a * s, b * s) for a, b in bounds)
    read, inner = input_region_for_output(hr, scale=s, halo=settings.overlap, lr_shape=lr_shape)
    planes = predictor.planes_around(int(plane)) if plane is not None and image.ndim == 3 else None
    parts = [fetch(image.data, item) for item in plane_slices(read, planes)]
    with torch_threads(settings.local_threads):
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
