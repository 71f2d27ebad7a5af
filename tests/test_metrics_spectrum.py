"""Radial power spectra and the high-frequency power ratio of a prediction to its truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from decrappify.errors import InputError
from decrappify.metrics.spectrum import hf_band_start, high_frequency_power_ratio, radial_power


def test_band_starts_at_the_input_nyquist_frequency() -> None:
    assert hf_band_start(4) == 0.125 and hf_band_start(2) == 0.25 and hf_band_start(1) == 0.25


def test_white_noise_has_a_flat_radial_spectrum() -> None:
    noise = np.random.default_rng(0).standard_normal((256, 256))
    freqs, power = radial_power(noise)
    assert freqs[0] == pytest.approx(0.0, abs=1e-3) and freqs[-1] == pytest.approx(0.5, abs=0.01)
    inner = power[(freqs > 0.05) & (freqs < 0.45)]
    assert inner.std() / inner.mean() < 0.25


def test_ratio_is_one_for_the_truth_and_gain_free() -> None:
    gt = np.random.default_rng(1).random((96, 96))
    assert high_frequency_power_ratio(gt, gt) == pytest.approx(1.0)
    assert high_frequency_power_ratio(3 * gt + 7, gt) == pytest.approx(1.0)


def test_blur_lowers_and_added_noise_raises_the_ratio() -> None:
    rng = np.random.default_rng(2)
    gt = gaussian_filter(rng.random((128, 128)), 1.0)
    smooth = high_frequency_power_ratio(gaussian_filter(gt, 1.5), gt)
    noisy = high_frequency_power_ratio(gt + 0.05 * rng.standard_normal(gt.shape), gt)
    assert smooth < 0.2 and noisy > 1.3


def test_bad_inputs_are_refused() -> None:
    gt = np.zeros((32, 32))
    with pytest.raises(InputError, match="same shape"):
        high_frequency_power_ratio(np.zeros((16, 32)), gt)
    with pytest.raises(InputError, match="band: expected 0 < low < high <= 0.5"):
        high_frequency_power_ratio(gt, gt, band=(0.3, 0.2))
    assert np.isnan(high_frequency_power_ratio(gt, gt))
