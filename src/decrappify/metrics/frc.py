"""Fourier ring correlation (FRC): up to which spatial frequency two images agree.

The FRC of two images ``a`` and ``b`` is, for each ring of spatial frequencies ``|k| ≈ f``,

    FRC(f) = Re(sum_ring A(k) B*(k)) / sqrt(sum_ring |A(k)|^2 * sum_ring |B(k)|^2)

with ``A``, ``B`` the Fourier transforms. Two acquisitions of the same structure with
independent noise correlate near 1 at low frequencies, where the signal dominates, and fall
to 0 where noise dominates. The *resolution* is the inverse of the frequency at which the
curve first drops below a threshold, the fixed 1/7 of Nieuwenhuizen et al. (2013, Nature
Methods 10:557) by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.metrics.planes import as_plane

#: Shape parameter of the apodisation (Tukey) window: the tapered fraction of each axis.
TUKEY_ALPHA = 0.25
#: Smallest side accepted by :func:`frc` (the split of :func:`frc_single` needs twice that).
MIN_FRC_SIDE = 16


@dataclass(frozen=True)
class FRCResult:
    """A Fourier ring correlation curve and the resolution read from it.

    Parameters
    ----------
    frequencies : numpy.ndarray
        Mean spatial frequency of each ring, in cycles per pixel (0 to 0.5; up to 0.25
        for :func:`frc_single`).
    correlation : numpy.ndarray
        Correlation of each ring, in [-1, 1] (NaN for a ring without power).
    n_samples : numpy.ndarray
        Number of Fourier coefficients in each ring (the noise level of a ring's value is
        about ``1 / sqrt(n_samples)``).
    threshold : float
        The threshold the curve is compared with (1/7 by default).
    resolution_px : float or None
        ``1 / f_c`` in pixels, with ``f_c`` the frequency where the curve first falls below
        the threshold (linearly interpolated between the two rings around the crossing),
        or None when the curve never falls below it.
    pixel_size : float or None
        Physical size of a pixel, when known.
    unit : str or None
        Unit of ``pixel_size`` (``"nanometer"``, ``"micrometer"`` ...), when known.
    """

    frequencies: np.ndarray
    correlation: np.ndarray
    n_samples: np.ndarray
    threshold: float
    resolution_px: float | None
    pixel_size: float | None = None
    unit: str | None = None

    @property
    def crossing_frequency(self) -> float | None:
        """Threshold crossing in cycles per pixel, or None when never crossing."""
        return None if self.resolution_px is None else 1.0 / self.resolution_px

    @property
    def resolution(self) -> float | None:
        """Resolution in physical units (``resolution_px * pixel_size``), if both are known."""
        if self.resolution_px is None or self.pixel_size is None:
            return None
        return self.resolution_px * self.pixel_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly description (lists and floats, NaN as None).

        Returns
        -------
        dict
            ``frequencies``, ``correlation``, ``n_samples``, ``threshold``,
            ``resolution_px``, ``resolution``, ``pixel_size``, ``unit``.
        """
        return {
            "frequencies": [float(f) for f in self.frequencies],
            "correlation": [float(c) if np.isfinite(c) else None for c in self.correlation],
            "n_samples": [int(n) for n in self.n_samples],
            "threshold": self.threshold,
            "resolution_px": self.resolution_px,
            "resolution": self.resolution,
            "pixel_size": self.pixel_size,
            "unit": self.unit,
        }


def frc(
    a: Any,
    b: Any,
    *,
    pixel_size: float | None = None,
    n_bins: int | None = None,
    threshold: float = 1 / 7,
    apodize: bool = True,
    unit: str | None = None,
) -> FRCResult:
    """Fourier ring correlation of two 2D images of the same field.

    Parameters
    ----------
    a, b : array-like
        Two 2D images of the same shape (numpy, dask or :class:`~decrappify.io.Image`),
        for example two acquisitions with independent noise, or a restoration and its
        ground truth.
    pixel_size : float, optional
        Physical pixel size; fills :attr:`FRCResult.resolution`.
    n_bins : int, optional
        Number of rings between 0 and 0.5 cycles/pixel. Default ``min(shape) // 2``: one
        ring per Fourier sample along the shorter side. Ring ``i`` (``1 <= i <= n_bins``)
        holds the coefficients with ``round(|k| / dk) == i``, ``dk = 0.5 / n_bins``; the
        DC term is left out.
    threshold : float
        Correlation threshold defining the resolution (1/7 ≈ 0.143 by default).
    apodize : bool
        Multiply each image by a Tukey window (alpha 0.25: cosine tapers over the outer
        eighth at each end of both axes) after removing its weighted mean, so that the
        image edges do not add spurious high-frequency correlation. Turn off only for
        periodic images.
    unit : str, optional
        Unit of ``pixel_size``, kept for reports.

    Returns
    -------
    FRCResult
        Curve, threshold and resolution.

    Raises
    ------
    InputError
        If the images are not 2D, differ in shape, are smaller than 16x16 or not finite,
        or a parameter is out of range.
    """
    a_p = _float_plane(a, "a")
    b_p = _float_plane(b, "b")
    if a_p.shape != b_p.shape:
        raise InputError(f"frc: image shapes differ, a {a_p.shape} and b {b_p.shape}")
    _check_frc_args(a_p.shape, MIN_FRC_SIDE, pixel_size=pixel_size, threshold=threshold)
    n_bins = _check_bins(n_bins, a_p.shape)
    fa = np.fft.rfft2(_prepare(a_p, apodize))
    fb = np.fft.rfft2(_prepare(b_p, apodize))
    sums = _ring_sums([(fa, fb)], a_p.shape, n_bins)
    return _result(*sums, threshold=threshold, pixel_size=pixel_size, unit=unit)


