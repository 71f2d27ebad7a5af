"""Statistics of each degradation model, determinism and the position-deterministic noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from decrappify.crappify import degradations as deg
from decrappify.crappify.fields import NoiseField
from decrappify.errors import InputError


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


def flat(value: float, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


# ------------------------------------------------------------------------------ noise


def test_gaussian_noise_has_the_requested_sigma(rng):
    x = flat(0.3)
    out = deg.gaussian_noise(x, rng=rng, sigma=0.08)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.mean(out - x) == pytest.approx(0.0, abs=0.002)
    assert np.std(out - x) == pytest.approx(0.08, rel=0.02)
    np.testing.assert_array_equal(x, np.float32(0.3))  # input untouched


def test_local_variance_noise_variance_follows_smoothed_image(rng):
    x = np.full((256, 512), 0.2, dtype=np.float32)
    x[:, 256:] = 0.8
    out = deg.local_variance_noise(x, rng=rng, gain=0.05, smooth_sigma=3.0)
    resid = out - x
    # Far from the step the smoothed image equals the level: variance = gain * level.
    assert np.var(resid[:, 20:230]) == pytest.approx(0.05 * 0.2, rel=0.03)
    assert np.var(resid[:, 280:490]) == pytest.approx(0.05 * 0.8, rel=0.03)
    # Near the step, the variance follows the Gaussian-smoothed image column by column.
    smooth = ndimage.gaussian_filter(x, 3.0, mode="reflect")
    cols = np.arange(250, 262)
    measured = resid[:, cols].var(axis=0)
    np.testing.assert_allclose(measured, 0.05 * smooth[0, cols], rtol=0.2)


def test_local_variance_noise_background_has_only_the_floor(rng):
    out = deg.local_variance_noise(
        flat(0.0), rng=rng, gain=0.5, smooth_sigma=5.0, min_variance=1e-4
    )
    assert np.std(out) == pytest.approx(0.01, rel=0.03)


@pytest.mark.parametrize(("level", "photons", "background"), [(0.5, 100.0, 0.0), (0.05, 40.0, 0.2)])
def test_poisson_noise_variance_equals_mean_at_photon_budget(rng, level, photons, background):
    out = deg.poisson_noise(flat(level), rng=rng, photons=photons, background=background)
    assert out.mean() == pytest.approx(level, rel=0.02)
    assert out.var() == pytest.approx((level + background) / photons, rel=0.03)
    counts = (out.astype(np.float64) + background) * photons
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)


def test_poisson_noise_treats_negative_values_as_background(rng):
    out = deg.poisson_noise(flat(-0.3), rng=rng, photons=50.0)
    np.testing.assert_array_equal(out, 0.0)


def test_poisson_quantile_is_exact(rng):
    lam = np.concatenate([np.zeros(50), rng.uniform(0, 3, 2000), rng.uniform(3, 3000, 2000)])
    u = rng.random(lam.size)
    np.testing.assert_array_equal(deg.poisson_quantile(u, lam), stats.poisson.ppf(u, lam))


def test_read_noise_in_electrons(rng):
    out = deg.read_noise(flat(0.4), rng=rng, sigma=3.0, photons=60.0, offset=6.0)
    assert np.mean(out) == pytest.approx(0.4 + 6.0 / 60.0, abs=0.001)
    assert np.std(out) == pytest.approx(3.0 / 60.0, rel=0.02)


def test_salt_pepper_fractions(rng):
    out = deg.salt_pepper(flat(0.5, (400, 400)), rng=rng, amount=0.02, salt_fraction=0.25)
    n = out.size
    assert np.sum(out == 1.0) / n == pytest.approx(0.005, rel=0.1)
    assert np.sum(out == 0.0) / n == pytest.approx(0.015, rel=0.1)
    assert np.sum(out == 0.5) / n == pytest.approx(0.98, rel=0.002)


def test_noise_is_deterministic_per_seed():
    x = flat(0.5, (64, 64))
    a = deg.poisson_noise(x, rng=np.random.default_rng(5), photons=30.0)
    b = deg.poisson_noise(x, rng=np.random.default_rng(5), photons=30.0)
    c = deg.poisson_noise(x, rng=np.random.default_rng(6), photons=30.0)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_noise_parameters_are_checked(rng):
    with pytest.raises(InputError) as err:
        deg.poisson_noise(flat(0.1), rng=rng, photons=-5)
    assert str(err.value) == "poisson_noise: photons must be > 0 (got -5)"
    with pytest.raises(InputError, match=r"salt_pepper: amount must be in \[0, 1\] \(got 2\)"):
        deg.salt_pepper(flat(0.1), rng=rng, amount=2)
    with pytest.raises(InputError, match=r"gaussian_noise: expected a 2D image, got shape \(4,\)"):
        deg.gaussian_noise(np.zeros(4), rng=rng, sigma=1.0)


# ------------------------------------------------------------------------- optics


def test_blur_preserves_mean_and_reduces_variance(rng):
    x = rng.random((128, 128)).astype(np.float32)
    out = deg.gaussian_blur(x, sigma=2.0)
    assert out.mean() == pytest.approx(x.mean(), rel=1e-3)
    assert out.var() < 0.1 * x.var()


def test_blur_of_a_point_has_the_requested_width():
    x = np.zeros((65, 65), dtype=np.float32)
    x[32, 32] = 1.0
    out = deg.gaussian_blur(x, sigma=(1.5, 3.0))
    yy, xx = np.mgrid[:65, :65] - 32
    assert out.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.sqrt((out * yy**2).sum()) == pytest.approx(1.5, rel=0.01)
    assert np.sqrt((out * xx**2).sum()) == pytest.approx(3.0, rel=0.01)
    np.testing.assert_array_equal(deg.gaussian_blur(x, sigma=0.0), x)


def test_fwhm_conversions():
    assert deg.fwhm_to_sigma(2.354820045) == pytest.approx(1.0, rel=1e-9)
    assert deg.sigma_to_fwhm(2.0) == pytest.approx(4.70964009, rel=1e-9)
    assert deg.widefield_psf_sigma(0.52, 1.4) == pytest.approx(0.078, rel=1e-9)


def test_jpeg_error_shrinks_with_quality(rng):
    x = ndimage.gaussian_filter(rng.random((128, 128)), 1.5).astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    errors = [np.sqrt(np.mean((deg.jpeg_compress(x, quality=q) - x) ** 2)) for q in (5, 25, 50, 90)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.01 < errors[0]


def test_jpeg_blocks_are_independent_and_edges_replicated(rng):
    x = rng.random((20, 27)).astype(np.float32)
    out = deg.jpeg_compress(x, quality=30)
    assert out.shape == (20, 27)
    # The first 8x8 block does not depend on the rest of the image.
    np.testing.assert_array_equal(deg.jpeg_compress(x[:8, :8], quality=30), out[:8, :8])


def test_jpeg_quantization_table_scaling():
    assert deg.jpeg_quantization_table(50)[0, 0] == 16
    assert deg.jpeg_quantization_table(100).max() == 1
    assert deg.jpeg_quantization_table(10)[0, 0] == 80


# ------------------------------------------------------------------------ sampling


@pytest.mark.parametrize("method", ["area", "bilinear"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_downsample_shape_and_mean(rng, method, scale):
    x = ndimage.gaussian_filter(rng.random((99, 130)), 4).astype(np.float32)
    out = deg.downsample(x, scale=scale, method=method)
    assert out.shape == (99 // scale, 130 // scale) and out.dtype == np.float32
    crop = x[: 99 // scale * scale, : 130 // scale * scale]
    assert out.mean() == pytest.approx(crop.mean(), rel=1e-3 if method == "bilinear" else 1e-6)


def test_area_downsample_is_block_mean():
    x = np.arange(36, dtype=np.float32).reshape(6, 6)
    np.testing.assert_array_equal(deg.area_downsample(x, 3), [[7.0, 10.0], [25.0, 28.0]])


@pytest.mark.parametrize("scale", [2, 3, 4, 5])
def test_bilinear_downsample_of_a_ramp_is_exact(scale):
    yy, xx = np.mgrid[:40, :60].astype(np.float32)
    ramp = 2.0 * yy + 0.5 * xx + 1.0
    out = deg.bilinear_downsample(ramp, scale)
    cy = (np.arange(40 // scale) + 0.5) * scale - 0.5
    cx = (np.arange(60 // scale) + 0.5) * scale - 0.5
    np.testing.assert_array_equal(out, 2.0 * cy[:, None] + 0.5 * cx[None, :] + 1.0)


def test_downsample_rejects_small_images():
    with pytest.raises(InputError) as err:
        deg.downsample(np.zeros((3, 10), np.float32), scale=4)
    assert str(err.value) == "downsample: image of shape (3, 10) is smaller than the scale 4"
    with pytest.raises(InputError, match="method must be 'area' or 'bilinear'"):
        deg.downsample(np.zeros((8, 8), np.float32), scale=2, method="cubic")


# ---------------------------------------------------------------------- noise field


def test_noise_field_regions_assemble_from_global_cells():
    whole = NoiseField(7, key=(1, 0), origin=(0, 0)).standard_normal((300, 600), dtype=np.float32)
    part = NoiseField(7, key=(1, 0), origin=(123, 250)).standard_normal(
        (100, 300), dtype=np.float32
    )
    np.testing.assert_array_equal(part, whole[123:223, 250:550])
    assert whole.std() == pytest.approx(1.0, rel=0.02)


def test_noise_field_streams_and_keys_differ():
    field = NoiseField(7, key=(1, 0))
    first, second = field.random((64, 64)), field.random((64, 64))
    other_plane = NoiseField(7, key=(1, 1)).random((64, 64))
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < 0.05
    assert not np.array_equal(first, other_plane)
    assert 0.0 <= first.min() and first.max() < 1.0


def test_noise_field_rejects_negative_positions():
    with pytest.raises(InputError, match="must be non-negative integers"):
        NoiseField(1, origin=(-1, 0))


def test_degradations_accept_a_noise_field():
    x = flat(0.5, (64, 64))
    a = deg.salt_pepper(x, rng=NoiseField(3, key=(0, 0)), amount=0.1)
    b = deg.salt_pepper(x, rng=NoiseField(3, key=(0, 0)), amount=0.1)
    assert a.tobytes() == b.tobytes()
