"""Trust maps beside a prediction: which are made, where they live (pure numpy/zarr).

Two maps say where to doubt a prediction (see ``docs/predict.md``):

* ``uncertainty`` (HR grid, the output's grey levels): with test-time augmentation, the
  per-pixel standard deviation of the 8 dihedral predictions. The tiled predictor makes
  it with the prediction (:mod:`decrappify.predict.tile_predictor`) and each block's
  piece goes to a *spread sink* (:func:`spread_sink`): a numpy array for an in-memory
  result, else a scratch zarr array beside the output, rewritten as a proper image once
  the prediction is written.
* ``consistency`` (LR grid, noise standard deviations): the prediction degraded by the
  model's own crappifier against the input
  (:func:`decrappify.crappify.consistency.data_consistency`). It is computed after the
  prediction, block by block from the written output and the input with a halo of
  :func:`~decrappify.crappify.consistency.consistency_halo` LR pixels, with one
  calibration per image (:func:`~decrappify.predict.trust_blocks.calibrate_image`), so
  the blocks give exactly the map of the whole image and memory stays that of a block.

Both are summarised per image while they are written
(:class:`~decrappify.predict.trust_blocks.MapSummary`); the block-by-block work is in
:mod:`decrappify.predict.trust_blocks`, the writing in :mod:`decrappify.predict.trust_maps`.
An OME-Zarr output holds them as the image groups ``<output>.zarr/uncertainty`` and
``<output>.zarr/consistency`` (NGFF multiscales with their own pixel size); a TIFF output
has them as sibling files ``<stem>.uncertainty.tif`` and ``<stem>.consistency.tif``
(:func:`map_path`). Pure numpy/zarr: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify.consistency import consistency_halo
from decrappify.errors import DecrappifyError, InputError
from decrappify.io import Image, read_image
from decrappify.io.atomic import remove_path
from decrappify.io.paths import TIFF_SUFFIXES, image_stem, is_zarr_path
from decrappify.predict.block_geometry import BlockGrid

__all__ = [
    "MAP_NAMES",
    "TrustPlan",
    "describe_map",
    "map_path",
    "plan_trust",
    "read_trust_maps",
    "remove_stale_maps",
    "spread_sink",
]

#: The maps, in the order they are written.
MAP_NAMES = ("uncertainty", "consistency")
#: What each map holds (stored with it).
MAP_DESCRIPTIONS = {
    "uncertainty": "standard deviation of the 8 rotated/mirrored predictions, in the "
    "output's grey levels (test-time augmentation)",
    "consistency": "local normalised residual of the input against the prediction "
    "degraded by the model's crappifier, in noise standard deviations (about N(0, 1) "
    "where the input explains the output)",
}


@dataclass(frozen=True)
class TrustPlan:
    """Which trust maps a prediction makes, and what the consistency map needs.

    Parameters
    ----------
    tta : bool
        Make the uncertainty map (the prediction is the TTA mean).
    crappify : CrappifyConfig or None
        The model's crappifier when the consistency map is made.
    skipped : str or None
        Why a consistency map that was asked for is not made.
    halo : int
        LR pixels of context each consistency block reads.
    pixel_size : tuple of float or None
        HR pixel size (Y, X), for blurs given in physical units.
    pixel_unit : str or None
        Its unit.
    """

    tta: bool = False
    crappify: CrappifyConfig | None = None
    skipped: str | None = None
    halo: int = 0
    pixel_size: tuple[float, float] | None = None
    pixel_unit: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The maps this plan makes."""
        made = {"uncertainty": self.tta, "consistency": self.crappify is not None}
        return tuple(name for name in MAP_NAMES if made[name])


def plan_trust(
    crappify: dict[str, Any] | None,
    scale: int,
    image: Image,
    *,
    tta: bool,
    consistency: bool,
    model_name: str = "model",
) -> TrustPlan:
    """Decide the trust maps of one prediction (before any work).

    Parameters
    ----------
    crappify : dict or None
        The crappifier recorded in the model file.
    scale : int
        The model's factor.
    image : Image
        The LR input (its pixel size resolves blurs given in physical units).
    tta, consistency : bool
        What was asked for.
    model_name : str
        For messages.

    Returns
    -------
    TrustPlan
        The maps to make; a consistency map that cannot be made says why in ``skipped``.
    """
    pixel_size, unit = None, None
    if image.pixel_size is not None:
        py, px = image.pixel_size[-2:]
        pixel_size = (py / scale, px / scale)
        unit = image.units[-1] if image.units is not None else None
    plan = TrustPlan(tta=tta, pixel_size=pixel_size, pixel_unit=unit)
    if not consistency:
        return plan
    if crappify is None:
        return replace(plan, skipped=f"{model_name} records no crappifier")
    try:
        config = CrappifyConfig.validate_dict(crappify, source=f"{model_name} crappifier")
        if config.scale != scale:
            raise InputError(f"its crappifier is ×{config.scale}, the network ×{scale}")
        halo = consistency_halo(config, pixel_size=pixel_size, pixel_unit=unit)
    except DecrappifyError as err:
        return replace(plan, skipped=f"{model_name}: {err}")
    return replace(plan, crappify=config, halo=halo)


