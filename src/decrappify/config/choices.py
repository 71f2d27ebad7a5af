"""The named choices the shells offer, defined once (pure, no torch).

The CLI's typer options, the napari forms and the configuration models take their
choices from here, so that a preset, an output format or a device is spelt the same
everywhere. Encoders are :class:`decrappify.config.model.EncoderName`.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from decrappify.config.model import EncoderName
from decrappify.errors import InputError

__all__ = [
    "DEVICE_CHOICES",
    "DEVICE_HELP",
    "Cluster",
    "CrappifyPreset",
    "Encoder",
    "OutDtype",
    "OutFormat",
    "SampleKind",
    "check_device_name",
]

#: The generator encoders (``resnet18`` ... ``resnet101``).
Encoder = EncoderName


class CrappifyPreset(str, Enum):
    """Crappify presets (see ``docs/crappify.md``)."""

    EM = "em"
    EM_POISSON = "em-poisson"
    FLUORESCENCE = "fluorescence"
    FLUORESCENCE_PSSR = "fluorescence-pssr"


class OutFormat(str, Enum):
    """Output file formats: OME-Zarr (chunked, pyramid, resumable) or tiled (Big)TIFF."""

    ZARR = "zarr"
    TIF = "tif"


class OutDtype(str, Enum):
    """Pixel types of a prediction's output."""

    UINT8 = "uint8"
    UINT16 = "uint16"
    FLOAT32 = "float32"


class SampleKind(str, Enum):
    """Kinds of synthetic sample data."""

    EM = "em"
    FLUORESCENCE = "fluorescence"


class Cluster(str, Enum):
    """Clusters prediction can start for itself."""

    LOCAL = "local"


#: Devices the forms offer (``cuda:N`` is accepted too).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: What a device name may be, for messages and help texts.
DEVICE_HELP = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device_name(device: Any) -> str:
    """Check the spelling of a device name (whether it exists is checked where torch runs).

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.

    Returns
    -------
    str
        The name.

    Raises
    ------
    InputError
        ``device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got 'tpu')``.
    """
    if not isinstance(device, str) or not _DEVICE_NAME.match(device):
        raise InputError(f"device must be {DEVICE_HELP} (got {device!r})")
    return device
