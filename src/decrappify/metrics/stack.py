"""Metrics over 2D images and 3D stacks, plane by plane, with interpolation baselines.

A stack (ZYX or TYX) is scored as a series of 2D planes: each plane of the prediction is
compared with the same plane of the ground truth by
:func:`~decrappify.metrics.core.evaluate_pair`, and, when the low-resolution input is
given, so is each baseline interpolated from that plane of the input onto the
ground-truth grid. Lazy (dask) inputs are computed one plane at a time, so memory is
bounded by a plane (or one chunk of the input), never by the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.events import Progress, run_to_end
from decrappify.io.image import Image
from decrappify.metrics.baselines import (
    INPUT,
    Baseline,
    infer_scale,
    parse_baseline,
    scale_for,
)
from decrappify.metrics.core import (
    METRIC_NAMES,
    check_alignment,
    check_percentiles,
    evaluate_pair,
    shape_mismatch_message,
)
from decrappify.metrics.planes import resize_plane

#: Name of the network's output among the methods of a :class:`StackResult`.
PREDICTION = "prediction"


@dataclass(frozen=True)
class StackResult:
    """Per-plane metrics of a prediction and its baselines against the ground truth.

    Parameters
    ----------
    values : dict of str to dict of str to numpy.ndarray
        ``values[method][metric]`` holds one value per plane. ``method`` is
        ``"prediction"`` first, then each baseline (``"bicubic"`` ...); ``metric`` is one
        of :data:`~decrappify.metrics.core.METRIC_NAMES`.
    axes : str
        Axes of the evaluated images (``"YX"``, ``"ZYX"`` or ``"TYX"``).
    shape : tuple of int
        Shape of the region compared (after ``crop`` / ``resize``).
    scale : int or None
        Upsampling factor of the baselines (None without a low-resolution input).
    data_range : float or None
        Range of the raw metrics, or None for the per-plane default.
    norm_low, norm_high : float
        Ground-truth percentiles of the normalised metrics.
    source : str or None
        Name of the evaluated image, for reports.
    pixel_size : float or None
        X pixel size of the ground truth (turns ``frc_px`` into a physical resolution).
    unit : str or None
        Unit of ``pixel_size``.
    """

    values: dict[str, dict[str, np.ndarray]]
    axes: str = "YX"
    shape: tuple[int, ...] = ()
    scale: int | None = None
    data_range: float | None = None
    norm_low: float = 0.1
    norm_high: float = 99.9
    source: str | None = None
    pixel_size: float | None = None
    unit: str | None = None

    @property
    def methods(self) -> tuple[str, ...]:
        """``"prediction"`` followed by the baselines, in evaluation order."""
        return tuple(self.values)

    @property
    def baselines(self) -> tuple[str, ...]:
        """The baseline methods evaluated (empty without a low-resolution input)."""
        return tuple(m for m in self.values if m != PREDICTION)

    @property
    def n_slices(self) -> int:
        """Number of planes evaluated (1 for a 2D image)."""
        first = next(iter(self.values.values()))
        return len(first[METRIC_NAMES[0]])

    def slice_metrics(self, index: int, method: str = PREDICTION) -> dict[str, float]:
        """Metrics of one plane.

        Parameters
        ----------
        index : int
            Plane index.
        method : str
            ``"prediction"`` or a baseline name.

        Returns
        -------
        dict of str to float
            One value per metric.
        """
        table = self._method(method)
        return {name: float(table[name][index]) for name in METRIC_NAMES}

    def mean(self, method: str = PREDICTION) -> dict[str, float]:
        """Mean of each metric over the planes.

        Parameters
        ----------
        method : str
            ``"prediction"`` or a baseline name.

        Returns
        -------
        dict of str to float
            One mean per metric (``inf`` if a PSNR is infinite on some plane).
        """
        table = self._method(method)
        return {name: float(np.mean(table[name])) for name in METRIC_NAMES}

    def sd(self, method: str = PREDICTION) -> dict[str, float]:
        """Sample standard deviation (``ddof=1``) of each metric over the planes.

        Parameters
        ----------
        method : str
            ``"prediction"`` or a baseline name.

        Returns
        -------
        dict of str to float
            One value per metric; 0.0 for a single plane.
        """
        table = self._method(method)
        return {name: spread(table[name]) for name in METRIC_NAMES}

    def _method(self, method: str) -> dict[str, np.ndarray]:
        if method not in self.values:
            raise InputError(f"method: expected one of {', '.join(self.values)}, got {method!r}")
        return self.values[method]


def spread(values: Any) -> float:
    """Sample standard deviation (``ddof=1``), 0.0 for fewer than two values.

    Parameters
    ----------
    values : array-like
        The values.

    Returns
    -------
    float
        The standard deviation (NaN if a value is infinite).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.std(arr, ddof=1))


