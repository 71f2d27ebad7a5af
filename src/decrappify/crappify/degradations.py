"""Degradation models: pure functions ``f(img, *, rng, **params)`` on 2D float32 images.

Images are in *normalised units* (0 = background, 1 = bright signal level; see
:mod:`decrappify.normalize`). ``rng`` is a :class:`numpy.random.Generator` or a
:class:`~decrappify.crappify.fields.NoiseField` (position-deterministic noise for
chunked processing); deterministic degradations accept and ignore it. Every function
returns a new float32 array and leaves its input untouched. Borders are handled by
symmetric reflection (``scipy.ndimage`` mode ``"reflect"``).

Noise, optics and JPEG are here; downsampling is :mod:`decrappify.crappify.sampling`
(re-exported).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft
from scipy import ndimage, special

from decrappify.crappify._checks import as_image as _as_image
from decrappify.crappify._checks import check as _check
from decrappify.crappify.fields import RandomSource
from decrappify.crappify.sampling import (
    area_downsample,
    bilinear_downsample,
    bilinear_positions,
    bilinear_region,
    downsample,
)
from decrappify.errors import InputError

__all__ = [
    "FWHM_PER_SIGMA",
    "area_downsample",
    "bilinear_downsample",
    "bilinear_positions",
    "bilinear_region",
    "downsample",
    "fwhm_to_sigma",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg_compress",
    "jpeg_quantization_table",
    "local_variance_noise",
    "poisson_noise",
    "poisson_quantile",
    "read_noise",
    "salt_pepper",
    "sigma_to_fwhm",
    "widefield_psf_sigma",
]

#: Ratio of the full width at half maximum of a Gaussian to its standard deviation.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Gaussian kernels are cut at this many standard deviations (scipy's default).
TRUNCATE = 4.0
#: JPEG block size.
JPEG_BLOCK = 8
#: Standard JPEG luminance quantisation table (ITU-T T.81, Annex K, Table K.1).
JPEG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


# ----------------------------------------------------------------------------- noise


def gaussian_noise(img: Any, *, rng: RandomSource, sigma: float) -> np.ndarray:
    """Add Gaussian noise of one global standard deviation.

    Parameters
    ----------
    img : array_like
        2D image in normalised units.
    rng : numpy.random.Generator or NoiseField
        Source of randomness.
    sigma : float
        Standard deviation in normalised units (>= 0).

    Returns
    -------
    numpy.ndarray
        ``img + sigma * N(0, 1)``, float32.
    """
    x = _as_image(img, "gaussian_noise")
    _check("gaussian_noise", "sigma", sigma, sigma >= 0, ">= 0")
    z = rng.standard_normal(x.shape, dtype=np.float32)
    return x + np.float32(sigma) * z


def local_variance_noise(
    img: Any,
    *,
    rng: RandomSource,
    gain: float = 0.05,
    smooth_sigma: float = 3.0,
    min_variance: float = 1e-10,
) -> np.ndarray:
    """Add Gaussian noise whose variance follows a smoothed copy of the image (PSSR).

    ``variance = gain * max(G_s * img, 0) + min_variance`` where ``G_s`` is a Gaussian
    of standard deviation ``smooth_sigma`` pixels: the noise of
    ``skimage.util.random_noise(img, mode="localvar", local_vars=variance)``, without
    its clipping to [0, 1] (intensities are clipped once, when mapped back to the
    output dtype).

    Parameters
    ----------
    img : array_like
        2D image in normalised units.
    rng : numpy.random.Generator or NoiseField
        Source of randomness.
    gain : float
        Variance per unit of smoothed intensity (PSSR: 0.05 for EM, 0.5 for
        fluorescence).
    smooth_sigma : float
        Smoothing standard deviation in pixels (PSSR: 3 for EM, 5 for fluorescence).
    min_variance : float
        Variance floor (PSSR: 1e-10).

    Returns
    -------
    numpy.ndarray
        The noisy image, float32.
    """
    x = _as_image(img, "local_variance_noise")
    smooth = local_mean(x, smooth_sigma)
    return add_local_variance_noise(
        x, smooth, rng=rng, gain=gain, min_variance=min_variance, name="local_variance_noise"
    )


def local_mean(img: np.ndarray, smooth_sigma: float) -> np.ndarray:
    """Gaussian-smoothed copy used as the local intensity by :func:`local_variance_noise`.

    Parameters
    ----------
    img : numpy.ndarray
        2D float32 image.
    smooth_sigma : float
        Standard deviation in pixels (> 0).

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    _check("local_variance_noise", "smooth_sigma", smooth_sigma, smooth_sigma > 0, "> 0")
    return gaussian_blur(img, sigma=smooth_sigma)


