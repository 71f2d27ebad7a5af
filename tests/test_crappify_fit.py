"""fit_noise_model: recovers known Poisson-Gaussian parameters, blur and scale from pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify import crappify_array, fit_noise_model
from decrappify.crappify import degradations as deg
from decrappify.errors import InputError, OutputError
from decrappify.io.image import Image
from decrappify.normalize import normalize, percentile_range

GAIN, READ_NOISE, OFFSET = 2.0, 6.0, 100.0  # grey levels per photon, grey levels rms, grey levels


def photon_map(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Flat and smoothly varying regions from 0 to ~450 photons (a dark strip has none)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]] / np.array(shape).reshape(2, 1, 1)
    photons = 400.0 * xx**1.5 + 30.0 * yy
    photons += 50.0 * ndimage.gaussian_filter(rng.random(shape), 12) * (xx > 0.1)
    photons[:, : shape[1] // 10] = 0.0
    return photons


def camera(photons: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    adu = OFFSET + GAIN * rng.poisson(photons) + rng.normal(0.0, READ_NOISE, photons.shape)
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def lr_images() -> list[np.ndarray]:
    return [camera(photon_map((384, 384), seed), seed + 10) for seed in range(2)]


def test_fit_recovers_gain_read_noise_and_offset(lr_images):
    result = fit_noise_model(lr_images)
    assert result.gain == pytest.approx(GAIN, rel=0.05)
    assert result.read_noise == pytest.approx(READ_NOISE, rel=0.12)
    assert result.offset == pytest.approx(OFFSET, abs=1.0)
    assert result.offset_estimated
    assert result.r2 > 0.99
    assert result.n_patches > 2000
    assert result.read_noise_electrons == pytest.approx(READ_NOISE / GAIN, rel=0.15)
    lo, hi = percentile_range(np.concatenate([i.ravel() for i in lr_images]))
    assert result.photons == pytest.approx((result.hi - result.lo) / result.gain)
    assert result.lo == pytest.approx(lo, abs=3) and result.hi == pytest.approx(hi, rel=0.01)


def test_fit_with_known_offset(lr_images):
    brighter = [camera(photon_map((384, 384), 5) + 20.0, 7)]  # no photon-free area
    guessed = fit_noise_model(brighter)
    given = fit_noise_model(brighter, offset=OFFSET)
    assert not given.offset_estimated and given.offset == OFFSET
    assert given.read_noise == pytest.approx(READ_NOISE, rel=0.15)
    # Without the offset, the 20 background photons count as read noise.
    assert guessed.read_noise == pytest.approx(np.sqrt(READ_NOISE**2 + GAIN**2 * 20), rel=0.15)
    assert given.background == pytest.approx((given.lo - OFFSET) / (given.hi - given.lo), rel=1e-9)


def test_fitted_config_reproduces_the_noise(lr_images, tmp_path):
    result = fit_noise_model(lr_images)
    config = result.config
    assert config.name == "fitted" and config.scale == 1
    assert [s.kind for s in config.steps] == ["poisson", "read_noise"]  # same grid
    # Crappify the clean photon map normalised like the LR: noise matches the real LR.
    photons = photon_map((384, 384), 0)
    clean = normalize(OFFSET + GAIN * photons, result.lo, result.hi)
    lr, _ = crappify_array(clean, config, seed=1)
    noisy = normalize(lr_images[0].astype(np.float32), result.lo, result.hi)
    bright = np.s_[:, 300:]
    assert np.std(lr[bright] - clean[bright]) == pytest.approx(
        np.std(noisy[bright] - clean[bright]), rel=0.1
    )
    text = result.to_yaml(tmp_path / "fitted.yaml")
    assert text.startswith("# Noise model fitted on")
    assert CrappifyConfig.from_yaml(tmp_path / "fitted.yaml") == config
    assert not list(tmp_path.glob(".*partial"))


def test_images_with_different_budgets_give_a_photon_range(lr_images):
    # The same camera, but the second image three times dimmer: at its own bright level (the
    # normalised 1.0 that training uses) it collects a third of the photons.
    dim = camera(photon_map((384, 384), 3) / 3.0, 4)
    result = fit_noise_model([lr_images[0], dim])
    first, second = result.per_image
    assert first.gain == pytest.approx(GAIN, rel=0.08) and second.gain == pytest.approx(
        GAIN, rel=0.1
    )
    assert second.photons == pytest.approx(first.photons / 3.0, rel=0.2)
    assert first.photons == pytest.approx((first.hi - first.lo) / first.gain)
    poisson = result.config.steps[0]
    assert poisson.kind == "poisson"
    assert poisson.photons == pytest.approx((second.photons, first.photons), rel=1e-3)
    read = result.config.steps[1].sigma
    assert read[0] == pytest.approx(min(f.read_noise_electrons for f in result.per_image), rel=1e-3)
    assert "photon budgets differ" in result.report()
    assert "lr_images[1]: " in result.report()
    # Images of one budget keep a single value.
    same = fit_noise_model(lr_images)
    assert len(same.per_image) == 2 and isinstance(same.config.steps[0].photons, float)


def test_report_names_the_quantities(lr_images):
    report = fit_noise_model(lr_images[0]).report()
    assert "gain 2" in report and "read noise" in report and "photons at the bright level" in report
    assert "blur not estimated" in report


def test_signal_independent_noise_gives_gaussian_config():
    rng = np.random.default_rng(3)
    levels = np.repeat(np.linspace(500, 3000, 256)[None, :], 256, axis=0)
    image = (levels + rng.normal(0, 12.0, levels.shape)).astype(np.uint16)
    result = fit_noise_model(Image(image))
    assert result.gain == 0.0
    assert [s.kind for s in result.config.steps] == ["gaussian_noise"]
    assert result.read_noise == pytest.approx(12.0, rel=0.1)
    sigma = result.config.steps[0].sigma
    assert sigma == pytest.approx(result.read_noise / (result.hi - result.lo), rel=1e-3)


def test_fit_with_hr_estimates_scale_and_blur():
    rng = np.random.default_rng(8)
    hr = (ndimage.gaussian_filter(rng.random((1024, 1024)), 2.0) * 9000).astype(np.uint16)
    lo, hi = percentile_range(hr)
    lr_n = deg.area_downsample(deg.gaussian_blur(normalize(hr, lo, hi), sigma=2.0), 4)
    lr = camera(np.maximum(lr_n, 0) * 300 + 5, 1)
    result = fit_noise_model(lr, hr)
    assert result.scale == 4 and result.config.scale == 4
    assert result.blur_sigma == pytest.approx(2.0, rel=0.1)
    assert result.config.steps[0].kind == "blur"
    with pytest.raises(InputError, match="does not match the HR/LR shapes"):
        fit_noise_model(lr, hr, scale=2)
    with pytest.raises(InputError, match="is not an integer multiple of the LR shape"):
        fit_noise_model(lr, hr[:700])


def test_fit_input_errors(tmp_path):
    with pytest.raises(InputError, match="too few flat 8x8 patches"):
        fit_noise_model(np.zeros((16, 16), np.uint16))
    with pytest.raises(InputError, match=r"lr_images\[0\]: expected a 2D or 3D image"):
        fit_noise_model([np.zeros(5)])
    with pytest.raises(InputError, match="patch_size must be >= 4"):
        fit_noise_model(np.zeros((64, 64)), patch_size=2)
    result = fit_noise_model(camera(photon_map((256, 256), 1), 2))
    with pytest.raises(OutputError, match="folder .*missing does not exist"):
        result.to_yaml(tmp_path / "missing" / "fitted.yaml")
