"""Where torch runs: one device resolver for training and prediction, CPU cores and threads.

- :func:`resolve_device` turns a device name (``"auto"``, ``"cpu"``, ``"cuda"``,
  ``"cuda:N"``, ``"mps"``) into a ``torch.device`` that exists on this machine, with the
  same rules and messages for ``decrappify train`` and ``decrappify predict``;
- :func:`available_cores` counts the cores this process may use;
- :func:`torch_threads` sets torch's intra-op threads for a block and restores them;
- :func:`release_device_memory` gives cached GPU memory back after a run;
- :func:`prefer_passive_waits` makes torch's idle CPU threads sleep rather than spin
  (set by the command line and the training API before torch starts).

torch is imported inside the functions, so that shells can import this module cheaply.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

from decrappify.config.choices import check_device_name
from decrappify.errors import InputError

__all__ = [
    "available_cores",
    "prefer_passive_waits",
    "release_device_memory",
    "resolve_device",
    "torch_threads",
]


def resolve_device(device: Any) -> Any:
    """Resolve ``"auto"`` and check that the device exists here.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    InputError
        For a misspelt name (``device must be ...``) or a device this machine lacks
        (``device 'cuda' is not available (no CUDA device found)``).
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r} is not available (no CUDA device found)")
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"device {device!r} is not available ({count} CUDA device(s))")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' is not available on this machine")
    return resolved


def available_cores() -> int:
    """Count the CPU cores this process may run on.

    Returns
    -------
    int
        ``len(os.sched_getaffinity(0))`` where available, else ``os.cpu_count()``; at
        least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Set torch's intra-op CPU threads of this thread for a block, then restore them.

    Parameters
    ----------
    n : int or None
        Threads; None leaves torch's setting as it is.

    Yields
    ------
    int
        The threads in use inside the block.
    """
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def release_device_memory() -> None:
    """Give cached GPU memory back to the driver after training or prediction.

    Nothing happens when torch was never imported or CUDA was never used.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    gc.collect()
    torch.cuda.empty_cache()


#: The OpenMP wait policy the tools ask for: idle threads sleep instead of spinning.
WAIT_POLICY = "PASSIVE"


def prefer_passive_waits() -> bool:
    """Ask OpenMP to let idle threads sleep, if torch has not started its thread pool yet.

    torch's CPU threads are OpenMP threads (GNU libgomp), which by default spin for a while
    before they sleep; on a machine whose cores other processes also use, the spinning
    threads take those cores from the threads doing the work, and training steps ran 6-7x
    slower (``benchmarks/train_under_load.py``). libgomp reads ``OMP_WAIT_POLICY`` once,
    when torch is imported, so this sets it (unless the user did) only before that.

    Returns
    -------
    bool
        Whether the policy in force is ``PASSIVE``.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == WAIT_POLICY
