"""Tests for decrappify.metrics.core: raw and normalised PSNR/SSIM, NRMSE, SI-PSNR, FRC."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from decrappify.errors import InputError
from decrappify.metrics.core import (
    METRIC_NAMES,
    affine_fit,
    default_data_range,
    evaluate_pair,
    gt_range,
    normalize_minmse,
    psnr,
    ssim,
)


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture
def pair(rng):
    """A smooth uint16 ground truth and a noisy, rescaled float32 prediction of it."""
    base = gaussian_filter(rng.random((96, 80)), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    gt = (200 + 3000 * base).astype(np.uint16)
    pred = (0.9 * gt + 50 + rng.normal(0, 60, gt.shape)).astype(np.float32)
    return pred, gt


def test_psnr_and_ssim_equal_scikit_image(rng):
    gt = rng.integers(0, 256, (64, 48)).astype(np.uint8)
    pred = np.clip(gt + rng.normal(0, 10, gt.shape), 0, 255).astype(np.uint8)
    assert psnr(pred, gt, data_range=255) == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=255), rel=1e-12
    )
    expected = structural_similarity(
        gt.astype(float),
        pred.astype(float),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(pred, gt, data_range=255) == pytest.approx(expected, rel=1e-12)


def test_psnr_of_a_constant_offset_is_exact():
    gt = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (30, 1))
    pred = gt + 5  # MSE = 25
    result = evaluate_pair(pred, gt)
    assert result["psnr"] == pytest.approx(10 * np.log10(255**2 / 25), rel=1e-12)
    # an offset is fully removed by the affine match
    assert result["psnr_norm"] > 200  # zero up to rounding
    assert result["nrmse"] < 1e-10
    assert result["ssim_norm"] == pytest.approx(1.0, abs=1e-12)


def test_evaluate_pair_raw_metrics_use_dtype_range(pair):
    pred, gt = pair
    result = evaluate_pair(pred, gt)
    assert set(result) == set(METRIC_NAMES)
    assert all(isinstance(v, float) for v in result.values())
    assert result["psnr"] == pytest.approx(
        peak_signal_noise_ratio(gt.astype(float), pred.astype(float), data_range=65535), rel=1e-12
    )
    assert result["ssim"] == pytest.approx(
        structural_similarity(
            gt.astype(float),
            pred.astype(float),
            data_range=65535,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        ),
        rel=1e-12,
    )
    explicit = evaluate_pair(pred, gt, data_range=4000.0)
    assert explicit["psnr"] == pytest.approx(
        peak_signal_noise_ratio(gt.astype(float), pred.astype(float), data_range=4000.0), rel=1e-12
    )


def test_default_data_range():
    assert default_data_range(np.zeros((4, 4), np.uint8)) == 255.0
    assert default_data_range(np.zeros((4, 4), np.uint16)) == 65535.0
    assert default_data_range(np.array([[0.5, 2.0], [1.0, -1.5]], np.float32)) == 3.5
    with pytest.raises(InputError, match=r"gt: float image is constant"):
        default_data_range(np.ones((4, 4), np.float32))


def test_normalised_metrics_match_their_definition(pair):
    pred, gt = pair
    result = evaluate_pair(pred, gt)
    g64 = gt.astype(np.float64)
    lo, hi = np.percentile(g64, [0.1, 99.9])
    g = (g64 - lo) / (hi - lo)
    x = pred.astype(np.float64)
    cov = np.cov(x.ravel(), g.ravel(), bias=True)
    p = cov[0, 1] / cov[0, 0] * (x - x.mean()) + g.mean()
    mse = np.mean((p - g) ** 2)
    assert result["psnr_norm"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)
    assert result["nrmse"] == pytest.approx(np.sqrt(mse), rel=1e-9)
    assert result["nrmse"] == pytest.approx(10 ** (-result["psnr_norm"] / 20), rel=1e-9)
    assert result["ssim_norm"] == pytest.approx(
        structural_similarity(
            g, p, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        ),
        rel=1e-9,
    )


def test_si_psnr_matches_careamics_definition(pair):
    pred, gt = pair
    g = gt.astype(np.float64)
    x = pred.astype(np.float64)
    # CAREamics / Noise2Void scale_invariant_psnr, written out independently
    range_parameter = (g.max() - g.min()) / g.std()
    g_ = (g - g.mean()) / g.std()
    x_ = x - x.mean()
    fitted = x_ * np.sum(g_ * x_) / np.sum(x_ * x_)
    expected = peak_signal_noise_ratio(g_, fitted, data_range=range_parameter)
    assert evaluate_pair(pred, gt)["si_psnr"] == pytest.approx(expected, rel=1e-9)


def test_normalised_metrics_are_invariant_to_an_affine_change_of_the_prediction(pair):
    pred, gt = pair
    before = evaluate_pair(pred, gt)
    after = evaluate_pair(pred.astype(np.float64) * 3 + 7, gt)
    for key in ("psnr_norm", "ssim_norm", "nrmse", "si_psnr"):
        assert after[key] == pytest.approx(before[key], rel=1e-9), key
    assert abs(after["psnr"] - before["psnr"]) > 10  # raw PSNR sees the change


def test_affine_fit_recovers_gain_and_offset_exactly(rng):
    x = rng.normal(10, 3, (40, 30))
    target = 2.5 * x - 3.0
    a, b = affine_fit(x, target)
    assert a == pytest.approx(2.5, rel=1e-12)
    assert b == pytest.approx(-3.0, rel=1e-12)
    np.testing.assert_allclose(normalize_minmse(x, target), target, rtol=0, atol=1e-11)
    # least squares: the residual is orthogonal to x and to the constant
    noisy = target + rng.normal(0, 1, x.shape)
    residual = normalize_minmse(x, noisy) - noisy
    assert abs(residual.mean()) < 1e-10
    assert abs(np.mean(residual * x)) < 1e-9


def test_affine_fit_of_a_constant_is_the_mean():
    assert affine_fit(np.full((5, 5), 3.0), np.arange(25.0).reshape(5, 5)) == (0.0, 12.0)


def test_perfect_prediction():
    gt = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    result = evaluate_pair(gt.copy(), gt)
    assert np.isinf(result["psnr"]) and np.isinf(result["psnr_norm"])
    assert np.isinf(result["si_psnr"])
    assert result["ssim"] == pytest.approx(1.0)
    assert result["nrmse"] == 0.0


def test_dask_and_image_inputs_give_the_same_numbers(pair):
    from decrappify.io.image import Image

    pred, gt = pair
    expected = evaluate_pair(pred, gt)
    lazy = evaluate_pair(da.from_array(pred, chunks=(32, 32)), Image(da.from_array(gt)))
    assert lazy == expected


def test_shape_mismatch_message():
    with pytest.raises(InputError) as err:
        evaluate_pair(np.zeros((512, 512)), np.zeros((510, 512)))
    assert str(err.value) == (
        "pred shape (512, 512) does not match gt shape (510, 512); pass --crop to "
        "compare the common region, or --resize to resample onto the gt grid"
    )


def test_crop_compares_the_top_left_common_region(pair):
    pred, gt = pair
    bigger = np.pad(pred, ((0, 7), (0, 3)), constant_values=-1000)
    assert evaluate_pair(bigger, gt, crop=True) == evaluate_pair(pred, gt)
    assert evaluate_pair(pred, gt[:90, :70], crop=True) == evaluate_pair(
        pred[:90, :70], gt[:90, :70]
    )


def test_resize_resamples_the_prediction_onto_the_gt_grid(rng):
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    gt = (1000 + 500 * np.sin(2 * np.pi * yy) * np.cos(2 * np.pi * xx)).astype(np.float32)
    yy2, xx2 = (np.mgrid[0:128, 0:128] + 0.5) / 128.0 - 0.5 / 64.0
    fine = (1000 + 500 * np.sin(2 * np.pi * yy2) * np.cos(2 * np.pi * xx2)).astype(np.float32)
    result = evaluate_pair(fine, gt, resize=True)
    assert result["psnr_norm"] > 35


@pytest.mark.parametrize(
    ("kwargs", "pred", "gt", "message"),
    [
        ({"crop": True, "resize": True}, (32, 32), (32, 32), "choose one way"),
        (
            {},
            (8, 32),
            (8, 32),
            r"gt: SSIM needs images of at least 11x11 pixels, got shape \(8, 32\)",
        ),
        (
            {},
            (4, 32, 32),
            (4, 32, 32),
            r"pred: expected a 2D \(YX\) image, got shape \(4, 32, 32\)",
        ),
        ({"norm_low": 50, "norm_high": 10}, (32, 32), (32, 32), "norm_low/norm_high"),
        ({"data_range": 0}, (32, 32), (32, 32), "data_range: expected a positive number, got 0"),
    ],
)
def test_bad_arguments(rng, kwargs, pred, gt, message):
    with pytest.raises(InputError, match=message):
        evaluate_pair(rng.random(pred), rng.random(gt), **kwargs)


def test_non_finite_and_constant_inputs_are_refused(rng):
    gt = rng.random((32, 32))
    bad = gt.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="pred: expected finite values, got NaN or Inf"):
        evaluate_pair(bad, gt)
    with pytest.raises(InputError, match=r"gt: image is constant \(value 7.0\)"):
        evaluate_pair(gt, np.full((32, 32), 7, np.uint8))


def test_gt_range_uses_the_shared_percentile_definition(rng):
    gt = rng.normal(100, 10, (50, 50))
    lo, hi = gt_range(gt, 1.0, 99.0)
    np.testing.assert_allclose([lo, hi], np.percentile(gt, [1.0, 99.0]), rtol=1e-12)
    # mostly-background images fall back to min/max instead of failing
    sparse = np.zeros((50, 50))
    sparse[10, 10] = 5.0
    assert gt_range(sparse) == (0.0, 5.0)


def test_a_lazy_stack_is_refused_before_it_is_computed():
    class Unreadable:
        shape = (50, 64, 64)
        dtype = np.dtype(np.uint16)
        ndim = 3

        def __getitem__(self, key):
            raise AssertionError("the stack was read")

    lazy = da.from_array(Unreadable(), chunks=(1, 64, 64), meta=np.empty((0, 0, 0), np.uint16))
    with pytest.raises(
        InputError, match=r"gt: expected a 2D \(YX\) image, got shape \(50, 64, 64\)"
    ):
        evaluate_pair(np.zeros((64, 64)), lazy)


def test_frc_resolution_is_reported_in_ground_truth_pixels(rng):
    from decrappify.metrics.frc import frc

    gt = gaussian_filter(rng.random((128, 128)), 1.0)
    noisy = gt + rng.normal(0, 0.02, gt.shape)
    noisier = gt + rng.normal(0, 0.1, gt.shape)
    fine, coarse = evaluate_pair(noisy, gt)["frc_px"], evaluate_pair(noisier, gt)["frc_px"]
    assert fine == pytest.approx(frc(noisy, gt).resolution_px, rel=1e-12)
    assert 2.0 < fine < coarse  # noise drowns the finest detail first
    # a perfect prediction correlates up to the last ring: the Nyquist limit, about 2 px
    assert evaluate_pair(gt.copy(), gt)["frc_px"] == pytest.approx(2.0, abs=0.05)
    # no rings to correlate: a flat prediction, or an image too small for FRC
    assert np.isnan(evaluate_pair(np.zeros_like(gt), gt)["frc_px"])
    small = evaluate_pair(noisy[:12, :12], gt[:12, :12])
    assert np.isnan(small["frc_px"]) and np.isfinite(small["ssim"])
