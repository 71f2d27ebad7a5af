"""Data consistency: whether a prediction is explained by the measurement it came from.

A model trained on crappified data learned to invert its crappifier. Degrading its
prediction with the crappifier's *forward model* -- the blur and downsampling steps,
without noise, each range at its median -- must give back the LR input up to the noise.
Where it does not, the output holds structure the measurement does not support
(hallucinated) or lacks structure it shows (lost).

:func:`data_consistency` returns, on the LR grid, the residual ``lr - A(pred)`` in
normalised units and the *local normalised residual*: the residual divided by the noise
standard deviation the crappifier predicts at that intensity, averaged over a Gaussian
window and rescaled so that pure noise gives a standard normal map. Where the output is
explained by the input its values are about N(0, 1); a coherent misfit (a pasted or
erased structure) stands out by many standard deviations. A global gain and offset between
input and output and the image's noise level within the crappifier's ranges are fitted
once per image first (:class:`Calibration`): they are not what the map is about. One
number per image summarises it: the RMS of that map (about 1 when everything is
explained).

Everything is local (the forward model's blur, the window), so the maps can be computed
tile by tile with a halo of :func:`consistency_halo` LR pixels and give the same values as
the whole image; :class:`ConsistencyStats` adds up the summary over tiles. The linear
parts (the forward model, the window) are banded per-axis operators
(:mod:`decrappify.crappify.forward_operator`, :mod:`decrappify.crappify.forward_model`)
and the rest is elementwise arithmetic, all written once for numpy arrays and for torch
tensors on a prediction's device (:func:`local_residual` takes the
:class:`~decrappify.crappify.forward_operator.Arrays` it runs on). Pure numpy: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify.forward_model import (
    FORWARD_KINDS,
    ForwardModel,
    consistency_halo,
    forward_model,
    noise_sigma,
    white_noise_gain,
)
from decrappify.crappify.forward_operator import NUMPY, Arrays, NumpyArrays, apply_2d, blur_band
from decrappify.errors import InputError
from decrappify.normalize import normalize, percentile_range

__all__ = [
    "FORWARD_KINDS",
    "Calibration",
    "ConsistencyMap",
    "ConsistencyStats",
    "ForwardModel",
    "calibrate",
    "consistency_halo",
    "data_consistency",
    "fit_calibration",
    "forward_model",
    "image_consistency",
    "local_residual",
    "noise_sigma",
]

#: Default threshold on the local normalised residual for a pixel to count as flagged.
FLAG_THRESHOLD = 4.0


@dataclass(frozen=True)
class ConsistencyStats:
    """Summary of a consistency map, additive over tiles and planes.

    Attributes
    ----------
    count : int
        LR pixels scored.
    sum_sq : float
        Sum of the squared local normalised residual.
    flagged : int
        Pixels whose local normalised residual exceeds the threshold in magnitude.
    """

    count: int = 0
    sum_sq: float = 0.0
    flagged: int = 0

    def __add__(self, other: ConsistencyStats) -> ConsistencyStats:
        return ConsistencyStats(
            self.count + other.count, self.sum_sq + other.sum_sq, self.flagged + other.flagged
        )

    @property
    def score(self) -> float:
        """RMS local normalised residual: about 1 when the input explains the output."""
        return math.sqrt(self.sum_sq / self.count) if self.count else math.nan

    @property
    def flagged_fraction(self) -> float:
        """Fraction of pixels flagged (about 6e-5 for pure noise at the default 4)."""
        return self.flagged / self.count if self.count else math.nan

    @classmethod
    def of(cls, z: np.ndarray, threshold: float = FLAG_THRESHOLD) -> ConsistencyStats:
        """Summarise a local normalised residual map (or the inner part of a tile's)."""
        z = np.asarray(z, dtype=np.float64)
        return cls(int(z.size), float(np.sum(z**2)), int(np.count_nonzero(np.abs(z) > threshold)))


@dataclass(frozen=True)
class ConsistencyMap:
    """The data-consistency maps of one plane (or tile), on the LR grid.

    Attributes
    ----------
    residual : numpy.ndarray
        ``lr - (gain * A(pred) + offset)`` in normalised units (positive: the measurement
        is brighter than the prediction explains).
    z : numpy.ndarray
        The local normalised residual (about N(0, 1) where the output is explained).
    stats : ConsistencyStats
        Its summary (over the whole map; for tiles, summarise the inner part with
        :meth:`ConsistencyStats.of`).
    """

    residual: np.ndarray
    z: np.ndarray
    stats: ConsistencyStats

    @property
    def score(self) -> float:
        """RMS of :attr:`z`: about 1 when the input explains the output."""
        return self.stats.score


@dataclass(frozen=True)
class Calibration:
    """How one image's measurement relates to its prediction's forward model, globally.

    ``lr ≈ gain * A(pred) + offset``, with noise ``noise_scale`` times the crappifier's
    median noise. A model's output may differ from its input by a global contrast and
    offset (training jitters both; the normalised metrics forgive them too) and a real
    image's noise lies somewhere in the crappifier's ranges: neither is what the trust map
    is about, so both are fitted once per image and shared by its tiles.

    Attributes
    ----------
    gain, offset : float
        Affine map from the forward model of the prediction onto the input: least squares
        weighted by the crappifier's noise, refitted without the pixels whose normalised
        residual is beyond 4 standard deviations (so a local misfit does not move it).
    noise_scale : float
        RMS normalised residual of the pixels kept, clipped to ``[1 / NOISE_SCALE_LIMIT,
        NOISE_SCALE_LIMIT]``: a prediction that keeps the noise leaves no residual to
        measure it from, and must not make every rounding error significant.
    """

    gain: float = 1.0
    offset: float = 0.0
    noise_scale: float = 1.0


#: A calibrated noise level stays within this factor of the crappifier's median level.
NOISE_SCALE_LIMIT = 2.0
#: Calibration passes, and the normalised residual beyond which a pixel is left out of the
#: next one (a local misfit must not move the global fit).
_PASSES, _TRIM = 4, 4.0
#: Calibration fits on every n-th row and column, n = isqrt(pixels // FIT_PIXELS) >= 1.
FIT_PIXELS = 256 * 256


def _prepare(pred: Any, lr: Any, config: CrappifyConfig) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float32)
    observed = np.asarray(lr, dtype=np.float32)
    s = config.scale
    if p.ndim != 2 or observed.ndim != 2:
        raise InputError(
            f"data consistency: expected 2D prediction and input, got shapes {p.shape} and "
            f"{observed.shape}"
        )
    need = (observed.shape[0] * s, observed.shape[1] * s)
    if p.shape[0] < need[0] or p.shape[1] < need[1]:
        raise InputError(
            f"data consistency: the prediction {p.shape} does not cover the input "
            f"{observed.shape} times the scale {s} ({need})"
        )
    return p[: need[0], : need[1]], observed


