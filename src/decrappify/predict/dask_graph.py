"""The output of a prediction as a lazy array: one block per task.

Local runs compute each block through the read/compute pipeline of this process
(:mod:`decrappify.predict.local_pipeline`), behind a
:class:`~decrappify.io.BlockArray` (no dask: importing dask.array is a fixed cost
of every command). Distributed runs (a ``dask.distributed`` client) build a dask array
with one task per block whose inputs are the LR slices it needs, read on the workers;
each worker loads the model once (a per-process cache keyed by the model's digest) and
runs one forward pass at a time. The output is identical either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from decrappify.io import BlockArray
from decrappify.predict.block_predictor import BlockPredictor, remote_block
from decrappify.predict.local_pipeline import BlockPipeline

__all__ = ["lazy_prediction"]


def lazy_prediction(predictor: BlockPredictor, *, client: Any = None) -> tuple[Any, Any]:
    """Build the output of a prediction as a lazy array, one block per task.

    Parameters
    ----------
    predictor : BlockPredictor
        The per-block work (it holds the input).
    client : distributed.Client or None
        Build tasks for this cluster (inputs read on the workers, the model loaded once
        per worker); None for a local run (a read/compute pipeline in this process).

    Returns
    -------
    data : BlockArray or dask.array.Array
        The HR output, chunked by blocks: a local run's blocks computed on demand by
        the pipeline, or a cluster's dask array.
    closer : callable
        Stops the local pipeline's threads (call it when done).
    """
    grid = predictor.grid
    dtype = np.dtype(predictor.settings.out_dtype)
    if client is None:
        pipeline = BlockPipeline(predictor)
        return BlockArray(pipeline.get, grid.chunks, dtype), pipeline.close
    meta = np.empty((0,) * len(grid.out_shape), dtype=dtype)
    name = f"decrappify-predict-{predictor.token}"
    return _distributed_array(predictor, client, name, dtype, meta), lambda: None


def _distributed_array(
    predictor: BlockPredictor, client: Any, name: str, dtype: np.dtype, meta: np.ndarray
) -> Any:
    import dask.array as da
    from dask import delayed

    source = predictor._data
    if isinstance(source, np.ndarray):
        source = da.from_array(source, chunks=_input_chunks(source.shape))
    shipped = None
    if predictor.model_path is None:
        # an in-memory network: sent to every worker once, not with every task
        shipped = client.scatter(predictor._net, broadcast=True, hash=False)
    grid = predictor.grid
    blocks = np.empty(grid.counts, dtype=object)
    for index in grid.indices():
        parts = [source[item] for item in predictor.input_slices(index)]
        key = f"{name}-{'-'.join(str(i) for i in index)}"
        task = delayed(remote_block, pure=True)(
            predictor, index, shipped, *parts, dask_key_name=key
        )
        shape = tuple(s.stop - s.start for s in grid.slices(index))
        blocks[index] = da.from_delayed(task, shape=shape, dtype=dtype, meta=meta)
    return da.block(blocks.tolist())


def _input_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    lead = (1,) * (len(shape) - 2)
    return (*lead, *(min(1024, int(n)) for n in shape[-2:]))
