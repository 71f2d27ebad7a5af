"""Validated settings of a prediction: tile, overlap, batch, device, dtype, blocks (torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from decrappify.errors import InputError
from decrappify.io import Image
from decrappify.io.paths import format_bytes
from decrappify.predict.cluster import available_cores
from decrappify.predict.model import ModelHandle
from decrappify.predict.receptive import max_overlap
from decrappify.predict.tiling import DEFAULT_MULTIPLE, split_overlap, tile_quantum, validate_tile

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_CHUNK",
    "OUT_DTYPES",
    "Overlap",
    "PredictSettings",
    "check_tile",
    "check_tile_memory",
    "fit_tile",
    "resolve_device",
    "resolve_settings",
]

#: Side in HR pixels of the stored chunks of OME-Zarr outputs.
DEFAULT_CHUNK = 1024
#: Side in HR pixels of the blocks computed at once (a multiple of the chunk).
DEFAULT_BLOCK = 2048
#: Output dtypes.
OUT_DTYPES = ("uint8", "uint16", "float32")

Overlap = int | Literal["auto"]
#: Largest network input side (``tile × scale``, HR pixels) a prediction accepts.
MAX_TILE_SIDE = 8192
#: Lower bound of the memory one HR pixel of a tile takes in a forward pass: float32
#: activations of the 64 channels of the decoder's full-resolution block.
TILE_BYTES_PER_PIXEL = 4 * 64


@dataclass(frozen=True)
class PredictSettings:
    """Validated settings of one prediction (see :func:`resolve_settings`).

    Parameters
    ----------
    tile : int
        Largest tile side in LR pixels (``tile × scale`` a multiple of the network's 32).
    overlap : int
        Overlap of neighbouring tiles in LR pixels; also the halo read around each block.
    batch : int
        Tiles per forward pass.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    amp : bool
        Autocast (float16 on CUDA, bfloat16 elsewhere) with float32 weights.
    channels_last : bool
        Channels-last memory format (faster convolutions on GPUs).
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
    """

    tile: int
    overlap: int
    batch: int
    device: str
    amp: bool
    channels_last: bool
    compile: bool
    out_dtype: str
    blend: float = 0.5
    chunk: int = DEFAULT_CHUNK
    block: int = DEFAULT_BLOCK
    threads: int = 1
    radius: int | None = None

    def key_parts(self) -> dict[str, Any]:
        """List the settings that change the output pixels (for the resume key).

        Returns
        -------
        dict
            All fields except ``threads`` and ``radius``, with the device type only.
        """
        parts = asdict(self)
        parts.pop("threads")
        parts.pop("radius")
        parts["device"] = torch.device(self.device).type
        return parts


def resolve_device(device: str) -> str:
    """Resolve ``"auto"`` and check that a device exists.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"``.

    Returns
    -------
    str
        The device.

    Raises
    ------
    InputError
        For an unknown or unavailable device.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got {device!r})"
        ) from err
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r} is not available (no CUDA device found)")
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"device {device!r} is not available ({count} CUDA device(s))")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError("device 'mps' is not available on this machine")
    elif resolved.type != "cpu":
        raise InputError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got {device!r})"
        )
    return str(resolved)


def fit_tile(tile: int, shape: Sequence[int], scale: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """Cut a tile to the smallest valid tile that covers an image's Y and X.

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
        ``tile``, or less when one smaller tile already covers the image.
    """
    quantum = tile_quantum(scale, multiple)
    cover = -(-max(int(s) for s in shape) // quantum) * quantum
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
    handle: ModelHandle,
    image: Image | None,
    *,
    tile: int = 128,
    overlap: Overlap = "auto",
    batch: int = 8,
    device: str = "auto",
    amp: bool | None = None,
    compile: bool = False,
    out_dtype: str | None = None,
    blend: float = 0.5,
    chunk: int | None = None,
    block: int | None = None,
    threads: int | None = None,
) -> PredictSettings:
    """Check the settings of a prediction and fill in the automatic ones (except overlap).

    Parameters
    ----------
    handle : ModelHandle
        The model.
    image : Image or None
        The input (its dtype is the default output dtype); None to check the settings
        before any image is read.
    tile, overlap, batch, device, amp, compile, out_dtype, blend, chunk, block, threads
        See :func:`iter_predict_image`. An ``"auto"`` overlap is returned as
        ``max_overlap(tile)`` and replaced by :func:`iter_predict_image` once the
        receptive field is known.

    Returns
    -------
    PredictSettings
        The validated settings.

    Raises
    ------
    InputError
        For a tile that breaks the size rule, an overlap above half the tile, a
        non-positive batch, an unknown device or output dtype.
    """
    tile = check_tile(tile, handle.scale, handle.multiple)
    if image is not None:
        tile = fit_tile(tile, image.shape[-2:], handle.scale, handle.multiple)
        check_tile_memory(tile, handle.scale, handle.multiple, image.source or image.name)
        if overlap != "auto" and not isinstance(overlap, bool) and isinstance(overlap, int):
            overlap = min(overlap, tile // 2)  # a tile cut to the image needs no more
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise InputError(f"batch must be a positive integer (got {batch!r})")
    if overlap == "auto":
        resolved_overlap = max_overlap(tile)
    elif isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or overlap < 0:
        raise InputError(f"overlap must be 'auto' or an integer >= 0 (got {overlap!r})")
    elif 2 * int(overlap) > tile:
        raise InputError(f"overlap must be at most half the tile (tile {tile}, overlap {overlap})")
    else:
        resolved_overlap = int(overlap)
    split_overlap(resolved_overlap, blend)  # checks blend
    dev = resolve_device(device)
    if out_dtype is not None:
        dtype = str(np.dtype(_dtype_name(out_dtype)))
    else:
        dtype = image.dtype.name if image is not None else "float32"
    if dtype not in OUT_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(OUT_DTYPES)} (got {dtype})")
    chunk = DEFAULT_CHUNK if chunk is None else _positive(chunk, "chunk")
    block = max(DEFAULT_BLOCK, chunk) if block is None else _positive(block, "block")
    is_cuda = torch.device(dev).type == "cuda"
    return PredictSettings(
        tile=tile,
        overlap=resolved_overlap,
        batch=int(batch),
        device=dev,
        amp=is_cuda if amp is None else bool(amp),
        channels_last=is_cuda,
        compile=bool(compile),
        out_dtype=dtype,
        blend=float(blend),
        chunk=chunk,
        block=block,
        threads=available_cores() if threads is None else _positive(threads, "threads"),
    )


def _dtype_name(value: Any) -> Any:
    try:
        return np.dtype(value)
    except TypeError as err:
        raise InputError(f"dtype must be one of {', '.join(OUT_DTYPES)} (got {value!r})") from err


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer (got {value!r})")
    return int(value)
