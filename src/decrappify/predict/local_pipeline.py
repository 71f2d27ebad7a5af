"""Local runs overlap input, compute and output: one reading thread, one compute thread.

While the caller stores a block, the model already runs on the next one and the reader
fetches the one after (:class:`BlockPipeline`). The model runs in one thread at a time
with torch's intra-op parallelism; the writer asks for the blocks in row-major order
(``BlockPipeline.get`` computes the blocks of the lazy output).
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from decrappify.predict.block_predictor import BlockPredictor

__all__ = ["BlockPipeline"]


class BlockPipeline:
    """Local read → compute overlap: one reading thread, one compute thread, one block ahead.

    ``get(index)`` returns the block (computing it if needed) and starts reading and
    computing the next block in row-major order, so that while the caller stores a block
    the model already runs on the next one and the reader fetches the one after.
    """

    def __init__(self, predictor: BlockPredictor) -> None:
        self.predictor = predictor
        threads = predictor.settings.local_threads
        order = predictor.grid.indices()
        self._next = dict(zip(order, order[1:], strict=False))
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="decrappify-read")
        # torch's intra-op thread count is a per-thread setting: set it where the model runs
        self._worker = ThreadPoolExecutor(
            1,
            thread_name_prefix="decrappify-predict",
            initializer=torch.set_num_threads if threads else None,
            initargs=(threads,) if threads else (),
        )
        self._inputs: dict[tuple[int, ...], Future[Any]] = {}
        self._outputs: collections.OrderedDict[tuple[int, ...], Future[Any]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, index: tuple[int, ...]) -> np.ndarray:
        """Return a block (computing it if needed) and start on the next one.

        Parameters
        ----------
        index : tuple of int
            Block index.

        Returns
        -------
        numpy.ndarray
            The block.
        """
        index = tuple(int(i) for i in index)
        with self._lock:
            future = self._outputs.pop(index, None)
            if future is None:
                future = self._submit(index)
            following = self._next.get(index)
            if following is not None and following not in self._outputs:
                self._outputs[following] = self._submit(following)
            while len(self._outputs) > 2:  # guesses nobody asked for: drop the oldest
                stale, old = self._outputs.popitem(last=False)
                old.cancel()
                self._inputs.pop(stale, None)
        return future.result()

    def _submit(self, index: tuple[int, ...]) -> Future[Any]:
        if index not in self._inputs:
            self._inputs[index] = self._reader.submit(self.predictor.read, index)
        return self._worker.submit(self._compute, index, self._inputs[index])

    def _compute(self, index: tuple[int, ...], parts: Future[Any]) -> np.ndarray:
        with self._lock:
            self._inputs.pop(index, None)
        return self.predictor.compute(index, parts.result())

    def close(self) -> None:
        """Cancel what is pending and stop the threads."""
        self.predictor.cancel()
        with self._lock:
            for future in self._outputs.values():
                future.cancel()
            self._outputs.clear()
            self._inputs.clear()
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._reader.shutdown(wait=True, cancel_futures=True)
