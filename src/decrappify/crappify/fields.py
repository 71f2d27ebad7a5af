"""Position-deterministic random fields on a fixed grid of cells in global coordinates.

Chunked processing must give the same noise as processing the whole image, so the
random numbers of a pixel depend only on its global position, never on the chunk it
falls in. The plane is tiled by square *noise cells* (:data:`CELL` pixels); each
cell's values come from its own generator, seeded by
``SeedSequence([seed, NOISE_SEED_KEY, *key, stream, cell_y, cell_x])``; a region at
offset ``(oy, ox)`` assembles the cells it overlaps.

:class:`NoiseField` implements the two methods of :class:`numpy.random.Generator`
that the degradations use (``standard_normal`` and ``random``), so every degradation
accepts either a plain generator (ad-hoc use) or a noise field (chunk-consistent use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from decrappify.errors import InputError

__all__ = ["CELL", "NOISE_SEED_KEY", "NoiseField", "RandomSource"]

#: Side of a noise cell, in pixels.
CELL = 256
#: Key mixed into every noise-cell seed (keeps noise streams apart from others).
NOISE_SEED_KEY = 0x5EED_0002


class RandomSource(Protocol):
    """What degradations need from a source of randomness (a subset of ``Generator``)."""

    def standard_normal(self, size: Any = ..., dtype: Any = ...) -> Any:
        """Return standard normal samples of shape ``size``."""

    def random(self, size: Any = ..., dtype: Any = ...) -> Any:
        """Return uniform samples in [0, 1) of shape ``size``."""


class NoiseField:
    """Random numbers for one region of a plane, fixed by global pixel position.

    Each call to :meth:`standard_normal` or :meth:`random` draws a new independent
    field (a new *stream*) covering the region ``origin + [0, size)``.

    Parameters
    ----------
    seed : int
        The user's seed (>= 0).
    key : sequence of int
        Further non-negative integers identifying the field (step index, plane).
        Fields used together should have keys of the same length.
    origin : tuple of int
        Global (y, x) position of the region's first pixel (>= 0).
    cell : int
        Side of the noise cells. Changing it changes every random number.
    """

    def __init__(
        self,
        seed: int,
        key: Sequence[int] = (),
        origin: tuple[int, int] = (0, 0),
        *,
        cell: int = CELL,
    ) -> None:
        values = (seed, *key, *origin)
        if any(int(v) != v or v < 0 for v in values):
            raise InputError(
                f"noise field: seed, key and origin must be non-negative integers (got "
                f"seed={seed}, key={tuple(key)}, origin={tuple(origin)})"
            )
        self.seed = int(seed)
        self.key = tuple(int(k) for k in key)
        self.origin = (int(origin[0]), int(origin[1]))
        self.cell = int(cell)
        self._stream = 0

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> np.ndarray:
        """Return standard normal values for the region of shape ``size`` (a new stream).

        Parameters
        ----------
        size : tuple of int
            ``(height, width)`` of the region.
        dtype : {numpy.float32, numpy.float64}
            Output dtype (each dtype has its own values, as with ``Generator``).

        Returns
        -------
        numpy.ndarray
            Array of shape ``size``.
        """
        return self._assemble(
            size, dtype, lambda g, shape: g.standard_normal(shape, dtype=np.dtype(dtype))
        )

    def random(self, size: Any = None, dtype: Any = np.float64) -> np.ndarray:
        """Return uniform values in [0, 1) for the region of shape ``size`` (a new stream).

        Parameters
        ----------
        size : tuple of int
            ``(height, width)`` of the region.
        dtype : {numpy.float32, numpy.float64}
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Array of shape ``size``.
        """
        return self._assemble(size, dtype, lambda g, shape: g.random(shape, dtype=np.dtype(dtype)))

    def _assemble(
        self,
        size: Any,
        dtype: Any,
        draw: Callable[[np.random.Generator, tuple[int, int]], np.ndarray],
    ) -> np.ndarray:
        """Fill a region from the cells it overlaps, one generator per cell."""
        shape = (size,) if isinstance(size, int) else tuple(size)
        if len(shape) != 2:
            raise InputError(f"noise field: expected a 2D size, got {shape}")
        stream = self._stream
        self._stream += 1
        out = np.empty(shape, dtype=np.dtype(dtype))
        (oy, ox), c = self.origin, self.cell
        y1, x1 = oy + shape[0], ox + shape[1]
        for cy in range(oy // c, -(-y1 // c)):
            ya, yb = max(oy, cy * c), min(y1, (cy + 1) * c)
            for cx in range(ox // c, -(-x1 // c)):
                xa, xb = max(ox, cx * c), min(x1, (cx + 1) * c)
                entropy = [self.seed, NOISE_SEED_KEY, *self.key, stream, cy, cx]
                values = draw(np.random.default_rng(np.random.SeedSequence(entropy)), (c, c))
                out[ya - oy : yb - oy, xa - ox : xb - ox] = values[
                    ya - cy * c : yb - cy * c, xa - cx * c : xb - cx * c
                ]
        return out
