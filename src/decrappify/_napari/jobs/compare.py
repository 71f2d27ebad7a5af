"""The Compare widget's job: metrics of a prediction, the current plane first, and maps."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.events import Progress
from decrappify.io import Image
from decrappify.metrics import evaluate_stack, iter_evaluate_stack
from decrappify.metrics.alignment import in_units_of, plan_comparison
from decrappify.metrics.baselines import baseline_label
from decrappify.metrics.maps import baseline_image, error_image


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
    """

    result: Any
    plan: Any
    error: Image
    error_limits: tuple[float, float]
    baseline: Image | None


def iter_compare(
    pred: Image,
    gt: Image,
    lr: Image | None = None,
    *,
    plane: int = 0,
    name: str | None = None,
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
    shown = error.data[plane] if error.ndim == 3 else error.data
    high = float(np.percentile(np.asarray(shown.compute()), 99.5))
    baseline = None if lr is None or plan.scale == 1 else baseline_image(lr, gt, plan)
    return Comparison(
        result=result,
        plan=plan,
        error=error,
        error_limits=(0.0, high if high > 0 else 1.0),
        baseline=baseline,
    )
