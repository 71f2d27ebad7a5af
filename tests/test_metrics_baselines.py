"""Tests for decrappify.metrics.baselines: nearest / bilinear / bicubic upsampling."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import downscale_local_mean, resize

from decrappify.errors import InputError
from decrappify.io.image import Image
from decrappify.metrics.baselines import upsample


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def smooth_image(shape):
    """A low-frequency image (periods of 40+ pixels) in [0, 1]."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = 0.5 + 0.25 * np.sin(2 * np.pi * yy / 48) * np.cos(2 * np.pi * xx / 64)
    return img + 0.2 * np.sin(2 * np.pi * (xx + yy) / 80)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
def test_shapes_and_dtype(rng, method):
    lr2 = rng.integers(0, 255, (12, 20)).astype(np.uint8)
    out = upsample(lr2, 4, method)
    assert out.shape == (48, 80) and out.dtype == np.float32
    lr3 = rng.random((3, 12, 20)).astype(np.float32)
    out3 = upsample(lr3, 3, method)
    assert out3.shape == (3, 36, 60) and out3.dtype == np.float32
    for i in range(3):  # plane by plane: the same as upsampling each plane alone
        np.testing.assert_array_equal(out3[i], upsample(lr3[i], 3, method))


def test_matches_the_documented_scikit_image_call(rng):
    lr = rng.random((10, 14)).astype(np.float32)
    for method, order in (("nearest", 0), ("bilinear", 1), ("bicubic", 3)):
        expected = resize(
            lr, (40, 56), order=order, anti_aliasing=False, preserve_range=True, mode="reflect"
        )
        np.testing.assert_allclose(upsample(lr, 4, method), expected, rtol=0, atol=1e-6)


def test_nearest_replicates_each_pixel():
    lr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    expected = np.repeat(np.repeat(lr, 3, axis=0), 3, axis=1).astype(np.float32)
    np.testing.assert_array_equal(upsample(lr, 3, "nearest"), expected)


def test_pixel_centres_match_a_block_downsampling():
    # block means of a linear ramp sit at the block centres; bilinear interpolation must
    # give the ramp back exactly away from the borders
    hr = np.tile(np.arange(64, dtype=np.float64), (64, 1)) * 2.0 + 5.0
    lr = downscale_local_mean(hr, 4)
    up = upsample(lr, 4, "bilinear")
    np.testing.assert_allclose(up[4:-4, 4:-4], hr[4:-4, 4:-4], rtol=0, atol=1e-4)


def test_bicubic_restores_a_smooth_image_and_nearest_does_worse():
    hr = smooth_image((128, 128))
    lr = downscale_local_mean(hr, 4)
    scores = {
        m: peak_signal_noise_ratio(hr, upsample(lr, 4, m).astype(np.float64), data_range=1.0)
        for m in ("nearest", "bilinear", "bicubic")
    }
    assert scores["bicubic"] > 35
    assert scores["nearest"] < scores["bilinear"] < scores["bicubic"]
    assert scores["nearest"] < scores["bicubic"] - 5


def test_bicubic_does_not_overshoot_the_input_range():
    lr = np.zeros((8, 8), np.uint8)
    lr[:, 4:] = 200
    up = upsample(lr, 4, "bicubic")
    assert up.min() >= 0 and up.max() <= 200


def test_dask_input_stays_lazy_and_matches_numpy(rng):
    lr = rng.random((4, 16, 24)).astype(np.float32)
    lazy = upsample(da.from_array(lr, chunks=(1, 8, 8)), 2, "bicubic")
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == ((1, 1, 1, 1), (32,), (48,))
    np.testing.assert_array_equal(lazy.compute(), upsample(lr, 2, "bicubic"))
    record = Image(lr[0], axes="YX")
    np.testing.assert_array_equal(upsample(record, 2), upsample(lr[0], 2, "bicubic"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (4, "lanczos"),
            "baseline method: expected one of nearest, bilinear, bicubic, got 'lanczos'",
        ),
        ((2.5, "bicubic"), r"scale: expected a positive integer, got 2.5"),
        ((0, "bicubic"), r"scale: expected a positive integer, got 0"),
        ((True, "bicubic"), r"scale: expected a positive integer, got True"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(InputError, match=message):
        upsample(np.zeros((4, 4)), *args)


def test_integral_float_scale_and_bad_ndim():
    assert upsample(np.zeros((4, 4)), 2.0).shape == (8, 8)
    with pytest.raises(InputError, match=r"lr: expected a 2D or 3D image, got shape \(4,\)"):
        upsample(np.zeros(4), 2)
