"""One image's prediction, resolved once into the plan every later step takes whole (torch).

A :class:`PredictPlan` holds what a prediction of one image is: the model
(:class:`~decrappify.predict.network.ModelHandle`), the input, the settings as they run
(:class:`~decrappify.predict.settings.PredictSettings`, with a ``torch.device``), the
output blocks (:class:`~decrappify.predict.block_geometry.BlockGrid`), the image's
normalisation range, the trust maps to make (:class:`~decrappify.predict.trust.TrustPlan`)
and the output (:class:`OutputPlan`: path, format, chunks, resume key). The block
predictor, the writer and the trust maps take it whole; nothing after
:func:`iter_plan` reads the user's :class:`~decrappify.config.predict.PredictConfig`.

Every prediction starts the same way (:func:`resolve`, then :func:`measure_overlap`): the
model and the image are checked against each other and the settings, and an automatic
overlap is measured from the network's receptive field. A whole-image prediction then
plans its output (:func:`iter_plan`); a preview of one region uses the settings alone.
"""

from __future__ import annotations

import functools
import math
import os
import uuid
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.config.predict import PredictConfig
from decrappify.devices import torch_threads
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress
from decrappify.io import Image, check_finite, check_output_path, output_format, read_image
from decrappify.normalize import percentile_range
from decrappify.predict.block_geometry import BlockGrid
from decrappify.predict.identity import input_identity, resume_key
from decrappify.predict.network import ModelHandle, check_image, model_handle
from decrappify.predict.receptive import auto_overlap, max_overlap, needed_probe, receptive_radius
from decrappify.predict.settings import PredictSettings, resolve_settings
from decrappify.predict.tile_geometry import split_overlap
from decrappify.predict.tile_predictor import network_grid
from decrappify.predict.trust import TrustPlan, map_path, plan_trust
from decrappify.predict.trust_blocks import DegradedSlots

__all__ = [
    "OutputPlan",
    "PredictPlan",
    "iter_plan",
    "measure_overlap",
    "resolve",
]


@dataclass(frozen=True)
class OutputPlan:
    """Where and how a prediction is written.

    Parameters
    ----------
    path : Path
        The output (``.zarr``/``.ome.zarr`` store or ``.tif`` file).
    kind : {"zarr", "tiff"}
        Its format.
    chunks : tuple of int or None
        Stored OME-Zarr chunks (None for TIFF).
    resume_key : str or None
        Key of a resumable OME-Zarr output (the model, the input, the normalisation and
        every setting that changes the pixels); None when not resumable.
    """

    path: Path
    kind: str
    chunks: tuple[int, ...] | None
    resume_key: str | None = None

    def map_path(self, name: str) -> Path:
        """Where the trust map ``name`` of this output is written."""
        return map_path(self.path, self.kind, name)


@dataclass(frozen=True)
class PredictPlan:
    """Everything one image's prediction runs with, resolved once (see the module).

    Parameters
    ----------
    handle : ModelHandle
        The model.
    image : Image
        The LR input (lazy inputs are read block by block).
    settings : PredictSettings
        The settings as they run (automatic overlap measured).
    grid : BlockGrid
        The output blocks.
    trust : TrustPlan
        The trust maps to make.
    lo, hi : float
        The image's normalisation range (the model's percentiles of the whole image).
    token : str
        Identity of this prediction (the dask name of the output; from the resume key
        when there is one).
    output : OutputPlan or None
        The file written; None for an in-memory result.
    """

    handle: ModelHandle
    image: Image
    settings: PredictSettings
    grid: BlockGrid
    trust: TrustPlan
    lo: float
    hi: float
    token: str
    output: OutputPlan | None = None

    @property
    def name(self) -> str:
        """The input, for messages."""
        return self.image.name

    @property
    def scale(self) -> int:
        """The model's upsampling factor."""
        return self.handle.scale

    @functools.cached_property
    def degraded_slots(self) -> DegradedSlots | None:
        """Where each block's share of the consistency map's forward model goes (or None)."""
        forward = self.trust.forward
        return DegradedSlots.plan(self.grid, forward) if forward is not None else None

    def for_workers(self) -> PredictPlan:
        """Strip the input's pixels and the network from the plan (what a task ships).

        Returns
        -------
        PredictPlan
            The same plan; distributed workers read the input slices they are given
            and load the network from the model file.
        """
        empty = np.zeros((0,) * self.image.ndim, self.image.dtype)
        return replace(
            self,
            handle=replace(self.handle, net=None),
            image=Image(empty, axes=self.image.axes, source=self.image.source),
        )


def resolve(
    model: Any, image: Image | Any, config: PredictConfig | None
) -> tuple[ModelHandle, Image, PredictSettings]:
    """Check a model, an image and the settings against each other (no work yet).

    Parameters
    ----------
    model : LoadedModel, str, Path, torch.nn.Module or ModelHandle
        The model (see :func:`~decrappify.predict.network.model_handle`).
    image : Image or array
        The LR image (a path or an array is read, lazily for large files).
    config : PredictConfig or None
        What was asked for (None: the defaults).

    Returns
    -------
    tuple
        The model's handle, the image and the settings (an automatic overlap still to
        measure: :func:`measure_overlap`).

    Raises
    ------
    InputError
        For bad settings, another scale than ``scale``, a 2.5D model on a 2D image or an
        unsupported pixel type.
    """
    config = config if config is not None else PredictConfig()
    handle = model_handle(model)
    if not isinstance(image, Image):
        image = read_image(image)
    config.check_scale(handle.scale, str(handle.path or handle.name))
    check_image(image, handle)
    return handle, image, resolve_settings(handle, image, config)


