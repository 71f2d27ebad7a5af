"""Maps of a comparison: the per-pixel error of a prediction and the interpolation baseline.

Both are lazy (one dask task per plane) and lie on the ground truth's grid as
:func:`decrappify.metrics.alignment.plan_comparison` decided, so that a viewer can show
them over the ground truth and a report can draw them. :func:`map_agreement` says how well
a trust map of the prediction (its TTA spread, its data-consistency map) points at that
error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io import Image
from decrappify.metrics.alignment import ComparePlan
from decrappify.metrics.baselines import METHOD_ORDERS
from decrappify.metrics.core import gt_range, normalize_minmse
from decrappify.metrics.planes import resize_plane

__all__ = ["AGREEMENT_PIXELS", "baseline_image", "error_image", "error_plane", "map_agreement"]

#: Most pixels :func:`map_agreement` ranks (a regular subsample of larger planes).
AGREEMENT_PIXELS = 2**20


def error_plane(
    pred: np.ndarray, gt: np.ndarray, *, norm_low: float = 0.1, norm_high: float = 99.9
) -> np.ndarray:
    """Absolute error of one plane after the affine match, in normalised units.

    Parameters
    ----------
    pred : numpy.ndarray
        Prediction plane on the ground-truth grid (resampled bicubically if its shape
        differs; cropped to the common top-left region if larger).
    gt : numpy.ndarray
        Ground-truth plane.
    norm_low, norm_high : float
        Ground-truth percentiles mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray
        float32 ``|normalize_minmse(pred, g) - g|`` with ``g`` the percentile-normalised
        ground truth (a constant ground truth is shifted to 0 instead).
    """
    h, w = gt.shape
    if pred.shape != gt.shape:
        if pred.shape[0] >= h and pred.shape[1] >= w:
            pred = pred[:h, :w]
        else:
            pred = resize_plane(pred, (h, w), 3)
    g64 = np.asarray(gt, dtype=np.float64)
    try:
        lo, hi = gt_range(g64, norm_low, norm_high)
    except InputError:
        lo, hi = float(g64.min()), float(g64.min()) + 1.0
    g = (g64 - lo) / (hi - lo)
    p = normalize_minmse(np.asarray(pred, dtype=np.float64), g)
    return np.abs(p - g).astype(np.float32)


def error_image(pred: Image, gt: Image, plan: ComparePlan) -> Image:
    """Lazy per-plane :func:`error_plane` of a prediction, on the ground-truth grid.

    Parameters
    ----------
    pred, gt : Image
        Prediction and ground truth.
    plan : ComparePlan
        How they are aligned (``crop``: the common top-left region).

    Returns
    -------
    Image
        float32 dask record with the ground truth's pixel size and translate.
    """
    gt_data = gt.data
    if plan.mode == "crop":
        h = min(pred.shape[-2], gt.shape[-2])
        w = min(pred.shape[-1], gt.shape[-1])
        gt_data = gt_data[..., :h, :w]
    shape = tuple(int(s) for s in gt_data.shape[-2:])
    data = _per_plane(error_plane, shape, pred.data, gt_data)
    return gt.with_data(data, source=f"{pred.source} error")


def baseline_image(lr: Image, gt: Image, plan: ComparePlan, method: str = "bicubic") -> Image:
    """Lazy interpolation baseline of the LR input, placed on the ground-truth grid.

    Parameters
    ----------
    lr : Image
        The LR input, in the ground truth's units.
    gt : Image
        The ground truth.
    plan : ComparePlan
        With an integer ``scale`` the LR is upsampled by it (pixel-centre convention of
        a downsampling); in ``resize`` mode it is resampled onto the ground-truth grid.
    method : str
        ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.

    Returns
    -------
    Image
        float32 dask record.
    """
    order = METHOD_ORDERS[method]
    if plan.mode == "resize" or plan.scale is None:
        shape = tuple(int(s) for s in gt.shape[-2:])
        data = _per_plane(lambda plane: resize_plane(plane, shape, order), shape, lr.data)
        return gt.with_data(data, source=f"{lr.source} {method}")
    s = int(plan.scale)
    shape = (lr.shape[-2] * s, lr.shape[-1] * s)
    data = _per_plane(lambda plane: resize_plane(plane, shape, order), shape, lr.data)
    return lr.with_data(data, yx_factor=1 / s, source=f"{lr.source} {method}")


def map_agreement(trust: np.ndarray, error: np.ndarray, *, magnitude: bool = False) -> float:
    """Spearman rank correlation between a trust map and the absolute error, on one plane.

    Parameters
    ----------
    trust : numpy.ndarray
        One plane of a trust map over the same field of view as ``error``: on another grid
        (the input's, for a consistency map) it is resampled onto the error's (nearest
        neighbour); larger, it is cropped to the common top-left region like the
        prediction (:func:`error_plane`).
    error : numpy.ndarray
        One plane of :func:`error_image`.
    magnitude : bool
        Rank ``|trust|`` (a signed map such as the consistency residual).

    Returns
    -------
    float
        In [-1, 1]: 1 when the map ranks the pixels exactly as their error does; about 0
        when it says nothing about the error; NaN when either plane is constant.
    """
    from scipy.stats import spearmanr

    h, w = error.shape
    t = np.asarray(trust, dtype=np.float64)
    if t.shape != error.shape:
        if t.shape[0] >= h and t.shape[1] >= w and (t.shape[0] < 2 * h or t.shape[1] < 2 * w):
            t = t[:h, :w]
        else:
            t = resize_plane(t, (h, w), 0).astype(np.float64)
    if magnitude:
        t = np.abs(t)
    e = np.asarray(error, dtype=np.float64)
    step = max(1, int(np.ceil(np.sqrt(e.size / AGREEMENT_PIXELS))))
    t, e = t[::step, ::step].ravel(), e[::step, ::step].ravel()
    if np.ptp(t) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(spearmanr(t, e).statistic)


def _per_plane(func: Any, shape: tuple[int, ...], *arrays: Any) -> Any:
    """Lazy ``func(*planes)`` for each plane of 2D/3D arrays: one dask task per plane."""
    import dask
    import dask.array as da

    def task(*parts: Any) -> np.ndarray:
        return func(*(np.asarray(p) for p in parts))

    first = arrays[0]
    if first.ndim == 2:
        return da.from_delayed(dask.delayed(task)(*arrays), shape=shape, dtype=np.float32)
    planes = [
        da.from_delayed(dask.delayed(task)(*(a[i] for a in arrays)), shape=shape, dtype=np.float32)
        for i in range(first.shape[0])
    ]
    return da.stack(planes)
