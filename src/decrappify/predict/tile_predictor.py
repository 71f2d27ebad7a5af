"""Tiled, memory-bounded super-resolution of one plane or one block (torch).

The network takes ``(N, n_frames, h, w)`` float32 normalised LR input and returns
``(N, 1, h·scale, w·scale)``; it has the attributes ``scale``, ``n_frames`` and
``multiple`` (the HR sides must be multiples of it, 32). The plane is cut into tiles
by :func:`decrappify.predict.tile_geometry.plan_tiles`, tiles go to the device in
batches under ``torch.inference_mode``, and their cores are blended into a float32 HR
accumulator with weights that sum to 1, so memory is bounded by ``tile² × batch`` on
the device plus the output on the host, never by the image.

Everything about how to tile and where to run comes in one
:class:`~decrappify.predict.settings.PredictSettings` (``tile``, ``overlap``, ``batch``,
``device``, ``amp``, ``channels_last``, ``blend``, ``tta``). On device out-of-memory the
batch is halved, then the tile, and the work goes on (:mod:`decrappify.predict.oom`).

With ``tta`` each batch goes through the network in each of the 8 rotations/mirrors of
its tiles (:mod:`decrappify.predict.tta`); the tiles' mean is blended into the output and
their per-pixel standard deviation, blended alike, into a second accumulator (the
uncertainty map): 8 forward passes, the same memory per pass.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from decrappify.errors import InputError, ModelFileError
from decrappify.predict.network import evaluating, net_attributes
from decrappify.predict.oom import TileSettings, run_with_oom_retry
from decrappify.predict.settings import PredictSettings
from decrappify.predict.tile_geometry import (
    Bounds,
    Tile,
    normalize_bounds,
    plan_tiles,
    split_overlap,
    tile_quantum,
    validate_tile,
)
from decrappify.predict.tta import DIHEDRAL, dihedral, inverse_dihedral
from decrappify.predict.windows import border_extension, extract_window

__all__ = ["ProgressCallback", "network_grid", "predict_plane", "predict_region"]


def network_grid(net: Any) -> int:
    """Return the downsampling of a decrappify network in LR pixels (1 when it has none).

    decrappify's U-Nets declare the ``multiple`` their output sides need; the LR step of
    that (:func:`~decrappify.predict.tile_geometry.tile_quantum`) is how far apart the
    places are where they compute the same thing. Other networks are taken as
    shift-invariant.
    """
    if getattr(net, "multiple", None) is None:
        return 1
    scale, _, multiple = net_attributes(net)
    return tile_quantum(scale, multiple)


ProgressCallback = Callable[[int, int], None]
"""``progress(tiles_done, tiles_total)``; it may raise (e.g. ``Cancelled``) to stop."""

RetryCallback = Callable[[TileSettings, TileSettings], None]
"""``on_retry(failed, next)``: told about each out-of-memory step down."""

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def predict_plane(
    net: torch.nn.Module,
    lr: Any,
    settings: PredictSettings,
    *,
    dtype: str | torch.dtype = torch.float32,
    progress: ProgressCallback | None = None,
    on_retry: RetryCallback | None = None,
) -> np.ndarray:
    """Super-resolve one LR plane tile by tile.

    Parameters
    ----------
    net : torch.nn.Module
        Network with ``scale``, ``n_frames`` and ``multiple`` attributes. It is moved
        to the device (and to ``dtype`` unless ``amp``) in place, like ``Module.to``,
        and run in eval mode; its training flag is restored afterwards.
    lr : array-like
        Normalised float LR plane ``(H, W)``, or ``(n_frames, H, W)`` for a 2.5D
        network (the frames centred on the plane to predict). numpy, zarr or dask:
        only one batch of windows is read at a time.
    settings : PredictSettings
        ``tile`` (largest side in LR pixels, or ``(height, width)``; ``tile × scale``
        a multiple of ``net.multiple``; shrunk on out-of-memory), ``overlap`` (LR
        pixels, at most half the tile: prediction equals predicting the
        reflect-extended image whole when it is at least
        ``default_overlap(radius, scale)``), ``batch`` (tiles per forward pass, halved
        on out-of-memory), ``device``, ``amp`` (autocast: float16 on CUDA, bfloat16
        elsewhere), ``channels_last`` and ``blend`` (cross-fade fraction of the
        overlap, see :func:`~decrappify.predict.tile_geometry.split_overlap`).
    dtype : str or torch.dtype
        Compute dtype: float32, float16 or bfloat16.
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
    region = ((0, shape[0]), (0, shape[1]))
    return predict_region(
        net, lr, region, settings, dtype=dtype, progress=progress, on_retry=on_retry
    )


