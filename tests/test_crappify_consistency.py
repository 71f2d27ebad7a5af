"""Data consistency: the forward model, the noise model, the residual maps, tiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify import crappify_array, get_preset
from decrappify.crappify.consistency import (
    ConsistencyStats,
    calibrate,
    consistency_halo,
    data_consistency,
    forward_model,
    image_consistency,
    noise_sigma,
)
from decrappify.errors import InputError


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    """Smooth cells in normalised units, 256 x 256."""
    rng = np.random.default_rng(4)
    return (ndimage.gaussian_filter(rng.random((256, 256)), 6) * 12 - 5.5).clip(0, 1.2)


def noise_free(config: CrappifyConfig) -> CrappifyConfig:
    steps = [s for s in config.steps if s.kind in ("blur", "downsample")]
    return config.with_overrides(steps=[s.model_dump() for s in steps])


@pytest.mark.parametrize("preset", ["fluorescence", "em", "em-poisson"])
def test_residual_vanishes_for_the_hr_that_made_the_lr(hr, preset):
    config = get_preset(preset, scale=2)
    fixed = config.with_overrides(**{"blur.sigma": 1.5}) if preset != "em" else config
    lr, _ = crappify_array(hr, noise_free(fixed), seed=0)
    result = data_consistency(hr, lr, fixed)
    assert result.residual.shape == lr.shape == (128, 128)
    assert np.max(np.abs(result.residual)) < 1e-5
    assert result.score < 1e-3 and result.stats.flagged == 0


def test_pasted_structure_stands_out_of_real_noise(hr):
    config = get_preset("fluorescence", scale=2)
    lr, _ = crappify_array(hr, config, seed=3)  # noise at the sampled budget
    honest = data_consistency(hr, lr, config)
    # The noise model is right: pure noise gives a map of unit variance...
    assert 0.85 < honest.score < 1.15
    assert honest.stats.flagged_fraction < 0.002
    # ... once this image's level is calibrated within the preset's ranges.
    calibration = calibrate(hr, lr, config)
    assert calibration.gain == pytest.approx(1.0, abs=0.02)
    assert calibration.offset == pytest.approx(0.0, abs=0.01)
    assert 0.5 < calibration.noise_scale < 2.0
    # A global contrast change of the output is not a misfit; a prediction that kept the
    # noise leaves no residual and nothing to flag.
    contrast = data_consistency(hr * 1.5 + 0.1, lr, config)
    assert contrast.score == pytest.approx(honest.score, rel=0.01)
    noise_only = CrappifyConfig(scale=1, steps=[{"kind": "poisson", "photons": 30.0}])
    noisy, _ = crappify_array(hr, noise_only, seed=1)
    assert data_consistency(noisy, noisy, noise_only).score < 1e-3
    pasted = hr.copy()
    pasted[100:116, 60:76] += 0.6  # a bright 16x16 HR square the measurement does not show
    lied = data_consistency(pasted, lr, config)
    z = np.abs(lied.z)
    inside = z[50:58, 30:38]
    assert inside.mean() > 5.0 and inside.mean() > 8 * np.abs(honest.z).mean()
    assert lied.residual[50:58, 30:38].mean() < -0.2  # the prediction is brighter than the input
    flagged = np.argwhere(z > 4.0)
    near = (flagged[:, 0] >= 44) & (flagged[:, 0] < 64) & (flagged[:, 1] >= 24)
    near &= flagged[:, 1] < 44
    assert len(flagged) > 100 and near.mean() > 0.97  # the square, not the rest
    assert lied.score > 2 * honest.score


def test_noise_sigma_follows_the_crappifier(hr):
    config = CrappifyConfig(
        scale=1, steps=[{"kind": "poisson", "photons": 100.0}, {"kind": "read_noise", "sigma": 3}]
    )
    levels = np.array([0.0, 0.25, 1.0])
    expected = np.sqrt(levels / 100.0 + (3 / 100.0) ** 2)
    np.testing.assert_allclose(noise_sigma(levels, config, min_sigma=0), expected, rtol=1e-6)
    # Noise added before a 2x area downsampling is averaged over 4 pixels.
    before = CrappifyConfig(
        scale=2, steps=[{"kind": "gaussian_noise", "sigma": 0.1}, {"kind": "downsample"}]
    )
    np.testing.assert_allclose(noise_sigma(levels, before, min_sigma=0), 0.05, rtol=1e-6)
    # ...and measured: the crappifier's own noise has that standard deviation.
    flat = np.full((128, 128), 0.5, np.float32)
    lr, _ = crappify_array(flat, get_preset("fluorescence", scale=2), seed=1)
    predicted = noise_sigma(
        forward_model(flat, get_preset("fluorescence", scale=2)),
        get_preset("fluorescence", scale=2),
    )
    assert float(np.std(lr)) == pytest.approx(float(predicted.mean()), rel=0.5)
    assert noise_sigma(levels, noise_free(get_preset("em-poisson")), min_sigma=0.02).min() == (
        pytest.approx(0.02)
    )


def test_tiles_with_the_halo_give_the_whole_image_maps(hr):
    config = get_preset("fluorescence", scale=2).with_overrides(**{"blur.sigma": 1.5})
    lr, _ = crappify_array(hr, config, seed=7)
    level = calibrate(hr, lr, config)  # once per image, shared by its tiles
    whole = data_consistency(hr, lr, config, window=2.0, calibration=level)
    assert whole.score == pytest.approx(data_consistency(hr, lr, config).score, rel=1e-6)
    halo = consistency_halo(config, window=2.0)
    assert halo == 3 + 8  # ceil(6 HR px of blur radius / 2) + the window's radius
    stats = ConsistencyStats()
    for y0 in range(0, 128, 40):
        for x0 in range(0, 128, 48):
            y1, x1 = min(y0 + 40, 128), min(x0 + 48, 128)
            a, b = max(0, y0 - halo), max(0, x0 - halo)
            c, d = min(128, y1 + halo), min(128, x1 + halo)
            tile = data_consistency(
                hr[2 * a : 2 * c, 2 * b : 2 * d], lr[a:c, b:d], config, calibration=level
            )
            inner = (slice(y0 - a, y1 - a), slice(x0 - b, x1 - b))
            np.testing.assert_allclose(tile.z[inner], whole.z[y0:y1, x0:x1], atol=1e-5)
            stats = stats + ConsistencyStats.of(tile.z[inner])
    assert stats.count == 128 * 128
    assert stats.score == pytest.approx(whole.score, rel=1e-5)
    assert stats.flagged == whole.stats.flagged


def test_image_consistency_in_grey_levels_and_errors(hr):
    config = get_preset("fluorescence", scale=1)
    lr_n, _ = crappify_array(hr, config, seed=2)
    scale = 1000.0
    grey_lr, grey_pred = lr_n * scale + 100, hr * scale + 100
    direct = data_consistency(hr, lr_n, config)
    grey = image_consistency(grey_pred, grey_lr, config, lo_hi=(100.0, 100.0 + scale))
    np.testing.assert_allclose(grey.z, direct.z, atol=1e-3)
    assert np.isfinite(image_consistency(grey_pred, grey_lr, config).score)
    with pytest.raises(InputError, match=r"does not cover the input \(256, 256\) times the scale"):
        data_consistency(hr[:100], lr_n, config)
    with pytest.raises(InputError, match="expected 2D prediction and input"):
        data_consistency(hr[None], lr_n, config)


def test_calibration_of_a_large_region_fits_on_a_subsample_with_the_same_result(monkeypatch):
    from decrappify.crappify import consistency

    rng = np.random.default_rng(7)
    hr = (ndimage.gaussian_filter(rng.random((600, 600)), 6) * 12 - 5.5).clip(0, 1.2)
    config = get_preset("fluorescence", scale=1)
    lr, _ = crappify_array(hr * 0.8 + 0.05, config, seed=2)  # a contrast change to recover
    seen = []
    real_sigma = consistency.noise_sigma
    monkeypatch.setattr(
        consistency, "noise_sigma", lambda x, *a, **k: seen.append(x.size) or real_sigma(x, *a, **k)
    )
    sub = calibrate(hr, lr, config)
    assert set(seen) == {300 * 300}  # n = isqrt(600^2 // 256^2) = 2: every 2nd row and column
    monkeypatch.setattr(consistency, "FIT_PIXELS", 600 * 600)
    full = calibrate(hr, lr, config)
    assert sub.gain == pytest.approx(full.gain, rel=0.01) and sub.gain == pytest.approx(
        0.8, abs=0.02
    )
    assert sub.offset == pytest.approx(full.offset, abs=0.005)
    assert sub.noise_scale == pytest.approx(full.noise_scale, rel=0.02)
