"""Argument checks shared by the degradation functions (private)."""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError


def as_image(img: Any, name: str) -> np.ndarray:
    """Return ``img`` as a float32 2D numpy array, or raise InputError."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2D image, got shape {arr.shape}")
    return arr


def check(name: str, param: str, value: float, ok: bool, expected: str) -> None:
    """Raise InputError ``"{name}: {param} must be {expected} (got {value})"`` unless ``ok``."""
    if not ok:
        raise InputError(f"{name}: {param} must be {expected} (got {value})")