def map_path(out_path: str | Path, fmt: str, name: str) -> Path:
    """Where a trust map of an output is written.

    Parameters
    ----------
    out_path : str or Path
        The prediction (``.zarr`` store or ``.tif`` file).
    fmt : {"zarr", "tiff"}
        Its format.
    name : str
        ``"uncertainty"`` or ``"consistency"``.

    Returns
    -------
    Path
        ``<out>.zarr/<name>`` (an image group inside the store), or the sibling
        ``<stem>.<name>.tif`` of a TIFF.
    """
    out_path = Path(out_path)
    if fmt == "zarr":
        return out_path / name
    return out_path.with_name(f"{image_stem(out_path)}.{name}.tif")


def read_trust_maps(out_path: str | Path) -> dict[str, Image]:
    """Open the trust maps written beside a prediction (lazily), if any.

    Parameters
    ----------
    out_path : str or Path
        A prediction written by ``decrappify predict`` (``.zarr`` store or ``.tif``).

    Returns
    -------
    dict of str to Image
        Map name to the map, for the maps found (none for other images).
    """
    path = Path(out_path)
    fmt = (
        "zarr"
        if is_zarr_path(path)
        else "tiff"
        if path.name.lower().endswith(TIFF_SUFFIXES)
        else None
    )
    found = {}
    for name in MAP_NAMES if fmt else ():
        target = map_path(path, fmt, name)
        if (fmt == "zarr" and is_zarr_path(target)) or (fmt == "tiff" and target.is_file()):
            try:
                found[name] = read_image(target)
            except DecrappifyError:
                continue  # not one of ours
    return found


def spread_sink(grid: BlockGrid, out_path: Path | None, key: str | None) -> tuple[Any, Path | None]:
    """Make the array the predictor stores each block's TTA spread in.

    Parameters
    ----------
    grid : BlockGrid
        The output blocks.
    out_path : Path or None
        The output file; None for an in-memory result.
    key : str or None
        The resume key of a resumable output: a scratch array written under the same key
        (and shape) is kept, so that the blocks a rerun skips keep their spread.

    Returns
    -------
    sink : numpy.ndarray or zarr.Array
        float32, the output's shape, one chunk per block.
    scratch : Path or None
        The scratch store to remove once the map is written (None in memory).
    """
    if out_path is None:
        return np.zeros(grid.out_shape, np.float32), None
    import zarr

    scratch = out_path.with_name(f".{out_path.name}.spread.partial")
    chunks = (*((1,) * len(grid.lead)), *grid.block)
    if key is not None and scratch.exists():
        try:
            kept = zarr.open_array(scratch, mode="r+")
            if kept.attrs.get("resume_key") == key and tuple(kept.shape) == grid.out_shape:
                return kept, scratch
        except (OSError, ValueError, KeyError):
            pass  # unreadable: start again
    remove_path(scratch)
    sink = zarr.create_array(
        scratch, shape=grid.out_shape, chunks=chunks, dtype="float32", fill_value=0.0
    )
    if key is not None:
        sink.attrs["resume_key"] = key
    return sink, scratch


def remove_stale_maps(out_path: Path, fmt: str, keep: Sequence[str]) -> None:
    """Delete the sibling maps of a replaced TIFF output that this run did not make.

    Parameters
    ----------
    out_path : Path
        The TIFF output.
    fmt : {"zarr", "tiff"}
        Its format (an OME-Zarr store is replaced whole, its maps with it).
    keep : sequence of str
        The maps this run wrote.
    """
    if fmt == "tiff":
        for name in MAP_NAMES:
            if name not in keep:
                remove_path(map_path(out_path, fmt, name))


def describe_map(target: Path, fmt: str, name: str, summary: dict[str, float]) -> None:
    """Record what a map holds, and its summary, in its OME-Zarr group's attributes."""
    if fmt != "zarr":
        return
    import zarr

    group = zarr.open_group(target, mode="r+")
    group.attrs["decrappify"] = {
        "map": name,
        "description": MAP_DESCRIPTIONS[name],
        "summary": {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()
        },
    }