def frc_single(
    image: Any,
    *,
    pixel_size: float | None = None,
    n_bins: int | None = None,
    threshold: float = 1 / 7,
    apodize: bool = True,
    unit: str | None = None,
) -> FRCResult:
    """Single-image FRC from a checkerboard split of one raw acquisition.

    The image (cropped to even sides) is split into four half-size sub-images, one per
    pixel parity: ``A = x[0::2, 0::2]``, ``B = x[1::2, 1::2]``, ``C = x[0::2, 1::2]``,
    ``D = x[1::2, 0::2]``. With pixel-independent noise (shot and read noise of a raw
    camera image) the sub-images carry independent noise over the same structure.
    Two corrections turn the FRC of the pairs (A, B) and (C, D) into an estimate of the
    two-image FRC of the full image:

    1. **Sampling shift.** ``B`` samples the field half a sub-image pixel down and right of
       ``A`` (``C`` and ``D`` half a pixel apart along X and Y); this known shift is undone
       exactly by a Fourier phase ramp, so that it does not pull the correlation down.
    2. **Signal-to-noise.** A sub-image holds a quarter of the pixels: per Fourier
       coefficient its SNR is 4 times lower than the full image's. The pooled ring
       correlation ``c`` of the pairs is therefore mapped to ``4c / (1 + 3c)`` (the value
       for 4 times the SNR, since FRC = SNR / (1 + SNR)); negative values are kept as they
       are.

    Frequencies are reported in cycles per pixel of the full image and reach only 0.25
    (the sub-images' Nyquist frequency), so resolutions finer than 4 pixels cannot be
    measured this way. Only meaningful on raw acquisitions: on interpolated, filtered or
    network-restored images the noise of neighbouring pixels is correlated and the
    single-image FRC overestimates the resolution.

    Parameters
    ----------
    image : array-like
        One raw 2D image (numpy, dask or :class:`~decrappify.io.Image`), at least 32x32.
    pixel_size : float, optional
        Physical pixel size of ``image``; fills :attr:`FRCResult.resolution`.
    n_bins : int, optional
        Number of rings up to 0.25 cycles/pixel; default ``min(shape) // 4``.
    threshold : float
        Correlation threshold (applied to the corrected curve).
    apodize : bool
        Tukey-window each sub-image after removing its weighted mean.
    unit : str, optional
        Unit of ``pixel_size``.

    Returns
    -------
    FRCResult
        The corrected curve and the resolution in pixels of ``image``.
    """
    x = _float_plane(image, "image")
    _check_frc_args(x.shape, 2 * MIN_FRC_SIDE, pixel_size=pixel_size, threshold=threshold)
    x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
    subs = {
        "A": x[0::2, 0::2],
        "B": x[1::2, 1::2],
        "C": x[0::2, 1::2],
        "D": x[1::2, 0::2],
    }
    shape = subs["A"].shape
    n_bins = _check_bins(n_bins, shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    # Position of each sub-image's samples relative to A's grid, in sub-image pixels.
    offsets = {"A": (0.0, 0.0), "B": (0.5, 0.5), "C": (0.0, 0.5), "D": (0.5, 0.0)}
    spectra = {
        name: np.fft.rfft2(_prepare(sub, apodize))
        * np.exp(-2j * np.pi * (ky * offsets[name][0] + kx * offsets[name][1]))
        for name, sub in subs.items()
    }
    freqs, corr, counts = _ring_sums(
        [(spectra["A"], spectra["B"]), (spectra["C"], spectra["D"])], shape, n_bins
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = np.where(corr > 0, 4 * corr / (1 + 3 * corr), corr)
    # Sub-image frequencies are per 2 pixels of the full image.
    return _result(
        freqs / 2.0, corrected, counts, threshold=threshold, pixel_size=pixel_size, unit=unit
    )


def _float_plane(array: Any, name: str) -> np.ndarray:
    plane = as_plane(array, name).astype(np.float64)
    if not np.isfinite(plane).all():
        raise InputError(f"{name}: expected finite values, got NaN or Inf")
    return plane


def _check_frc_args(
    shape: tuple[int, ...], min_side: int, *, pixel_size: float | None, threshold: float
) -> None:
    if min(shape) < min_side:
        raise InputError(
            f"frc: images must be at least {min_side}x{min_side} pixels, got shape {shape}"
        )
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold: expected a value in (0, 1), got {threshold!r}")
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"pixel_size: expected a positive number, got {pixel_size!r}")


def _check_bins(n_bins: int | None, shape: tuple[int, ...]) -> int:
    if n_bins is None:
        return min(shape) // 2
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise InputError(f"n_bins: expected an integer >= 2, got {n_bins!r}")
    return int(n_bins)


def _prepare(x: np.ndarray, apodize: bool) -> np.ndarray:
    if not apodize:
        return x - x.mean()
    from scipy.signal.windows import tukey

    window = np.outer(tukey(x.shape[0], TUKEY_ALPHA), tukey(x.shape[1], TUKEY_ALPHA))
    mean = float((x * window).sum() / window.sum())
    return (x - mean) * window


def _ring_sums(
    pairs: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, ...], n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool the ring sums of pairs of half-plane (rfft2) spectra of one ``shape``."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    radius = np.sqrt(ky**2 + kx**2)
    ring = np.rint(radius / (0.5 / n_bins)).astype(np.int64)
    # Columns 1 .. ceil(W/2)-1 stand for two conjugate coefficients of the full spectrum.
    weight = np.full(kx.shape, 2.0)
    weight[0, 0] = 1.0
    if shape[1] % 2 == 0:
        weight[0, -1] = 1.0
    weight = np.broadcast_to(weight, radius.shape)
    keep = (ring >= 1) & (ring <= n_bins)
    idx = ring[keep]
    w = weight[keep]
    length = n_bins + 1
    counts = np.bincount(idx, weights=w, minlength=length)
    r_sum = np.bincount(idx, weights=w * radius[keep], minlength=length)
    num = np.zeros(length)
    den_a = np.zeros(length)
    den_b = np.zeros(length)
    for fa, fb in pairs:
        a, b = fa[keep], fb[keep]
        num += np.bincount(idx, weights=w * (a * b.conj()).real, minlength=length)
        den_a += np.bincount(idx, weights=w * np.abs(a) ** 2, minlength=length)
        den_b += np.bincount(idx, weights=w * np.abs(b) ** 2, minlength=length)
    filled = counts > 0
    filled[0] = False
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = num / np.sqrt(den_a * den_b)
    return r_sum[filled] / counts[filled], corr[filled], counts[filled].astype(np.int64)


def _result(
    freqs: np.ndarray,
    corr: np.ndarray,
    counts: np.ndarray,
    *,
    threshold: float,
    pixel_size: float | None,
    unit: str | None,
) -> FRCResult:
    crossing = first_crossing(freqs, corr, threshold)
    return FRCResult(
        frequencies=freqs,
        correlation=corr,
        n_samples=counts,
        threshold=float(threshold),
        resolution_px=None if crossing is None else 1.0 / crossing,
        pixel_size=None if pixel_size is None else float(pixel_size),
        unit=unit,
    )


def first_crossing(
    frequencies: np.ndarray, correlation: np.ndarray, threshold: float
) -> float | None:
    """Frequency where a correlation curve first falls below a threshold.

    Rings with an undefined (NaN) correlation are skipped. The crossing is linearly
    interpolated between the last ring at or above the threshold and the first ring
    below it; when the first ring is already below, its frequency is returned.

    Parameters
    ----------
    frequencies : numpy.ndarray
        Increasing ring frequencies.
    correlation : numpy.ndarray
        Correlation per ring.
    threshold : float
        The threshold.

    Returns
    -------
    float or None
        The crossing frequency (same units as ``frequencies``), or None when the curve
        stays at or above the threshold.
    """
    valid = np.isfinite(correlation)
    f = np.asarray(frequencies, dtype=np.float64)[valid]
    c = np.asarray(correlation, dtype=np.float64)[valid]
    below = np.flatnonzero(c < threshold)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(f[0])
    t = (c[i - 1] - threshold) / (c[i - 1] - c[i])
    return float(f[i - 1] + t * (f[i] - f[i - 1]))
