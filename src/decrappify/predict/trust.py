"""Trust maps beside a prediction: which are made, where they live (pure numpy/zarr).

Two maps say where to doubt a prediction (see ``docs/predict.md``):

* ``uncertainty`` (HR grid, the output's grey levels): with test-time augmentation, the
  per-pixel standard deviation of the 8 dihedral predictions. The tiled predictor makes
  it with the prediction (:mod:`decrappify.predict.tile_predictor`) and each block's
  piece goes to a *sink* (:func:`open_sink`): a numpy array for an in-memory result,
  else a scratch zarr array beside the output, rewritten as a proper image once the
  prediction is written.
* ``consistency`` (LR grid, noise standard deviations): the prediction degraded by the
  model's own crappifier against the input
  (:func:`decrappify.crappify.consistency.data_consistency`). Each block's share of the
  degraded prediction is computed on the model's device while the block is in memory
  and goes to a second sink; after the prediction, the map is made block by block from
  that sink and the input (LR grids only: the written output is not read again), with
  one calibration per image (:func:`~decrappify.predict.trust_blocks.calibrate_image`),
  so the blocks give the map of the whole image and memory stays that of a block.

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
from decrappify.crappify.consistency import ForwardModel
from decrappify.errors import DecrappifyError, InputError
from decrappify.io import Image, read_image
from decrappify.io.atomic import remove_path
from decrappify.io.outputs import hidden_sibling
from decrappify.io.paths import TIFF_SUFFIXES, TRUST_MAP_NAMES, image_stem, is_zarr_path

__all__ = [
    "MAP_NAMES",
    "TrustPlan",
    "describe_map",
    "map_path",
    "plan_trust",
    "read_trust_maps",
    "open_sink",
    "remove_stale_maps",
]

#: The maps, in the order they are written.
MAP_NAMES = TRUST_MAP_NAMES
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
    forward : ForwardModel or None
        The crappifier's forward model for the image's HR planes (with their pixel size,
        for blurs given in physical units) when the consistency map is made.
    """

    tta: bool = False
    crappify: CrappifyConfig | None = None
    skipped: str | None = None
    forward: ForwardModel | None = None

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
        The LR input (its shape and pixel size make the forward model's operators).
    tta, consistency : bool
        What was asked for.
    model_name : str
        For messages.

    Returns
    -------
    TrustPlan
        The maps to make; a consistency map that cannot be made says why in ``skipped``.
    """
    plan = TrustPlan(tta=tta)
    if not consistency:
        return plan
    if crappify is None:
        return replace(plan, skipped=f"{model_name} records no crappifier")
    pixel_size, unit = None, None
    if image.pixel_size is not None:
        py, px = image.pixel_size[-2:]
        pixel_size = (py / scale, px / scale)
        unit = image.units[-1] if image.units is not None else None
    hr_shape = tuple(int(n) * scale for n in image.shape[-2:])
    try:
        config = CrappifyConfig.validate_dict(crappify, source=f"{model_name} crappifier")
        if config.scale != scale:
            raise InputError(f"its crappifier is ×{config.scale}, the network ×{scale}")
        forward = ForwardModel.build(config, hr_shape, pixel_size=pixel_size, pixel_unit=unit)
    except DecrappifyError as err:
        return replace(plan, skipped=f"{model_name}: {err}")
    return replace(plan, crappify=config, forward=forward)


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


def open_sink(
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    out_path: Path | None,
    key: str | None,
) -> tuple[Any, Path | None]:
    """Make an array the predictor stores a per-block by-product of the prediction in.

    Two by-products feed the trust maps: the TTA ``spread`` (the output's shape) and the
    ``degraded`` forward model of each block
    (:class:`~decrappify.predict.trust_blocks.DegradedSlots`).

    Parameters
    ----------
    name : str
        What it holds (part of the scratch store's name).
    shape, chunks : tuple of int
        The array's shape and chunks (one chunk per block: blocks never share a chunk,
        so workers write them independently).
    out_path : Path or None
        The output file; None for an in-memory result.
    key : str or None
        The resume key of a resumable output: a scratch array written under the same key
        (and shape) is kept, so that the blocks a rerun skips keep their by-product.

    Returns
    -------
    sink : numpy.ndarray or zarr.Array
        float32 zeros (in memory, or a scratch zarr array beside the output).
    scratch : Path or None
        The scratch store to remove once the maps are written (None in memory).
    """
    if out_path is None:
        return np.zeros(shape, np.float32), None
    import zarr

    scratch = hidden_sibling(out_path, f"{name}.partial")
    if key is not None and scratch.exists():
        try:
            kept = zarr.open_array(scratch, mode="r+")
            if kept.attrs.get("resume_key") == key and tuple(kept.shape) == tuple(shape):
                return kept, scratch
        except (OSError, ValueError, KeyError):
            pass  # unreadable: start again
    remove_path(scratch)
    # LR-sized shares are read by their neighbours' tasks too: stored uncompressed
    compressors = None if name == "degraded" else "auto"
    sink = zarr.create_array(
        scratch,
        shape=shape,
        chunks=chunks,
        dtype="float32",
        fill_value=0.0,
        compressors=compressors,
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
