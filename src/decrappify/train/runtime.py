"""How training runs: mixed precision and the run's own RNG.

- :func:`resolve_amp` turns the config's ``amp`` into an autocast dtype (or None for
  float32) on the device :func:`decrappify.devices.resolve_device` found;
- :class:`Precision` gives the autocast context and the fp16 gradient scalers;
- :class:`RunRandom` keeps the run's torch random state apart from the caller's: every
  training step runs inside :meth:`RunRandom.active`, which swaps the run's state in
  and out (``torch.random.fork_rng``), so the run is reproducible whatever other code
  does with torch's global generator between two steps, and the caller's state is
  left untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from decrappify.errors import InputError


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


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype of a run, or None for plain float32.

    Parameters
    ----------
    amp : str
        ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"``.
    device : torch.device
        The training device.

    Returns
    -------
    torch.dtype or None
        ``auto``: bfloat16 on CUDA devices that support it, float16 on other CUDA
        devices, None on the CPU. ``bf16`` works on both; ``fp16`` needs CUDA.

    Raises
    ------
    InputError
        For fp16 on the CPU or an unknown value.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise InputError("amp: 'fp16' needs a CUDA device; use 'bf16' or 'off' on the CPU")
        return torch.float16
    raise InputError(f"amp: expected 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")


class Precision:
    """Autocast context and gradient scalers of a run.

    Parameters
    ----------
    device : torch.device
        The training device.
    dtype : torch.dtype or None
        Autocast dtype (None: float32, no autocast).
    """

    def __init__(self, device: torch.device, dtype: torch.dtype | None) -> None:
        self.device = device
        self.dtype = dtype
        self.scalers: dict[str, Any] = {}

    @property
    def label(self) -> str:
        """``"float32"``, ``"bf16"`` or ``"fp16"``."""
        return {None: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Return the mixed-precision context (a no-op in float32).

        Returns
        -------
        context manager
            ``torch.autocast`` or ``contextlib.nullcontext``.
        """
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self, name: str) -> Any:
        """Return the fp16 gradient scaler of one optimiser (None unless fp16).

        Parameters
        ----------
        name : str
            Optimiser name.

        Returns
        -------
        torch.amp.GradScaler or None
            Created on first use.
        """
        if self.dtype is not torch.float16:
            return None
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device.type)
        return self.scalers[name]

    def step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Back-propagate ``loss`` and step ``optimizer`` (through the scaler in fp16).

        Parameters
        ----------
        name : str
            Optimiser name (selects the scaler).
        loss : torch.Tensor
            Scalar loss.
        optimizer : torch.optim.Optimizer
            The optimiser (its gradients are zeroed first).
        """
        optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler(name)
        if scaler is None:
            loss.backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def state(self) -> dict[str, Any]:
        """JSON state of the scalers.

        Returns
        -------
        dict
            Name to ``GradScaler.state_dict()``.
        """
        return {k: dict(v.state_dict()) for k, v in self.scalers.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the scalers' states.

        Parameters
        ----------
        state : dict
            From :meth:`state`.
        """
        for name, values in state.items():
            scaler = self.scaler(name)
            if scaler is not None:
                scaler.load_state_dict(values)

    def drop(self, *names: str) -> None:
        """Forget the scalers of finished phases.

        Parameters
        ----------
        *names : str
            Optimiser names.
        """
        for name in names:
            self.scalers.pop(name, None)


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
