"""A prediction's trust maps made from its plan: in memory, or written beside the output (torch).

:func:`iter_trust_maps` takes the image's :class:`~decrappify.predict.plan.PredictPlan`
whole (which maps, the block grid, the normalisation range, the device, the output and
its format) and the arrays the blocks left (the TTA spread, each block's share of the
forward model), builds each map lazily block by block
(:mod:`decrappify.predict.trust_blocks`, the consistency arithmetic on the prediction's
device) and computes it into memory or writes it as an image of its own, summarised per
image.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from decrappify.events import Progress
from decrappify.io import Image, iter_write_image, read_image
from decrappify.predict.device_arrays import TorchArrays
from decrappify.predict.plan import PredictPlan
from decrappify.predict.trust import describe_map
from decrappify.predict.trust_blocks import (
    MapSummary,
    calibrate_image,
    compute_blocks,
    consistency_image,
    recorded_blocks,
)

__all__ = ["iter_trust_maps"]


def iter_trust_maps(
    plan: PredictPlan, sinks: dict[str, Any]
) -> Generator[Progress, None, tuple[dict[str, Image], dict[str, Any]]]:
    """Make a prediction's trust maps: in memory, or written beside the output.

    Parameters
    ----------
    plan : PredictPlan
        The prediction: ``plan.trust`` says which maps, ``plan.output`` where (None: in
        memory).
    sinks : dict of str to array-like
        What the blocks left: ``spread`` (the TTA spread, with ``plan.trust.tta``) and
        ``degraded`` (their shares of the forward model, with a consistency map).

    Yields
    ------
    Progress
        ``phase="predict"``: one event per map block written (or computed in memory).

    Returns
    -------
    maps : dict of str to Image
        Map name to the map (numpy in memory, else lazy from its file).
    summary : dict
        Map name to its :meth:`MapSummary.summary`; a consistency map that was asked for
        but not made is ``{"skipped": reason}``.
    """
    images, summaries = _lazy_maps(plan, sinks)
    maps: dict[str, Image] = {}
    for name, image in images.items():
        if plan.output is None:
            values = yield from compute_blocks(image.data, f"{plan.name}: {name} map")
            maps[name] = image.with_data(values)
        else:
            maps[name] = yield from _iter_write_map(plan, name, image, summaries[name])
    result: dict[str, Any] = {name: s.summary() for name, s in summaries.items()}
    if plan.trust.skipped is not None:
        result["consistency"] = {"skipped": plan.trust.skipped}
    return maps, result


def _lazy_maps(
    plan: PredictPlan, sinks: dict[str, Any]
) -> tuple[dict[str, Image], dict[str, MapSummary]]:
    """Build the maps as lazy images (one task per block), each with the summary it fills."""
    trust, grid = plan.trust, plan.grid
    images: dict[str, Image] = {}
    summaries: dict[str, MapSummary] = {}
    if trust.tta and "spread" in sinks:
        summaries["uncertainty"] = MapSummary("uncertainty", unit=float(plan.hi - plan.lo))
        spread = recorded_blocks(sinks["spread"], grid.chunks, summaries["uncertainty"])
        # placed as the prediction: the input's metadata, its pixels scale times smaller
        images["uncertainty"] = plan.image.with_data(
            spread, yx_factor=1.0 / plan.scale, source=None
        )
    slots = plan.degraded_slots
    if slots is not None and "degraded" in sinks:
        sink, lr = sinks["degraded"], plan.image
        summaries["consistency"] = MapSummary("consistency")
        images["consistency"] = consistency_image(
            slots,
            sink,
            lr,
            trust,
            plan.lo,
            plan.hi,
            calibration=calibrate_image(slots, sink, lr.data, trust, plan.lo, plan.hi),
            summary=summaries["consistency"],
            arrays=TorchArrays(plan.settings.device),
        )
    return images, summaries


def _iter_write_map(
    plan: PredictPlan, name: str, image: Image, summary: MapSummary
) -> Generator[Progress, None, Image]:
    """Write one map beside the output (OME-Zarr group or sibling TIFF); open it back."""
    assert plan.output is not None
    kind, grid = plan.output.kind, plan.grid
    target = plan.output.map_path(name)
    chunks = None
    if kind == "zarr":
        # the uncertainty map is chunked as the output, the consistency map by its blocks
        side = plan.settings.chunk if name == "uncertainty" else grid.block[0] // plan.scale
        chunks = tuple(min(max(1, side), int(n)) for n in image.shape[-2:])
    events = iter_write_image(
        image, target, format=kind, chunks=chunks, overwrite=plan.settings.overwrite
    )
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        yield Progress(
            "predict",
            event.step,
            event.total,
            message=f"{plan.name}: {name} map, {event.message.rsplit(': ', 1)[-1]}",
            info={"map": name},
        )
    describe_map(target, kind, name, summary.summary())
    return read_image(target)
