"""Block grids and block-by-block computation (local threads or dask.distributed)."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

Region = tuple[slice, ...]


def round_up(value: int, step: int) -> int:
    """Smallest multiple of ``step`` that is >= ``value``."""
    return int(math.ceil(value / step) * step)


class BlockArray:
    """A lazy array whose blocks a function computes, one at a time (no dask).

    What a local prediction hands to the writers: they read it region by region
    (:func:`iter_blocks`), and each region is put together from the blocks under it, in
    row-major order. Importing dask.array costs a CLI command about half a second; a
    local run needs none of its graph machinery.

    Parameters
    ----------
    block : callable
        ``block(index)`` returns the block at ``index`` (a tuple, one entry per axis) as
        a numpy array of the block's shape.
    chunks : sequence of sequence of int
        Block sizes along each axis (dask's ``chunks``).
    dtype : numpy dtype
        The blocks' dtype.
    """

    def __init__(
        self,
        block: Callable[[tuple[int, ...]], np.ndarray],
        chunks: Sequence[Sequence[int]],
        dtype: Any,
    ) -> None:
        self.block = block
        self.chunks = tuple(tuple(int(c) for c in axis) for axis in chunks)
        self.shape = tuple(sum(axis) for axis in self.chunks)
        self.dtype = np.dtype(dtype)
        self._starts = [np.cumsum((0, *axis)) for axis in self.chunks]

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def numblocks(self) -> tuple[int, ...]:
        """Number of blocks along each axis."""
        return tuple(len(axis) for axis in self.chunks)

    def location(self, index: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` along each axis of the block at ``index``."""
        return tuple(
            (int(st[i]), int(st[i + 1])) for st, i in zip(self._starts, index, strict=True)
        )

    def region(self, region: Sequence[slice | int]) -> np.ndarray:
        """Compute ``array[region]`` (integers, or slices with unit steps) from its blocks."""
        bounds = [
            (int(s), int(s) + 1) if isinstance(s, int | np.integer) else s.indices(n)[:2]
            for s, n in zip(region, self.shape, strict=True)
        ]
        out = np.empty(tuple(b - a for a, b in bounds), dtype=self.dtype)
        spans = [
            range(int(np.searchsorted(st, a, "right")) - 1, int(np.searchsorted(st, b, "left")))
            for st, (a, b) in zip(self._starts, bounds, strict=True)
        ]
        for index in itertools.product(*spans):
            values = self.block(index)
            src, dst = [], []
            for (start, stop), (a, b) in zip(self.location(index), bounds, strict=True):
                lo, hi = max(a, start), min(b, stop)
                src.append(slice(lo - start, hi - start))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = values[tuple(src)]
        dropped = tuple(i for i, s in enumerate(region) if isinstance(s, int | np.integer))
        return out.squeeze(dropped) if dropped else out


def write_block_shape(data: Any, chunks: Sequence[int]) -> tuple[int, ...]:
    """Shape of the blocks computed and written at once: whole output chunks.

    Each block is a whole number of output ``chunks`` (so concurrent writes never share
    a stored chunk) and, where the input's dask chunks are regular and nest with the
    output chunks, one input chunk (so every input chunk is computed exactly once).
    """
    if isinstance(data, np.ndarray):
        return tuple(int(c) for c in chunks)
    block = []
    for axis_chunks, size in zip(data.chunks, chunks, strict=True):
        first = int(axis_chunks[0])
        regular = all(c == first for c in axis_chunks[:-1]) and axis_chunks[-1] <= first
        if regular and (len(axis_chunks) == 1 or first % size == 0):
            block.append(round_up(first, size))
        else:
            block.append(int(size))
    return tuple(block)


def grid(shape: Sequence[int], block: Sequence[int]) -> list[tuple[tuple[int, ...], Region]]:
    """Row-major list of ``(block index, region)`` covering ``shape`` with ``block`` tiles."""
    counts = [math.ceil(s / b) for s, b in zip(shape, block, strict=True)]
    items = []
    for index in itertools.product(*(range(c) for c in counts)):
        region = tuple(
            slice(i * b, min((i + 1) * b, s)) for i, b, s in zip(index, block, shape, strict=True)
        )
        items.append((tuple(index), region))
    return items


def iter_blocks(
    data: Any,
    items: Iterable[tuple[Hashable, Region]],
    *,
    client: Any = None,
    ordered: bool = False,
    in_flight: int | None = None,
) -> Iterator[tuple[Hashable, np.ndarray]]:
    """Compute ``data[region]`` for each item and yield ``(key, numpy block)``.

    numpy data is sliced, a :class:`BlockArray` is put together from its blocks; dask
    data is computed one block at a time with the threaded
    scheduler (memory bounded by one block); with a dask.distributed ``client`` a bounded
    number of blocks is computed on the cluster at once and yielded as they complete (in
    submission order if ``ordered``). Closing the iterator cancels outstanding futures.
    """
    if isinstance(data, np.ndarray):
        for key, region in items:
            yield key, data[region]
        return
    if isinstance(data, BlockArray):
        for key, region in items:
            yield key, data.region(region)
        return
    if client is None:
        # the scheduler function itself: a name makes dask import distributed to look for
        # a client (a third of a second per command)
        from dask.threaded import get as threads

        for key, region in items:
            yield key, np.asarray(data[region].compute(scheduler=threads))
        return
    yield from _iter_distributed(data, items, client, ordered=ordered, in_flight=in_flight)


def _iter_distributed(
    data: Any,
    items: Iterable[tuple[Hashable, Region]],
    client: Any,
    *,
    ordered: bool,
    in_flight: int | None,
) -> Iterator[tuple[Hashable, np.ndarray]]:
    from distributed import as_completed

    limit = in_flight or max(2, 2 * sum(client.nthreads().values()))
    pending = iter(items)
    keys: dict[Any, Hashable] = {}
    queue: deque[Any] = deque()

    def submit() -> Any:
        item = next(pending, None)
        if item is None:
            return None
        key, region = item
        future = client.compute(data[region])
        keys[future] = key
        queue.append(future)
        return future

    try:
        for _ in range(limit):
            if submit() is None:
                break
        if ordered:
            while queue:
                future = queue.popleft()
                block = np.asarray(future.result())
                key = keys.pop(future)
                submit()
                yield key, block
        else:
            completed = as_completed(list(queue))
            for future in completed:
                block = np.asarray(future.result())
                key = keys.pop(future)
                queue.remove(future)
                new = submit()
                if new is not None:
                    completed.add(new)
                yield key, block
    finally:
        if keys:
            client.cancel(list(keys))
