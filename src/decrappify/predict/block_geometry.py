"""Block geometry of chunked prediction: the output blocks and the LR input each needs (pure).

A prediction's HR output is cut into blocks of whole output chunks, aligned to the scale
(:class:`BlockGrid`); each block is computed from its LR footprint plus a halo of
context (:func:`input_region_for_output`). The tiles inside a block are planned by
:mod:`decrappify.predict.tile_geometry`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.predict.tile_geometry import Bounds, check_positive_int, int_pair, normalize_bounds

__all__ = ["BlockGrid", "input_region_for_output", "output_blocks"]


@dataclass(frozen=True)
class BlockGrid:
    """The output blocks of a prediction: whole chunks, aligned to the scale.

    Parameters
    ----------
    lead : tuple of int
        Shape of the leading axes (``()`` for 2D, ``(Z,)`` for stacks).
    lr_shape : tuple of int
        ``(H, W)`` of an LR plane.
    scale : int
        Upsampling factor.
    block : tuple of int
        HR ``(height, width)`` of a block (the last ones may be smaller).
    """

    lead: tuple[int, ...]
    lr_shape: tuple[int, int]
    scale: int
    block: tuple[int, int]

    @classmethod
    def plan(
        cls, shape: Sequence[int], scale: int, *, chunk: int = 1024, block: int = 0
    ) -> BlockGrid:
        """Choose the blocks of an image: a multiple of the chunk and of the scale.

        Parameters
        ----------
        shape : sequence of int
            LR image shape (Y and X last).
        scale : int
            Upsampling factor.
        chunk : int
            Stored chunk side in HR pixels.
        block : int
            Wanted block side in HR pixels (0: one chunk).

        Returns
        -------
        BlockGrid
            The grid.
        """
        lr_shape = (int(shape[-2]), int(shape[-1]))
        sides = []
        for n in lr_shape:
            out = n * scale
            step = math.lcm(min(chunk, out), scale)
            sides.append(min(out, max(step, block // step * step)))
        return cls(tuple(int(s) for s in shape[:-2]), lr_shape, scale, (sides[0], sides[1]))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the HR output."""
        return (*self.lead, self.lr_shape[0] * self.scale, self.lr_shape[1] * self.scale)

    @property
    def counts(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        hr = self.out_shape[-2:]
        return (*self.lead, *(math.ceil(n / b) for n, b in zip(hr, self.block, strict=True)))

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Dask chunks of the output."""
        lead = tuple((1,) * n for n in self.lead)
        yx = tuple(
            tuple(min(b, n - i) for i in range(0, n, b))
            for n, b in zip(self.out_shape[-2:], self.block, strict=True)
        )
        return (*lead, *yx)

    def indices(self) -> list[tuple[int, ...]]:
        """Block indices in row-major order (the order the writer asks for them)."""
        return list(np.ndindex(*self.counts))

    def bounds(self, index: Sequence[int]) -> Bounds:
        """HR rectangle of a block.

        Parameters
        ----------
        index : sequence of int
            Block index (leading axes first).

        Returns
        -------
        Bounds
            ``((y0, y1), (x0, x1))`` in HR pixels.
        """
        iy, ix = index[-2:]
        (by, bx), (h, w) = self.block, self.out_shape[-2:]
        return ((iy * by, min((iy + 1) * by, h)), (ix * bx, min((ix + 1) * bx, w)))

    def slices(self, index: Sequence[int]) -> tuple[Any, ...]:
        """Index of a block in the output array.

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        tuple
            Integers for the leading axes (kept as length-1 slices) and Y/X slices.
        """
        (y0, y1), (x0, x1) = self.bounds(index)
        lead = tuple(slice(i, i + 1) for i in index[:-2])
        return (*lead, slice(y0, y1), slice(x0, x1))

    def pixels(self, index: Sequence[int]) -> int:
        """HR pixels of a block.

        Parameters
        ----------
        index : sequence of int
            Block index.

        Returns
        -------
        int
            Its area.
        """
        (y0, y1), (x0, x1) = self.bounds(index)
        return (y1 - y0) * (x1 - x0)


def input_region_for_output(
    output: Bounds | Sequence[slice],
    *,
    scale: int,
    halo: int,
    lr_shape: Sequence[int],
) -> tuple[Bounds, Bounds]:
    """LR input a block of HR output needs: the block's LR footprint plus a halo.

    Parameters
    ----------
    output : Bounds or pair of slice
        HR rectangle (for example a dask/zarr output chunk); its starts and stops
        must be multiples of ``scale``.
    scale : int
        Super-resolution factor.
    halo : int
        LR context on each side, clipped at the image borders (use the tiling
        ``overlap``; it must be at least the network's receptive-field radius).
    lr_shape : pair of int
        ``(H, W)`` of the LR plane.

    Returns
    -------
    input_bounds : Bounds
        LR rectangle of the plane to read.
    region : Bounds
        The output's LR footprint in the coordinates of that rectangle; pass both to
        ``decrappify.predict.tile_predictor.predict_region``.

    Raises
    ------
    InputError
        If the output is not aligned to ``scale``, lies outside the HR plane, or the halo
        is negative.
    """
    check_positive_int(scale, "scale")
    if halo < 0:
        raise InputError(f"halo must be >= 0 (got {halo})")
    hr_shape = tuple(int(n) * scale for n in lr_shape)
    bounds = normalize_bounds(output, hr_shape)
    for lo, hi in bounds:
        if lo % scale or hi % scale:
            raise InputError(
                f"output block {bounds} must start and stop on multiples of the scale {scale}"
            )
    inputs = []
    regions = []
    for (lo, hi), n in zip(bounds, lr_shape, strict=True):
        a, b = lo // scale, hi // scale
        i0, i1 = max(0, a - halo), min(int(n), b + halo)
        inputs.append((i0, i1))
        regions.append((a - i0, b - i0))
    return (inputs[0], inputs[1]), (regions[0], regions[1])


def output_blocks(lr_shape: Sequence[int], scale: int, chunk: int | Sequence[int]) -> list[Bounds]:
    """Grid of HR output blocks aligned to the scale, row-major.

    Parameters
    ----------
    lr_shape : pair of int
        ``(H, W)`` of the LR plane.
    scale : int
        Super-resolution factor.
    chunk : int or pair of int
        Requested HR block side(s); rounded down to a multiple of ``scale`` (at least
        ``scale``).

    Returns
    -------
    list of Bounds
        HR rectangles that tile ``(H·scale, W·scale)`` exactly; the last ones in each
        row and column may be smaller.
    """
    check_positive_int(scale, "scale")
    chunks = int_pair(chunk, "chunk")
    if min(chunks) < 1:
        raise InputError(f"chunk must be positive (got {chunk})")
    steps = [max(scale, c // scale * scale) for c in chunks]
    spans = [
        [(lo, min(lo + step, int(n) * scale)) for lo in range(0, int(n) * scale, step)]
        for n, step in zip(lr_shape, steps, strict=True)
    ]
    return [(ys, xs) for ys in spans[0] for xs in spans[1]]