def add_local_variance_noise(
    img: np.ndarray,
    smooth: np.ndarray,
    *,
    rng: RandomSource,
    gain: float,
    min_variance: float,
    name: str = "local_variance_noise",
) -> np.ndarray:
    """Add zero-mean Gaussian noise of variance ``gain * max(smooth, 0) + min_variance``.

    Parameters
    ----------
    img, smooth : numpy.ndarray
        The image and its local mean (same shape).
    rng : numpy.random.Generator or NoiseField
        Source of randomness.
    gain, min_variance : float
        See :func:`local_variance_noise`.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        The noisy image, float32.
    """
    _check(name, "gain", gain, gain >= 0, ">= 0")
    _check(name, "min_variance", min_variance, min_variance >= 0, ">= 0")
    variance = np.float32(gain) * np.maximum(smooth, np.float32(0)) + np.float32(min_variance)
    z = rng.standard_normal(img.shape, dtype=np.float32)
    return img + np.sqrt(variance) * z


def poisson_noise(
    img: Any, *, rng: RandomSource, photons: float, background: float = 0.0
) -> np.ndarray:
    """Photon shot noise at a photon budget.

    ``out = Poisson((max(img, 0) + background) * photons) / photons - background``: the
    bright level 1 collects ``photons`` photons per pixel on average, the background
    level 0 collects ``background * photons``, and negative values (below the
    background percentile) are treated as the background.

    Parameters
    ----------
    img : array_like
        2D image in normalised units.
    rng : numpy.random.Generator or NoiseField
        Source of randomness (one uniform number per pixel, inverted through the
        Poisson distribution function, so the count of a pixel depends only on its
        own random number).
    photons : float
        Photons per pixel at the bright level (> 0).
    background : float
        Photons at the background level as a fraction of ``photons`` (>= 0).

    Returns
    -------
    numpy.ndarray
        The noisy image, float32, with mean ``max(img, 0)`` and variance
        ``(max(img, 0) + background) / photons``.
    """
    x = _as_image(img, "poisson_noise")
    _check("poisson_noise", "photons", photons, photons > 0, "> 0")
    _check("poisson_noise", "background", background, background >= 0, ">= 0")
    lam = (np.maximum(x, 0).astype(np.float64) + background) * photons
    counts = poisson_quantile(rng.random(x.shape), lam)
    return (counts / photons - background).astype(np.float32)


