"""Arrays on a prediction's device: the torch backend of the trust maps' arithmetic (torch).

The consistency map's operators and arithmetic (:mod:`decrappify.crappify.consistency`,
:mod:`decrappify.crappify.forward_operator`) are written once against the small
:class:`~decrappify.crappify.forward_operator.Arrays` protocol; :class:`TorchArrays` runs
them as float32 tensors on the model's device, so that the map costs the device what the
prediction does, not a round trip through numpy on the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["TorchArrays"]


class TorchArrays:
    """Float32 tensors on one device: the torch backend of ``Arrays``.

    Parameters
    ----------
    device : torch.device
        Where the arithmetic runs.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)

    def asarray(self, values: np.ndarray) -> torch.Tensor:
        """Copy a numpy array to the device as float32."""
        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        return tensor.to(self.device, non_blocking=self.device.type == "cuda")

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Allocate float32 zeros on the device."""
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def numpy(self, values: Any) -> np.ndarray:
        """Copy a tensor back to the host as numpy."""
        return values.detach().to("cpu").numpy()
