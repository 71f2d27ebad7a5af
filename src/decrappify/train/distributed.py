"""Training on several processes (GPUs, nodes) with torch.distributed: who does what.

A run started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment; ``srun torchrun``
on SLURM, see ``docs/training.md``) trains one model on every process with
DistributedDataParallel. The run stays one run:

- the global batch (``batch_size``) is split among the processes: process ``r`` of ``n``
  takes samples ``r * b ... r * b + b - 1`` (``b = batch_size / n``) of each step's keys,
  so together they draw exactly the samples one process would, a pure function of the
  seed; gradients are averaged over the processes;
- one clock decides: process 0 measures the time, fixes and follows the step counts,
  decides which phases fit, and the others take its decisions (:meth:`Ranks.decide`);
  losses that rules depend on (the critic's) are averaged over the processes
  (:meth:`Ranks.mean`), and validation runs on process 0 alone;
- process 0 alone writes the run folder (config, log, curves, checkpoints, model,
  saved outputs); the others read the checkpoint when resuming, so the run folder must
  be on a file system every node sees. A checkpoint does not depend on the number of
  processes: a run killed at any point resumes with any number of them.

:class:`Ranks` is also the single-process case (``world`` 1), where every collective is
a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from decrappify.errors import InputError

__all__ = ["Ranks", "process_group", "threads_per_process"]

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where a process stands in the run: its rank among ``world`` processes, its local rank."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder and decides (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the run has more than one process."""
        return self.world > 1

    def share(self, batch_size: int) -> slice:
        """Return the slice of a global batch of ``batch_size`` samples this process takes."""
        if batch_size % self.world:
            raise InputError(
                f"batch_size: {batch_size} does not split among the {self.world} processes of "
                "the run (WORLD_SIZE); give a multiple of the number of processes"
            )
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def decide(self, value: T) -> T:
        """Return process 0's ``value`` on every process (any picklable value)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average each value over the processes (the same keys on every process)."""
        if not self.distributed or not values:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        device = _collective_device()
        total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return {k: float(v) / self.world for k, v in zip(keys, total.tolist(), strict=True)}

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Join the processes' tensors (of one shape) along the first axis, in rank order."""
        if not self.distributed:
            return tensor
        import torch.distributed as dist

        device = _collective_device()
        local = tensor.to(device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local)
        return torch.cat(parts).to(tensor.device)

    def barrier(self) -> None:
        """Wait until every process is here."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def _collective_device() -> torch.device:
    """Return where collectives run: the GPU of this process with NCCL, the CPU with gloo."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launched_world() -> int:
    """Count the processes ``torchrun`` started (``WORLD_SIZE``; 1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as err:
        raise InputError(f"WORLD_SIZE: expected a number of processes, got {err}") from err


def threads_per_process(cores: int) -> int:
    """Count the CPU threads for each of the processes ``torchrun`` started on this node."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cores // local)


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[Ranks]:
    """Join the process group ``torchrun`` set up (if any) for the length of a run.

    The backend is NCCL when the run trains on CUDA and gloo otherwise; each process
    then uses the GPU of its local rank. A group that is already initialised (by the
    caller) is used as it is and left open.

    Yields
    ------
    Ranks
        This process's rank, the world size and the local rank (``Ranks()`` alone).
    """
    if launched_world() == 1:
        yield Ranks()
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        cuda = device_name != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
    ranks = Ranks(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if dist.get_backend() == "nccl":
        torch.cuda.set_device(ranks.local)
    try:
        yield ranks
    finally:
        if created:
            dist.destroy_process_group()


def wrap(module: torch.nn.Module, ranks: Ranks, device: torch.device) -> Any:
    """Wrap a module for DistributedDataParallel training (the module itself on one process).

    On CUDA its BatchNorm layers become SyncBatchNorm, so that the batch statistics are
    those of the global batch, as on one process; on the CPU (gloo) they stay per process.
    """
    if not ranks.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return DistributedDataParallel(module, device_ids=[device.index])
    return DistributedDataParallel(module)
