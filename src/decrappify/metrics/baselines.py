"""Interpolation baselines: what a super-resolution network has to beat.

A low-resolution image is brought onto the high-resolution grid by nearest-neighbour,
bilinear or bicubic interpolation with the same pixel-centre convention as a downsampling
by ``scale``: LR pixel ``i`` covers HR pixels ``[i * scale, (i + 1) * scale)``, so its
centre sits at HR coordinate ``i * scale + (scale - 1) / 2``. This is
:func:`skimage.transform.resize` (``scipy.ndimage.zoom`` with ``grid_mode=True``) to
``shape * scale`` with ``order`` 0 / 1 / 3, ``anti_aliasing=False``,
``preserve_range=True`` and ``mode="reflect"`` at the borders. As in scikit-image, the
result is clipped to the input's value range (bicubic interpolation would overshoot at
edges otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from decrappify.errors import InputError
from decrappify.io.image import Image
from decrappify.metrics.denoise import DENOISERS, PARAM_NAMES, check_denoiser, denoise
from decrappify.metrics.planes import resize_plane

#: Interpolation methods and their spline order.
METHOD_ORDERS: dict[str, int] = {"nearest": 0, "bilinear": 1, "bicubic": 3}

Method = Literal["nearest", "bilinear", "bicubic"]

#: The low-resolution input itself, as a baseline (restoration on the same grid, scale 1).
INPUT = "input"


def baseline_label(scale: int | None) -> str:
    """Name of the plain baseline at a scale: ``"bicubic"``, or ``"input"`` at scale 1.

    Parameters
    ----------
    scale : int or None
        The upsampling factor (None: unknown, treated as above 1).

    Returns
    -------
    str
        ``"input"`` when the input is already on the output grid, else ``"bicubic"``.
    """
    return INPUT if scale == 1 else "bicubic"


@dataclass(frozen=True)
class Baseline:
    """One baseline: an interpolation, the input itself, or a denoiser and its parameter.

    Parameters
    ----------
    method : str
        ``"nearest"``, ``"bilinear"``, ``"bicubic"``, ``"input"`` (scale 1 only) or a
        denoiser of :mod:`decrappify.metrics.denoise` (applied on the LR grid, then
        interpolated bicubically when the scale is above 1).
    param : float or None
        The denoiser's parameter (None: its default).
    """

    method: str
    param: float | None = None

    @property
    def key(self) -> str:
        """Name in tables and reports: ``"bicubic"``, ``"gaussian=1.5"`` ..."""
        return self.method if self.param is None else f"{self.method}={self.param:g}"

    @property
    def order(self) -> int:
        """Spline order of the interpolation onto the output grid."""
        return METHOD_ORDERS.get(self.method, 3)

    def apply(self, plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Compute the baseline of one LR plane on a ``shape`` grid (same field of view).

        Parameters
        ----------
        plane : numpy.ndarray
            2D low-resolution plane.
        shape : tuple of int
            Output (Y, X) shape (``plane.shape * scale``, or the ground truth's).

        Returns
        -------
        numpy.ndarray
            float32 plane of ``shape``: the plane (denoised for a denoiser), interpolated
            when ``shape`` differs from its own.
        """
        if self.method in DENOISERS:
            base = denoise(plane, self.method, self.param)
        else:
            base = np.asarray(plane, dtype=np.float32)
        if base.shape != tuple(shape):
            base = resize_plane(base, shape, self.order)
        return base


def parse_baseline(spec: str | Baseline) -> Baseline:
    """Read a baseline written as ``"bicubic"``, ``"input"``, ``"tv"`` or ``"gaussian=1.5"``.

    Parameters
    ----------
    spec : str or Baseline
        The method, optionally ``=parameter`` for a denoiser.

    Returns
    -------
    Baseline
        The validated baseline.

    Raises
    ------
    InputError
        For an unknown method, a parameter given to an interpolation, a bad number, or
        ``bm3d`` without its package.
    """
    if isinstance(spec, Baseline):
        return spec
    name, sep, value = str(spec).strip().lower().partition("=")
    name = name.strip()
    known = (*METHOD_ORDERS, INPUT, *DENOISERS)
    if name not in known:
        raise InputError(f"baseline {spec!r}: expected one of {', '.join(known)}")
    if name not in DENOISERS:
        if sep:
            raise InputError(f"baseline {spec!r}: {name} takes no parameter")
        return Baseline(name)
    check_denoiser(name)
    if not sep:
        return Baseline(name)
    try:
        param = float(value)
    except ValueError:
        param = math.nan
    if not (math.isfinite(param) and param > 0):
        raise InputError(
            f"baseline {spec!r}: {PARAM_NAMES[name]} must be a positive number (got {value!r})"
        )
    return Baseline(name, param)


