"""crappify_array and crappify_image: shapes, determinism, chunked == whole, validation."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from decrappify.config.crappify import CrappifyConfig
from decrappify.crappify import crappify_array, crappify_image, get_preset, sample_params
from decrappify.errors import InputError
from decrappify.io.image import Image
from decrappify.normalize import denormalize, normalize, percentile_range

#: Every kind of step, with a JPEG and a blur after the downsampling (the hardest halos).
EVERYTHING = {
    "scale": 3,
    "steps": [
        {"kind": "salt_pepper", "amount": [0.001, 0.01]},
        {"kind": "blur", "fwhm": [0.1, 0.15], "unit": "micrometer"},
        {"kind": "jpeg", "quality": [20, 60]},
        {"kind": "gaussian_noise", "sigma": 0.02},
        {"kind": "downsample", "method": "bilinear"},
        {"kind": "local_variance_noise", "gain": 0.1, "smooth_sigma": 2},
        {"kind": "jpeg", "quality": 30},
        {"kind": "blur", "sigma": [0.5, 1.0]},
        {"kind": "poisson", "photons": [30, 300], "background": 0.1},
        {"kind": "read_noise", "sigma": 2},
    ],
}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(77)


@pytest.fixture
def hr_plane(rng) -> np.ndarray:
    """A smooth positive image in normalised units."""
    return ndimage.gaussian_filter(rng.random((96, 128)), 3).astype(np.float32) * 4 - 1


def test_crappify_array_shape_dtype_and_params(hr_plane):
    config = get_preset("fluorescence")
    lr, params = crappify_array(hr_plane, config, seed=11)
    assert lr.shape == (24, 32) and lr.dtype == np.float32
    assert params["seed"] == 11 and params["scale"] == 4
    assert [s["kind"] for s in params["steps"]] == ["blur", "downsample", "poisson", "read_noise"]
    assert params["steps"][0]["sigma_pixels"] == [params["steps"][0]["sigma"]] * 2
    base = sample_params(config, 11)
    assert params["steps"][2] == base["steps"][2]


def test_crappify_array_is_deterministic(hr_plane):
    config = get_preset("em")
    a, _ = crappify_array(hr_plane, config, seed=5)
    b, _ = crappify_array(hr_plane, config, seed=5)
    c, _ = crappify_array(hr_plane, config, seed=6)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_plane_and_offset_change_noise_not_parameters(hr_plane):
    config = get_preset("fluorescence")
    base, p0 = crappify_array(hr_plane, config, seed=3)
    other_plane, p1 = crappify_array(hr_plane, config, seed=3, plane=1)
    shifted, p2 = crappify_array(hr_plane, config, seed=3, offset=(256, 0))
    assert p0 == p1 == p2
    assert not np.array_equal(base, other_plane)
    assert not np.array_equal(base, shifted)
    # Same noise statistics: the difference is pure noise of twice the variance.
    assert np.std(base - other_plane) == pytest.approx(np.std(base - shifted), rel=0.3)


def test_crappify_array_matches_manual_pipeline_for_area_downsampling(rng):
    x = np.full((64, 64), 0.5, dtype=np.float32)
    config = CrappifyConfig(scale=4, steps=[{"kind": "downsample", "method": "area"}])
    lr, _ = crappify_array(x, config, seed=0)
    np.testing.assert_array_equal(lr, np.full((16, 16), 0.5, dtype=np.float32))


def test_crappify_array_validation(hr_plane):
    config = get_preset("em")
    with pytest.raises(InputError) as err:
        crappify_array(np.zeros((3, 50), np.float32), config, seed=0)
    assert str(err.value) == "crappify_array: image of 3x50 pixels is smaller than the scale 4"
    with pytest.raises(InputError, match="expected a 2D image, got shape"):
        crappify_array(np.zeros((2, 8, 8), np.float32), config, seed=0)
    bad = hr_plane.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="crappify_array: input contains NaN or Inf values"):
        crappify_array(bad, config, seed=0)
    with pytest.raises(InputError, match=r"offset must be a non-negative integer \(got -4\)"):
        crappify_array(hr_plane, config, seed=0, offset=(-4, 0))
    physical = CrappifyConfig.validate_dict(EVERYTHING)
    with pytest.raises(InputError, match="blur width is in micrometer but the image pixel size"):
        crappify_array(hr_plane, physical, seed=0)


def test_physical_blur_uses_pixel_size(hr_plane):
    config = CrappifyConfig.validate_dict(
        {"scale": 1, "steps": [{"kind": "blur", "fwhm": 0.2354820045, "unit": "micrometer"}]}
    )
    _, params = crappify_array(hr_plane, config, seed=0, pixel_size=(0.05, 0.1))
    np.testing.assert_allclose(params["steps"][0]["sigma_pixels"], [2.0, 1.0], rtol=1e-6)
    _, params = crappify_array(hr_plane, config, seed=0, pixel_size=50.0, pixel_unit="nanometer")
    np.testing.assert_allclose(params["steps"][0]["sigma_pixels"], [2.0, 2.0], rtol=1e-6)


# ------------------------------------------------------------------ crappify_image


def uint16_stack(rng, shape) -> np.ndarray:
    smooth = ndimage.gaussian_filter(rng.random(shape), (0, 2, 2))
    return (smooth * 60000).astype(np.uint16)


@pytest.mark.parametrize("preset", ["em", "fluorescence", "everything"])
def test_crappify_image_chunked_equals_whole_2d(rng, preset):
    config = (
        CrappifyConfig.validate_dict(EVERYTHING) if preset == "everything" else get_preset(preset)
    )
    data = uint16_stack(rng, (1, 260, 331))[0]
    image = Image(data, axes="YX", pixel_size=(0.05, 0.05), units=("micrometer",) * 2)
    whole = crappify_image(image, config, seed=9, chunks=10_000).data.compute()
    for chunks in [(7, 13), (25, 31), 40]:
        out = crappify_image(image, config, seed=9, chunks=chunks)
        # Chunks smaller than the halo are merged with a neighbour, never dropped.
        assert sum(out.data.chunks[0]) == 260 // config.scale
        assert out.data.numblocks[0] > 1 and out.data.numblocks[1] > 1
        np.testing.assert_array_equal(out.data.compute(), whole)


def test_crappify_image_chunked_equals_whole_zyx_and_array(rng):
    config = CrappifyConfig.validate_dict(EVERYTHING)
    data = uint16_stack(rng, (3, 180, 240))
    image = Image(
        da.from_array(data, chunks=(1, 50, 50)),
        axes="ZYX",
        pixel_size=(1.0, 0.05, 0.05),
        units=("micrometer",) * 3,
        source="stack.tif",
    )
    out = crappify_image(image, config, seed=4, chunks=(1, 25, 22))
    assert out.shape == (3, 60, 80) and out.dtype == np.uint16
    assert out.data.numblocks == (3, 2, 3)
    assert out.axes == "ZYX" and out.pixel_size == pytest.approx((1.0, 0.15, 0.15))
    assert out.source == "stack.tif"
    chunked = out.data.compute()
    whole = crappify_image(image, config, seed=4, chunks=512).data.compute()
    np.testing.assert_array_equal(chunked, whole)
    # ... and both equal crappify_array on each normalised plane, mapped back.
    lo, hi = percentile_range(data)
    for z in range(3):
        lr, _ = crappify_array(
            normalize(data[z], lo, hi), config, seed=4, plane=z, pixel_size=(0.05, 0.05)
        )
        np.testing.assert_array_equal(denormalize(lr, lo, hi, np.uint16), whole[z])
    assert not np.array_equal(whole[0], whole[1])


def test_crappify_image_keeps_intensity_scale(rng):
    data = (ndimage.gaussian_filter(rng.random((128, 128)), 4) * 200 + 20).astype(np.uint8)
    image = Image(data)
    config = CrappifyConfig(scale=2, steps=[{"kind": "downsample", "method": "area"}])
    out = crappify_image(image, config, seed=0).data.compute()
    assert out.dtype == np.uint8
    reference = data.astype(np.float64).reshape(64, 2, 64, 2).mean(axis=(1, 3))
    assert np.max(np.abs(out - reference)) <= 0.5 + 1e-6


def test_crappify_image_validation(rng):
    config = get_preset("em")
    with pytest.raises(InputError) as err:
        crappify_image(Image(np.zeros((3, 40), np.uint8), source="tiny.tif"), config, seed=0)
    assert str(err.value) == "tiny.tif: image of 3x40 pixels is smaller than the scale 4"
    with pytest.raises(InputError, match="chunks must be positive integers"):
        crappify_image(Image(np.zeros((40, 40), np.uint8)), config, seed=0, chunks=(0, 4))
    with pytest.raises(InputError, match=r"must be \(y, x\), or \(1, y, x\) for a stack"):
        crappify_image(
            Image(np.zeros((2, 40, 40), np.uint8), axes="ZYX"), config, seed=0, chunks=(2, 8, 8)
        )
    physical = CrappifyConfig.validate_dict(EVERYTHING)
    with pytest.raises(InputError, match="pixel size is unknown"):
        crappify_image(Image(np.zeros((40, 40), np.uint8)), physical, seed=0)


def test_crappify_image_nan_is_reported_lazily(rng):
    data = rng.random((64, 64)).astype(np.float32)
    data[40, 50] = np.nan
    out = crappify_image(Image(data, source="bad.tif"), get_preset("em"), seed=0, chunks=8)
    assert isinstance(out.data, da.Array)  # nothing checked or computed yet
    np.asarray(out.data.blocks[0, 0])  # a clean block computes
    with pytest.raises(InputError, match=r"bad.tif: contains NaN or Inf values \(plane 0"):
        out.data.compute()


def test_crappify_image_huge_input_is_lazy_and_chunk_bounded():
    huge = da.zeros((16384, 16384), dtype=np.uint16, chunks=2048) + np.uint16(100)
    out = crappify_image(Image(huge, source="huge"), get_preset("fluorescence"), seed=1)
    assert out.shape == (4096, 4096) and out.data.numblocks == (8, 8)
    block = out.data.blocks[3, 4].compute()
    assert block.shape == (512, 512) and block.dtype == np.uint16
