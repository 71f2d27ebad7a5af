"""Prediction settings: one validated object from the shells to the tiles (pure, no torch).

A :class:`PredictConfig` holds every setting of ``decrappify predict`` under the name of
its command-line flag, so that a YAML file (``decrappify predict --config p.yaml``), the
flags, the napari Super-resolve form and the API all describe a prediction the same way::

    tile: 256
    overlap: auto
    batch: 16
    device: cuda
    dtype: uint16

It checks what can be checked without the model or the machine (types, ranges, the
spelling of the device); :func:`decrappify.predict.settings.resolve_settings` then checks
the rest (``tile × scale`` a multiple of 32, the device present) and fills in the
automatic values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from decrappify.config.base import StrictModel
from decrappify.config.choices import Cluster, OutDtype, OutFormat, check_device_name
from decrappify.errors import InputError

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_CHUNK",
    "MAX_IN_MEMORY",
    "OUT_DTYPES",
    "Overlap",
    "PredictConfig",
]

#: Side in HR pixels of the stored chunks of OME-Zarr outputs.
DEFAULT_CHUNK = 1024
#: Side in HR pixels of the blocks computed at once (a multiple of the chunk).
DEFAULT_BLOCK = 2048
#: Smallest chunk and block side: each OME-Zarr chunk is one file (``--chunk 1`` made one
#: file per output pixel).
MIN_CHUNK = 32
#: Largest result (bytes) computed into memory: a prediction with no output file is refused
#: above it, and napari writes larger crappified and super-resolved layers to OME-Zarr.
MAX_IN_MEMORY = 2 * 2**30
#: Output dtypes.
OUT_DTYPES = tuple(d.value for d in OutDtype)

Overlap = int | Literal["auto"]

#: Settings that must be positive integers when given.
_POSITIVE = ("tile", "batch", "threads", "scale", "chunk", "block", "workers")


class PredictConfig(StrictModel):
    """Settings of a prediction, named as the ``decrappify predict`` flags.

    Parameters
    ----------
    format : {"zarr", "tif"}
        Output format of file outputs: OME-Zarr (chunked, pyramid, resumable) or tiled
        BigTIFF.
    tile : int
        Tile side in LR (input) pixels; the network sees ``tile × scale`` pixels, which
        must be a multiple of 32.
    overlap : int or "auto"
        Overlap of neighbouring tiles in LR pixels, at most ``tile // 2``; "auto" covers
        the model's receptive field when it fits, else ``tile // 2``.
    batch : int
        Tiles per forward pass (halved, then the tile, on device out-of-memory).
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    amp : bool or None
        Autocast (float16 on CUDA, bfloat16 elsewhere) with float32 weights; None: on
        for CUDA.
    compile : bool
        ``torch.compile`` the network first (slow to start, faster per tile).
    dtype : {"uint8", "uint16", "float32"} or None
        Output pixel type (None: the input's). Integer outputs are rounded and clipped.
    threads : int or None
        torch threads of a local CPU run (None: the cores this process may use).
    scale : int or None
        Refuse the model unless it upsamples by this factor.
    chunk : int or None
        Stored OME-Zarr chunk side in HR pixels (None: 1024).
    block : int or None
        Side of the blocks computed at once in HR pixels (None: 2048).
    blend : float
        Fraction of the overlap used to cross-fade tiles (the rest is context margin);
        0 cuts tiles hard.
    resume : bool
        Finish interrupted OME-Zarr outputs; outputs that exist are kept.
    overwrite : bool
        Replace existing outputs.
    scheduler : str or None
        Address of a dask.distributed scheduler to compute blocks on.
    cluster : {"local"} or None
        Start a local cluster for the run (one worker per GPU, or ``workers`` CPU
        workers).
    workers : int or None
        Workers of the local cluster.
    tta : bool
        Test-time augmentation: predict each tile in its 8 rotations/mirrors, keep their
        mean as the output and write their per-pixel standard deviation as an uncertainty
        map (8× the time).
    consistency : bool
        Write a data-consistency map: the prediction degraded by the model's own
        crappifier (blur and downsampling, no noise) against the input, in noise standard
        deviations (a few percent of the time). Only for models that record their
        crappifier; others are predicted without it (the report says why).
    """

    format: OutFormat = Field(OutFormat.ZARR, description="Output format.")
    tile: int = Field(
        512,
        description="Tile side in input pixels (tile × scale: a multiple of the network's "
        "step, 32 or 64; a wrong size is refused with the nearest that work).",
    )
    overlap: Overlap = Field(
        "auto", description="Tile overlap in input pixels, or 'auto' (receptive field)."
    )
    batch: int = Field(2, description="Tiles per forward pass.")
    device: str = Field("auto", description="auto (CUDA if present), cpu, cuda, cuda:N or mps.")
    amp: bool | None = Field(
        None, description="Mixed precision (float16 on CUDA, bfloat16 elsewhere; default: CUDA)."
    )
    compile: bool = Field(False, description="torch.compile the network first.")
    dtype: OutDtype | None = Field(None, description="Output pixel type (default: the input's).")
    threads: int | None = Field(
        None, description="torch threads on CPU (default: all available cores)."
    )
    scale: int | None = Field(
        None, description="Refuse the model unless it upsamples by this factor."
    )
    chunk: int | None = Field(
        None, description="OME-Zarr chunk side in output pixels (default 1024)."
    )
    block: int | None = Field(
        None, description="Output pixels computed at once per side (default 2048)."
    )
    blend: float = Field(
        0.5, description="Fraction of the overlap used to cross-fade tiles (0: hard cuts)."
    )
    resume: bool = Field(False, description="Finish interrupted outputs; keep the finished ones.")
    overwrite: bool = Field(False, description="Replace existing outputs.")
    scheduler: str | None = Field(
        None, description="Address of a dask.distributed scheduler (tcp://host:8786)."
    )
    cluster: Cluster | None = Field(
        None, description="Start a local cluster: one worker per GPU, or --workers CPU."
    )
    workers: int | None = Field(
        None, description="Workers of --cluster local (default: GPUs, or 2 on CPU)."
    )
    tta: bool = Field(
        False,
        description="Test-time augmentation: mean of the 8 rotations/mirrors (8× the time) "
        "and their spread as an uncertainty map.",
    )
    consistency: bool = Field(
        True,
        description="Data-consistency map: the prediction degraded by the model's "
        "crappifier against the input (models that record one).",
    )

    @field_validator(*_POSITIVE, mode="before")
    @classmethod
    def _positive(cls, value: Any, info: Any) -> Any:
        if value is None and info.field_name not in ("tile", "batch"):
            return None
        if not _is_int(value) or value < 1:
            raise InputError(f"{info.field_name} must be a positive integer (got {value!r})")
        return int(value)

    @field_validator("chunk", "block")
    @classmethod
    def _not_tiny(cls, value: int | None, info: Any) -> int | None:
        if value is not None and value < MIN_CHUNK:
            raise InputError(
                f"{info.field_name} must be at least {MIN_CHUNK} output pixels (got {value}): "
                "each chunk of an OME-Zarr output is one file (the default is "
                f"{DEFAULT_CHUNK if info.field_name == 'chunk' else DEFAULT_BLOCK})"
            )
        return value

    @field_validator("overlap", mode="before")
    @classmethod
    def _overlap(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if not _is_int(value) or value < 0:
            raise InputError(f"overlap must be 'auto' or an integer >= 0 (got {value!r})")
        return int(value)

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        return check_device_name(value)

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, value: Any) -> Any:
        if value is None or isinstance(value, OutDtype):
            return value
        import numpy as np

        try:
            name = np.dtype(value).name
        except TypeError:
            raise InputError(
                f"dtype must be one of {', '.join(OUT_DTYPES)} (got {value!r})"
            ) from None
        if name not in OUT_DTYPES:
            raise InputError(f"dtype must be one of {', '.join(OUT_DTYPES)} (got {name})")
        return name

    @field_validator("blend", mode="before")
    @classmethod
    def _blend(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InputError(f"blend must be between 0 and 1 (got {value})")
        return float(value)

    @model_validator(mode="after")
    def _overlap_fits(self) -> PredictConfig:
        if self.overlap != "auto" and 2 * int(self.overlap) > self.tile:
            raise InputError(
                f"overlap must be at most half the tile (tile {self.tile}, overlap {self.overlap})"
            )
        return self

    @classmethod
    def build(
        cls, config: PredictConfig | Mapping[str, Any] | str | Path | None = None, **changes: Any
    ) -> PredictConfig:
        """Make a config from another, a mapping or a YAML file, with some settings changed.

        Parameters
        ----------
        config : PredictConfig, mapping, path or None
            What to start from (a YAML file is named in its errors); None: the defaults.
        **changes
            Settings replacing those of ``config`` (``tile=256``).

        Returns
        -------
        PredictConfig
            A new, validated config.

        Raises
        ------
        InputError
            For an unknown setting or an invalid value (one line naming it).
        """
        if config is None:
            base: dict[str, Any] = {}
        elif isinstance(config, PredictConfig):
            base = config.model_dump(exclude_unset=True)
        elif isinstance(config, Mapping):
            base = dict(config)
        else:
            base = cls.from_yaml(config).model_dump(exclude_unset=True)
        if isinstance(config, PredictConfig) and not changes:
            return config
        return cls.validate_dict({**base, **changes}, source=None)

    def settings(self) -> dict[str, Any]:
        """Return the settings as plain values (for reports and layer metadata).

        Returns
        -------
        dict
            Every setting, enums as their values.
        """
        return self.model_dump(mode="json")

    def check_scale(self, model_scale: int, model_name: str) -> None:
        """Refuse a model that does not upsample by the ``scale`` asked for (if any).

        Parameters
        ----------
        model_scale : int
            The model's factor.
        model_name : str
            The model, for the message.

        Raises
        ------
        InputError
            ``m: this model upsamples ×4, but scale 2 was asked``.
        """
        if self.scale is not None and self.scale != model_scale:
            raise InputError(
                f"{model_name}: this model upsamples ×{model_scale}, but scale {self.scale} "
                "was asked"
            )


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return not isinstance(value, bool) and (
        isinstance(value, int) or type(value).__module__ == "numpy" and hasattr(value, "__index__")
    )
