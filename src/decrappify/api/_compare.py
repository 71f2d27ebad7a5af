"""Compare: score one prediction against its ground truth, from where both lie in the world.

:func:`iter_compare` is what ``decrappify evaluate`` runs on each pair of files and what
napari's Compare widget runs on its layers, so both put the images on one grid the same
way, score the same baselines and say the same things about what they did. On request
it also makes what a viewer shows beside the numbers: the absolute error and the
interpolation baseline on the ground truth's grid, and how well each trust map of the
prediction points at that error.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.events import Progress
from decrappify.io import Image
from decrappify.metrics.core import METRIC_NAMES
from decrappify.metrics.report import METRIC_TITLES
from decrappify.metrics.stack import PREDICTION

__all__ = [
    "AUTO",
    "METRIC_NAMES",
    "METRIC_TITLES",
    "PREDICTION",
    "Comparison",
    "intensity_mismatch",
    "iter_compare",
    "plan_grid",
    "resolve_baselines",
    "write_metrics",
]

#: Picks the plain baseline for the scale: bicubic, or the input itself at scale 1.
AUTO = "auto"


@dataclass(frozen=True)
class Comparison:
    """What :func:`iter_compare` found.

    Parameters
    ----------
    result : StackResult
        Per-plane metrics of the prediction and the baselines.
    scale : int or None
        The LR to ground-truth factor used for the baselines (None: unknown or no LR).
    grid : dict
        How the grids were matched: ``crop``, ``resize`` and ``scale`` of
        :func:`decrappify.metrics.iter_evaluate_stack`.
    plan : ComparePlan or None
        The plan made from the images' placement (None when they were compared index by
        index, see :func:`plan_grid`).
    notes : tuple of str
        How the grids were matched when they differ, in a sentence (a prediction
        resampled or cropped onto the ground truth's grid).
    warnings : tuple of str
        A prediction and ground truth on different intensity scales
        (:func:`intensity_mismatch`): their raw metrics mean little.
    error : Image or None
        With ``overlays``: lazy ``|a * pred + b - g|`` per plane on the ground-truth
        grid, in units of the ground truth's percentile range (what ``psnr_norm``
        averages).
    error_limits : (float, float)
        Contrast limits for ``error``: 0 and its 99.5th percentile on the current plane.
    baseline : Image or None
        With ``overlays`` and an LR input above scale 1: its lazy bicubic interpolation,
        placed on the ground truth.
    agreement : dict of str to float
        For each trust map given, the Spearman rank correlation of the map (``|z|`` for
        the consistency map) with the absolute error on the current plane
        (:func:`~decrappify.metrics.maps.map_agreement`).
    """

    result: Any
    scale: int | None
    grid: dict[str, Any]
    plan: Any = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    error: Image | None = None
    error_limits: tuple[float, float] = (0.0, 1.0)
    baseline: Image | None = None
    agreement: dict[str, float] = field(default_factory=dict)


def plan_grid(
    pred: Image,
    gt: Image,
    lr: Image | None = None,
    *,
    crop: bool = False,
    resize: bool = False,
    scale: int | None = None,
) -> tuple[dict[str, Any], Any]:
    """Decide how a prediction, its ground truth and an LR input are put on one grid.

    Without ``crop``, ``resize`` or ``scale``, images that all record their pixel size
    (OME-Zarr, OME-TIFF, napari layers) are placed from their scale and translate
    (:func:`decrappify.metrics.alignment.plan_comparison`: refused when they do not
    overlay); otherwise they are compared index by index as the options say.

    Parameters
    ----------
    pred, gt : Image
        The prediction and the ground truth.
    lr : Image or None
        The low-resolution input.
    crop, resize : bool
        Compare the common region, or resample the prediction onto the ground truth.
    scale : int or None
        LR to ground-truth factor.

    Returns
    -------
    grid : dict
        ``crop``, ``resize`` and ``scale`` for :func:`decrappify.metrics.iter_evaluate_stack`.
    plan : ComparePlan or None
        The plan made from the images' placement, when they were placed.
    """
    from decrappify.metrics.alignment import plan_comparison

    placed = all(im.pixel_size is not None for im in (pred, gt, lr) if im is not None)
    if placed and not (crop or resize or scale):
        plan = plan_comparison(pred, gt, lr)
        return plan.evaluate_kwargs(), plan
    return {"crop": crop, "resize": resize, "scale": scale}, None


def iter_compare(
    pred: Image,
    gt: Image,
    lr: Image | None = None,
    *,
    baselines: Sequence[str] = (AUTO,),
    name: str | None = None,
    crop: bool = False,
    resize: bool = False,
    scale: int | None = None,
    tuned: dict[str, Any] | None = None,
    plane: int | None = None,
    maps: dict[str, Image] | None = None,
    overlays: bool = False,
) -> Generator[Progress, None, Comparison]:
    """Score a prediction against its ground truth and baselines from its LR input.

    Parameters
    ----------
    pred, gt : Image
        Prediction and ground truth (2D or 3D, lazy or not).
    lr : Image or None
        The LR input, for the baselines.
    baselines : sequence of str
        Parsed baseline specs (:func:`decrappify.api.parse_baselines`); ``auto`` is the
        bicubic interpolation, or the input itself at scale 1.
    name : str or None
        Name of the prediction in reports (default: the ground truth's source).
    crop, resize, scale
        How to match grids that differ (:func:`plan_grid`).
    tuned : dict or None
        Denoiser name → its tuned parameter (:func:`decrappify.api._evaluate.tune_baselines`).
    plane : int or None
        The plane on screen: scored first so that its row can be shown at once, and the
        plane of the error's contrast limits and of the trust maps' agreement.
    maps : dict of str to Image or None
        The prediction's trust maps (``uncertainty``, ``consistency``) over the same
        field of view: each is ranked against the error of ``plane``.
    overlays : bool
        Also make the error and baseline images (lazy) that a viewer shows.

    Yields
    ------
    Progress
        For a stack with ``plane``: first ``phase="current slice"`` with
        ``info={"plane": k, "result": StackResult}`` (that plane only); then
        ``phase="evaluate"``, one event per plane with its prediction metrics.

    Returns
    -------
    Comparison
        Metrics, the notes on grids and intensities, and the requested maps.

    Raises
    ------
    InputError
        When the images do not lie on compatible grids or a plane cannot be scored.
    """
    from decrappify.metrics import evaluate_stack, iter_evaluate_stack
    from decrappify.metrics.baselines import infer_scale

    grid, plan = plan_grid(pred, gt, lr, crop=crop, resize=resize, scale=scale)
    factor = grid["scale"]
    if factor is None and lr is not None:
        factor = infer_scale(lr.shape, gt.shape)
    kwargs = {**grid, "baselines": resolve_baselines(baselines, factor, tuned)}
    notes = (plan.describe(pred, gt),) if plan is not None and plan.mode != "exact" else ()
    mismatch = intensity_mismatch(pred, gt)
    n_planes = gt.shape[0] if gt.ndim == 3 else 1
    lr_data = None if lr is None else lr.data
    if plane is not None and n_planes > 1:
        one = slice(plane, plane + 1)
        single = evaluate_stack(
            pred.data[one],
            gt.data[one],
            None if lr_data is None else lr_data[one],
            name=name,
            **kwargs,
        )
        yield Progress(
            phase="current slice",
            step=0,
            total=n_planes,
            message=f"plane {plane + 1}/{n_planes}",
            metrics=single.slice_metrics(0),
            info={"plane": plane, "result": single},
        )
    result = yield from iter_evaluate_stack(pred.data, gt, lr_data, name=name, **kwargs)
    comparison = Comparison(
        result=result,
        scale=factor,
        grid=grid,
        plan=plan,
        notes=notes,
        warnings=(mismatch,) if mismatch else (),
    )
    if overlays or maps:
        comparison = _with_maps(comparison, pred, gt, lr, plan, plane or 0, maps or {})
    return comparison


def write_metrics(results: dict[str, Any], path: Any, *, per_slice: bool = False) -> Path:
    """Write comparison results as JSON (a ``.json`` path) or CSV (any other), atomically.

    Parameters
    ----------
    results : dict of str to StackResult
        Image or layer name → its result (:attr:`Comparison.result`).
    path : path
        The file.
    per_slice : bool
        CSV only: one row per plane instead of one per method.

    Returns
    -------
    Path
        The written file.
    """
    from decrappify.metrics import results_to_json, write_csv

    path = Path(path)
    if path.suffix.lower() == ".json":
        results_to_json(results, path)
        return path
    return write_csv(results, path, per_slice=per_slice)


def _with_maps(
    comparison: Comparison,
    pred: Image,
    gt: Image,
    lr: Image | None,
    plan: Any,
    plane: int,
    maps: dict[str, Image],
) -> Comparison:
    """Add the error and baseline images and the trust maps' agreement with the error."""
    from dataclasses import replace

    from decrappify.metrics.alignment import ComparePlan, in_units_of
    from decrappify.metrics.maps import baseline_image, error_image, map_agreement

    if plan is None:  # compared index by index: the grid options stand for the plan
        mode = (
            "resize"
            if comparison.grid["resize"]
            else "crop"
            if comparison.grid["crop"]
            else "exact"
        )
        plan = ComparePlan(mode=mode, scale=comparison.scale, n_planes=comparison.result.n_slices)
    error = error_image(pred, gt, plan)
    shown = np.asarray((error.data[plane] if error.ndim == 3 else error.data).compute())
    high = float(np.percentile(shown, 99.5))
    agreement = {}
    for key, trust in maps.items():
        values = trust.data[plane] if trust.ndim == 3 else trust.data
        agreement[key] = map_agreement(np.asarray(values), shown, magnitude=key == "consistency")
    baseline = None
    if lr is not None and plan.scale != 1:  # at scale 1 the baseline is the input itself
        baseline = baseline_image(in_units_of(lr, gt), gt, plan)
    return replace(
        comparison,
        error=error,
        error_limits=(0.0, high if high > 0 else 1.0),
        baseline=baseline,
        agreement=agreement,
    )


def resolve_baselines(
    specs: Sequence[str], scale: int | None, tuned: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """Turn ``auto`` into the plain baseline of the scale and give tuned denoisers their value.

    Parameters
    ----------
    specs : sequence of str
        Output of :func:`parse_baselines`.
    scale : int or None
        The LR to GT factor of the image (None: unknown, above 1).
    tuned : dict or None
        Denoiser name → :class:`~decrappify.metrics.denoise.TuneResult`; denoisers given
        without a parameter take the tuned one.

    Returns
    -------
    tuple of str
        Baseline specs for :func:`decrappify.metrics.evaluate_stack`.
    """
    from decrappify.metrics.baselines import baseline_label

    out = []
    for spec in specs:
        if spec == AUTO:
            out.append(baseline_label(scale))
        elif tuned and spec in tuned:
            out.append(tuned[spec].spec)
        else:
            out.append(spec)
    return tuple(dict.fromkeys(out))


def intensity_mismatch(pred: Any, gt: Any) -> str | None:
    """Say when a prediction and its ground truth are on different intensity scales.

    Raw PSNR/SSIM/NRMSE compare the values as they are: a float32 prediction in [0, 1]
    scored against a uint8 ground truth gives about 7 dB whatever its quality. The
    normalised metrics (``psnr_norm``, ``ssim_norm``) match the intensities first.

    Parameters
    ----------
    pred, gt : Image
        The prediction and the ground truth.

    Returns
    -------
    str or None
        A one-line warning naming both files, or None when their 0.1-99.9 percentile
        ranges agree within a factor of 2 and overlap.
    """
    from decrappify.normalize import percentile_range

    p_lo, p_hi = percentile_range(pred.data)
    g_lo, g_hi = percentile_range(gt.data)
    ratio = (p_hi - p_lo) / (g_hi - g_lo)
    apart = abs((p_lo + p_hi) - (g_lo + g_hi)) / 2 > (g_hi - g_lo)
    if 0.5 <= ratio <= 2.0 and not apart:
        return None
    return (
        f"{pred.source or pred.name} ({pred.dtype}, values {p_lo:.4g} to {p_hi:.4g}) and "
        f"ground truth {gt.source or gt.name} ({gt.dtype}, values {g_lo:.4g} to {g_hi:.4g}) "
        "are on different intensity scales: the raw psnr/ssim/nrmse compare them as they are "
        "and mean little; read "
        "psnr_norm/ssim_norm (intensities matched) or convert the prediction"
    )