def evaluate_stack(
    pred: Any,
    gt: Any,
    lr: Any = None,
    *,
    baselines: Sequence[str] = ("bicubic",),
    scale: int | None = None,
    data_range: float | None = None,
    norm_low: float = 0.1,
    norm_high: float = 99.9,
    crop: bool = False,
    resize: bool = False,
    name: str | None = None,
) -> StackResult:
    """Score a prediction plane by plane against its ground truth, with baselines.

    Runs :func:`iter_evaluate_stack` to the end; see it for the parameters.

    Parameters
    ----------
    pred, gt, lr : array-like
        Prediction, ground truth and optional low-resolution input.
    baselines : sequence of str or Baseline
        Baselines computed from ``lr`` (interpolations, ``"input"``, denoisers).
    scale : int, optional
        Upsampling factor from ``lr`` to ``gt``.
    data_range : float, optional
        Range for the raw metrics.
    norm_low, norm_high : float
        Ground-truth percentiles for the normalised metrics.
    crop, resize : bool
        How to reconcile mismatched grids.
    name : str, optional
        Name of the image in reports and progress messages.

    Returns
    -------
    StackResult
        Per-plane metrics.
    """
    result = run_to_end(
        iter_evaluate_stack(
            pred,
            gt,
            lr,
            baselines=baselines,
            scale=scale,
            data_range=data_range,
            norm_low=norm_low,
            norm_high=norm_high,
            crop=crop,
            resize=resize,
            name=name,
        )
    )
    assert result is not None
    return result


