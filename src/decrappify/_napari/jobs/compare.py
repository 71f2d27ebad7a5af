"""The Compare widget's job: metrics of a prediction, the current plane first, and maps."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decrappify.events import Progress
from decrappify.io import Image
from decrappify.metrics import evaluate_stack, iter_evaluate_stack
from decrappify.metrics.alignment import in_units_of, plan_comparison
from decrappify.metrics.baselines import baseline_label
from decrappify.metrics.maps import baseline_image, error_image, map_agreement


@dataclass(frozen=True)
class Comparison:
    """What the Compare widget shows: per-plane metrics and two lazy layers.

    Parameters
    ----------
    result : StackResult
        Per-plane metrics of the prediction and the baselines.
    plan : ComparePlan
        How the layers were put on one grid.
    error : Image
        Lazy ``|a * pred + b - g|`` per plane on the ground-truth grid: the absolute
        error after the affine match, in units of the ground truth's percentile range
        (what ``psnr_norm`` averages).
    error_limits : (float, float)
        Contrast limits for ``error``: 0 and its 99.5th percentile on the current plane.
    baseline : Image or None
        Lazy bicubic interpolation of the LR input on the ground-truth grid.
    agreement : dict of str to float
        For each trust map of the prediction, the Spearman rank correlation of the map
        (``|z|`` for the consistency map) with the absolute error on the current plane:
        how well it points at the error (:func:`~decrappify.metrics.maps.map_agreement`).
    """

    result: Any
    plan: Any
    error: Image
    error_limits: tuple[float, float]
    baseline: Image | None
    agreement: dict[str, float] = field(default_factory=dict)


def iter_compare(
    pred: Image,
    gt: Image,
    lr: Image | None = None,
    *,
    plane: int = 0,
    name: str | None = None,
    maps: dict[str, Image] | None = None,
) -> Generator[Progress, None, Comparison]:
    """Score a prediction against its ground truth, the current plane first.

    Parameters
    ----------
    pred, gt : Image
        Prediction and ground truth (2D or 3D, lazy or not).
    lr : Image or None
        LR input, for the bicubic baseline.
    plane : int
        The plane on screen, scored first so that its row appears at once.
    name : str or None
        Name of the prediction in reports.
    maps : dict of str to Image or None
        The prediction's trust maps (``uncertainty``, ``consistency``), over the same
        field of view: each is ranked against the error of the current plane.

    Yields
    ------
    Progress
        For stacks, first ``phase="current slice"`` with ``info={"plane": k,
        "result": StackResult}`` (that plane only); then ``phase="evaluate"``, one event
        per plane with its prediction metrics.

    Returns
    -------
    Comparison
        Metrics and the lazy error and baseline images.

    Raises
    ------
    InputError
        When the layers do not lie on compatible grids (see
        :func:`~decrappify.metrics.alignment.plan_comparison`) or a plane cannot be
        scored.
    """
    plan = plan_comparison(pred, gt, lr)
    lr = in_units_of(lr, gt) if lr is not None else None
    # at scale 1 the baseline is the input itself (already a layer: none is added)
    kwargs = {**plan.evaluate_kwargs(), "baselines": (baseline_label(plan.scale),)}
    name = name or pred.source
    if gt.ndim == 3 and plan.n_planes > 1:
        one = slice(plane, plane + 1)
        single = evaluate_stack(
            pred.data[one],
            gt.data[one],
            None if lr is None else lr.data[one],
            name=name,
            **kwargs,
        )
        yield Progress(
            phase="current slice",
            step=0,
            total=plan.n_planes,
            message=f"plane {plane + 1}/{plan.n_planes}",
            metrics=single.slice_metrics(0),
            info={"plane": plane, "result": single},
        )
    result = yield from iter_evaluate_stack(pred, gt, lr, name=name, **kwargs)
    error = error_image(pred, gt, plan)
    shown = np.asarray((error.data[plane] if error.ndim == 3 else error.data).compute())
    high = float(np.percentile(shown, 99.5))
    agreement = {}
    for key, trust in (maps or {}).items():
        values = trust.data[plane] if trust.ndim == 3 else trust.data
        agreement[key] = map_agreement(np.asarray(values), shown, magnitude=key == "consistency")
    baseline = None if lr is None or plan.scale == 1 else baseline_image(lr, gt, plan)
    return Comparison(
        result=result,
        plan=plan,
        error=error,
        error_limits=(0.0, high if high > 0 else 1.0),
        baseline=baseline,
        agreement=agreement,
    )
