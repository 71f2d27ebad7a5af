"""The dask.distributed worker plugin of prediction (imports ``distributed``)."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class PredictWorkerPlugin(WorkerPlugin):
    """Set torch's intra-op threads and the CUDA device of a prediction worker.

    Parameters
    ----------
    torch_threads : int or None
        Intra-op threads for torch on each worker (None leaves torch's default).
    gpus : int
        CUDA devices of the machine; worker ``i`` of a local cluster (named ``i``) uses
        device ``i % gpus`` (0 for CPU workers).
    """

    name = "decrappify-predict-setup"

    def __init__(self, torch_threads: int | None = None, gpus: int = 0) -> None:
        self.torch_threads = torch_threads
        self.gpus = gpus

    def setup(self, worker: Any) -> None:
        import torch

        from decrappify.predict import network

        if self.torch_threads:
            network.WORKER_TORCH_THREADS = int(self.torch_threads)
            torch.set_num_threads(int(self.torch_threads))
        if self.gpus:
            try:
                index = int(worker.name)
            except (TypeError, ValueError):
                index = 0
            torch.cuda.set_device(index % self.gpus)
