"""io.Image, the image record: derived records on a new grid, the translation and its round trip."""

import numpy as np
import pytest

from decrappify.errors import InputError
from decrappify.io import Image, read_image, write_image


def test_with_data_downsample_overlays_block_centres():
    img = Image(np.zeros((8, 8), np.uint8), pixel_size=(0.1, 0.1), units=("micrometer",) * 2)
    lr = img.with_data(np.zeros((2, 2), np.uint8), yx_factor=4)
    assert lr.pixel_size == pytest.approx((0.4, 0.4))
    # LR pixel 0 covers HR pixels 0..3, whose centre is at 1.5 HR pixels = 0.15 um
    assert lr.translate == pytest.approx((0.15, 0.15))
    # super-resolving it back lands on the HR grid again
    sr = lr.with_data(np.zeros((8, 8), np.uint8), yx_factor=1 / 4)
    assert sr.pixel_size == pytest.approx((0.1, 0.1))
    assert sr.translate == pytest.approx((0.0, 0.0))


def test_with_data_unknown_pixel_size_uses_input_pixels():
    img = Image(np.zeros((3, 8, 8), np.uint16), axes="ZYX")
    lr = img.with_data(np.zeros((3, 4, 4), np.uint16), yx_factor=2)
    assert lr.pixel_size == (1.0, 2.0, 2.0)
    assert lr.translate == (0.0, 0.5, 0.5)


def test_translate_validated():
    with pytest.raises(InputError, match="translate needs one entry per axis"):
        Image(np.zeros((4, 4)), translate=(1.0,))


def test_translate_round_trips_through_ome_zarr(tmp_path):
    img = Image(
        np.arange(64, dtype=np.uint16).reshape(8, 8),
        pixel_size=(0.4, 0.4),
        units=("micrometer", "micrometer"),
        translate=(0.15, 0.15),
    )
    back = read_image(write_image(img, tmp_path / "x.zarr"))
    assert back.translate == pytest.approx((0.15, 0.15))
    assert back.pixel_size == pytest.approx((0.4, 0.4))
    np.testing.assert_array_equal(np.asarray(back.data), img.data)
