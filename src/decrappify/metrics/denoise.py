"""Classical denoising baselines, each with one strength parameter tuned on separate images.

What a restoration network trained on crappified data has to beat on real noisy frames:

* ``gaussian``: Gaussian smoothing, parameter ``sigma`` in pixels;
* ``nl-means``: scikit-image :func:`~skimage.restoration.denoise_nl_means` (5x5 patches,
  13x13 search window, fast mode) with ``h = param * sigma_est`` and ``sigma = sigma_est``,
  ``sigma_est`` from :func:`~skimage.restoration.estimate_sigma`;
* ``tv``: scikit-image :func:`~skimage.restoration.denoise_tv_chambolle`, parameter
  ``weight`` in normalised units;
* ``bm3d``: the ``bm3d`` package (optional extra ``decrappify[bm3d]``), ``sigma_psd =
  param * sigma_est``.

Each denoiser works on one 2D plane in normalised units (its 0.1 / 99.9 percentiles mapped
to 0 / 1) and maps the result back to the plane's units, so its parameter means the same
thing on an 8-bit and on a 16-bit image. A fair comparison chooses the parameter on images
that are not scored (:func:`tune_denoiser`, the "fitting" images), by the mean normalised
PSNR against their ground truth, and then applies it unchanged to the test images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.metrics.core import evaluate_pair
from decrappify.normalize import percentile_range

__all__ = [
    "DEFAULT_PARAMS",
    "DENOISERS",
    "PARAM_GRIDS",
    "PARAM_NAMES",
    "TuneResult",
    "bm3d_available",
    "central_window",
    "denoise",
    "tune_denoiser",
]

#: Denoisers and the name of their parameter.
PARAM_NAMES: dict[str, str] = {
    "gaussian": "sigma",
    "nl-means": "h",
    "tv": "weight",
    "bm3d": "sigma",
}
DENOISERS: tuple[str, ...] = tuple(PARAM_NAMES)

#: Parameters used when none is given nor tuned (moderate smoothing of a noisy frame).
DEFAULT_PARAMS: dict[str, float] = {"gaussian": 1.0, "nl-means": 0.8, "tv": 0.1, "bm3d": 1.0}

#: Candidate parameters searched by :func:`tune_denoiser`.
PARAM_GRIDS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0),
    "nl-means": (0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0),
    "tv": (0.02, 0.04, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6),
    "bm3d": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
}

#: Side of the central crop each tuning image contributes (bounds the search's cost).
TUNE_CROP = 256


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package imports."""
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def check_denoiser(name: str) -> str:
    """Validate a denoiser name.

    Parameters
    ----------
    name : str
        One of :data:`DENOISERS`.

    Returns
    -------
    str
        The name.

    Raises
    ------
    InputError
        For an unknown name, or ``bm3d`` when the package is not installed.
    """
    if name not in PARAM_NAMES:
        raise InputError(f"denoiser: expected one of {', '.join(DENOISERS)}, got {name!r}")
    if name == "bm3d" and not bm3d_available():
        raise InputError(
            "bm3d: the bm3d package is not installed; pip install 'decrappify[bm3d]' "
            "(or leave bm3d out of the baselines)"
        )
    return name


def _noise_sigma(x: np.ndarray) -> float:
    """Noise standard deviation of a normalised plane (wavelet MAD, scikit-image)."""
    from skimage.restoration import estimate_sigma

    return max(float(estimate_sigma(x)), 1e-6)


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma, mode="reflect")