def iter_evaluate_stack(
    pred: Any,
    gt: Any,
    lr: Any = None,
    *,
    baselines: Sequence[str] = ("bicubic",),
    scale: int | None = None,
    data_range: float | None = None,
    norm_low: float = 0.1,
    norm_high: float = 99.9,
    crop: bool = False,
    resize: bool = False,
    name: str | None = None,
) -> Generator[Progress, None, StackResult]:
    """Score a prediction plane by plane, yielding one progress event per plane.

    Parameters
    ----------
    pred : array-like
        The restored image: 2D (YX) or 3D (ZYX / TYX), numpy, dask or an ``Image``.
    gt : array-like
        The ground truth, same number of dimensions (and planes).
    lr : array-like, optional
        The low-resolution input the prediction was made from; the ``baselines`` are
        interpolated from it onto the ground-truth grid, plane by plane.
    baselines : sequence of str or Baseline
        ``"nearest"``, ``"bilinear"``, ``"bicubic"``, ``"input"`` (scale 1), or a denoiser
        with its parameter (``"gaussian=1.5"``, ``"nl-means"``, ``"tv=0.2"``, ``"bm3d"``),
        read by :func:`~decrappify.metrics.baselines.parse_baseline`; ignored without ``lr``.
    scale : int, optional
        Factor between ``lr`` and ``gt``; inferred from the shapes when ``gt`` is an exact
        integer multiple of ``lr`` along Y and X (with ``resize=True`` it may stay
        unknown: the baselines are interpolated straight onto the ``gt`` grid).
    data_range : float, optional
        Range of the raw PSNR / SSIM. Default: the dtype range for integer ground truth,
        and for float ground truth ``max - min`` of each ground-truth plane; pass a value
        to use one range for the whole stack.
    norm_low, norm_high : float
        Percentiles of each ground-truth plane mapped to 0 and 1 (normalised metrics).
    crop : bool
        When grids differ, compare the common region anchored at index 0 of every axis
        (top-left of each plane, the first planes of a stack) of the prediction, the
        ground truth and the baselines (``lr`` upsampled by ``scale``).
    resize : bool
        When Y/X sizes differ, resample the prediction onto the ground-truth grid
        (bicubic, same field of view) and interpolate the baselines from ``lr`` directly
        onto that grid. The number of planes must match.
    name : str, optional
        Name of the image (default: the ``gt`` record's source). A ``gt`` record's X pixel
        size and unit are kept in the result.

    Yields
    ------
    Progress
        ``phase="evaluate"``, one event per plane, with that plane's prediction metrics.

    Returns
    -------
    StackResult
        Per-plane metrics of the prediction and of each baseline.

    Raises
    ------
    InputError
        For mismatched shapes (the message suggests ``crop`` / ``resize``), an
        un-inferable scale, unknown baselines, or a plane that cannot be scored (the
        message names the plane).
    """
    check_alignment(crop, resize)
    check_percentiles(norm_low, norm_high)
    pred_d, gt_d = _data(pred, "pred"), _data(gt, "gt")
    lr_d = None if lr is None else _data(lr, "lr")
    _check_dimensions("pred", pred_d, gt_d)
    about = _about_gt(gt, gt_d.ndim, name)
    makers: dict[str, Baseline] = {}
    if lr_d is not None:
        makers = {b.key: b for b in (parse_baseline(spec) for spec in baselines)}
        scale = _baseline_scale(lr_d, gt_d, makers, scale=scale, resize=resize)
    if data_range is not None and not (np.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range: expected a positive number, got {data_range!r}")
    plan = _plan(pred_d, gt_d, lr_d, scale=scale, crop=crop, resize=resize)
    score = partial(evaluate_pair, data_range=data_range, norm_low=norm_low, norm_high=norm_high)
    values = yield from _iter_planes(
        pred_d, gt_d, lr_d, plan=plan, makers=makers, score=score, name=about["source"]
    )
    return StackResult(
        values=values,
        shape=plan["shape"],
        scale=scale if lr_d is not None else None,
        data_range=None if data_range is None else float(data_range),
        norm_low=float(norm_low),
        norm_high=float(norm_high),
        **about,
    )


def _check_dimensions(label: str, data: Any, gt: Any) -> None:
    if data.ndim != gt.ndim:
        raise InputError(
            f"{label} has {data.ndim} dimensions {tuple(data.shape)} but gt has "
            f"{gt.ndim} {tuple(gt.shape)}"
        )


def _baseline_scale(
    lr: Any, gt: Any, makers: dict[str, Baseline], *, scale: int | None, resize: bool
) -> int | None:
    """Check ``lr`` and return the factor to ``gt`` of its baselines (None: onto the gt grid)."""
    _check_dimensions("lr", lr, gt)
    if scale is None and resize:
        # the baselines go straight onto the gt grid: the factor is only reported
        scale = infer_scale(lr.shape, gt.shape)
    else:
        scale = scale_for(lr.shape, gt.shape, scale)
    if INPUT in makers and scale != 1:
        raise InputError(
            f"baseline input: the input is on the output grid only at scale 1 (got scale "
            f"{scale}); use nearest, bilinear or bicubic"
        )
    return scale


def _iter_planes(
    pred: Any,
    gt: Any,
    lr: Any,
    *,
    plan: dict[str, Any],
    makers: dict[str, Baseline],
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    name: str | None,
) -> Generator[Progress, None, dict[str, dict[str, np.ndarray]]]:
    """Score the planes one by one: method -> metric -> one value per plane."""
    n = plan["n_planes"]
    values: dict[str, dict[str, list[float]]] = {
        method: {k: [] for k in METRIC_NAMES} for method in (PREDICTION, *makers)
    }
    for i in range(n):
        p_i, g_i, l_i = _fetch(pred, gt, lr, i)
        scored = _score_plane(
            p_i,
            g_i,
            l_i,
            plan=plan,
            makers=makers,
            score=score,
            where="" if gt.ndim == 2 else f"slice {i} of {n}: ",
        )
        for method, metrics in scored.items():
            for k in METRIC_NAMES:
                values[method][k].append(metrics[k])
        yield Progress(
            phase="evaluate",
            step=i + 1,
            total=n,
            message=f"{name or 'image'}: plane {i + 1}/{n}",
            metrics=dict(scored[PREDICTION]),
        )
    return {
        m: {k: np.asarray(v, dtype=np.float64) for k, v in t.items()} for m, t in values.items()
    }


def _about_gt(gt: Any, ndim: int, name: str | None) -> dict[str, Any]:
    """Return what the result keeps of the ground truth: name, axes, X pixel size, unit."""
    axes = "YX" if ndim == 2 else "ZYX"
    if not isinstance(gt, Image):
        return {"source": name, "axes": axes, "pixel_size": None, "unit": None}
    pixel_size, unit = None, None
    if gt.pixel_size is not None:
        pixel_size, unit = float(gt.pixel_size[-1]), (gt.units[-1] if gt.units else None)
    return {
        "source": name or gt.source,
        "axes": gt.axes or axes,
        "pixel_size": pixel_size,
        "unit": unit,
    }


def _data(array: Any, label: str) -> Any:
    data = array.data if isinstance(array, Image) else array
    if not hasattr(data, "ndim") or not hasattr(data, "shape"):
        data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise InputError(
            f"{label}: expected a 2D (YX) or 3D (ZYX/TYX) image, got shape {tuple(data.shape)}"
        )
    return data


def _plan(
    pred: Any, gt: Any, lr: Any, *, scale: int | None, crop: bool, resize: bool
) -> dict[str, Any]:
    """Decide the compared region (and check the grids) before touching any pixel."""
    gt_shape = tuple(int(s) for s in gt.shape)
    shapes = {"pred": tuple(int(s) for s in pred.shape)}
    if lr is not None:
        lr_shape = tuple(int(s) for s in lr.shape)
        if scale is None:  # resize mode only: Y/X go straight onto the gt grid
            shapes["lr"] = (*lr_shape[:-2], *gt_shape[-2:])
        else:
            shapes[f"lr upsampled by scale {scale}"] = (
                *lr_shape[:-2],
                lr_shape[-2] * scale,
                lr_shape[-1] * scale,
            )
    if crop:
        common = tuple(min(sizes) for sizes in zip(gt_shape, *shapes.values(), strict=True))
        mode = "crop"
    else:
        for label, shape in shapes.items():
            if resize and shape[:-2] != gt_shape[:-2]:
                raise InputError(
                    f"{label} shape {shape} has {shape[0]} planes but gt shape {gt_shape} has "
                    f"{gt_shape[0]}; --resize resamples Y and X only, pass --crop to "
                    "compare the common planes"
                )
            if not resize and shape != gt_shape:
                raise InputError(shape_mismatch_message(label, shape, gt_shape))
        common = gt_shape
        mode = "resize" if resize else "exact"
    return {
        "n_planes": common[0] if len(common) == 3 else 1,
        "shape": common,
        "yx": common[-2:],
        "mode": mode,
        "scale": scale,
    }


def _fetch(pred: Any, gt: Any, lr: Any, i: int) -> tuple[Any, Any, Any]:
    """Planes ``i`` of the inputs as numpy arrays, lazy ones computed together."""
    arrays = [a if a is None or a.ndim == 2 else a[i] for a in (pred, gt, lr)]
    lazy = [
        k
        for k, a in enumerate(arrays)
        if a is not None and not isinstance(a, np.ndarray) and hasattr(a, "compute")
    ]
    if lazy:
        import dask

        computed = dask.compute(*(arrays[k] for k in lazy))
        for k, value in zip(lazy, computed, strict=True):
            arrays[k] = value
    return tuple(None if a is None else np.asarray(a) for a in arrays)  # type: ignore[return-value]


def _score_plane(
    pred: np.ndarray,
    gt: np.ndarray,
    lr: np.ndarray | None,
    *,
    plan: dict[str, Any],
    makers: dict[str, Baseline],
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    where: str,
) -> dict[str, dict[str, float]]:
    h, w = plan["yx"]
    mode = plan["mode"]
    if mode == "crop":
        pred, gt = pred[:h, :w], gt[:h, :w]
    elif mode == "resize" and pred.shape != (h, w):
        pred = resize_plane(pred, (h, w), 3)
    candidates = {PREDICTION: pred}
    for method, baseline in makers.items():
        assert lr is not None
        scale = plan["scale"]
        target = (h, w) if mode == "resize" else (lr.shape[0] * scale, lr.shape[1] * scale)
        candidates[method] = baseline.apply(lr, target)[:h, :w]
    try:
        return {method: score(image, gt) for method, image in candidates.items()}
    except InputError as err:
        raise InputError(f"{where}{err}") from err
