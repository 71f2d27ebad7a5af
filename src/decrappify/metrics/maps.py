"""Maps of a comparison: the per-pixel error of a prediction and the interpolation baseline.

Both are lazy (one dask task per plane) and lie on the ground truth's grid as
:func:`decrappify.metrics.alignment.plan_comparison` decided, so that a viewer can show
them over the ground truth and a report can draw them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io import Image
from decrappify.metrics.alignment import ComparePlan
from decrappify.metrics.baselines import METHOD_ORDERS, resize_plane
from decrappify.metrics.core import gt_range, normalize_minmse

__all__ = ["baseline_image", "error_image", "error_plane"]


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