def predict_region(
    net: torch.nn.Module,
    lr: Any,
    region: Bounds | Sequence[slice],
    settings: PredictSettings,
    *,
    dtype: str | torch.dtype = torch.float32,
    progress: ProgressCallback | None = None,
    on_retry: RetryCallback | None = None,
    spread: np.ndarray | None = None,
) -> np.ndarray:
    """Super-resolve one region of an LR block that carries a halo of context around it.

    This is the per-block work of chunked (dask) prediction: read the LR rectangle and
    region from :func:`~decrappify.predict.block_geometry.input_region_for_output`, and
    the result equals the matching crop of :func:`predict_plane` on the whole plane
    whenever the halo and the tiles' context margin cover the network's receptive field.
    Past the block's borders windows are filled by reflection, which is exact at the
    image border (where the halo is clipped) and harmless elsewhere when the halo covers
    the receptive field. Where the region lies within ``settings.context`` of the block's
    edge, windows read that far past it (the tiles' cores cover that margin too, and what
    they compute there is dropped).

    Parameters
    ----------
    net : torch.nn.Module
        As for :func:`predict_plane`.
    lr : array-like
        Normalised float LR block ``(h, w)`` or ``(n_frames, h, w)``, halo included.
    region : Bounds or pair of slice
        LR rectangle of ``lr`` to super-resolve, ``((y0, y1), (x0, x1))``.
    settings, dtype, progress, on_retry
        As for :func:`predict_plane`. With ``settings.tta`` the result is the mean of the
        8 dihedral predictions.
    spread : numpy.ndarray or None
        With ``settings.tta``: a float32 array of the result's shape that receives the
        per-pixel standard deviation of the 8 predictions (normalised units), blended
        over the tiles like the result.

    Returns
    -------
    numpy.ndarray
        float32 ``((y1 - y0)·scale, (x1 - x0)·scale)``.

    Raises
    ------
    InputError
        As for :func:`predict_plane`, and for a region outside ``lr``.
    """
    scale, n_frames, multiple = net_attributes(net)
    _check_input(lr, n_frames)
    bounds = normalize_bounds(region, lr.shape[-2:])
    tiles = validate_tile(settings.tile, scale, multiple)
    overlap, blend, batch = settings.overlap, settings.blend, settings.batch
    split_overlap(overlap, blend)  # validates overlap and blend
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer (got {batch!r})")
    device = settings.device
    quantum = tile_quantum(scale, multiple)
    # Start from the tile the plan really uses, so that shrinking on OOM is never a no-op.
    first_plan = plan_tiles(
        lr.shape[-2:], tiles, overlap, scale=scale, multiple=multiple, blend=blend,
        region=bounds, grid=network_grid(net), context=settings.context,
    )  # fmt: skip
    used = first_plan[0].shape
    worker = _RegionPredictor(net, lr, bounds, settings, device, _resolve_dtype(dtype), progress)
    crop = worker.crop()
    if spread is not None and settings.tta:
        if spread.shape != worker.out[crop].shape or spread.dtype != np.float32:
            raise InputError(
                f"spread: expected a float32 array of shape {worker.out[crop].shape}, got "
                f"{spread.dtype} {spread.shape}"
            )
        worker.spread = np.zeros_like(worker.out)
    worker.adopt(used, first_plan)
    with evaluating(net):
        net.to(device=device)
        if not settings.amp:
            net.to(dtype=worker.dtype)
        if settings.channels_last:
            net.to(memory_format=torch.channels_last)
        run_with_oom_retry(
            worker.run,
            TileSettings(tile=used, batch_size=min(batch, len(first_plan))),
            quantum=quantum,
            min_tile=max(quantum, math.ceil(2 * overlap / quantum) * quantum),
            empty_cache=_empty_cuda_cache if device.type == "cuda" else None,
            on_retry=on_retry,
            where=str(device),
            advice=(
                "use a smaller overlap or free memory"
                if device.type == "cpu"
                else "use a smaller overlap, amp=True, a float16 dtype or device 'cpu'"
            ),
        )
    if spread is not None and worker.spread is not None:
        spread[...] = worker.spread[crop]
    return np.ascontiguousarray(worker.out[crop])


