"""Radial power spectra: how much fine detail an image has, compared with its ground truth.

A restoration trained with a pixel loss predicts the mean of the plausible images: it is
smooth, and its power spectrum falls below the ground truth's at the frequencies the
input does not determine. What an adversarial loss should bring back is exactly that
power. :func:`high_frequency_power_ratio` measures it: the share of each image's power
that lies in a band of high spatial frequencies, relative to its power below the band,
for the prediction over the same for the ground truth. Each image is its own reference,
so the ratio does not depend on intensity scaling. 1 is as much detail as the ground
truth; below 1 smoother, above 1 more (invented detail, or noise). Unlike FRC it does not
ask whether the detail is right -- read it beside PSNR and FRC.

For super-resolution the natural band starts at the input's Nyquist frequency,
``1 / (2 * scale)`` cycles per output pixel: everything above it is what the network
had to reconstruct (:func:`hf_band_start`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.metrics.planes import as_plane

__all__ = ["high_frequency_power_ratio", "hf_band_start", "radial_power"]

#: Tukey window parameter of the apodisation (as for FRC).
TUKEY_ALPHA = 0.25


def hf_band_start(scale: int) -> float:
    """Lower edge of the "reconstructed" band in cycles per output pixel.

    Parameters
    ----------
    scale : int
        Super-resolution factor (1: restoration on the same grid).

    Returns
    -------
    float
        ``1 / (2 * scale)`` (the LR grid's Nyquist frequency) for ``scale >= 2``; 0.25
        (the upper half of the frequencies) at scale 1.
    """
    return 0.25 if scale <= 1 else 0.5 / scale


def _spectrum(x: np.ndarray) -> np.ndarray:
    from scipy.signal.windows import tukey

    window = np.outer(tukey(x.shape[0], TUKEY_ALPHA), tukey(x.shape[1], TUKEY_ALPHA))
    mean = float((x * window).sum() / window.sum())
    return np.abs(np.fft.rfft2((x - mean) * window)) ** 2


def _radius(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequency of every rfft2 coefficient and its weight (conjugate pairs: 2)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    weight = np.full(kx.shape, 2.0)
    weight[0, 0] = 1.0
    if shape[1] % 2 == 0:
        weight[0, -1] = 1.0
    radius = np.sqrt(ky**2 + kx**2)
    return radius, np.broadcast_to(weight, radius.shape)


def radial_power(image: Any, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean power of an image's (apodised) Fourier coefficients in rings of frequency.

    Parameters
    ----------
    image : array-like
        2D image.
    n_bins : int or None
        Rings between 0 and 0.5 cycles per pixel (default: half the smaller side).

    Returns
    -------
    frequencies : numpy.ndarray
        Mean frequency of each non-empty ring (cycles per pixel).
    power : numpy.ndarray
        Mean ``|F(k)|**2`` over the ring.
    """
    x = as_plane(image, "image").astype(np.float64)
    n_bins = min(x.shape) // 2 if n_bins is None else int(n_bins)
    if n_bins < 2:
        raise InputError(f"n_bins: expected at least 2 rings, got {n_bins}")
    power = _spectrum(x)
    radius, weight = _radius(x.shape)
    ring = np.rint(radius / (0.5 / n_bins)).astype(np.int64)
    keep = ring <= n_bins
    idx, w = ring[keep], weight[keep]
    counts = np.bincount(idx, weights=w, minlength=n_bins + 1)
    total = np.bincount(idx, weights=w * power[keep], minlength=n_bins + 1)
    freq = np.bincount(idx, weights=w * radius[keep], minlength=n_bins + 1)
    filled = counts > 0
    return freq[filled] / counts[filled], total[filled] / counts[filled]


def high_frequency_power_ratio(
    pred: Any, gt: Any, *, band: tuple[float, float] = (0.125, 0.5)
) -> float:
    """High- over low-frequency power of a prediction, relative to the same of its truth.

    Parameters
    ----------
    pred : array-like
        2D prediction, on the ground truth's grid.
    gt : array-like
        2D ground truth of the same shape.
    band : (float, float)
        The high frequencies in cycles per pixel, ``0 < low < high <= 0.5``; the
        reference band is from the first ring above 0 to ``low``. The default is the band
        a 4x super-resolution reconstructs (:func:`hf_band_start`).

    Returns
    -------
    float
        ``(P_pred(band) / P_pred(below)) / (P_gt(band) / P_gt(below))`` with ``P`` the
        summed power of the apodised, mean-free image's Fourier coefficients (NaN when
        one of the four is 0).

    Raises
    ------
    InputError
        For non-2D or mismatched inputs, or a band outside ``(0, 0.5]``.
    """
    p = as_plane(pred, "pred").astype(np.float64)
    g = as_plane(gt, "gt").astype(np.float64)
    if p.shape != g.shape:
        raise InputError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    low, high = (float(b) for b in band)
    if not 0.0 < low < high <= 0.5:
        raise InputError(f"band: expected 0 < low < high <= 0.5 cycles/pixel, got {band}")
    radius, weight = _radius(g.shape)
    high_band = (radius >= low) & (radius <= high)
    low_band = (radius > 0) & (radius < low)
    shares = []
    for image in (p, g):
        power = weight * _spectrum(image)
        hi_power, lo_power = float(power[high_band].sum()), float(power[low_band].sum())
        if hi_power <= 0 or lo_power <= 0:
            return float("nan")
        shares.append(hi_power / lo_power)
    return shares[0] / shares[1]
