"""Image-quality metrics for one 2D pair: raw and normalised PSNR / SSIM, NRMSE, SI-PSNR, FRC.

Two families of numbers are computed, because they answer different questions:

* **Raw** metrics (``psnr``, ``ssim``) compare the prediction with the ground truth in
  their stored intensity units, with an explicit data range. They tell whether the
  restoration reproduces the absolute intensities.
* **Normalised** metrics (``psnr_norm``, ``ssim_norm``, ``nrmse``, ``si_psnr``) follow the
  convention of CARE / CSBDeep and PSSR: the ground truth is percentile-normalised
  (0.1 / 99.9 by default) and the prediction is mapped onto it by the least-squares affine
  fit ``a * pred + b`` (:func:`normalize_minmse`). They are blind to a global gain and
  offset and measure the structure only, which is how restorations are compared in the
  literature.

The FRC resolution (``frc_px``, see :mod:`decrappify.metrics.frc`) says up to which
spatial frequency the prediction agrees with the ground truth, in ground-truth pixels.

Everything is computed in float64 on one plane at a time; nothing here imports torch,
and scikit-image is imported inside the functions that use it (``import decrappify.metrics``
stays cheap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.metrics.frc import MIN_FRC_SIDE, frc
from decrappify.metrics.planes import as_plane, resize_plane
from decrappify.normalize import percentile_range

#: Keys of the dictionary returned by :func:`evaluate_pair`, in reporting order.
METRIC_NAMES: tuple[str, ...] = (
    "psnr",
    "ssim",
    "nrmse",
    "psnr_norm",
    "ssim_norm",
    "si_psnr",
    "frc_px",
)

#: SSIM settings of Wang et al. (2004): 11x11 Gaussian window (sigma 1.5), population
#: covariances.
SSIM_SIGMA = 1.5
#: Smallest side an image may have for SSIM with the Gaussian window (11 pixels).
MIN_SIDE = 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1


def default_data_range(gt: np.ndarray) -> float:
    """Return the data range used by the raw metrics when none is given.

    Parameters
    ----------
    gt : numpy.ndarray
        The ground truth.

    Returns
    -------
    float
        The dtype range for integer ground truth (255 for uint8, 65535 for uint16), and
        ``max - min`` of the values for floating-point ground truth.

    Raises
    ------
    InputError
        If a floating-point ground truth is constant (the range would be zero).
    """
    if np.issubdtype(gt.dtype, np.integer):
        info = np.iinfo(gt.dtype)
        return float(info.max) - float(info.min)
    if np.issubdtype(gt.dtype, np.bool_):
        return 1.0
    value = float(np.max(gt)) - float(np.min(gt))
    if not value > 0:
        raise InputError(
            f"gt: float image is constant (value {float(np.min(gt))!r}); pass data_range explicitly"
        )
    return value


def gt_range(
    gt: np.ndarray, low: float = 0.1, high: float = 99.9, *, name: str = "gt"
) -> tuple[float, float]:
    """Percentile range of a ground-truth plane, the ``lo, hi`` of the normalised metrics.

    Uses :func:`decrappify.normalize.percentile_range`, the same definition as the
    normalisation of training data (exact percentiles up to 2**22 values, a deterministic
    strided sample beyond; the minimum and maximum when the two percentiles coincide).

    Parameters
    ----------
    gt : numpy.ndarray
        The ground truth.
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    name : str
        What to call the array in error messages.

    Returns
    -------
    (float, float)
        ``(lo, hi)`` with ``hi > lo``.

    Raises
    ------
    InputError
        If the percentiles are out of order, or the image is constant (normalised metrics
        are undefined: any prediction would be matched to it perfectly).
    """
    check_percentiles(low, high)
    if gt.size == 0 or float(np.min(gt)) == float(np.max(gt)):
        value = float(gt.flat[0]) if gt.size else float("nan")
        raise InputError(
            f"{name}: image is constant (value {value!r}), it has no contrast to compare "
            "against; metrics are undefined"
        )
    return percentile_range(gt, low, high)


def check_percentiles(low: float, high: float) -> None:
    """Validate a pair of normalisation percentiles.

    Parameters
    ----------
    low, high : float
        Percentiles, expected ``0 <= low < high <= 100``.

    Raises
    ------
    InputError
        If they are out of range or out of order.
    """
    if not (0.0 <= low < high <= 100.0):
        raise InputError(
            f"norm_low/norm_high: expected 0 <= norm_low < norm_high <= 100, got {low!r}, {high!r}"
        )


def affine_fit(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares gain and offset mapping ``x`` onto ``target``.

    Finds ``a, b`` minimising ``sum((a * x + b - target) ** 2)``: ``a = cov(x, t) /
    var(x)``, ``b = mean(t) - a * mean(x)`` (population moments, in float64). A constant
    ``x`` gives ``a = 0, b = mean(target)``.

    Parameters
    ----------
    x : numpy.ndarray
        Values to map (the prediction).
    target : numpy.ndarray
        Values to match (the ground truth), same shape.

    Returns
    -------
    (float, float)
        Gain ``a`` and offset ``b``.
    """
    xf = np.asarray(x, dtype=np.float64).ravel()
    tf = np.asarray(target, dtype=np.float64).ravel()
    x_mean = xf.mean()
    t_mean = tf.mean()
    xc = xf - x_mean
    var = float(np.dot(xc, xc))
    if var == 0.0:
        return 0.0, float(t_mean)
    a = float(np.dot(xc, tf - t_mean)) / var
    return a, float(t_mean - a * x_mean)