def _nl_means(x: np.ndarray, h: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    sigma = _noise_sigma(x)
    return denoise_nl_means(
        x, h=h * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True
    )


def _tv(x: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(x, weight=weight)


def _bm3d(x: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return bm3d.bm3d(x, sigma_psd=sigma * _noise_sigma(x))


#: The denoisers, on a normalised plane and the parameter.
_METHODS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "gaussian": _gaussian,
    "nl-means": _nl_means,
    "tv": _tv,
    "bm3d": _bm3d,
}


def denoise(plane: Any, name: str, param: float | None = None) -> np.ndarray:
    """Denoise one 2D plane with a classical method.

    Parameters
    ----------
    plane : array-like
        2D image in any units (uint8, uint16, float).
    name : str
        One of :data:`DENOISERS`.
    param : float, optional
        The method's strength (:data:`PARAM_NAMES`); default :data:`DEFAULT_PARAMS`.

    Returns
    -------
    numpy.ndarray
        float32 plane in the input's units (not clipped).

    Raises
    ------
    InputError
        For a non-2D input, an unknown method or a parameter that is not positive.
    """
    check_denoiser(name)
    value = DEFAULT_PARAMS[name] if param is None else float(param)
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name}: {PARAM_NAMES[name]} must be > 0 (got {param!r})")
    x = np.asarray(plane, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"{name}: expected a 2D plane, got shape {x.shape}")
    lo, hi = percentile_range(x)
    out = _METHODS[name]((x - lo) / (hi - lo), value)
    return (np.asarray(out, dtype=np.float64) * (hi - lo) + lo).astype(np.float32)


@dataclass(frozen=True)
class TuneResult:
    """The parameter a denoiser was given by :func:`tune_denoiser`.

    Attributes
    ----------
    name : str
        The denoiser.
    param : float
        The chosen parameter (the best mean normalised PSNR on the tuning images).
    scores : dict of float to float
        Mean normalised PSNR (dB) per candidate parameter.
    n_images : int
        Tuning images used.
    """

    name: str
    param: float
    scores: dict[float, float] = field(default_factory=dict)
    n_images: int = 0

    @property
    def spec(self) -> str:
        """The baseline as ``evaluate --baselines`` writes it, e.g. ``"gaussian=1.25"``."""
        return f"{self.name}={self.param:g}"


def central_window(shape: Sequence[int], size: int) -> tuple[slice, slice]:
    """Y and X slices of the central ``size`` square (or less) of an image of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Shape whose last two axes are Y and X.
    size : int
        Side of the window.

    Returns
    -------
    tuple of slice
        The window (index the last two axes with it, e.g. lazily before reading).
    """
    h, w = shape[-2:]
    sy, sx = min(size, h), min(size, w)
    y0, x0 = (h - sy) // 2, (w - sx) // 2
    return slice(y0, y0 + sy), slice(x0, x0 + sx)


def tune_denoiser(
    name: str,
    noisy: Sequence[Any],
    clean: Sequence[Any],
    *,
    grid: Sequence[float] | None = None,
    crop: int | None = TUNE_CROP,
) -> TuneResult:
    """Choose a denoiser's parameter on fitting images (never the scored ones).

    Parameters
    ----------
    name : str
        One of :data:`DENOISERS`.
    noisy, clean : sequence of array-like
        2D noisy planes and their ground truths on the same grid, paired in order.
    grid : sequence of float, optional
        Candidate parameters (default :data:`PARAM_GRIDS`).
    crop : int or None
        Side of the central crop of each pair used (None: whole planes); the parameters
        are unit-free, so a crop of each image chooses them as well as the whole.

    Returns
    -------
    TuneResult
        The parameter with the best mean normalised PSNR, and every candidate's score.

    Raises
    ------
    InputError
        For an unknown method, no pairs, unpaired lists or mismatched shapes.
    """
    check_denoiser(name)
    if not noisy or len(noisy) != len(clean):
        raise InputError(
            f"tune {name}: expected the same positive number of noisy and clean images "
            f"(got {len(noisy)} and {len(clean)})"
        )
    pairs = []
    for i, (x, y) in enumerate(zip(noisy, clean, strict=True)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape != y.shape:
            raise InputError(
                f"tune {name}: pair {i} must be two 2D planes of one shape "
                f"(got {x.shape} and {y.shape})"
            )
        window = central_window(x.shape, crop) if crop else (slice(None), slice(None))
        pairs.append((x[window], y[window]))
    candidates = tuple(float(v) for v in (grid or PARAM_GRIDS[name]))
    scores = {
        value: float(
            np.mean([evaluate_pair(denoise(x, name, value), y)["psnr_norm"] for x, y in pairs])
        )
        for value in candidates
    }
    best = max(scores, key=lambda v: scores[v])
    return TuneResult(name=name, param=best, scores=scores, n_images=len(pairs))
