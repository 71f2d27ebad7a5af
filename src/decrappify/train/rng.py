"""The run's own torch random state, apart from the caller's, and the seeds derived for it.

Every training step runs inside :meth:`RunRandom.active`, which swaps the run's state in
and out (``torch.random.fork_rng``), so the run is reproducible whatever other code does
with torch's global generator between two steps, and the caller's state is left
untouched. The state is saved in every checkpoint (:meth:`RunRandom.tensors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *keys: int) -> int:
    """Derive a 63-bit seed from the user seed and keys (``numpy.random.SeedSequence``).

    Parameters
    ----------
    seed : int
        The user's seed.
    *keys : int
        What the seed is for.

    Returns
    -------
    int
        A non-negative seed for ``torch.manual_seed``.
    """
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class RunRandom:
    """The run's own torch random state (CPU, and CUDA on a CUDA device).

    Parameters
    ----------
    seed : int
        Seed of the state.
    device : torch.device
        Training device.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.device = device
        self._devices = [self._cuda_index()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(seed)
            self.cpu = torch.get_rng_state()
            self.cuda = torch.cuda.get_rng_state(self.device) if self._devices else None

    def _cuda_index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Run a block with the run's random state (and keep what it consumed).

        Yields
        ------
        None
            Inside the block torch's global generators hold the run's state.
        """
        with torch.random.fork_rng(devices=self._devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield
            self.cpu = torch.get_rng_state()
            if self.cuda is not None:
                self.cuda = torch.cuda.get_rng_state(self.device)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Return the states as named tensors for a checkpoint.

        Returns
        -------
        dict of str to torch.Tensor
            ``"rng.cpu"`` (and ``"rng.cuda"``).
        """
        out = {"rng.cpu": self.cpu.clone()}
        if self.cuda is not None:
            out["rng.cuda"] = self.cuda.clone()
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the states saved by :meth:`tensors`.

        Parameters
        ----------
        tensors : dict of str to torch.Tensor
            A checkpoint's tensors.
        """
        if "rng.cpu" in tensors:
            self.cpu = tensors["rng.cpu"].clone()
        if self.cuda is not None and "rng.cuda" in tensors:
            self.cuda = tensors["rng.cuda"].clone()