def measure_overlap(settings: PredictSettings, handle: ModelHandle) -> PredictSettings:
    """Replace an automatic overlap by the one the network's receptive field needs.

    Parameters
    ----------
    settings : PredictSettings
        The resolved settings (returned as they are unless ``auto_overlap``).
    handle : ModelHandle
        The model (its radius is measured once per model file, then cached).

    Returns
    -------
    PredictSettings
        With the overlap and the measured ``radius``.
    """
    if not settings.auto_overlap:
        return settings
    margin, _ = split_overlap(max_overlap(settings.tile), settings.blend)
    with torch_threads(settings.local_threads):
        record = receptive_radius(
            handle.net,
            digest=handle.digest,
            model_path=handle.path,
            probe=needed_probe(settings.tile, handle.scale, handle.multiple, blend=settings.blend),
            needed=margin,
        )
    overlap = auto_overlap(record.radius, handle.scale, settings.tile, blend=settings.blend)
    # an overlap on the network's grid lets every window start on it (tile_geometry)
    step = network_grid(handle.net)
    overlap = min(-(-overlap // step) * step, settings.tile // 2 // step * step) or overlap
    # past the image's borders no cross-fade hides a residual: there windows read the
    # whole field, which the margin already covers unless the overlap is capped; then a
    # quarter of the tile (the radius is only known to exceed the capped margin)
    context = record.radius if record.radius <= margin else max_overlap(settings.tile) // 2
    return replace(
        settings, overlap=overlap, radius=record.radius, context=context, auto_overlap=False
    )


def iter_plan(
    model: Any,
    image: Image | Any,
    out_path: str | Path | None,
    config: PredictConfig | None,
    *,
    max_memory: int,
) -> Generator[Progress, None, PredictPlan]:
    """Resolve one image's prediction into its plan, cheap checks first.

    Parameters
    ----------
    model, image, config
        As :func:`resolve`.
    out_path : str, Path or None
        The output file; None for an in-memory result.
    max_memory : int
        Largest in-memory result in bytes.

    Yields
    ------
    Progress
        ``phase="predict"``: the receptive field (when measured), the intensity range.

    Returns
    -------
    PredictPlan
        The plan.

    Raises
    ------
    InputError
        As :func:`resolve`, and for an in-memory result above ``max_memory`` or NaN/Inf
        pixels.
    OutputError
        For an existing output (without ``overwrite``) or one inside the input.
    """
    handle, image, settings = resolve(model, image, config)
    grid = BlockGrid.plan(image.shape, handle.scale, chunk=settings.chunk, block=settings.block)
    if out_path is None:
        _check_memory(image, grid, settings, max_memory)
    trust = plan_trust(
        handle.crappify,
        handle.scale,
        image,
        tta=settings.tta,
        consistency=settings.consistency,
        model_name=f"model {handle.name}",
    )
    output = None if out_path is None else _output(Path(out_path), image, grid, settings, trust)
    if settings.auto_overlap:
        yield Progress("predict", 0, None, message=f"{image.name}: receptive field of the model")
        settings = measure_overlap(settings, handle)
    yield Progress("predict", 0, None, message=f"{image.name}: intensity range")
    if image.dtype.kind == "f":
        check_finite(image.data, image.source or image.name)
    norm = handle.normalization
    lo, hi = percentile_range(image.data, norm.low, norm.high)
    if output is not None and settings.resume:
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
        output = replace(output, resume_key=key)
    key = output.resume_key if output is not None else None
    token = key.rsplit("-", 1)[-1][:32] if key else uuid.uuid4().hex
    return PredictPlan(handle, image, settings, grid, trust, lo, hi, token, output)


def _check_memory(image: Image, grid: BlockGrid, settings: PredictSettings, limit: int) -> None:
    """Refuse an in-memory result larger than ``limit`` bytes."""
    nbytes = math.prod(grid.out_shape) * np.dtype(settings.out_dtype).itemsize
    if nbytes > limit:
        raise InputError(
            f"{image.name}: the result would take {nbytes / 2**30:.1f} GiB in memory "
            f"(limit {limit / 2**30:.1f} GiB); give an output path (.zarr or .tif)"
        )


def _output(
    path: Path, image: Image, grid: BlockGrid, settings: PredictSettings, trust: TrustPlan
) -> OutputPlan:
    """Plan the output file, refusing a bad one before any work (the writer checks again)."""
    kind = output_format(path, settings.format)
    check_output_path(path, [image.source] if image.source else [], is_folder=False)
    targets = [path, *(map_path(path, kind, n) for n in trust.names if kind == "tiff")]
    for target in targets:
        if os.path.lexists(target) and not settings.overwrite:
            raise OutputError(f"{target}: already exists; pass --overwrite to replace it")
    chunks = None
    if kind == "zarr":
        side = [min(settings.chunk, n) for n in grid.out_shape[-2:]]
        chunks = (*((1,) * len(grid.lead)), *side)
    return OutputPlan(path, kind, chunks)
