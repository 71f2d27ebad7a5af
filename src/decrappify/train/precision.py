"""Mixed precision of a training run: the autocast dtype and the fp16 gradient scalers.

- :func:`resolve_amp` turns the config's ``amp`` into an autocast dtype (or None for
  float32) on the device :func:`decrappify.devices.resolve_device` found;
- :class:`Precision` gives the autocast context and the fp16 gradient scalers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from decrappify.errors import InputError


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
