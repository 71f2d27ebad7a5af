"""Noise statistics of real images: flat patches, intensity bins and the noise line.

The measuring half of :func:`decrappify.crappify.fit.fit_noise_model`: regions read
evenly from (lazy) images, the mean and a texture-blind noise variance of each small patch
(:func:`patch_stats`), per-intensity-bin estimates from the flat patches, and the robust
line ``variance = gain * (mean - offset) + read_noise**2`` through them (:func:`fit_line`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io.image import Image

__all__ = ["MIN_BIN_PATCHES", "REGION", "NoiseLine", "fit_line", "patch_stats", "regions"]

#: Side of the sampled regions read from large images.
REGION = 256
#: Fewest patches an intensity bin needs to be used.
MIN_BIN_PATCHES = 24
#: Quantile of the patch variances used for the first, texture-robust estimate.
_ROBUST_QUANTILE = 0.2
#: Shot-noise variance at the bright level below this fraction of the read-noise variance
#: counts as no signal-dependent noise (the config then uses Gaussian noise only).
_MIN_SHOT_FRACTION = 0.05
#: Patches whose noise estimate exceeds this quantile of pure noise at the bin's level are
#: not flat.
_FLAT_QUANTILE = 0.995


def regions(image: Image, max_pixels: int) -> list[np.ndarray]:
    """2D regions of an image, about ``max_pixels`` in total, spread evenly over it.

    Whole planes when the image is small enough, otherwise evenly spaced tiles of
    :data:`REGION` pixels (edge tiles included), read one at a time from lazy data.
    """
    height, width = image.shape[-2:]
    planes = image.shape[0] if image.ndim == 3 else 1
    if planes * height * width <= max_pixels:
        tiles_y, tiles_x, rh, rw = 1, 1, height, width
    else:
        rh, rw = min(height, REGION), min(width, REGION)
        tiles_y, tiles_x = -(-height // rh), -(-width // rw)
    per_plane = tiles_y * tiles_x
    total = planes * per_plane
    count = max(1, min(total, max_pixels // (rh * rw)))
    out = []
    for flat in np.unique(np.round(np.linspace(0, total - 1, count)).astype(np.int64)):
        z, cell = divmod(int(flat), per_plane)
        iy, ix = divmod(cell, tiles_x)
        y0, x0 = min(iy * rh, height - rh), min(ix * rw, width - rw)
        index: tuple[Any, ...] = (slice(y0, y0 + rh), slice(x0, x0 + rw))
        if image.ndim == 3:
            index = (z, *index)
        region = image.data[index]
        out.append(np.asarray(region.compute() if hasattr(region, "compute") else region))
    return out


#: Separable second-difference kernel (Immerkaer 1996): blind to anything linear along Y
#: or along X, so edges and smooth gradients barely leak into the noise estimate.
_KERNEL = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0])


def _noise_responses(blocks: np.ndarray, patch: int) -> np.ndarray:
    """Per patch, the mean squared response to :data:`_KERNEL` scaled to a variance."""
    cube = blocks.reshape(-1, patch, patch)
    response = np.zeros((cube.shape[0], patch - 2, patch - 2))
    for i in range(3):
        for j in range(3):
            response += _KERNEL[i, j] * cube[:, i : i + patch - 2, j : j + patch - 2]
    return (response**2).mean(axis=(1, 2)) / float((_KERNEL**2).sum())


@lru_cache(maxsize=8)
def _calibration(patch: int) -> tuple[float, float, float]:
    """Quantile, flatness threshold and truncation factors for pure Gaussian noise.

    The per-patch estimates of :func:`_noise_responses` are averages of correlated
    squares, so their distribution is found by simulation (unit noise, fixed seed).

    Returns
    -------
    q_factor : float
        :data:`_ROBUST_QUANTILE` quantile of the estimate for unit variance.
    threshold : float
        :data:`_FLAT_QUANTILE` quantile of the estimate for unit variance.
    trunc_factor : float
        Mean of the estimates below ``threshold`` for unit variance.
    """
    noise = np.random.default_rng(0).standard_normal((40_000, patch * patch))
    v = _noise_responses(noise, patch)
    threshold = float(np.quantile(v, _FLAT_QUANTILE))
    return float(np.quantile(v, _ROBUST_QUANTILE)), threshold, float(v[v <= threshold].mean())


def patch_stats(region: np.ndarray, patch: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Mean and noise variance estimate of each non-saturated ``patch x patch`` patch."""
    h, w = (region.shape[0] // patch) * patch, (region.shape[1] // patch) * patch
    blocks = region[:h, :w].astype(np.float64)
    blocks = blocks.reshape(h // patch, patch, w // patch, patch).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, patch * patch)
    keep = np.isfinite(blocks).all(axis=1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        keep &= (blocks.max(axis=1) < info.max) & (blocks.min(axis=1) > info.min)
    blocks = blocks[keep]
    return blocks.mean(axis=1), _noise_responses(blocks, patch)


def _bin_estimates(
    means: np.ndarray, variances: np.ndarray, patch: int, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-intensity-bin noise variance from the flat patches (robust to texture)."""
    edges = np.quantile(means, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, n_bins - 1)
    q_factor, threshold, trunc_factor = _calibration(patch)
    bin_mean, bin_var, bin_count = [], [], []
    for b in range(n_bins):
        m, v = means[which == b], variances[which == b]
        if m.size < MIN_BIN_PATCHES:
            continue
        first = np.quantile(v, _ROBUST_QUANTILE) / q_factor
        flat = v <= first * threshold
        if flat.sum() < MIN_BIN_PATCHES // 2 or first <= 0:
            continue
        bin_mean.append(m[flat].mean())
        bin_var.append(v[flat].mean() / trunc_factor)
        bin_count.append(int(flat.sum()))
    return np.array(bin_mean), np.array(bin_var), np.array(bin_count)


def _robust_line(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """Weighted line ``y = a x + c`` with Huber reweighting; returns a, c and weighted r2."""
    w = weights.copy()
    a = c = 0.0
    for _ in range(20):
        design = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
        (a, c), *_ = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)
        r = (y - (a * x + c)) * np.sqrt(weights)
        scale = 1.4826 * np.median(np.abs(r)) or 1.0
        huber = np.minimum(1.0, 1.345 * scale / np.maximum(np.abs(r), 1e-300))
        w = weights * huber
    mean_y = np.average(y, weights=w)
    ss_res = np.sum(w * (y - (a * x + c)) ** 2)
    ss_tot = np.sum(w * (y - mean_y) ** 2)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return float(a), float(c), float(r2)


@dataclass(frozen=True)
class NoiseLine:
    """The variance-mean line of a set of flat patches and the budget it implies."""

    gain: float
    read_noise: float
    offset: float
    photons: float
    background: float
    r2: float
    n_patches: int
    bin_means: tuple[float, ...]
    bin_variances: tuple[float, ...]
    notes: tuple[str, ...]


def fit_line(
    means: np.ndarray,
    variances: np.ndarray,
    patch_size: int,
    n_bins: int,
    offset: float | None,
    lo: float,
    hi: float,
) -> NoiseLine:
    """Fit ``variance = gain * (mean - offset) + read_noise**2`` to the patches' statistics.

    Patches are binned by mean; in each bin the noise variance is first estimated from a
    low quantile of the patch variances (structure only adds variance), patches whose
    variance is implausibly high for pure noise at that level (above the 99.5 % chi-square
    quantile) are rejected as textured, and the mean variance of the remaining *flat*
    patches (corrected for the truncation) is the bin's estimate. A weighted, Huber-robust
    line ``variance = gain * mean + c`` through the bins gives the gain; ``lo, hi`` (the
    normalised units) turn it into a photon budget at the bright level.
    """
    if means.size < 3 * MIN_BIN_PATCHES:
        raise InputError(
            f"low-res images: too few flat {patch_size}x{patch_size} patches to fit a noise "
            f"model ({means.size} unsaturated patches; need {3 * MIN_BIN_PATCHES}); give "
            "larger or more images"
        )
    bins = max(3, min(n_bins, means.size // (2 * MIN_BIN_PATCHES)))
    bin_mean, bin_var, bin_count = _bin_estimates(means, variances, patch_size, bins)
    if bin_mean.size < 3:
        raise InputError(
            f"low-res images: too few flat {patch_size}x{patch_size} patches to fit a noise "
            f"model ({means.size} patches, {bin_mean.size} usable intensity bins; need 3); "
            "give images with more intensity levels"
        )
    weights = bin_count / np.maximum(bin_var, 1e-12) ** 2
    gain, intercept, r2 = _robust_line(bin_mean, bin_var, weights)
    notes: list[str] = []
    if offset is None:
        offset = float(bin_mean.min())
    read_var = intercept + gain * offset
    if gain > 0 and gain * (hi - offset) >= _MIN_SHOT_FRACTION * max(read_var, 0.0):
        photons = (hi - lo) / gain
        background = max(0.0, (lo - offset) / (hi - lo))
    else:
        gain = 0.0
        read_var = float(np.average(bin_var, weights=bin_count))
        photons, background = math.inf, 0.0
        notes.append(
            "no significant signal-dependent noise (shot noise at the bright level below "
            f"{_MIN_SHOT_FRACTION:.0%} of the read noise variance): Gaussian noise only"
        )
    if read_var < 0:
        notes.append(f"negative read-noise variance {read_var:.3g} clipped to 0")
        read_var = 0.0
    return NoiseLine(
        gain=float(gain),
        read_noise=math.sqrt(read_var),
        offset=float(offset),
        photons=float(photons),
        background=float(background),
        r2=r2,
        n_patches=int(bin_count.sum()),
        bin_means=tuple(float(v) for v in bin_mean),
        bin_variances=tuple(float(v) for v in bin_var),
        notes=tuple(notes),
    )
