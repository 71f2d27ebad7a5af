"""Tests for decrappify.metrics.frc: Fourier ring correlation, two-image and single-image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from decrappify.errors import InputError
from decrappify.metrics.frc import FRCResult, first_crossing, frc, frc_single


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def structure(rng, shape, sigma):
    """Random structure band-limited by a Gaussian blur, scaled to [0, 1]."""
    x = gaussian_filter(rng.random(shape), sigma)
    return (x - x.min()) / (x.max() - x.min())


def test_frc_of_an_image_with_itself_is_one_everywhere(rng):
    a = rng.random((64, 64))
    result = frc(a, a)
    assert isinstance(result, FRCResult)
    assert len(result.frequencies) == 32
    np.testing.assert_allclose(result.correlation, 1.0, atol=1e-12)
    assert result.resolution_px is None
    assert result.crossing_frequency is None
    assert result.resolution is None


def test_frc_of_independent_noise_is_near_zero(rng):
    result = frc(rng.random((128, 128)), rng.random((128, 128)))
    assert abs(np.mean(result.correlation)) < 0.1
    # each ring fluctuates by about 1/sqrt(n): nearly all stay within 4 standard errors
    within = np.abs(result.correlation) < 4 / np.sqrt(result.n_samples)
    assert within.mean() > 0.95


def test_resolution_gets_worse_as_the_blur_grows(rng):
    shape = (128, 128)
    resolutions = []
    for sigma in (1.0, 2.0, 4.0):
        s = structure(rng, shape, sigma)
        a = s + rng.normal(0, 0.1, shape)
        b = s + rng.normal(0, 0.1, shape)
        resolutions.append(frc(a, b).resolution_px)
    assert all(r is not None for r in resolutions)
    assert resolutions[0] < resolutions[1] < resolutions[2]
    # a Gaussian blur of sigma s leaves little signal beyond ~1/(2 pi s / 2.5) cycles/px
    assert 2.0 < resolutions[0] < 8.0
    assert resolutions[2] > 1.5 * resolutions[1]


def test_rings_and_physical_resolution(rng):
    shape = (96, 128)  # non-square: rings are circles in frequency, spacing of the short side
    s = structure(rng, shape, 2.0)
    a = s + rng.normal(0, 0.1, shape)
    b = s + rng.normal(0, 0.1, shape)
    result = frc(a, b, pixel_size=0.065, unit="micrometer", n_bins=24)
    assert len(result.frequencies) == 24
    assert np.all(np.diff(result.frequencies) > 0)
    assert 0 < result.frequencies[0] and result.frequencies[-1] <= 0.5 + 1 / 96
    np.testing.assert_allclose(result.frequencies, np.arange(1, 25) * 0.5 / 24, atol=0.25 / 24)
    assert result.threshold == pytest.approx(1 / 7)
    assert result.resolution_px is not None
    assert result.resolution == pytest.approx(result.resolution_px * 0.065)
    assert result.crossing_frequency == pytest.approx(1 / result.resolution_px)
    # the crossing lies between the last ring above and the first ring below the threshold
    i = int(np.flatnonzero(result.correlation < result.threshold)[0])
    assert result.frequencies[i - 1] <= result.crossing_frequency <= result.frequencies[i]
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["unit"] == "micrometer" and len(doc["correlation"]) == 24


def test_a_higher_threshold_crosses_earlier(rng):
    s = structure(rng, (96, 96), 2.0)
    a, b = s + rng.normal(0, 0.1, s.shape), s + rng.normal(0, 0.1, s.shape)
    assert frc(a, b, threshold=0.5).resolution_px > frc(a, b).resolution_px


def test_apodization_removes_edge_correlation(rng):
    # independent noise on top of a strong ramp: the image edges (a discontinuity of the
    # periodic image) correlate at all frequencies unless the images are apodised
    ramp = np.tile(np.linspace(0, 10, 96), (96, 1))
    a = ramp + rng.normal(0, 0.5, ramp.shape)
    b = ramp + rng.normal(0, 0.5, ramp.shape)
    high = slice(24, None)
    assert np.mean(frc(a, b, apodize=False).correlation[high]) > 0.3
    assert abs(np.mean(frc(a, b).correlation[high])) < 0.1


def test_first_crossing_interpolates_linearly():
    f = np.array([0.1, 0.2, 0.3, 0.4])
    assert first_crossing(f, np.array([0.9, 0.5, 0.1, 0.0]), 0.3) == pytest.approx(0.25)
    assert first_crossing(f, np.array([0.1, 0.5, 0.1, 0.0]), 0.3) == pytest.approx(0.1)
    assert first_crossing(f, np.array([0.9, 0.8, 0.7, 0.6]), 0.3) is None
    # undefined rings are skipped
    assert first_crossing(f, np.array([0.9, np.nan, 0.1, 0.0]), 0.5) == pytest.approx(0.2)


def test_single_image_frc_agrees_with_two_independent_acquisitions(rng):
    lam = 2 + 100 * structure(rng, (256, 256), 2.5)
    a = rng.poisson(lam).astype(np.float64)
    b = rng.poisson(lam).astype(np.float64)
    two = frc(a, b)
    one = frc_single(a, pixel_size=0.1)
    assert one.frequencies.max() <= 0.25
    assert two.resolution_px is not None and one.resolution_px is not None
    # over 40 seeds the ratio stays within 0.92-1.14
    assert one.resolution_px == pytest.approx(two.resolution_px, rel=0.15)
    assert one.resolution == pytest.approx(one.resolution_px * 0.1)


def test_single_image_frc_of_pure_noise_finds_no_structure(rng):
    result = frc_single(rng.poisson(50, (128, 128)).astype(float))
    # the curve drops below the threshold within the first few rings
    assert result.resolution_px > 16


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: frc(r.random((32, 32)), r.random((32, 30))), r"image shapes differ"),
        (lambda r: frc(r.random((8, 32)), r.random((8, 32))), r"at least 16x16 pixels"),
        (lambda r: frc_single(r.random((24, 64))), r"at least 32x32 pixels"),
        (lambda r: frc(r.random((32, 32)), r.random((32, 32)), threshold=1.5), "threshold"),
        (lambda r: frc(r.random((32, 32)), r.random((32, 32)), n_bins=1), "n_bins"),
        (lambda r: frc(r.random((32, 32)), r.random((32, 32)), pixel_size=-1.0), "pixel_size"),
        (lambda r: frc(np.full((32, 32), np.inf), r.random((32, 32))), "a: expected finite"),
    ],
)
def test_bad_inputs(rng, call, message):
    with pytest.raises(InputError, match=message):
        call(rng)