def calibrate(
    pred: Any,
    lr: Any,
    config: CrappifyConfig,
    *,
    min_sigma: float = 0.01,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> Calibration:
    """Fit an image's global gain, offset and noise level (once per image).

    Parameters
    ----------
    pred, lr : array-like
        A 2D prediction and its input in normalised units, as :func:`data_consistency`
        (a whole plane, or a representative region of it).
    config : CrappifyConfig
        The crappifier.
    min_sigma, pixel_size, pixel_unit
        As :func:`data_consistency`.

    Returns
    -------
    Calibration
        The affine map and the noise level; a local misfit barely moves them.
    """
    p, observed = _prepare(pred, lr, config)
    degraded = forward_model(p, config, pixel_size=pixel_size, pixel_unit=pixel_unit)
    return fit_calibration(
        degraded,
        observed,
        config,
        min_sigma=min_sigma,
        pixel_size=pixel_size,
        pixel_unit=pixel_unit,
    )


def fit_calibration(
    degraded: np.ndarray,
    observed: np.ndarray,
    config: CrappifyConfig,
    *,
    min_sigma: float = 0.01,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> Calibration:
    """Fit the gain, offset and noise level from a forward model and its measurement.

    Parameters
    ----------
    degraded, observed : numpy.ndarray
        The prediction's forward model and the input over the same LR region.
    config : CrappifyConfig
        The crappifier.
    min_sigma, pixel_size, pixel_unit
        As :func:`data_consistency`.

    Returns
    -------
    Calibration
        As :func:`calibrate` (which degrades a prediction, then fits with this).
    """
    degraded, observed = np.asarray(degraded), np.asarray(observed)
    # three numbers need no more than ~64k pixels: a regular subsample of larger regions
    stride = max(1, math.isqrt(degraded.size // FIT_PIXELS))
    x = degraded[::stride, ::stride].astype(np.float64).ravel()
    y = observed[::stride, ::stride].astype(np.float64).ravel()
    keep = np.ones(x.shape, dtype=bool)
    gain, offset, scale = 1.0, 0.0, 1.0
    for _ in range(_PASSES):
        sigma = noise_sigma(
            gain * x + offset,
            config,
            pixel_size=pixel_size,
            pixel_unit=pixel_unit,
            min_sigma=min_sigma,
        ).astype(np.float64)
        w = 1.0 / sigma[keep]
        if np.ptp(x[keep]) > 0:
            design = np.stack([x[keep], np.ones(int(keep.sum()))], 1) * w[:, None]
            gain, offset = (float(v) for v in np.linalg.lstsq(design, y[keep] * w, rcond=None)[0])
        else:
            gain, offset = 1.0, float(np.average(y[keep] - x[keep], weights=w**2))
        z = (y - (gain * x + offset)) / sigma
        scale = float(np.sqrt(np.mean(z[keep] ** 2)))
        if not (math.isfinite(scale) and scale > 0):
            scale = 1.0
            break
        keep = np.abs(z) <= _TRIM * scale
    scale = min(max(scale, 1.0 / NOISE_SCALE_LIMIT), NOISE_SCALE_LIMIT)
    return Calibration(gain=gain, offset=offset, noise_scale=scale)


def local_residual(
    model: ForwardModel,
    degraded: Any,
    observed: Any,
    calibration: Calibration,
    *,
    region: Any,
    out: Any,
    window: float = 2.0,
    min_sigma: float = 0.01,
    arrays: Arrays = NUMPY,
) -> tuple[Any, Any]:
    """Residual and local normalised residual of an LR region, on ``arrays``.

    Parameters
    ----------
    model : ForwardModel
        The image's forward model (the window is applied on its LR plane).
    degraded, observed : array
        The forward model of the prediction and the input over ``region`` (LR,
        normalised; of ``arrays``).
    calibration : Calibration
        The image's gain, offset and noise level.
    region : pair of (start, stop)
        The LR box the arrays cover.
    out : pair of (start, stop)
        The LR box to return, inside ``region`` with the window's radius around it
        (or reaching the plane's border).
    window, min_sigma
        As :func:`data_consistency`.
    arrays : Arrays
        Where the arithmetic runs.

    Returns
    -------
    residual, z : array
        The box of ``out`` of each (of ``arrays``).
    """
    matched = degraded * calibration.gain + calibration.offset
    residual = observed - matched
    sigma = noise_sigma(
        matched,
        model.config,
        pixel_size=model.pixel_size,
        pixel_unit=model.pixel_unit,
        min_sigma=min_sigma,
    )
    z = residual / (sigma * calibration.noise_scale)
    (y0, _), (x0, _) = region
    (a, b), (c, d) = out
    residual = residual[a - y0 : b - y0, c - x0 : d - x0]
    if window <= 0:
        return residual, z[a - y0 : b - y0, c - x0 : d - x0]
    h, w = model.lr_shape
    bands = (blur_band(h, window), blur_band(w, window))
    z = apply_2d(bands, out, z, (y0, x0), arrays) / white_noise_gain(window)
    return residual, z


def data_consistency(
    pred: Any,
    lr: Any,
    config: CrappifyConfig,
    *,
    calibration: Calibration | None = None,
    window: float = 2.0,
    min_sigma: float = 0.01,
    threshold: float = FLAG_THRESHOLD,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> ConsistencyMap:
    """Compare a prediction, degraded by the forward model, with its LR input.

    Parameters
    ----------
    pred : array-like
        2D prediction in normalised units, on the HR grid (``lr.shape * scale``; extra
        rows and columns beyond whole LR pixels are ignored).
    lr : array-like
        2D LR input in the same normalised units (the model's normalisation of the LR).
    config : CrappifyConfig
        The model's crappifier (its forward model and its noise).
    calibration : Calibration or None
        The image's global gain, offset and noise level; None fits them on these arrays
        (:func:`calibrate`). Tiles of one image must share one: calibrate once on the
        plane (or a representative region) and pass it.
    window : float
        Standard deviation, in LR pixels, of the Gaussian window the normalised residual
        is averaged over (0: per pixel). Averaging makes coherent misfits stand out of
        the noise: a structure of a few pixels is ``window`` times more significant.
    min_sigma : float
        Floor of the noise standard deviation (normalised units).
    threshold : float
        ``|z|`` above which a pixel counts as flagged in the summary.
    pixel_size, pixel_unit
        HR pixel size and unit, for blurs in physical units.

    Returns
    -------
    ConsistencyMap
        Residual, local normalised residual and their summary.

    Raises
    ------
    InputError
        For non-2D inputs or a prediction that does not cover ``lr.shape * scale``.
    """
    p, observed = _prepare(pred, lr, config)
    model = ForwardModel.build(config, p.shape, pixel_size=pixel_size, pixel_unit=pixel_unit)
    box = model.lr_box()
    degraded = model.degrade(p, (0, 0), box)
    if calibration is None:
        calibration = fit_calibration(
            degraded,
            observed,
            config,
            min_sigma=min_sigma,
            pixel_size=pixel_size,
            pixel_unit=pixel_unit,
        )
    residual, z = local_residual(
        model,
        degraded,
        observed,
        calibration,
        region=box,
        out=box,
        window=window,
        min_sigma=min_sigma,
        arrays=NumpyArrays(np.float64),
    )
    z = np.asarray(z, dtype=np.float32)
    residual = np.asarray(residual, dtype=np.float32)
    return ConsistencyMap(residual=residual, z=z, stats=ConsistencyStats.of(z, threshold))


def image_consistency(
    pred: Any,
    lr: Any,
    config: CrappifyConfig,
    *,
    lo_hi: tuple[float, float] | None = None,
    **kwargs: Any,
) -> ConsistencyMap:
    """:func:`data_consistency` of a prediction and its input in their own grey levels.

    Parameters
    ----------
    pred, lr : array-like
        2D prediction (HR grid) and LR input, in the input's units (a prediction is
        written in them).
    config : CrappifyConfig
        The model's crappifier.
    lo_hi : (float, float) or None
        The normalisation the model used (its percentiles of the input); default: the
        config's percentiles of ``lr``.
    **kwargs
        As :func:`data_consistency`.

    Returns
    -------
    ConsistencyMap
        The maps, in normalised units.
    """
    observed = np.asarray(lr)
    if lo_hi is None:
        norm = config.normalization
        lo_hi = percentile_range(observed, norm.low, norm.high)
    lo, hi = lo_hi
    return data_consistency(
        normalize(np.asarray(pred, dtype=np.float32), lo, hi),
        normalize(observed.astype(np.float32), lo, hi),
        config,
        **kwargs,
    )