class _RegionPredictor:
    """Accumulates blended tile predictions; resumable after a batch-size change."""

    def __init__(
        self,
        net: torch.nn.Module,
        lr: Any,
        region: Bounds,
        settings: PredictSettings,
        device: torch.device,
        dtype: torch.dtype,
        progress: ProgressCallback | None,
    ) -> None:
        self.net = net
        self.lr = lr
        self.region = region
        self.settings = settings
        self.scale, _, self.multiple = net_attributes(net)
        self.grid = network_grid(net)
        self.device = device
        self.dtype = dtype
        self.progress = progress
        # at the array's borders the cores reach past the region, by this (windows/tiles)
        margin, _ = split_overlap(settings.overlap, settings.blend)
        self.extension = border_extension(
            region, lr.shape[-2:], (margin, margin), settings.context, self.grid
        )
        ((y0, y1), (x0, x1)), ((top, bottom), (left, right)) = region, self.extension
        self.origin = (y0 - top, x0 - left)
        shape = (y1 - y0 + top + bottom, x1 - x0 + left + right)
        self.out = np.zeros((shape[0] * self.scale, shape[1] * self.scale), dtype=np.float32)
        self.spread: np.ndarray | None = None  # the TTA spread, when asked for
        self.tile: tuple[int, int] | None = None
        self.tiles: list[Tile] = []
        self.done = 0

    def crop(self) -> tuple[slice, slice]:
        """HR slices of the region in the output, which holds the border extension too."""
        s = self.scale
        return tuple(  # type: ignore[return-value]
            slice(lo * s, n - hi * s)
            for (lo, hi), n in zip(self.extension, self.out.shape, strict=True)
        )

    def adopt(self, tile: tuple[int, int], tiles: list[Tile]) -> None:
        """Start over with a new tile plan."""
        self.tile = tile
        self.tiles = tiles
        self.done = 0
        self.out.fill(0.0)
        if self.spread is not None:
            self.spread.fill(0.0)

    def run(self, step: TileSettings) -> None:
        """Predict the remaining tiles with these settings (replanning if the tile changed)."""
        if step.tile != self.tile:
            self.adopt(
                step.tile,
                plan_tiles(
                    self.lr.shape[-2:],
                    step.tile,
                    self.settings.overlap,
                    scale=self.scale,
                    multiple=self.multiple,
                    blend=self.settings.blend,
                    region=self.region,
                    grid=self.grid,
                    context=self.settings.context,
                ),
            )
        total = len(self.tiles)
        while self.done < total:
            batch = self.tiles[self.done : self.done + step.batch_size]
            frames = np.stack([_frames(extract_window(self.lr, t.window)) for t in batch])
            frames = frames.astype(np.float32, copy=False)
            if self.settings.tta:
                predictions, spreads = self._dihedral(frames)
            else:
                predictions, spreads = self._forward(frames), None
            for i, tile in enumerate(batch):
                where, crop, weights = (
                    tile.output_slices(self.origin),
                    tile.crop_slices(),
                    tile.weights(),
                )
                self.out[where] += predictions[i][crop] * weights
                if spreads is not None and self.spread is not None:
                    self.spread[where] += spreads[i][crop] * weights
            self.done += len(batch)
            if self.progress is not None:
                self.progress(self.done, total)

    def _dihedral(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the predictions of the 8 transforms of a batch."""
        mean = np.zeros(0, np.float32)
        m2 = np.zeros(0, np.float32)
        for n, k in enumerate(DIHEDRAL, start=1):  # Welford: two batch-sized accumulators
            turned = np.ascontiguousarray(dihedral(frames, k))
            out = inverse_dihedral(self._forward(turned), k)
            if n == 1:
                mean, m2 = np.array(out, dtype=np.float32), np.zeros(out.shape, np.float32)
                continue
            delta = out - mean
            mean += delta / n
            m2 += delta * (out - mean)
        return mean, np.sqrt(np.maximum(m2, 0.0) / len(DIHEDRAL))

    def _forward(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frames)
        if self.device.type == "cuda":
            # pinned host memory: the copy to the device is a fast asynchronous DMA
            x = x.pin_memory()
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            y = self.net(x)
        n, _, h, w = frames.shape
        expected = (n, 1, h * self.scale, w * self.scale)
        if tuple(y.shape) != expected:
            raise ModelFileError(
                f"network output: expected shape {expected} for input {tuple(x.shape)} "
                f"(scale {self.scale}), got {tuple(y.shape)}"
            )
        return y[:, 0].float().cpu().numpy()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.settings.amp:
            return contextlib.nullcontext()
        half = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=half)


def _empty_cuda_cache() -> None:
    gc.collect()  # tensors of the failed batch may sit in reference cycles
    torch.cuda.empty_cache()


def _frames(window: np.ndarray) -> np.ndarray:
    return window if window.ndim == 3 else window[None]


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


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise InputError(f"dtype must be one of {', '.join(_DTYPES)} (got {dtype!r})")