def normalize_minmse(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Affinely rescale ``x`` to minimise the mean squared error to ``target``.

    The CSBDeep ``normalize_minmse`` convention used to compare restorations: the
    prediction is given the most favourable global gain and offset before it is scored.

    Parameters
    ----------
    x : numpy.ndarray
        Values to map (the prediction).
    target : numpy.ndarray
        Values to match (usually the percentile-normalised ground truth).

    Returns
    -------
    numpy.ndarray
        ``a * x + b`` in float64 (see :func:`affine_fit`).
    """
    a, b = affine_fit(x, target)
    return a * np.asarray(x, dtype=np.float64) + b


def psnr(pred: np.ndarray, gt: np.ndarray, *, data_range: float) -> float:
    """Peak signal-to-noise ratio, ``10 log10(data_range**2 / MSE)`` in dB.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Prediction and ground truth, same shape.
    data_range : float
        The peak-to-peak range of the signal (explicit, never guessed here).

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the images are identical.
    """
    from skimage.metrics import peak_signal_noise_ratio

    gt64 = np.asarray(gt, dtype=np.float64)
    pred64 = np.asarray(pred, dtype=np.float64)
    if np.array_equal(gt64, pred64):
        return float("inf")
    return float(peak_signal_noise_ratio(gt64, pred64, data_range=data_range))


def ssim(pred: np.ndarray, gt: np.ndarray, *, data_range: float) -> float:
    """Mean structural similarity with the settings of Wang et al. (2004).

    Gaussian window with sigma 1.5 (11x11), population covariances
    (``use_sample_covariance=False``), ``K1 = 0.01``, ``K2 = 0.03``; a border of 5
    pixels is left out of the mean (scikit-image behaviour).

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Prediction and ground truth, same 2D shape, at least 11x11.
    data_range : float
        The peak-to-peak range of the signal, used for the stabilising constants.

    Returns
    -------
    float
        Mean SSIM in [-1, 1].
    """
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            np.asarray(gt, dtype=np.float64),
            np.asarray(pred, dtype=np.float64),
            data_range=data_range,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
        )
    )


def _check_finite(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"{name}: expected finite values, got NaN or Inf")


def shape_mismatch_message(name: str, shape: tuple[int, ...], gt_shape: tuple[int, ...]) -> str:
    """Message for arrays that do not lie on the ground-truth grid.

    Parameters
    ----------
    name : str
        The mismatched array (``"pred"``, ``"bicubic baseline"`` ...).
    shape, gt_shape : tuple of int
        Its shape and the ground truth's.

    Returns
    -------
    str
        One line naming both shapes and the two ways out.
    """
    return (
        f"{name} shape {tuple(shape)} does not match gt shape {tuple(gt_shape)}; pass "
        "--crop to compare the common region, or --resize to resample onto the gt grid"
    )


def check_alignment(crop: bool, resize: bool) -> None:
    """Refuse asking for both ways of reconciling grids.

    Parameters
    ----------
    crop, resize : bool
        The two options of :func:`evaluate_pair` / ``evaluate_stack``.

    Raises
    ------
    InputError
        If both are set.
    """
    if crop and resize:
        raise InputError("crop/resize: choose one way to reconcile the grids, got both")


def evaluate_pair(
    pred: Any,
    gt: Any,
    *,
    data_range: float | None = None,
    norm_low: float = 0.1,
    norm_high: float = 99.9,
    crop: bool = False,
    resize: bool = False,
) -> dict[str, float]:
    """All metrics of a 2D prediction against its 2D ground truth.

    Parameters
    ----------
    pred : array-like
        The restored image (numpy or dask, any real dtype), on the ground-truth grid.
    gt : array-like
        The ground truth, same shape.
    data_range : float, optional
        Range for the raw ``psnr`` / ``ssim``. Default: the dtype range of ``gt`` for
        integer ground truth (255 / 65535), ``max - min`` of ``gt`` for float ground truth.
    norm_low, norm_high : float
        Percentiles of ``gt`` mapped to 0 and 1 for the normalised metrics.
    crop : bool
        When the shapes differ, compare the common region anchored at the top-left
        pixel (index 0 on both axes) of both images.
    resize : bool
        When the shapes differ, resample ``pred`` onto the ``gt`` grid (same field of
        view) by bicubic interpolation (:func:`~decrappify.metrics.planes.resize_plane`).

    Returns
    -------
    dict of str to float
        With ``lo, hi`` the ``gt`` percentiles, ``g = (gt - lo) / (hi - lo)`` and
        ``p = normalize_minmse(pred, g)``:

        - ``psnr``: ``10 log10(data_range**2 / mean((pred - gt)**2))``, raw values.
        - ``ssim``: SSIM of the raw values with ``data_range``.
        - ``nrmse``: ``sqrt(mean((p - g)**2))``, the error after the affine match in units
          of the ground truth's percentile range (``= 10**(-psnr_norm / 20)``).
        - ``psnr_norm``: ``10 log10(1 / mean((p - g)**2))``, PSNR of the normalised pair
          with data range 1.
        - ``ssim_norm``: SSIM of ``p`` against ``g`` with data range 1.
        - ``si_psnr``: scale-invariant PSNR, ``10 log10((max(gt) - min(gt))**2 /
          mean((a * pred + b - gt)**2))`` with ``a, b`` the least-squares fit onto the raw
          ground truth; the same as CAREamics / Noise2Void ``scale_invariant_psnr``.
        - ``frc_px``: FRC resolution of ``pred`` against ``gt`` in pixels
          (:func:`~decrappify.metrics.frc.frc_resolution_px`; smaller is better).

        PSNR values are ``inf`` for a perfect match.

    Raises
    ------
    InputError
        If the images are not 2D, differ in shape (without ``crop`` / ``resize``), are
        smaller than 11x11, contain NaN/Inf, or the ground truth is constant.
    """
    check_alignment(crop, resize)
    pred_a = as_plane(pred, "pred")
    gt_a = as_plane(gt, "gt")
    if pred_a.shape != gt_a.shape:
        if crop:
            common = (min(pred_a.shape[0], gt_a.shape[0]), min(pred_a.shape[1], gt_a.shape[1]))
            pred_a = pred_a[: common[0], : common[1]]
            gt_a = gt_a[: common[0], : common[1]]
        elif resize:
            pred_a = resize_plane(pred_a, gt_a.shape, 3)
        else:
            raise InputError(shape_mismatch_message("pred", pred_a.shape, gt_a.shape))
    if min(gt_a.shape) < MIN_SIDE:
        raise InputError(
            f"gt: SSIM needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, "
            f"got shape {gt_a.shape}"
        )
    _check_finite(pred_a, "pred")
    _check_finite(gt_a, "gt")
    norm_range = gt_range(gt_a, norm_low, norm_high)
    if data_range is None:
        data_range = default_data_range(gt_a)
    elif not (np.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range: expected a positive number, got {data_range!r}")
    return _evaluate_checked(
        pred_a.astype(np.float64),
        gt_a.astype(np.float64),
        data_range=float(data_range),
        norm_range=norm_range,
    )


def _evaluate_checked(
    pred: np.ndarray, gt: np.ndarray, *, data_range: float, norm_range: tuple[float, float]
) -> dict[str, float]:
    lo, hi = norm_range
    gt_n = (gt - lo) / (hi - lo)
    pred_n = normalize_minmse(pred, gt_n)
    mse_n = float(np.mean((pred_n - gt_n) ** 2))
    mse_fit = float(np.mean((normalize_minmse(pred, gt) - gt) ** 2))
    return {
        "psnr": psnr(pred, gt, data_range=data_range),
        "ssim": ssim(pred, gt, data_range=data_range),
        "nrmse": float(np.sqrt(mse_n)),
        "psnr_norm": _psnr_from_mse(mse_n, 1.0),
        "ssim_norm": ssim(pred_n, gt_n, data_range=1.0),
        "si_psnr": _psnr_from_mse(mse_fit, float(gt.max() - gt.min())),
        "frc_px": frc_resolution_px(pred, gt),
    }


def frc_resolution_px(pred: np.ndarray, gt: np.ndarray) -> float:
    """FRC resolution of a restoration against its ground truth, in pixels, for reports.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Two 2D images of the same shape.

    Returns
    -------
    float
        ``1 / f`` with ``f`` the frequency (cycles/pixel) where the Fourier ring
        correlation first falls below 1/7. When it never does, the period of the highest
        ring (about 2 pixels, the Nyquist limit): the resolution is at least that fine.
        NaN for a flat image and for images smaller than the 16x16 pixels FRC needs.
    """
    if min(gt.shape) < MIN_FRC_SIDE:
        return float("nan")
    curve = frc(pred, gt)
    if not np.isfinite(curve.correlation).any():  # a flat image has no rings to correlate
        return float("nan")
    if curve.resolution_px is not None:
        return float(curve.resolution_px)
    return float(1.0 / curve.frequencies[-1])


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse <= 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))
