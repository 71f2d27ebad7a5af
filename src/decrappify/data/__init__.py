"""Training data: lazy patch sampling, augmentation and LR/HR pairs made on the fly.

- :mod:`.patches` (pure): regions, the split by image, random patch positions, lazy
  window reads;
- :mod:`.augment` (pure): dihedral transforms, intensity jitter, input noise;
- :mod:`.pairs` (pure): :class:`PairMaker`, deterministic LR/HR pairs from a key;
- :mod:`.dataset` (torch): :class:`PairDataset`, :class:`ValidationSet`,
  :func:`build_datasets`, :func:`make_loaders`.

The torch names are imported lazily, so ``import decrappify.data`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from decrappify.data.augment import AugmentParams, dihedral, draw_augment
from decrappify.data.patches import (
    PatchPosition,
    PatchSampler,
    Region,
    neighbour_planes,
    read_window,
    split_by_image,
)

_LAZY = {
    "ImageStats": "decrappify.data.pairs",
    "Pair": "decrappify.data.pairs",
    "PairMaker": "decrappify.data.pairs",
    "image_stats": "decrappify.data.pairs",
    "EpochSampler": "decrappify.data.dataset",
    "PairDataset": "decrappify.data.dataset",
    "ValidationSet": "decrappify.data.dataset",
    "build_datasets": "decrappify.data.dataset",
    "describe": "decrappify.data.dataset",
    "make_loaders": "decrappify.data.dataset",
}

__all__ = [
    "AugmentParams",
    "EpochSampler",
    "ImageStats",
    "Pair",
    "PairDataset",
    "PairMaker",
    "PatchPosition",
    "PatchSampler",
    "Region",
    "ValidationSet",
    "build_datasets",
    "describe",
    "dihedral",
    "draw_augment",
    "image_stats",
    "make_loaders",
    "neighbour_planes",
    "read_window",
    "split_by_image",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'decrappify.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
