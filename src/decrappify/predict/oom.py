"""Out-of-memory fallback of tiled prediction: halve the batch, then the tile, and go on.

:func:`run_with_oom_retry` calls the work with :class:`TileSettings`; on a device (or
host) out-of-memory error it frees the cache, steps down (:func:`next_settings_after_oom`)
and calls again, until ``batch_size 1`` and the smallest tile fail too, when an
:class:`~decrappify.errors.InputError` names the settings to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import torch

from decrappify.errors import InputError

__all__ = ["TileSettings", "is_out_of_memory", "next_settings_after_oom", "run_with_oom_retry"]

T = TypeVar("T")

_OOM_MARKERS = ("out of memory", "can't allocate memory")


@dataclass(frozen=True)
class TileSettings:
    """What a tiled prediction runs with; shrunk step by step on out-of-memory.

    Parameters
    ----------
    tile : tuple of int
        Largest window ``(height, width)`` in LR pixels.
    batch_size : int
        Tiles per forward pass.
    """

    tile: tuple[int, int]
    batch_size: int


def is_out_of_memory(error: BaseException) -> bool:
    """Tell whether an exception is a device (or host) out-of-memory error.

    Parameters
    ----------
    error : BaseException
        The exception raised by a forward pass.

    Returns
    -------
    bool
        True for ``torch.OutOfMemoryError`` and for ``RuntimeError`` messages such as
        ``"CUDA out of memory"``, ``"MPS backend out of memory"`` or
        ``"DefaultCPUAllocator: can't allocate memory"``.
    """
    if isinstance(error, torch.OutOfMemoryError):
        return True
    if isinstance(error, RuntimeError):
        message = str(error).lower()
        return any(marker in message for marker in _OOM_MARKERS)
    return False


def next_settings_after_oom(
    settings: TileSettings, *, quantum: int, min_tile: int
) -> TileSettings | None:
    """Choose the settings to retry with after an out-of-memory error.

    Parameters
    ----------
    settings : TileSettings
        The settings that ran out of memory.
    quantum : int
        Tile sides must stay multiples of this
        (:func:`~decrappify.predict.tile_geometry.tile_quantum`).
    min_tile : int
        Smallest tile side allowed (a multiple of ``quantum``).

    Returns
    -------
    TileSettings or None
        Half the batch while it is above 1; then half the tile (rounded down to the
        quantum, not below ``min_tile``); None when both are already at their minimum.
    """
    if settings.batch_size > 1:
        return replace(settings, batch_size=settings.batch_size // 2)
    smaller = tuple(
        min(side, max(min_tile, (side // 2) // quantum * quantum)) for side in settings.tile
    )
    if smaller == tuple(settings.tile):
        return None
    return replace(settings, tile=(int(smaller[0]), int(smaller[1])))


def run_with_oom_retry(
    run: Callable[[TileSettings], T],
    settings: TileSettings,
    *,
    quantum: int,
    min_tile: int,
    empty_cache: Callable[[], None] | None = None,
    on_retry: Callable[[TileSettings, TileSettings], None] | None = None,
    where: str = "the device",
    advice: str = "use a smaller overlap, amp=True, a float16 dtype or device 'cpu'",
) -> T:
    """Call ``run(settings)``, shrinking batch then tile on out-of-memory until it fits.

    Parameters
    ----------
    run : callable
        Does the work with the given settings. It may be called again after an
        out-of-memory error and should resume rather than redo finished work when only
        the batch size changed.
    settings : TileSettings
        First settings to try.
    quantum : int
        Tile sides stay multiples of this.
    min_tile : int
        Smallest tile side to try.
    empty_cache : callable, optional
        Frees cached device memory between attempts (for CUDA: ``gc.collect`` then
        ``torch.cuda.empty_cache``).
    on_retry : callable, optional
        ``on_retry(failed, next)`` is told about each step down.
    where : str
        The device, for the error message.
    advice : str
        What the error message tells the user to change.

    Returns
    -------
    object
        What ``run`` returns.

    Raises
    ------
    InputError
        When ``batch_size 1`` and the smallest tile still run out of memory; the message
        names the settings to change.
    """
    first = settings
    while True:
        try:
            return run(settings)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            smaller = next_settings_after_oom(settings, quantum=quantum, min_tile=min_tile)
            if smaller is None:
                raise InputError(
                    f"out of memory on {where} even with tile {_fmt(settings.tile)} and "
                    f"batch_size 1 (started from tile {_fmt(first.tile)}, batch_size "
                    f"{first.batch_size}): {advice}"
                ) from error
        # Outside the except block: the traceback (and the tensors its frames hold) is gone.
        if empty_cache is not None:
            empty_cache()
        if on_retry is not None:
            on_retry(settings, smaller)
        settings = smaller


def _fmt(tile: tuple[int, int]) -> str:
    return str(tile[0]) if tile[0] == tile[1] else f"{tile[0]}×{tile[1]}"