def check_method(method: str) -> int:
    """Spline order of a baseline method.

    Parameters
    ----------
    method : str
        ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.

    Returns
    -------
    int
        0, 1 or 3.

    Raises
    ------
    InputError
        For an unknown method.
    """
    if method not in METHOD_ORDERS:
        raise InputError(
            f"baseline method: expected one of {', '.join(METHOD_ORDERS)}, got {method!r}"
        )
    return METHOD_ORDERS[method]


def check_scale(scale: Any) -> int:
    """Validate an integer upsampling factor.

    Parameters
    ----------
    scale : int
        The factor (an integral float such as ``4.0`` is accepted).

    Returns
    -------
    int
        The factor as an int, at least 1.

    Raises
    ------
    InputError
        If it is not a positive integer.
    """
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise InputError(f"scale: expected a positive integer, got {scale!r}")
    if not (np.isfinite(scale) and float(scale).is_integer() and scale >= 1):
        raise InputError(f"scale: expected a positive integer, got {scale!r}")
    return int(scale)


def infer_scale(lr_shape: tuple[int, ...], gt_shape: tuple[int, ...]) -> int | None:
    """Integer factor between a low-resolution and a ground-truth grid, if there is one.

    Parameters
    ----------
    lr_shape, gt_shape : tuple of int
        Shapes whose last two axes are Y and X.

    Returns
    -------
    int or None
        ``gt / lr`` when both Y and X of ``gt`` are the same exact integer multiple of
        those of ``lr``, else None.
    """
    ly, lx = (int(s) for s in lr_shape[-2:])
    gy, gx = (int(s) for s in gt_shape[-2:])
    if ly and lx and gy % ly == 0 and gx % lx == 0 and gy // ly == gx // lx:
        return gy // ly
    return None


def scale_for(lr_shape: tuple[int, ...], gt_shape: tuple[int, ...], scale: Any = None) -> int:
    """Validate a given scale, or infer it from the shapes.

    Parameters
    ----------
    lr_shape, gt_shape : tuple of int
        Shapes whose last two axes are Y and X.
    scale : int, optional
        The factor, when known.

    Returns
    -------
    int
        The factor.

    Raises
    ------
    InputError
        If ``scale`` is not a positive integer, or is None and cannot be inferred.
    """
    if scale is not None:
        return check_scale(scale)
    inferred = infer_scale(lr_shape, gt_shape)
    if inferred is None:
        raise InputError(
            f"scale: cannot infer it, gt shape {tuple(gt_shape)} is not an integer multiple "
            f"of lr shape {tuple(lr_shape)}; pass --scale"
        )
    return inferred


def upsample(lr: Any, scale: int, method: Method = "bicubic") -> Any:
    """Interpolate a low-resolution image onto the grid ``scale`` times finer.

    Parameters
    ----------
    lr : array-like
        A 2D (YX) or 3D (ZYX / TYX) image: numpy, dask or :class:`~decrappify.io.Image`.
        3D images are interpolated plane by plane (Y and X only).
    scale : int
        Upsampling factor (the crappifier's downsampling factor).
    method : {"nearest", "bilinear", "bicubic"}
        Interpolation (spline order 0, 1, 3).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, shape ``(..., Y * scale, X * scale)``. Lazy (one task per chunk of planes)
        when ``lr`` is a dask array, so memory stays bounded by a few planes.

    Raises
    ------
    InputError
        For a non-2D/3D input, an unknown method or a non-integer scale.
    """
    order = check_method(method)
    scale = check_scale(scale)
    data = lr.data if isinstance(lr, Image) else lr
    if data.ndim not in (2, 3):
        raise InputError(f"lr: expected a 2D or 3D image, got shape {tuple(data.shape)}")
    out_yx = (int(data.shape[-2]) * scale, int(data.shape[-1]) * scale)
    if not isinstance(data, np.ndarray) and hasattr(data, "map_blocks"):
        whole_planes = data.rechunk({data.ndim - 2: -1, data.ndim - 1: -1})
        chunks = (*whole_planes.chunks[:-2], (out_yx[0],), (out_yx[1],))
        return whole_planes.map_blocks(
            _upsample_planes, out_yx, order, chunks=chunks, dtype=np.float32
        )
    return _upsample_planes(np.asarray(data), out_yx, order)


def _upsample_planes(x: np.ndarray, out_yx: tuple[int, int], order: int) -> np.ndarray:
    if x.ndim == 2:
        return resize_plane(x, out_yx, order)
    out = np.empty((x.shape[0], *out_yx), dtype=np.float32)
    for i, plane in enumerate(x):
        out[i] = resize_plane(plane, out_yx, order)
    return out
