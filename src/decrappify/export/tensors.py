"""The test tensors and cover image of a bioimage.io package (see :mod:`.bioimageio`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.export.rdf import Geometry

PathLike = str | os.PathLike[str]

#: Preferred side of the test input (low-resolution pixels).
TEST_SIDE = 64


def fit_side(size: int, g: Geometry) -> int:
    """Largest valid side within ``size`` and :data:`TEST_SIDE` (or ``min_side``)."""
    limit = min(size, max(TEST_SIDE, g.min_side))
    return g.min_side + (limit - g.min_side) // g.step * g.step


def model_crappifier(info: Any) -> Any:
    """Return the crappifier a model records, validated (it makes the synthetic test input).

    Raises
    ------
    InputError
        When the model records none, or one this version cannot use (an unknown step).
    """
    from decrappify.config.crappify import CrappifyConfig

    if not info.crappify:
        raise InputError(
            "--test-image: the model records no crappifier to make a synthetic test input "
            "with; pass a low-resolution image"
        )
    return CrappifyConfig.validate_dict(
        info.crappify, source="the model's crappifier (pass --test-image to export without it)"
    )


def make_test_input(
    test_image: PathLike | None, crappifier: Any, g: Geometry, seed: int
) -> tuple[np.ndarray, str]:
    """Raw float32 ``(n_frames, h, w)`` test input and a phrase saying where it came from.

    It is the central crop of ``test_image``, else a synthetic image crappified by
    ``crappifier`` (:func:`model_crappifier`).
    """
    if test_image is not None:
        return crop_test_image(Path(test_image), g)
    from decrappify.crappify import crappify_image
    from decrappify.sample import synthetic_image

    config = crappifier
    if config.scale != g.scale:
        config = config.with_scale(g.scale)
    kind = "em" if str(config.name or "").startswith("em") else "fluorescence"
    side = fit_side(max(TEST_SIDE, g.min_side), g)
    shape = (side * g.scale, side * g.scale)
    if g.n_frames > 1:
        shape = (g.n_frames, *shape)
    hr = synthetic_image(kind, shape, seed=seed)
    lr = np.asarray(crappify_image(hr, config, seed=seed).data, dtype=np.float32)
    source = (
        f"a synthetic {kind} image crappified by the model's own crappifier "
        f"({config.name or 'custom'}, seed {seed})"
    )
    return (lr if lr.ndim == 3 else lr[None]), source


def crop_test_image(path: Path, g: Geometry) -> tuple[np.ndarray, str]:
    """Cut the central valid-size crop (the central planes of a stack) of an LR image."""
    from decrappify.io import read_image

    image = read_image(path)
    data = image.data
    if data.ndim == 2:
        if g.n_frames > 1:
            raise InputError(
                f"{path}: the model takes {g.n_frames} neighbouring planes (2.5D); "
                f"--test-image must be a stack, got shape {tuple(data.shape)}"
            )
        data = data[None]
    elif g.n_frames == 1:
        data = data[data.shape[0] // 2][None]
    else:
        if data.shape[0] < g.n_frames:
            raise InputError(
                f"{path}: the model takes {g.n_frames} neighbouring planes; --test-image has "
                f"{data.shape[0]}"
            )
        first = (data.shape[0] - g.n_frames) // 2
        data = data[first : first + g.n_frames]
    h, w = (int(s) for s in data.shape[-2:])
    if min(h, w) < g.min_side:
        raise InputError(
            f"{path}: --test-image must be at least {g.min_side}x{g.min_side} pixels for this "
            f"model, got {h}x{w}"
        )
    sy, sx = fit_side(h, g), fit_side(w, g)
    y0, x0 = (h - sy) // 2, (w - sx) // 2
    crop = np.asarray(data[:, y0 : y0 + sy, x0 : x0 + sx], dtype=np.float32)
    if not np.isfinite(crop).all():
        raise InputError(f"{path}: --test-image has NaN or Inf values in its central crop")
    if crop.min() == crop.max():
        # bioimage.io refuses test outputs without values far from zero
        raise InputError(
            f"{path}: --test-image is constant ({crop.flat[0]:g}) in its central {sy}x{sx} "
            "crop; bioimage.io needs a test input with structure: pass another image"
        )
    return crop, f"the central {sy}x{sx} crop of {path.name}"


def normalised_input(raw: np.ndarray, info: Any) -> np.ndarray:
    """Normalise the test input by its percentiles, as decrappify and bioimage.io do."""
    from decrappify.normalize import normalize, percentile_range

    norm = info.normalization
    lo, hi = percentile_range(raw, norm.low, norm.high)
    return np.ascontiguousarray(normalize(raw, lo, hi))


def write_cover(path: Path, lr: np.ndarray, pred: np.ndarray, scale: int) -> None:
    """Input (each pixel a ``scale`` block) beside the output, each at its own contrast."""
    from matplotlib.image import imsave

    from decrappify.normalize import percentile_range

    panels = []
    for image in (np.kron(lr, np.ones((scale, scale), dtype=np.float32)), pred):
        lo, hi = percentile_range(image, 0.5, 99.5)
        panels.append(np.clip((image - lo) / (hi - lo), 0.0, 1.0))
    imsave(path, np.concatenate(panels, axis=1), cmap="gray", vmin=0.0, vmax=1.0, format="png")
