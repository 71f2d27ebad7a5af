"""A prediction's settings resolved for one model and one image (torch).

:func:`resolve_settings` turns a :class:`~decrappify.config.predict.PredictConfig` (what
the user asked for, with ``"auto"`` values) into :class:`PredictSettings` (what runs):
the tile checked against the model's size rule, the device found on this machine (a
``torch.device``, parsed once), the output dtype, chunk, block and threads filled in, and
what the run does with its output (format, overwrite, resume, the consistency map). It
is part of the one plan of a prediction (:class:`~decrappify.predict.plan.PredictPlan`);
the tiled forward pass (:mod:`decrappify.predict.tile_predictor`) takes it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from decrappify.config.predict import DEFAULT_BLOCK, DEFAULT_CHUNK, OUT_DTYPES, PredictConfig
from decrappify.devices import available_cores, resolve_device
from decrappify.errors import InputError
from decrappify.io import Image
from decrappify.io.paths import format_bytes
from decrappify.predict.network import ModelHandle
from decrappify.predict.receptive import max_overlap
from decrappify.predict.tile_geometry import DEFAULT_MULTIPLE, tile_quantum, validate_tile

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_CHUNK",
    "OUT_DTYPES",
    "PredictSettings",
    "check_tile",
    "check_tile_memory",
    "fit_tile",
    "resolve_settings",
]

#: Largest network input side (``tile × scale``, HR pixels) a prediction accepts.
MAX_TILE_SIDE = 8192
#: Context (both sides together, LR pixels) a tile cut to a small image keeps at least:
#: the context of the default tile, 512 (a U-Net's field is about 70 pixels).
FIT_CONTEXT = 256
#: Lower bound of the memory one HR pixel of a tile takes in a forward pass: float32
#: activations of the 64 channels of the decoder's full-resolution block.
TILE_BYTES_PER_PIXEL = 4 * 64


@dataclass(frozen=True)
class PredictSettings:
    """Settings of one prediction as they run (see :func:`resolve_settings`).

    Parameters
    ----------
    tile : int or pair of int
        Largest tile side in LR pixels (``tile × scale`` a multiple of the network's
        32), or ``(height, width)``.
    overlap : int
        Overlap of neighbouring tiles in LR pixels; also the halo read around each block.
    batch : int
        Tiles per forward pass.
    device : torch.device
        Where the network runs (a name such as ``"cuda:1"`` is resolved on construction,
        by :func:`decrappify.devices.resolve_device`).
    amp : bool
        Autocast (float16 on CUDA, bfloat16 elsewhere) with float32 weights.
    channels_last : bool
        Channels-last memory format (faster convolutions on GPUs and, with oneDNN, CPUs).
    compile : bool
        ``torch.compile`` the network (once per process).
    out_dtype : str
        ``"uint8"``, ``"uint16"`` or ``"float32"``.
    blend : float
        Cross-fade fraction of the overlap.
    chunk : int
        Side of the stored OME-Zarr chunks in HR pixels.
    block : int
        Side of the computed blocks in HR pixels (a multiple of ``chunk``).
    threads : int
        torch intra-op threads of a local CPU run.
    radius : int or None
        Measured receptive-field radius (LR pixels) behind an automatic overlap.
    context : int
        Least context in LR pixels that windows read past the image's borders, by
        reflection (0: the overlap's context margin); an automatic overlap sets it from
        the receptive field (:func:`decrappify.predict.plan.measure_overlap`).
    tta : bool
        Test-time augmentation: each tile predicted in the 8 rotations/mirrors, their mean
        kept and their spread recorded.
    auto_overlap : bool
        ``overlap`` is a placeholder until the receptive field is measured
        (:func:`decrappify.predict.plan.measure_overlap`).
    format : str or None
        ``"zarr"`` or ``"tiff"`` when asked for explicitly; None lets the output path's
        ending decide.
    overwrite, resume : bool
        Replace an existing output; make an OME-Zarr output resumable.
    consistency : bool
        Make the data-consistency map (when the model records its crappifier).
    """

    tile: int | tuple[int, int] = 128
    overlap: int = 0
    batch: int = 8
    device: Any = "cpu"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    out_dtype: str = "float32"
    blend: float = 0.5
    chunk: int = DEFAULT_CHUNK
    block: int = DEFAULT_BLOCK
    threads: int = 1
    radius: int | None = None
    context: int = 0
    tta: bool = False
    auto_overlap: bool = False
    format: str | None = None
    overwrite: bool = False
    resume: bool = False
    consistency: bool = True

    def __post_init__(self) -> None:
        # the one place a device name is parsed (and checked to exist on this machine)
        object.__setattr__(self, "device", resolve_device(self.device))

    def key_parts(self) -> dict[str, Any]:
        """List the settings that change the output pixels (for the resume key).

        Returns
        -------
        dict
            The tiling, precision, dtype and storage fields, with the device type only
            (not ``threads``, ``radius`` or what is done with the output).
        """
        parts = asdict(self)
        for name in _NOT_IN_KEY:
            parts.pop(name)
        parts["device"] = self.device.type
        return parts

    @property
    def local_threads(self) -> int | None:
        """Torch threads of a local run: ``threads`` on the CPU, the default elsewhere."""
        return self.threads if self.device.type == "cpu" else None


#: Fields of :class:`PredictSettings` that do not change the output's pixels.
_NOT_IN_KEY = ("threads", "radius", "auto_overlap", "format", "overwrite", "resume", "consistency")


def fit_tile(tile: int, shape: Sequence[int], scale: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """Cut a tile to the smallest valid tile that covers an image's Y and X with margins.

    Parameters
    ----------
    tile : int
        Tile side in LR pixels (valid for ``scale``).
    shape : sequence of int
        The image's Y and X.
    scale : int
        Upsampling factor.
    multiple : int
        ``tile × scale`` must be a multiple of this.

    Returns
    -------
    int
        ``tile``, or less when one smaller tile already covers the image and the
        context around it (read by reflection): half a tile, at most
        :data:`FIT_CONTEXT` or the image's side if more, so that a small image is one
        window, not several overlapping ones, whose windows can still read a U-Net's
        receptive field past its borders (:mod:`decrappify.predict.windows`).
    """
    quantum = tile_quantum(scale, multiple)
    side = max(int(s) for s in shape)
    context = min(max_overlap(int(tile)), max(side, FIT_CONTEXT))
    cover = -(-(side + context) // quantum) * quantum
    return min(int(tile), max(cover, quantum))


def check_tile_memory(tile: int, scale: int, multiple: int, name: str) -> None:
    """Refuse a tile whose forward pass cannot fit in memory, saying what it would need.

    Parameters
    ----------
    tile : int
        Tile side in LR pixels, already cut to the image (:func:`fit_tile`).
    scale : int
        Upsampling factor.
    multiple : int
        ``tile × scale`` must be a multiple of this.
    name : str
        The image, for the message.

    Raises
    ------
    InputError
        When ``tile × scale`` exceeds :data:`MAX_TILE_SIDE`.
    """
    largest = (
        MAX_TILE_SIDE // scale // tile_quantum(scale, multiple) * tile_quantum(scale, multiple)
    )
    if tile > largest:
        side = int(tile) * scale
        raise InputError(
            f"{name}: --tile {tile} makes {side}x{side} network inputs, which need at least "
            f"{format_bytes(side * side * TILE_BYTES_PER_PIXEL)} each; use --tile {largest} "
            "or less"
        )


def check_tile(tile: int, scale: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """Validate a tile side against the network's size rule.

    Parameters
    ----------
    tile : int
        Tile side in LR pixels.
    scale : int
        Upsampling factor.
    multiple : int
        ``tile × scale`` must be a multiple of this.

    Returns
    -------
    int
        ``tile``.

    Raises
    ------
    InputError
        ``tile 100: tile × scale must be a multiple of 32 (100 × 4 = 400); use a multiple
        of 8 such as 96 or 104``.
    """
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise InputError(f"tile must be a positive integer (got {tile!r})")
    quantum = tile_quantum(scale, multiple)
    try:
        validate_tile(int(tile), scale, multiple)
    except InputError:
        lower, upper = tile // quantum * quantum, -(-tile // quantum) * quantum
        choices = f"{lower} or {upper}" if lower else f"{upper}"
        raise InputError(
            f"tile {tile}: tile × scale must be a multiple of {multiple} ({tile} × {scale} = "
            f"{tile * scale}); use a multiple of {quantum} such as {choices}"
        ) from None
    return int(tile)


def resolve_settings(
    handle: ModelHandle, image: Image | None, config: PredictConfig | None = None
) -> PredictSettings:
    """Check a prediction's settings for a model and fill in the automatic ones.

    Parameters
    ----------
    handle : ModelHandle
        The model.
    image : Image or None
        The input (its dtype is the default output dtype); None to check the settings
        before any image is read.
    config : PredictConfig or None
        What was asked for (None: the defaults). An ``"auto"`` overlap is returned as
        ``max_overlap(tile)`` and replaced by the engine once the receptive field is
        known.

    Returns
    -------
    PredictSettings
        The validated settings.

    Raises
    ------
    InputError
        For a tile that breaks the size rule or a device this machine lacks.
    """
    config = config if config is not None else PredictConfig()
    tile = check_tile(config.tile, handle.scale, handle.multiple)
    if image is not None:
        tile = fit_tile(tile, image.shape[-2:], handle.scale, handle.multiple)
        check_tile_memory(tile, handle.scale, handle.multiple, image.source or image.name)
    overlap = max_overlap(tile) if config.overlap == "auto" else int(config.overlap)
    overlap = min(overlap, max_overlap(tile))  # a tile cut to the image needs no more
    device = resolve_device(config.device)
    if config.dtype is not None:
        dtype = config.dtype.value
    else:
        dtype = image.dtype.name if image is not None else "float32"
    if dtype not in OUT_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(OUT_DTYPES)} (got {dtype})")
    chunk = DEFAULT_CHUNK if config.chunk is None else config.chunk
    block = max(DEFAULT_BLOCK, chunk) if config.block is None else config.block
    is_cuda = device.type == "cuda"
    return PredictSettings(
        tile=tile,
        overlap=overlap,
        batch=config.batch,
        device=device,
        amp=is_cuda if config.amp is None else config.amp,
        channels_last=True,  # faster convolutions on CPUs too (oneDNN), same numbers
        compile=config.compile,
        out_dtype=dtype,
        blend=config.blend,
        chunk=chunk,
        block=block,
        threads=available_cores() if config.threads is None else config.threads,
        tta=config.tta,
        auto_overlap=config.overlap == "auto",
        format=config.format.value if "format" in config.model_fields_set else None,
        overwrite=config.overwrite,
        resume=config.resume,
        consistency=config.consistency,
    )
