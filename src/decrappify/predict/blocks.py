"""The output blocks of a prediction: whole chunks aligned to the scale (pure numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.predict.tiling import Bounds

__all__ = ["BlockGrid"]


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