def poisson_quantile(u: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Exact Poisson quantile function: the smallest ``k`` with ``P(X <= k) >= u``.

    A Cornish-Fisher guess is corrected step by step with the exact distribution
    function (``scipy.special.pdtr``), so the result is an exact Poisson draw when
    ``u`` is uniform, whatever ``lam``.

    Parameters
    ----------
    u : numpy.ndarray
        Probabilities in [0, 1).
    lam : numpy.ndarray
        Poisson means (>= 0), same shape as ``u``.

    Returns
    -------
    numpy.ndarray
        float64 counts.
    """
    u = np.asarray(u, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    z = special.ndtri(np.clip(u, 1e-300, 1.0 - 1e-16))
    k = np.floor(lam + np.sqrt(lam) * z + (z * z - 1.0) / 6.0 + 0.5)
    k = np.maximum(k, 0.0)
    k[lam == 0] = 0.0
    # Step up while P(X <= k) < u.
    idx = np.flatnonzero(special.pdtr(k, lam) < u)
    while idx.size:
        k.flat[idx] += 1.0
        idx = idx[special.pdtr(k.flat[idx], lam.flat[idx]) < u.flat[idx]]
    # Step down while P(X <= k - 1) >= u.
    idx = np.flatnonzero(k > 0)
    idx = idx[special.pdtr(k.flat[idx] - 1.0, lam.flat[idx]) >= u.flat[idx]]
    while idx.size:
        k.flat[idx] -= 1.0
        idx = idx[k.flat[idx] > 0]
        idx = idx[special.pdtr(k.flat[idx] - 1.0, lam.flat[idx]) >= u.flat[idx]]
    return k


def read_noise(
    img: Any, *, rng: RandomSource, sigma: float, photons: float, offset: float = 0.0
) -> np.ndarray:
    """Camera read noise and offset, given in photo-electrons.

    Parameters
    ----------
    img : array_like
        2D image in normalised units.
    rng : numpy.random.Generator or NoiseField
        Source of randomness.
    sigma : float
        Read noise in electrons rms (>= 0).
    photons : float
        Photon budget of the bright level (> 0), which converts electrons to
        normalised units.
    offset : float
        Constant offset in electrons.

    Returns
    -------
    numpy.ndarray
        ``img + (offset + sigma * N(0, 1)) / photons``, float32.
    """
    x = _as_image(img, "read_noise")
    _check("read_noise", "sigma", sigma, sigma >= 0, ">= 0")
    _check("read_noise", "photons", photons, photons > 0, "> 0")
    z = rng.standard_normal(x.shape, dtype=np.float32)
    return x + (np.float32(offset) + np.float32(sigma) * z) / np.float32(photons)


def salt_pepper(
    img: Any,
    *,
    rng: RandomSource,
    amount: float,
    salt_fraction: float = 0.5,
    salt: float = 1.0,
    pepper: float = 0.0,
) -> np.ndarray:
    """Replace a random fraction of pixels by a bright (salt) or dark (pepper) value.

    Parameters
    ----------
    img : array_like
        2D image in normalised units.
    rng : numpy.random.Generator or NoiseField
        Source of randomness (one uniform number per pixel).
    amount : float
        Fraction of pixels replaced, in [0, 1].
    salt_fraction : float
        Fraction of the replaced pixels that become ``salt``, in [0, 1].
    salt, pepper : float
        Replacement values in normalised units.

    Returns
    -------
    numpy.ndarray
        The image, float32.
    """
    x = _as_image(img, "salt_pepper")
    _check("salt_pepper", "amount", amount, 0 <= amount <= 1, "in [0, 1]")
    _check("salt_pepper", "salt_fraction", salt_fraction, 0 <= salt_fraction <= 1, "in [0, 1]")
    u = rng.random(x.shape)
    out = x.copy()
    salt_limit = amount * salt_fraction
    out[u < salt_limit] = salt
    out[(u >= salt_limit) & (u < amount)] = pepper
    return out


# ---------------------------------------------------------------------------- optics


def fwhm_to_sigma(fwhm: float) -> float:
    """Convert a Gaussian's full width at half maximum to its standard deviation.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum.

    Returns
    -------
    float
        ``fwhm / (2 sqrt(2 ln 2))`` (about ``fwhm / 2.355``).
    """
    return float(fwhm) / FWHM_PER_SIGMA


def sigma_to_fwhm(sigma: float) -> float:
    """Full width at half maximum of a Gaussian from its standard deviation.

    Parameters
    ----------
    sigma : float
        Standard deviation.

    Returns
    -------
    float
        ``2 sqrt(2 ln 2) sigma`` (about ``2.355 sigma``).
    """
    return float(sigma) * FWHM_PER_SIGMA


def widefield_psf_sigma(wavelength: float, na: float) -> float:
    """Return the standard deviation of the Gaussian that best fits a widefield PSF.

    Uses ``sigma = 0.21 * wavelength / na`` (Zhang, Zerubia & Olivo-Marin, Applied
    Optics 2007), in the unit of ``wavelength``.

    Parameters
    ----------
    wavelength : float
        Emission wavelength (for example 0.52 micrometer).
    na : float
        Numerical aperture of the objective (> 0).

    Returns
    -------
    float
        The lateral standard deviation, same unit as ``wavelength``.
    """
    if not (wavelength > 0 and na > 0):
        raise InputError(
            f"widefield_psf_sigma: wavelength and na must be > 0 (got {wavelength}, {na})"
        )
    return 0.21 * float(wavelength) / float(na)


def kernel_radius(sigma: float) -> int:
    """Half-width in pixels of the Gaussian kernel used for ``sigma`` (scipy's rule).

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels (0 means no blur).

    Returns
    -------
    int
        ``int(4 * sigma + 0.5)``.
    """
    return int(TRUNCATE * float(sigma) + 0.5)


def gaussian_blur(
    img: Any, *, rng: RandomSource | None = None, sigma: float | tuple[float, float]
) -> np.ndarray:
    """Blur with a Gaussian point-spread function.

    Parameters
    ----------
    img : array_like
        2D image.
    rng : ignored
        Accepted for a uniform signature.
    sigma : float or (float, float)
        Standard deviation in pixels, one value or one per axis (y, x); 0 leaves
        that axis untouched. Convert an FWHM with :func:`fwhm_to_sigma`.

    Returns
    -------
    numpy.ndarray
        The blurred image, float32 (mean preserved, borders reflected).
    """
    x = _as_image(img, "blur")
    sigmas = (sigma, sigma) if np.isscalar(sigma) else tuple(sigma)  # type: ignore[arg-type]
    if len(sigmas) != 2:
        raise InputError(f"blur: sigma must be one value or two (y, x) (got {sigma})")
    out = x.copy()
    for axis, s in enumerate(sigmas):
        _check("blur", "sigma", s, s >= 0 and math.isfinite(s), ">= 0")
        if kernel_radius(s) > 0:
            out = ndimage.gaussian_filter1d(out, float(s), axis=axis, mode="reflect")
    return out


# ------------------------------------------------------------------------------ JPEG


@lru_cache(maxsize=128)
def jpeg_quantization_table(quality: int) -> np.ndarray:
    """Luminance quantisation table scaled for a JPEG quality, as libjpeg does.

    Parameters
    ----------
    quality : int
        1 (coarsest) to 100 (finest).

    Returns
    -------
    numpy.ndarray
        8x8 float64 table; entries >= 1.
    """
    _check("jpeg", "quality", quality, 1 <= quality <= 100, "in [1, 100]")
    q = int(quality)
    scaling = 5000 / q if q < 50 else 200 - 2 * q
    table = np.floor((JPEG_LUMINANCE * scaling + 50) / 100)
    table = np.clip(table, 1, 255)
    table.setflags(write=False)
    return table


def jpeg_compress(
    img: Any, *, rng: RandomSource | None = None, quality: int = 75, levels: float = 255.0
) -> np.ndarray:
    """JPEG-like compression artefacts: quantised DCT of 8x8 blocks.

    The image is scaled so that 1.0 maps to ``levels`` grey levels (an 8-bit
    encoder's range), each 8x8 block (aligned with the array's first pixel; the last
    partial blocks are padded by edge replication, as encoders do) is transformed with
    an orthonormal 2D DCT-II, its coefficients rounded to multiples of the
    quality-scaled luminance table, and transformed back. Pixel values are not rounded
    or clipped, so the only loss is the one of the coefficient quantisation.

    Parameters
    ----------
    img : array_like
        2D image in normalised units.
    rng : ignored
        Accepted for a uniform signature.
    quality : int
        JPEG quality in [1, 100].
    levels : float
        Grey levels that the normalised range [0, 1] spans (> 0).

    Returns
    -------
    numpy.ndarray
        The compressed image, float32.
    """
    x = _as_image(img, "jpeg")
    _check("jpeg", "levels", levels, levels > 0, "> 0")
    table = jpeg_quantization_table(int(quality))
    h, w = x.shape
    b = JPEG_BLOCK
    ph, pw = -(-h // b) * b, -(-w // b) * b
    padded = np.pad(x.astype(np.float64) * levels, ((0, ph - h), (0, pw - w)), mode="edge")
    blocks = padded.reshape(ph // b, b, pw // b, b).transpose(0, 2, 1, 3)
    coeffs = scipy.fft.dctn(blocks - 0.5 * levels, type=2, axes=(2, 3), norm="ortho")
    coeffs = np.round(coeffs / table) * table
    restored = scipy.fft.idctn(coeffs, type=2, axes=(2, 3), norm="ortho") + 0.5 * levels
    out = restored.transpose(0, 2, 1, 3).reshape(ph, pw)[:h, :w] / levels
    return out.astype(np.float32)
