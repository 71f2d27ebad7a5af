"""The trust maps block by block: the consistency map of a prediction, and their summaries.

The data-consistency map is made in two steps around a prediction:

* while each output block is in memory, the block predictor degrades it with the
  model's forward model on the model's device and stores the block's *share* (the
  forward model of the block alone, which reaches a few LR pixels past its footprint)
  in a slot of the degraded sink (:class:`DegradedSlots`); the shares of an image add
  up to the forward model of the whole prediction;
* afterwards :func:`consistency_image` makes the map on the input's grid, one task per
  block adding up the shares around it and comparing them with the input, with the
  image's calibration (:func:`calibrate_image`) -- LR grids only, on the device the
  caller's :class:`~decrappify.crappify.forward_operator.Arrays` run on.

:func:`recorded_blocks` hands out the TTA spread a prediction left in its sink.
:class:`MapSummary` gathers each block's statistics as it goes by (see
:mod:`decrappify.predict.trust`). The maps are lazy :class:`~decrappify.io.BlockArray`
records (no dask graph). Pure numpy: no torch.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decrappify.crappify.consistency import (
    Calibration,
    ConsistencyStats,
    ForwardModel,
    fit_calibration,
    local_residual,
)
from decrappify.crappify.degradations import kernel_radius
from decrappify.crappify.forward_operator import NUMPY, Arrays, reach
from decrappify.events import Progress
from decrappify.io import BlockArray, Image
from decrappify.normalize import normalize
from decrappify.predict.block_geometry import BlockGrid
from decrappify.predict.trust import TrustPlan

__all__ = [
    "CALIBRATION_SIDE",
    "WINDOW",
    "DegradedSlots",
    "MapSummary",
    "calibrate_image",
    "compute_blocks",
    "consistency_image",
    "recorded_blocks",
]

#: Side (LR pixels) of the central region of the middle plane the calibration is fitted on.
CALIBRATION_SIDE = 512
#: The averaging window of the consistency map (LR pixels, see ``data_consistency``).
WINDOW = 2.0

Box = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class DegradedSlots:
    """Where each output block's share of the forward model lives in the degraded sink.

    The share of block ``(..., i, j)`` covers the LR rows ``i * block_y - pad_y`` to
    ``(i + 1) * block_y + pad_y`` (and likewise for columns), so the sink is
    ``(*lead, n_y * (block_y + 2 pad_y), n_x * (block_x + 2 pad_x))`` float32 with one
    chunk per slot: blocks never write the same chunk.

    Attributes
    ----------
    lead : tuple of int
        Leading (plane) axes of the image.
    counts : tuple of int
        Blocks along Y and X.
    block : tuple of int
        LR side of a block along Y and X (the last ones may be shorter).
    pad : tuple of int
        LR rows and columns a share reaches past its block.
    lr_shape : tuple of int
        The input plane's Y and X.
    """

    lead: tuple[int, ...]
    counts: tuple[int, int]
    block: tuple[int, int]
    pad: tuple[int, int]
    lr_shape: tuple[int, int]

    @classmethod
    def plan(cls, grid: BlockGrid, forward: ForwardModel) -> DegradedSlots:
        """Lay out the slots of an image's blocks for its forward model."""
        s = grid.scale
        pads = []
        for axis, band in enumerate(forward.bands):
            side = grid.block[axis]
            n = grid.out_shape[len(grid.lead) + axis]
            pads.append(reach(band, [(a, min(a + side, n)) for a in range(0, n, side)]))
        return cls(
            lead=tuple(grid.lead),
            counts=(int(grid.counts[-2]), int(grid.counts[-1])),
            block=(grid.block[0] // s, grid.block[1] // s),
            pad=(int(pads[0]), int(pads[1])),
            lr_shape=(int(grid.lr_shape[0]), int(grid.lr_shape[1])),
        )

    @property
    def slot_shape(self) -> tuple[int, int]:
        """LR rows and columns of one slot."""
        return tuple(b + 2 * p for b, p in zip(self.block, self.pad, strict=True))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, ...]:
        """The sink's shape."""
        return (*self.lead, *(n * k for n, k in zip(self.counts, self.slot_shape, strict=True)))

    @property
    def chunks(self) -> tuple[int, ...]:
        """The sink's chunks: one slot each."""
        return (*((1,) * len(self.lead)), *self.slot_shape)

    def slot(self, index: Sequence[int]) -> tuple[Any, ...]:
        """Index of a block's slot in the sink."""
        *lead, i, j = (int(v) for v in index)
        h, w = self.slot_shape
        return (*lead, slice(i * h, (i + 1) * h), slice(j * w, (j + 1) * w))

    def slot_box(self, i: int, j: int) -> Box:
        """Return the LR rows and columns a slot stands for (they may lie past the image)."""
        (by, bx), (py, px) = self.block, self.pad
        return ((i * by - py, (i + 1) * by + py), (j * bx - px, (j + 1) * bx + px))

    def share(
        self,
        forward: ForwardModel,
        hr: Any,
        index: Sequence[int],
        hr_origin: tuple[int, int],
        arrays: Arrays = NUMPY,
    ) -> np.ndarray:
        """Degrade one output block (normalised, on ``arrays``) into its slot's values.

        Parameters
        ----------
        forward : ForwardModel
            The image's forward model.
        hr : array
            The block's prediction in normalised units (numpy or a tensor of ``arrays``).
        index : sequence of int
            The block's index.
        hr_origin : tuple of int
            HR (Y, X) position of the block's first pixel.
        arrays : Arrays
            Where the products run.

        Returns
        -------
        numpy.ndarray
            float32 of :attr:`slot_shape`: the block's share, zero past the image.
        """
        *_, i, j = (int(v) for v in index)
        (y0, y1), (x0, x1) = self.slot_box(i, j)
        (h, w) = self.lr_shape
        box = ((max(0, y0), min(h, y1)), (max(0, x0), min(w, x1)))
        values = arrays.numpy(forward.degrade(hr, hr_origin, box, arrays))
        out = np.zeros(self.slot_shape, np.float32)
        (a, b), (c, d) = box
        out[a - y0 : b - y0, c - x0 : d - x0] = values
        return out

    def assemble(self, sink: Any, lead: tuple[int, ...], box: Box) -> np.ndarray:
        """Add up the shares over an LR box of one plane: its forward model (float32)."""
        (a, b), (c, d) = box
        out = np.zeros((b - a, d - c), np.float32)
        (by, bx), (py, px) = self.block, self.pad
        rows = range(max(0, (a - py) // by - 1), min(self.counts[0], (b + py) // by + 1))
        cols = range(max(0, (c - px) // bx - 1), min(self.counts[1], (d + px) // bx + 1))
        for i in rows:
            for j in cols:
                (y0, y1), (x0, x1) = self.slot_box(i, j)
                ty0, ty1, tx0, tx1 = max(a, y0), min(b, y1), max(c, x0), min(d, x1)
                if ty1 <= ty0 or tx1 <= tx0:
                    continue
                h, w = self.slot_shape
                where = (
                    *lead,
                    slice(i * h + ty0 - y0, i * h + ty1 - y0),
                    slice(j * w + tx0 - x0, j * w + tx1 - x0),
                )
                out[ty0 - a : ty1 - a, tx0 - c : tx1 - c] += _read(sink, where)
        return out


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
    slots: DegradedSlots, sink: Any, lr: Any, trust: TrustPlan, lo: float, hi: float
) -> Calibration:
    """Fit the image's gain, offset and noise level on the centre of its middle plane.

    Parameters
    ----------
    slots : DegradedSlots
        The layout of the degraded sink.
    sink : array-like
        The degraded sink the prediction filled.
    lr : array-like
        The input (Y, X last; lazy or not).
    trust : TrustPlan
        With the forward model.
    lo, hi : float
        The model's normalisation range of the input.

    Returns
    -------
    Calibration
        Shared by every block of the image (fitted on at most :data:`CALIBRATION_SIDE`²
        LR pixels).
    """
    forward = trust.forward
    assert forward is not None
    lead = tuple(n // 2 for n in lr.shape[:-2])
    window = []
    for n in lr.shape[-2:]:
        side = min(int(n), CALIBRATION_SIDE)
        start = (int(n) - side) // 2
        window.append((start, start + side))
    (y0, y1), (x0, x1) = window
    observed = normalize(_read(lr, (*lead, slice(y0, y1), slice(x0, x1))), lo, hi)
    return fit_calibration(
        slots.assemble(sink, lead, ((y0, y1), (x0, x1))),
        observed,
        forward.config,
        pixel_size=forward.pixel_size,
        pixel_unit=forward.pixel_unit,
    )


def consistency_image(
    slots: DegradedSlots,
    sink: Any,
    lr: Image,
    trust: TrustPlan,
    lo: float,
    hi: float,
    *,
    calibration: Calibration,
    summary: MapSummary,
    arrays: Arrays = NUMPY,
) -> Image:
    """Build the data-consistency map of a prediction, lazily, on the input's grid.

    Parameters
    ----------
    slots : DegradedSlots
        The layout of the degraded sink (its blocks are the map's blocks).
    sink : array-like
        The degraded sink the prediction filled.
    lr : Image
        The input.
    trust : TrustPlan
        With the forward model.
    lo, hi : float
        The model's normalisation range of the input.
    calibration : Calibration
        The image's (:func:`calibrate_image`).
    summary : MapSummary
        Records each block's statistics as it is computed.
    arrays : Arrays
        Where the arithmetic runs (the prediction's device).

    Returns
    -------
    Image
        float32 lazy record (:class:`~decrappify.io.BlockArray`) placed like the input:
        each block adds up the shares of the forward model around its LR block (with the
        window's radius) and compares them with the input -- the map of the whole image.
    """
    forward = trust.forward
    assert forward is not None
    halo = kernel_radius(WINDOW)
    height, width = slots.lr_shape

    def task(index: tuple[int, ...], location: list[tuple[int, int]]) -> np.ndarray:
        lead = tuple(start for start, _ in location[:-2])
        out = tuple(location[-2:])
        (y0, y1), (x0, x1) = out
        region = ((max(0, y0 - halo), min(height, y1 + halo)),
                  (max(0, x0 - halo), min(width, x1 + halo)))  # fmt: skip
        (ry0, ry1), (rx0, rx1) = region
        observed = normalize(_read(lr.data, (*lead, slice(ry0, ry1), slice(rx0, rx1))), lo, hi)
        _, z = local_residual(
            forward,
            arrays.asarray(slots.assemble(sink, lead, region)),
            arrays.asarray(observed),
            calibration,
            region=region,
            out=out,
            window=WINDOW,
            arrays=arrays,
        )
        z = np.asarray(arrays.numpy(z), dtype=np.float32)
        summary.record(index, z)
        return z.reshape((1,) * len(lead) + z.shape)

    splits = [_splits(n, b) for n, b in zip(slots.lr_shape, slots.block, strict=True)]
    chunks = (*((1,) * n for n in lr.shape[:-2]), *splits)
    return lr.with_data(_float_blocks(task, chunks), source=None)


def compute_blocks(data: Any, message: str) -> Generator[Progress, None, np.ndarray]:
    """Compute a lazy map block by block into memory, one event per block.

    Parameters
    ----------
    data : BlockArray
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
    for step, index in enumerate(blocks, start=1):
        out[tuple(slice(a, b) for a, b in data.location(index))] = data.block(index)
        yield Progress("predict", step, len(blocks), message=f"{message}, block {step}")
    return out


def recorded_blocks(source: Any, chunks: Any, summary: MapSummary) -> Any:
    """Wrap an array lazily, chunked by blocks, recording each block it hands out.

    Parameters
    ----------
    source : array-like
        A numpy or zarr array (a spread sink).
    chunks : tuple of tuple of int
        The block sizes along each axis (the prediction's blocks).
    summary : MapSummary
        Records each block as it is read.

    Returns
    -------
    BlockArray
        float32 view of ``source``.
    """

    def task(index: tuple[int, ...], location: list[tuple[int, int]]) -> np.ndarray:
        values = np.asarray(source[tuple(slice(a, b) for a, b in location)], np.float32)
        summary.record(index, values)
        return values

    return _float_blocks(task, chunks)


def _float_blocks(
    task: Callable[[tuple[int, ...], list[tuple[int, int]]], np.ndarray],
    chunks: Sequence[Sequence[int]],
) -> BlockArray:
    """Wrap ``task(index, [(start, stop), ...])`` as a float32 lazy array of these blocks."""

    def block(index: tuple[int, ...]) -> np.ndarray:
        index = tuple(int(i) for i in index)
        return task(index, list(array.location(index)))

    array = BlockArray(block, chunks, np.float32)
    return array


def _read(data: Any, index: tuple[Any, ...]) -> np.ndarray:
    """Read a region of a numpy, zarr or dask array (dask: in this thread)."""
    region = data[index]
    if hasattr(region, "compute"):
        from dask.local import get_sync  # not the name "sync": dask would import distributed

        region = region.compute(scheduler=get_sync)
    return np.asarray(region, dtype=np.float32)


def _splits(n: int, block: int) -> tuple[int, ...]:
    return tuple(min(block, n - i) for i in range(0, n, block))
