"""Tiled, memory-bounded super-resolution of one plane or one block (torch).

The network takes ``(N, n_frames, h, w)`` float32 normalised LR input and returns
``(N, 1, h·scale, w·scale)``; it has the attributes ``scale``, ``n_frames`` and
``multiple`` (the HR sides must be multiples of it, 32). The plane is cut into tiles
by :func:`decrappify.predict.tiling.plan_tiles`, tiles go to the device in batches under
``torch.inference_mode``, and their cores are blended into a float32 HR accumulator
with weights that sum to 1, so memory is bounded by ``tile² × batch_size`` on the
device plus the output on the host, never by the image.

On device out-of-memory the batch is halved, then the tile, and the work goes on
(:func:`run_with_oom_retry`); when even ``batch_size 1`` and the smallest tile fail,
an :class:`~decrappify.errors.InputError` names the settings to change.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from decrappify.errors import InputError, ModelFileError
from decrappify.predict.tiling import (
    DEFAULT_MULTIPLE,
    Bounds,
    Tile,
    default_overlap,
    extract_window,
    normalize_bounds,
    plan_tiles,
    radius_from_response,
    split_overlap,
    tile_quantum,
    validate_tile,
)

__all__ = [
    "ProgressCallback",
    "TileSettings",
    "default_overlap",
    "estimate_receptive_field",
    "is_out_of_memory",
    "next_settings_after_oom",
    "predict_plane",
    "predict_region",
    "run_with_oom_retry",
]

T = TypeVar("T")

ProgressCallback = Callable[[int, int], None]
"""``progress(tiles_done, tiles_total)``; it may raise (e.g. ``Cancelled``) to stop."""

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_OOM_MARKERS = ("out of memory", "can't allocate memory")


@dataclass(frozen=True)
class TileSettings:
    """What a tiled prediction runs with; shrunk step by step on out-of-memory.

    Parameters
    ----------
    tile : tuple of int
        Largest window ``(height, width)`` in LR pixels.
    batch_size : int
        Tiles per forward pass.
    """

    tile: tuple[int, int]
    batch_size: int


def is_out_of_memory(error: BaseException) -> bool:
    """Tell whether an exception is a device (or host) out-of-memory error.

    Parameters
    ----------
    error : BaseException
        The exception raised by a forward pass.

    Returns
    -------
    bool
        True for ``torch.OutOfMemoryError`` and for ``RuntimeError`` messages such as
        ``"CUDA out of memory"``, ``"MPS backend out of memory"`` or
        ``"DefaultCPUAllocator: can't allocate memory"``.
    """
    if isinstance(error, torch.OutOfMemoryError):
        return True
    if isinstance(error, RuntimeError):
        message = str(error).lower()
        return any(marker in message for marker in _OOM_MARKERS)
    return False


def next_settings_after_oom(
    settings: TileSettings, *, quantum: int, min_tile: int
) -> TileSettings | None:
    """Choose the settings to retry with after an out-of-memory error.

    Parameters
    ----------
    settings : TileSettings
        The settings that ran out of memory.
    quantum : int
        Tile sides must stay multiples of this (:func:`~decrappify.predict.tiling.tile_quantum`).
    min_tile : int
        Smallest tile side allowed (a multiple of ``quantum``).

    Returns
    -------
    TileSettings or None
        Half the batch while it is above 1; then half the tile (rounded down to the
        quantum, not below ``min_tile``); None when both are already at their minimum.
    """
    if settings.batch_size > 1:
        return replace(settings, batch_size=settings.batch_size // 2)
    smaller = tuple(
        min(side, max(min_tile, (side // 2) // quantum * quantum)) for side in settings.tile
    )
    if smaller == tuple(settings.tile):
        return None
    return replace(settings, tile=(int(smaller[0]), int(smaller[1])))


def run_with_oom_retry(
    run: Callable[[TileSettings], T],
    settings: TileSettings,
    *,
    quantum: int,
    min_tile: int,
    empty_cache: Callable[[], None] | None = None,
    on_retry: Callable[[TileSettings, TileSettings], None] | None = None,
    where: str = "the device",
    advice: str = "use a smaller overlap, amp=True, a float16 dtype or device 'cpu'",
) -> T:
    """Call ``run(settings)``, shrinking batch then tile on out-of-memory until it fits.

    Parameters
    ----------
    run : callable
        Does the work with the given settings. It may be called again after an
        out-of-memory error and should resume rather than redo finished work when only
        the batch size changed.
    settings : TileSettings
        First settings to try.
    quantum : int
        Tile sides stay multiples of this.
    min_tile : int
        Smallest tile side to try.
    empty_cache : callable, optional
        Frees cached device memory between attempts (for CUDA: ``gc.collect`` then
        ``torch.cuda.empty_cache``).
    on_retry : callable, optional
        ``on_retry(failed, next)`` is told about each step down.
    where : str
        The device, for the error message.
    advice : str
        What the error message tells the user to change.

    Returns
    -------
    object
        What ``run`` returns.

    Raises
    ------
    InputError
        When ``batch_size 1`` and the smallest tile still run out of memory; the message
        names the settings to change.
    """
    first = settings
    while True:
        try:
            return run(settings)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            smaller = next_settings_after_oom(settings, quantum=quantum, min_tile=min_tile)
            if smaller is None:
                raise InputError(
                    f"out of memory on {where} even with tile {_fmt(settings.tile)} and "
                    f"batch_size 1 (started from tile {_fmt(first.tile)}, batch_size "
                    f"{first.batch_size}): {advice}"
                ) from error
        # Outside the except block: the traceback (and the tensors its frames hold) is gone.
        if empty_cache is not None:
            empty_cache()
        if on_retry is not None:
            on_retry(settings, smaller)
        settings = smaller


def estimate_receptive_field(
    net: torch.nn.Module,
    *,
    tol: float = 1e-3,
    size: int = 64,
    max_size: int = 256,
    n_random: int = 1,
    seed: int = 0,
) -> int:
    """Measure a network's receptive-field radius in LR pixels, from its input gradient.

    The outputs of the central LR pixel of a probe (its ``scale × scale`` HR pixels,
    summed with random signs so that nothing cancels) are differentiated with respect to
    the input, on a zeros input and on ``n_random`` uniform random inputs (zeros alone
    can hide paths behind inactive ReLUs). The radius is the smallest Chebyshev distance
    holding all but ``tol`` of the summed absolute gradient. The probe grows (up to
    ``max_size``) while the radius reaches a quarter of it.

    Parameters
    ----------
    net : torch.nn.Module
        Super-resolution network with ``scale`` and ``n_frames`` (and optionally
        ``multiple``) attributes. It is run in eval mode on its own device and dtype;
        its mode is restored and its parameters' gradients are untouched.
    tol : float
        Fraction of the sensitivity allowed outside the radius. 0 gives the exact
        support (right for networks with a finite receptive field, such as plain
        convolution stacks); U-Nets have a huge theoretical field whose tail decays, and
        ``1e-3`` keeps the part that changes outputs by more than about 0.1 %.
    size : int
        First probe side in LR pixels (rounded up to a valid tile size).
    max_size : int
        Largest probe side; a radius of ``max_size // 4`` or more is returned as is.
    n_random : int
        Random probes in addition to the zeros input.
    seed : int
        Seed of the random probes.

    Returns
    -------
    int
        Radius ``r`` in LR pixels: the outputs of LR pixel ``p`` depend (up to ``tol``)
        only on LR pixels within ``p ± r``. Pass it to
        :func:`~decrappify.predict.tiling.default_overlap`.
    """
    scale, n_frames, multiple = _net_attributes(net)
    if not 0.0 <= tol < 1.0:
        raise InputError(f"tol must be in [0, 1) (got {tol})")
    quantum = tile_quantum(scale, multiple)
    side = max(2 * quantum, math.ceil(size / quantum) * quantum)
    limit = max(side, max_size // quantum * quantum)
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    generator = torch.Generator().manual_seed(seed)
    with _evaluating(net), torch.enable_grad():
        while True:
            center = side // 2
            signs = torch.randint(0, 2, (scale, scale), generator=generator) * 2.0 - 1.0
            signs = signs.to(device=device, dtype=torch.float32)
            response = np.zeros((side, side))
            for probe in range(1 + n_random):
                x = torch.zeros(1, n_frames, side, side)
                if probe:
                    x = torch.rand(x.shape, generator=generator)
                x = x.to(device=device, dtype=dtype).requires_grad_(True)
                y = net(x)
                pixel = slice(center * scale, (center + 1) * scale)
                block = y[0, 0, pixel, pixel]
                (grad,) = torch.autograd.grad((block.float() * signs).sum(), x)
                response = np.maximum(
                    response, grad.detach().abs().sum(dim=(0, 1)).double().cpu().numpy()
                )
            radius = radius_from_response(response, (center, center), tol)
            if 4 * radius < side or side >= limit:
                return radius
            side = min(limit, 2 * side)


def predict_plane(
    net: torch.nn.Module,
    lr: Any,
    *,
    tile: int | Sequence[int],
    overlap: int,
    batch_size: int,
    device: str | torch.device,
    dtype: str | torch.dtype = torch.float32,
    amp: bool = False,
    channels_last: bool = False,
    blend: float = 0.5,
    progress: ProgressCallback | None = None,
    on_retry: Callable[[TileSettings, TileSettings], None] | None = None,
) -> np.ndarray:
    """Super-resolve one LR plane tile by tile.

    Parameters
    ----------
    net : torch.nn.Module
        Network with ``scale``, ``n_frames`` and ``multiple`` attributes. It is moved
        to ``device`` (and to ``dtype`` unless ``amp``) in place, like ``Module.to``,
        and run in eval mode; its training flag is restored afterwards.
    lr : array-like
        Normalised float LR plane ``(H, W)``, or ``(n_frames, H, W)`` for a 2.5D
        network (the frames centred on the plane to predict). numpy, zarr or dask:
        only one batch of windows is read at a time.
    tile : int or pair of int
        Largest tile side in LR pixels; ``tile × scale`` must be a multiple of
        ``net.multiple``. Shrunk on out-of-memory.
    overlap : int
        Overlap of consecutive tiles in LR pixels, at most half the tile. Prediction is
        exact (equal to predicting the reflect-extended image whole) when
        ``overlap >= default_overlap(radius, scale)``.
    batch_size : int
        Tiles per forward pass. Halved on out-of-memory.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...
    dtype : str or torch.dtype
        Compute dtype: float32, float16 or bfloat16.
    amp : bool
        Run under ``torch.autocast`` (float16 on CUDA, bfloat16 elsewhere) with
        float32 weights.
    channels_last : bool
        Use the channels-last memory format (faster convolutions on recent GPUs).
    blend : float
        Fraction of the overlap used for cross-fading (see
        :func:`~decrappify.predict.tiling.split_overlap`).
    progress : callable, optional
        ``progress(tiles_done, tiles_total)`` after each batch; it may raise to cancel.
    on_retry : callable, optional
        ``on_retry(failed, next)`` is told about each out-of-memory step down (so that
        a caller predicting many blocks can start the next block with the settings
        that fitted).

    Returns
    -------
    numpy.ndarray
        float32 ``(H·scale, W·scale)`` in normalised units.

    Raises
    ------
    InputError
        For a plane of the wrong shape or dtype, invalid tiling settings, an unavailable
        device, or when nothing fits in device memory.
    """
    shape = tuple(lr.shape[-2:])
    return predict_region(
        net,
        lr,
        ((0, shape[0]), (0, shape[1])),
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        amp=amp,
        channels_last=channels_last,
        blend=blend,
        progress=progress,
        on_retry=on_retry,
    )


def predict_region(
    net: torch.nn.Module,
    lr: Any,
    region: Bounds | Sequence[slice],
    *,
    tile: int | Sequence[int],
    overlap: int,
    batch_size: int,
    device: str | torch.device,
    dtype: str | torch.dtype = torch.float32,
    amp: bool = False,
    channels_last: bool = False,
    blend: float = 0.5,
    progress: ProgressCallback | None = None,
    on_retry: Callable[[TileSettings, TileSettings], None] | None = None,
) -> np.ndarray:
    """Super-resolve one region of an LR block that carries a halo of context around it.

    This is the per-block work of chunked (dask) prediction: read the LR rectangle and
    region from :func:`~decrappify.predict.tiling.input_region_for_output`, and the result
    equals the matching crop of :func:`predict_plane` on the whole plane whenever the
    halo and the tiles' context margin cover the network's receptive field. Past the
    block's borders windows are filled by reflection, which is exact at the image border
    (where the halo is clipped) and harmless elsewhere when the halo covers the
    receptive field.

    Parameters
    ----------
    net : torch.nn.Module
        As for :func:`predict_plane`.
    lr : array-like
        Normalised float LR block ``(h, w)`` or ``(n_frames, h, w)``, halo included.
    region : Bounds or pair of slice
        LR rectangle of ``lr`` to super-resolve, ``((y0, y1), (x0, x1))``.
    tile, overlap, batch_size, device, dtype, amp, channels_last, blend, progress, on_retry
        As for :func:`predict_plane`.

    Returns
    -------
    numpy.ndarray
        float32 ``((y1 - y0)·scale, (x1 - x0)·scale)``.

    Raises
    ------
    InputError
        As for :func:`predict_plane`, and for a region outside ``lr``.
    """
    scale, n_frames, multiple = _net_attributes(net)
    _check_input(lr, n_frames)
    bounds = normalize_bounds(region, lr.shape[-2:])
    tiles = validate_tile(tile, scale, multiple)
    split_overlap(overlap, blend)  # validates overlap and blend
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer (got {batch_size!r})")
    torch_device = _resolve_device(device)
    compute_dtype = _resolve_dtype(dtype)
    quantum = tile_quantum(scale, multiple)
    # Start from the tile the plan really uses, so that shrinking on OOM is never a no-op.
    first_plan = plan_tiles(
        lr.shape[-2:], tiles, overlap, scale=scale, multiple=multiple, blend=blend, region=bounds
    )
    used = first_plan[0].shape
    worker = _RegionPredictor(
        net=net,
        lr=lr,
        region=bounds,
        overlap=overlap,
        blend=blend,
        scale=scale,
        multiple=multiple,
        device=torch_device,
        dtype=compute_dtype,
        amp=amp,
        channels_last=channels_last,
        progress=progress,
    )
    worker.adopt(used, first_plan)
    empty_cache = _empty_cuda_cache if torch_device.type == "cuda" else None
    with _evaluating(net):
        net.to(device=torch_device)
        if not amp:
            net.to(dtype=compute_dtype)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        run_with_oom_retry(
            worker.run,
            TileSettings(tile=used, batch_size=min(batch_size, len(first_plan))),
            quantum=quantum,
            min_tile=max(quantum, math.ceil(2 * overlap / quantum) * quantum),
            empty_cache=empty_cache,
            on_retry=on_retry,
            where=str(torch_device),
            advice=(
                "use a smaller overlap or free memory"
                if torch_device.type == "cpu"
                else "use a smaller overlap, amp=True, a float16 dtype or device 'cpu'"
            ),
        )
    return worker.out


class _RegionPredictor:
    """Accumulates blended tile predictions; resumable after a batch-size change."""

    def __init__(
        self,
        *,
        net: torch.nn.Module,
        lr: Any,
        region: Bounds,
        overlap: int,
        blend: float,
        scale: int,
        multiple: int,
        device: torch.device,
        dtype: torch.dtype,
        amp: bool,
        channels_last: bool,
        progress: ProgressCallback | None,
    ) -> None:
        self.net = net
        self.lr = lr
        self.region = region
        self.origin = (region[0][0], region[1][0])
        self.overlap = overlap
        self.blend = blend
        self.scale = scale
        self.multiple = multiple
        self.device = device
        self.dtype = dtype
        self.amp = amp
        self.channels_last = channels_last
        self.progress = progress
        (y0, y1), (x0, x1) = region
        self.out = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), dtype=np.float32)
        self.tile: tuple[int, int] | None = None
        self.tiles: list[Tile] = []
        self.done = 0

    def adopt(self, tile: tuple[int, int], tiles: list[Tile]) -> None:
        """Start over with a new tile plan."""
        self.tile = tile
        self.tiles = tiles
        self.done = 0
        self.out.fill(0.0)

    def run(self, settings: TileSettings) -> None:
        """Predict the remaining tiles with these settings (replanning if the tile changed)."""
        if settings.tile != self.tile:
            self.adopt(
                settings.tile,
                plan_tiles(
                    self.lr.shape[-2:],
                    settings.tile,
                    self.overlap,
                    scale=self.scale,
                    multiple=self.multiple,
                    blend=self.blend,
                    region=self.region,
                ),
            )
        total = len(self.tiles)
        while self.done < total:
            batch = self.tiles[self.done : self.done + settings.batch_size]
            predictions = self._forward(batch)
            for tile, prediction in zip(batch, predictions, strict=True):
                self.out[tile.output_slices(self.origin)] += (
                    prediction[tile.crop_slices()] * tile.weights()
                )
            self.done += len(batch)
            if self.progress is not None:
                self.progress(self.done, total)

    def _forward(self, batch: list[Tile]) -> np.ndarray:
        frames = np.stack([_frames(extract_window(self.lr, tile.window)) for tile in batch]).astype(
            np.float32, copy=False
        )
        x = torch.from_numpy(frames)
        if self.device.type == "cuda":
            # pinned host memory: the copy to the device is a fast asynchronous DMA
            x = x.pin_memory()
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            y = self.net(x)
        h, w = batch[0].shape
        expected = (len(batch), 1, h * self.scale, w * self.scale)
        if tuple(y.shape) != expected:
            raise ModelFileError(
                f"network output: expected shape {expected} for input {tuple(x.shape)} "
                f"(scale {self.scale}), got {tuple(y.shape)}"
            )
        return y[:, 0].float().cpu().numpy()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        half = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=half)


def _empty_cuda_cache() -> None:
    gc.collect()  # tensors of the failed batch may sit in reference cycles
    torch.cuda.empty_cache()


def _frames(window: np.ndarray) -> np.ndarray:
    return window if window.ndim == 3 else window[None]


def _fmt(tile: tuple[int, int]) -> str:
    return str(tile[0]) if tile[0] == tile[1] else f"{tile[0]}×{tile[1]}"


def _net_attributes(net: torch.nn.Module) -> tuple[int, int, int]:
    scale = getattr(net, "scale", None)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InputError(f"net: expected an integer attribute scale >= 1, got {scale!r}")
    n_frames = getattr(net, "n_frames", 1)
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise InputError(f"net: expected an integer attribute n_frames >= 1, got {n_frames!r}")
    multiple = getattr(net, "multiple", DEFAULT_MULTIPLE)
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InputError(f"net: expected an integer attribute multiple >= 1, got {multiple!r}")
    return scale, n_frames, multiple


def _check_input(lr: Any, n_frames: int) -> None:
    shape = tuple(getattr(lr, "shape", ()))
    expected = "(H, W)" if n_frames == 1 else f"({n_frames}, H, W)"
    ok = (len(shape) == 2 and n_frames == 1) or (len(shape) == 3 and shape[0] == n_frames)
    if not ok or min(shape, default=0) < 1:
        raise InputError(f"lr: expected a plane of shape {expected}, got shape {shape}")
    dtype = np.dtype(getattr(lr, "dtype", np.float64))
    if dtype.kind != "f":
        raise InputError(
            f"lr: expected normalised float intensities (float32), got dtype {dtype} "
            "(normalise the image first)"
        )


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(resolved)!r} is not available (no CUDA device found)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(
                f"device {str(resolved)!r} is not available "
                f"({torch.cuda.device_count()} CUDA device(s) found)"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' is not available on this machine")
    return resolved


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise InputError(f"dtype must be one of {', '.join(_DTYPES)} (got {dtype!r})")


@contextlib.contextmanager
def _evaluating(net: torch.nn.Module) -> Iterator[None]:
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)
