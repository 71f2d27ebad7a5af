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
the whole image; :class:`ConsistencyStats` adds up the summary over tiles. Pure numpy /
scipy: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify import degradations as deg
from decrappify.crappify.pipeline import build_ops, plan_regions, run_region, stage_shapes
from decrappify.errors import InputError
from decrappify.normalize import normalize, percentile_range

__all__ = [
    "FORWARD_KINDS",
    "ConsistencyMap",
    "ConsistencyStats",
    "consistency_halo",
    "Calibration",
    "calibrate",
    "data_consistency",
    "forward_model",
    "image_consistency",
    "noise_sigma",
]

#: Steps of the noise-free forward model (the deterministic, linear part of a crappifier).
FORWARD_KINDS = ("blur", "downsample")

#: Default threshold on the local normalised residual for a pixel to count as flagged.
FLAG_THRESHOLD = 4.0


def _central_params(config: CrappifyConfig) -> dict[str, Any]:
    """Every step at the median of its ranges, read-noise budgets shared as when sampling."""
    steps: list[dict[str, Any]] = []
    last_photons = None
    for step in config.steps:
        central = step.central()
        if central["kind"] == "poisson":
            last_photons = central["photons"]
        elif central["kind"] == "read_noise" and central["photons"] is None:
            central["photons"] = last_photons
        steps.append(central)
    return {"seed": 0, "scale": config.scale, "steps": steps}


def _forward_ops(config: CrappifyConfig, pixel_size: Any, pixel_unit: str | None) -> list[Any]:
    params = _central_params(config)
    params["steps"] = [s for s in params["steps"] if s["kind"] in FORWARD_KINDS]
    return build_ops(params, pixel_size=pixel_size, pixel_unit=pixel_unit)


