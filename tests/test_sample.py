"""Synthetic sample images: metadata, realism statistics, determinism, lazy == eager."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from decrappify.errors import InputError
from decrappify.sample import SAMPLE_KINDS, render_region, synthetic_image


@pytest.fixture(scope="module")
def em() -> np.ndarray:
    return synthetic_image("em", (256, 320), seed=1).data


@pytest.fixture(scope="module")
def fluo() -> np.ndarray:
    return synthetic_image("fluorescence", (384, 384), seed=1).data


def test_metadata():
    assert SAMPLE_KINDS == ("em", "fluorescence")
    image = synthetic_image("em", (40, 50))
    assert image.axes == "YX" and image.dtype == np.uint8 and image.shape == (40, 50)
    assert image.pixel_size == (4.0, 4.0) and image.units == ("nanometer", "nanometer")
    assert image.source == "synthetic-em" and not image.is_lazy
    stack = synthetic_image("fluorescence", (2, 40, 50), chunks=(1, 40, 25))
    assert stack.axes == "ZYX" and stack.dtype == np.uint16 and stack.is_lazy
    assert stack.pixel_size == (0.2, 0.065, 0.065) and stack.units == ("micrometer",) * 3


def test_em_looks_like_sstem(em):
    """Light cytoplasm (~55-65 %), dark membranes (a few % below 70), full 8-bit use."""
    p1, p50, p99 = np.percentile(em, [1, 50, 99])
    assert 120 < p50 < 175
    assert p1 < 75 and p99 > 195
    dark = np.mean(em < 90)
    assert 0.03 < dark < 0.25
    # Membranes form a connected network, not isolated dots: once the grain is smoothed
    # away, the largest dark component holds a good part of the dark pixels.
    labels, n = ndimage.label(ndimage.gaussian_filter(em.astype(float), 1.5) < 110)
    sizes = np.bincount(labels.ravel())[1:]
    assert n > 0 and sizes.max() > 0.3 * sizes.sum()


def test_fluorescence_looks_like_camera_data(fluo):
    """Offset ~100, background of a few hundred counts, bright sparse structures."""
    p1, p50, p999 = np.percentile(fluo, [1, 50, 99.9])
    assert 100 < p1 < 400
    assert p999 > 4 * p50
    assert fluo.max() < 65535
    # Structures are sparse: most pixels are within a factor 2 of the median.
    assert np.mean(fluo > 2 * p50) < 0.25
    # Shot noise: on the dim background the variance grows with the mean (gain 2).
    flat = fluo[fluo < np.percentile(fluo, 20)].astype(float)
    assert flat.var() > 2.0 * (flat.mean() - 100) * 0.5


def test_fluorescence_structures_fill_the_frame():
    # a confluent culture: every 64x64 window holds bright structure (a crop of a figure or
    # a training patch is never empty background)
    image = synthetic_image("fluorescence", (512, 512), seed=0).data.astype(np.float64)
    windows = image.reshape(8, 64, 8, 64).transpose(0, 2, 1, 3).reshape(64, -1)
    bright = np.percentile(windows, 99, axis=1)
    assert np.all(bright > 1.5 * np.median(image))


@pytest.mark.parametrize("kind", ["em", "fluorescence"])
def test_lazy_blocks_equal_eager_crops(kind):
    eager = synthetic_image(kind, (2, 96, 150), seed=3).data
    lazy = synthetic_image(kind, (2, 96, 150), seed=3, chunks=(1, 48, 64))
    assert isinstance(lazy.data, da.Array)
    assert lazy.data.chunks == ((1, 1), (48, 48), (64, 64, 22))
    np.testing.assert_array_equal(lazy.data.compute(), eager)
    region = render_region(kind, (slice(1, 2), slice(10, 60), slice(33, 140)), (2, 96, 150), seed=3)
    np.testing.assert_array_equal(region, eager[1:2, 10:60, 33:140])


@pytest.mark.parametrize("kind", ["em", "fluorescence"])
def test_determinism_and_seeds(kind):
    a = synthetic_image(kind, (64, 64), seed=5).data
    b = synthetic_image(kind, (64, 64), seed=5).data
    c = synthetic_image(kind, (64, 64), seed=6).data
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", ["em", "fluorescence"])
def test_stacks_vary_slowly(kind):
    stack = synthetic_image(kind, (9, 128, 128), seed=2).data.astype(np.float64)
    flat2d = synthetic_image(kind, (128, 128), seed=2).data
    np.testing.assert_array_equal(stack[4], flat2d)  # the middle plane is the 2D image

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    near, far = corr(stack[0], stack[1]), corr(stack[0], stack[8])
    assert near > 0.5
    assert near > far


def test_large_image_is_generated_chunk_by_chunk():
    image = synthetic_image("em", (16384, 16384), chunks=1024)
    assert image.shape == (16384, 16384) and image.data.numblocks == (16, 16)
    block = image.data.blocks[9, 13].compute()
    expected = render_region("em", (slice(9216, 10240), slice(13312, 14336)), (16384, 16384))
    np.testing.assert_array_equal(block, expected)


def test_input_errors():
    with pytest.raises(InputError) as err:
        synthetic_image("confocal", (10, 10))
    assert str(err.value) == "unknown sample kind 'confocal'; valid kinds: em, fluorescence"
    with pytest.raises(InputError, match=r"shape must be 2 or 3 positive integers \(got \(10,\)\)"):
        synthetic_image("em", (10,))
    with pytest.raises(InputError, match="shape must be 2 or 3 positive integers"):
        synthetic_image("em", (10, 0))
    with pytest.raises(InputError, match=r"seed must be a non-negative integer \(got -1\)"):
        synthetic_image("em", (10, 10), seed=-1)
    with pytest.raises(InputError, match="chunks"):
        synthetic_image("em", (10, 10), chunks=(1, 2, 3, 4))
