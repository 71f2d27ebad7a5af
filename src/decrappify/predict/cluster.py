"""Scale-out: a dask.distributed client for prediction, from an address or a local cluster.

Each worker computes whole output blocks; it loads the model once (a per-process cache
keyed by the model's digest, see :mod:`decrappify.predict.engine`) and runs one block at
a time with torch's intra-op threads, so that dask threads and torch threads do not
compete for the same cores:

* ``cluster="local"`` starts a :class:`distributed.LocalCluster` of worker *processes*
  with one dask thread each: one worker per CUDA device (each pinned to its GPU), or on
  CPU ``workers`` workers that share the cores (torch threads = cores // workers);
* ``scheduler="tcp://host:8786"`` connects to a running cluster (for example one started
  by ``dask-jobqueue`` on SLURM); its workers should run one thread each
  (``--nthreads 1``) and need the model file and the inputs on a shared file system.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from typing import Any

from decrappify.devices import available_cores
from decrappify.errors import InputError

__all__ = ["open_client"]

log = logging.getLogger("decrappify")


@contextlib.contextmanager
def open_client(
    scheduler: str | Any | None = None,
    cluster: str | None = None,
    *,
    workers: int | None = None,
    device: str = "cpu",
) -> Iterator[Any]:
    """Yield a dask.distributed client for prediction, or None for a local run.

    Parameters
    ----------
    scheduler : str, distributed.Client or None
        Address of a running scheduler (``"tcp://host:8786"``), or a client to use as is.
    cluster : {"local"} or None
        Start a :class:`distributed.LocalCluster` for the duration of the block.
    workers : int or None
        Workers of the local cluster: default one per CUDA device on ``device="cuda"``,
        else 2 on CPU (the cores are split between them).
    device : str
        The resolved device type (``"cpu"`` or ``"cuda"``).

    Yields
    ------
    distributed.Client or None
        The client (closed, with its local cluster, when the block ends).

    Raises
    ------
    InputError
        For both ``scheduler`` and ``cluster``, an unknown ``cluster``, a bad ``workers``
        count, a missing ``distributed`` package or a scheduler that cannot be reached.
    """
    if scheduler is not None and cluster is not None:
        raise InputError("give either scheduler (an address) or cluster='local', not both")
    if cluster is not None and cluster != "local":
        raise InputError(f"cluster must be 'local' (got {cluster!r})")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise InputError(f"workers must be a positive integer (got {workers!r})")
    if workers is not None and cluster is None:
        raise InputError("workers applies only to cluster='local'")
    if scheduler is None and cluster is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise InputError(
            "scale-out needs the 'distributed' package: pip install 'decrappify[distributed]'"
        ) from err
    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # a client the caller owns
        return
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except OSError as err:
                raise InputError(f"scheduler {scheduler}: cannot connect ({err})") from err
        else:
            gpus = _cuda_count() if device == "cuda" else 0
            count = int(workers) if workers is not None else (gpus or 2)
            threads = max(1, available_cores() // count) if not gpus else None
            log.info(
                "starting a local cluster of %d worker(s)%s",
                count,
                f" on {gpus} GPU(s)" if gpus else f", {threads} torch thread(s) each",
            )
            # the workers' scratch space (and its lock files) in a folder removed at the
            # end, not dask-scratch-space/ left in the working or temporary folder
            scratch = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="decrappify-dask-", ignore_cleanup_errors=True)
            )
            local = stack.enter_context(
                LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    memory_limit=0,
                    local_directory=scratch,
                )
            )
            client = stack.enter_context(Client(local))
            from decrappify.predict._worker import PredictWorkerPlugin

            plugin = PredictWorkerPlugin(torch_threads=threads, gpus=gpus)
            client.register_plugin(plugin, name=plugin.name)
        yield client


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