def forward_model(
    hr: Any,
    config: CrappifyConfig,
    *,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> np.ndarray:
    """Degrade a normalised HR image with the crappifier's blur and downsampling, no noise.

    Parameters
    ----------
    hr : array-like
        2D image in normalised units on the HR grid (a prediction, or a region of one
        starting at a multiple of the scale).
    config : CrappifyConfig
        The model's crappifier; ranges are taken at their median, noise, JPEG and
        salt-and-pepper steps are left out.
    pixel_size : float or (float, float) or None
        HR pixel size, needed only for blurs given in physical units.
    pixel_unit : str or None
        Unit of ``pixel_size``.

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``(H // scale, W // scale)``.
    """
    x = np.asarray(hr, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"forward model: expected a 2D image, got shape {x.shape}")
    ops = _forward_ops(config, pixel_size, pixel_unit)
    shape = stage_shapes(ops, x.shape)[-1]
    boxes = plan_regions(ops, x.shape, ((0, shape[0]), (0, shape[1])))
    (y0, y1), (x0, x1) = boxes[0]
    out = run_region(x[y0:y1, x0:x1], ops, boxes, seed=0, plane=0)
    return np.array(out, dtype=np.float32, copy=True)


def _white_noise_transfer(op: Any) -> float:
    """Factor by which a linear step multiplies the variance of white noise."""
    if op.kind == "downsample":
        s = int(op.params["scale"])
        if op.params["method"] == "area":
            return 1.0 / (s * s)
        return 0.25 if s % 2 == 0 else 1.0  # bilinear: 2x2 mean (even) or centre pixel
    if op.kind == "blur":
        return math.prod(_white_noise_gain(sigma) for sigma in op.params["_sigma"] if sigma > 0)
    return 1.0


def noise_sigma(
    signal: Any,
    config: CrappifyConfig,
    *,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
    min_sigma: float = 0.01,
) -> np.ndarray:
    """Noise standard deviation the crappifier gives an LR pixel of a given clean level.

    Shot noise ``(max(x, 0) + background) / photons``, read noise ``(sigma /
    photons)**2``, Gaussian ``sigma**2`` and local-variance ``gain * max(x, 0) +
    min_variance`` add up; noise added before a blur or the downsampling is reduced by
    what that step does to white noise. Each range is taken at its median. JPEG and
    salt-and-pepper are not counted.

    Parameters
    ----------
    signal : array-like
        Clean LR intensities in normalised units (the forward model of the prediction).
    config : CrappifyConfig
        The crappifier.
    pixel_size, pixel_unit
        As :func:`forward_model`.
    min_sigma : float
        Floor of the standard deviation, in normalised units (a noise-free crappifier
        would otherwise make every rounding error infinitely significant).

    Returns
    -------
    numpy.ndarray
        float32 standard deviation per pixel, at least ``min_sigma``.
    """
    x = np.maximum(np.asarray(signal, dtype=np.float64), 0.0)
    params = _central_params(config)
    ops = build_ops(params, pixel_size=pixel_size, pixel_unit=pixel_unit)
    variance = np.zeros_like(x)
    for i, step in enumerate(params["steps"]):
        kind = step["kind"]
        if kind == "gaussian_noise":
            added = np.full_like(x, step["sigma"] ** 2)
        elif kind == "local_variance_noise":
            added = step["gain"] * x + step["min_variance"]
        elif kind == "poisson":
            added = (x + step["background"]) / step["photons"]
        elif kind == "read_noise":
            added = np.full_like(x, (step["sigma"] / step["photons"]) ** 2)
        else:
            continue
        transfer = math.prod(_white_noise_transfer(later) for later in ops[i + 1 :])
        variance += transfer * added
    return np.maximum(np.sqrt(variance), float(min_sigma)).astype(np.float32)


def _white_noise_gain(sigma: float) -> float:
    """``sum(w**2)`` of scipy's 1D Gaussian kernel: its factor on white noise variance.

    In 2D (the outer product of two such kernels) it is also the standard deviation of
    white unit noise after the filter, which :func:`data_consistency` divides by.
    """
    radius = deg.kernel_radius(sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return float(np.sum((taps / taps.sum()) ** 2))


def consistency_halo(
    config: CrappifyConfig,
    *,
    window: float = 2.0,
    pixel_size: Any = None,
    pixel_unit: str | None = "micrometer",
) -> int:
    """LR pixels of context a tile needs on each side for exact consistency maps.

    Parameters
    ----------
    config : CrappifyConfig
        The crappifier.
    window : float
        The averaging window of :func:`data_consistency`.
    pixel_size, pixel_unit
        As :func:`forward_model`.

    Returns
    -------
    int
        Halo in LR pixels: the forward model's reach (blur radii, bilinear
        interpolation) plus the window's radius.
    """
    ops = _forward_ops(config, pixel_size, pixel_unit)
    reach = 0.0  # in pixels of the current grid
    for op in ops:
        if op.kind == "blur":
            reach += max(deg.kernel_radius(s) for s in op.params["_sigma"])
        elif op.kind == "downsample":
            s = int(op.params["scale"])
            reach = math.ceil(reach / s) + (1 if op.params["method"] == "bilinear" else 0)
    return int(math.ceil(reach)) + (deg.kernel_radius(window) if window > 0 else 0)


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
    from scipy import ndimage

    p, observed = _prepare(pred, lr, config)
    if calibration is None:
        calibration = calibrate(
            p, observed, config, min_sigma=min_sigma, pixel_size=pixel_size, pixel_unit=pixel_unit
        )
    degraded = forward_model(p, config, pixel_size=pixel_size, pixel_unit=pixel_unit)
    matched = (calibration.gain * degraded + calibration.offset).astype(np.float32)
    residual = observed - matched
    sigma = noise_sigma(
        matched, config, pixel_size=pixel_size, pixel_unit=pixel_unit, min_sigma=min_sigma
    )
    z = residual.astype(np.float64) / (sigma * calibration.noise_scale)
    if window > 0:
        z = ndimage.gaussian_filter(z, window, mode="reflect") / _white_noise_gain(window)
    z = z.astype(np.float32)
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
