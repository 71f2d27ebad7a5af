"""The trust maps block by block: the consistency map of a prediction, and their summaries.

:func:`consistency_image` is the data-consistency map of a prediction as a lazy image on
the input's grid, one task per block reading its LR block and the prediction under it with
a halo; :func:`calibrate_image` fits the image's calibration they share.
:func:`recorded_blocks` hands out the TTA spread a prediction left in its sink.
:class:`MapSummary` gathers each block's statistics as it goes by (see
:mod:`decrappify.predict.trust`). Pure numpy/dask: no torch.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decrappify.crappify.consistency import (
    Calibration,
    ConsistencyStats,
    calibrate,
    data_consistency,
)
from decrappify.events import Progress
from decrappify.io import Image
from decrappify.normalize import normalize
from decrappify.predict.trust import TrustPlan

__all__ = [
    "CALIBRATION_SIDE",
    "MapSummary",
    "calibrate_image",
    "compute_blocks",
    "consistency_image",
    "recorded_blocks",
]

#: Side (LR pixels) of the central region of the middle plane the calibration is fitted on.
CALIBRATION_SIDE = 512


@dataclass
class MapSummary:
    """Per-image summary of a trust map, gathered block by block (thread-safe).

    Parameters
    ----------
    name : str
        The map.
    unit : float
        Grey levels per normalised unit (the image's ``hi - lo``): the uncertainty is
        summarised in normalised units, comparable between images.
    """

    name: str
    unit: float = 1.0
    _blocks: dict[tuple[int, ...], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, index: tuple[int, ...], values: np.ndarray) -> None:
        """Summarise one block (recorded once per block, whatever the recomputations)."""
        if self.name == "consistency":
            part: Any = ConsistencyStats.of(values)
        else:
            v = np.asarray(values, np.float64) / self.unit
            part = (int(v.size), float(v.sum()), float(v.max(initial=0.0)))
        with self._lock:
            self._blocks[index] = part

    def summary(self) -> dict[str, float]:
        """Return the image's summary.

        Returns
        -------
        dict
            ``consistency``: ``score`` (RMS of the map: about 1 when the input explains the
            output), ``flagged_fraction`` (pixels beyond ±4) and ``pixels``;
            ``uncertainty``: ``mean`` and ``max`` in normalised units (fractions of the
            image's intensity range) and ``pixels``.
        """
        with self._lock:
            parts = list(self._blocks.values())
        if self.name == "consistency":
            total = sum(parts, ConsistencyStats())
            return {
                "score": total.score,
                "flagged_fraction": total.flagged_fraction,
                "pixels": total.count,
            }
        count = sum(p[0] for p in parts)
        return {
            "mean": sum(p[1] for p in parts) / count if count else math.nan,
            "max": max((p[2] for p in parts), default=math.nan),
            "pixels": count,
        }


def calibrate_image(
    pred: Any, lr: Any, plan: TrustPlan, lo: float, hi: float, scale: int
) -> Calibration:
    """Fit the image's gain, offset and noise level on the centre of its middle plane.

    Parameters
    ----------
    pred, lr : array-like
        The prediction (HR grid) and its input (Y, X last; lazy or not).
    plan : TrustPlan
        With the crappifier.
    lo, hi : float
        The model's normalisation range of the input.
    scale : int
        The factor.

    Returns
    -------
    Calibration
        Shared by every block of the image (at most :data:`CALIBRATION_SIDE`² LR pixels
        are read).
    """
    assert plan.crappify is not None
    lead = tuple(n // 2 for n in lr.shape[:-2])
    window = []
    for n in lr.shape[-2:]:
        side = min(int(n), CALIBRATION_SIDE)
        start = (int(n) - side) // 2
        window.append((start, start + side))
    (y0, y1), (x0, x1) = window
    lr_part = _read(lr, (*lead, slice(y0, y1), slice(x0, x1)))
    pred_part = _read(pred, (*lead, slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)))
    return calibrate(
        normalize(pred_part, lo, hi),
        normalize(lr_part, lo, hi),
        plan.crappify,
        pixel_size=plan.pixel_size,
        pixel_unit=plan.pixel_unit,
    )


def consistency_image(
    pred: Any,
    lr: Image,
    plan: TrustPlan,
    lo: float,
    hi: float,
    scale: int,
    *,
    calibration: Calibration,
    block: int,
    summary: MapSummary,
) -> Image:
    """Build the data-consistency map of a prediction, lazily, on the input's grid.

    Parameters
    ----------
    pred : array-like
        The prediction (HR grid; numpy, zarr or dask).
    lr : Image
        The input.
    plan : TrustPlan
        With the crappifier and the halo.
    lo, hi : float
        The model's normalisation range of the input.
    scale : int
        The factor.
    calibration : Calibration
        The image's (:func:`calibrate_image`).
    block : int
        Side of the computed blocks in LR pixels.
    summary : MapSummary
        Records each block's statistics as it is computed.

    Returns
    -------
    Image
        float32 dask record placed like the input: one task per block, each reading its
        LR block and prediction with a halo of ``plan.halo`` LR pixels (equal to the map
        of the whole image).
    """
    import dask.array as da

    assert plan.crappify is not None
    crappify, halo = plan.crappify, plan.halo
    height, width = (int(n) for n in lr.shape[-2:])

    def task(block_info: Any = None) -> np.ndarray:
        location = block_info[None]["array-location"]
        lead = tuple(int(start) for start, _ in location[:-2])
        (y0, y1), (x0, x1) = location[-2:]
        ry0, ry1 = max(0, y0 - halo), min(height, y1 + halo)
        rx0, rx1 = max(0, x0 - halo), min(width, x1 + halo)
        observed = _read(lr.data, (*lead, slice(ry0, ry1), slice(rx0, rx1)))
        hr = (*lead, slice(ry0 * scale, ry1 * scale), slice(rx0 * scale, rx1 * scale))
        maps = data_consistency(
            normalize(_read(pred, hr), lo, hi),
            normalize(observed, lo, hi),
            crappify,
            calibration=calibration,
            pixel_size=plan.pixel_size,
            pixel_unit=plan.pixel_unit,
        )
        z = maps.z[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
        summary.record(tuple(block_info[None]["chunk-location"]), z)
        return z.reshape((1,) * len(lead) + z.shape)

    chunks = (*((1,) * n for n in lr.shape[:-2]), *(_splits(n, block) for n in (height, width)))
    meta = np.empty((0,) * lr.ndim, np.float32)
    data = da.map_blocks(task, chunks=chunks, dtype=np.float32, meta=meta)
    return lr.with_data(data, source=None)


def compute_blocks(data: Any, message: str) -> Generator[Progress, None, np.ndarray]:
    """Compute a lazy map block by block into memory, one event per block.

    Parameters
    ----------
    data : dask.array.Array
        The map.
    message : str
        Start of each event's message.

    Yields
    ------
    Progress
        ``phase="predict"``, one per block.

    Returns
    -------
    numpy.ndarray
        float32, the map's shape.
    """
    out = np.empty(data.shape, dtype=np.float32)
    blocks = list(np.ndindex(*data.numblocks))
    offsets = [np.cumsum((0, *c)) for c in data.chunks]
    for step, index in enumerate(blocks, start=1):
        where = tuple(slice(o[i], o[i + 1]) for o, i in zip(offsets, index, strict=True))
        out[where] = data.blocks[index].compute(scheduler="sync")
        yield Progress("predict", step, len(blocks), message=f"{message}, block {step}")
    return out


def recorded_blocks(source: Any, chunks: Any, summary: MapSummary) -> Any:
    """Wrap an array lazily, chunked by blocks, recording each block it hands out.

    Parameters
    ----------
    source : array-like
        A numpy or zarr array (a spread sink).
    chunks : tuple of tuple of int
        The dask chunks (the prediction's blocks).
    summary : MapSummary
        Records each block as it is read.

    Returns
    -------
    dask.array.Array
        float32 view of ``source``.
    """
    import dask.array as da

    def task(block_info: Any = None) -> np.ndarray:
        location = block_info[None]["array-location"]
        values = np.asarray(source[tuple(slice(a, b) for a, b in location)], np.float32)
        summary.record(tuple(block_info[None]["chunk-location"]), values)
        return values

    meta = np.empty((0,) * len(chunks), np.float32)
    return da.map_blocks(task, chunks=chunks, dtype=np.float32, meta=meta)


def _read(data: Any, index: tuple[Any, ...]) -> np.ndarray:
    """Read a region of a numpy, zarr or dask array (dask: in this thread)."""
    region = data[index]
    if hasattr(region, "compute"):
        region = region.compute(scheduler="sync")
    return np.asarray(region, dtype=np.float32)


def _splits(n: int, block: int) -> tuple[int, ...]:
    return tuple(min(block, n - i) for i in range(0, n, block))
