"""Layers to Image records and back; visible regions."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from napari.layers import Image as ImageLayer

from decrappify._napari._layers import image_layer_kwargs, layer_to_image
from decrappify._napari._viewer_geometry import lr_region
from decrappify.errors import InputError
from decrappify.io import Image

pytestmark = pytest.mark.napari


def test_layer_to_image_defaults_and_dtype():
    layer = ImageLayer(np.zeros((20, 30)), name="plain")
    image = layer_to_image(layer)
    assert image.axes == "YX" and image.shape == (20, 30)
    assert image.pixel_size is None and image.units is None and image.translate is None
    assert image.dtype == np.float32 and image.source == "plain"  # float64 -> float32


def test_layer_to_image_keeps_scale_units_translate_and_laziness():
    data = da.zeros((4, 32, 48), dtype=np.uint16, chunks=(1, 32, 48))
    layer = ImageLayer(
        data,
        scale=(0.2, 0.065, 0.065),
        translate=(1.0, 2.0, 3.0),
        units=("micrometer",) * 3,
        name="stack",
    )
    image = layer_to_image(layer)
    assert image.axes == "ZYX" and image.is_lazy and image.data is data
    assert image.pixel_size == pytest.approx((0.2, 0.065, 0.065))
    assert image.units == ("micrometer",) * 3 and image.translate == (1.0, 2.0, 3.0)


def test_layer_to_image_axes_from_labels_and_metadata():
    timed = ImageLayer(np.zeros((3, 16, 16), np.uint8), axis_labels=("t", "y", "x"))
    assert layer_to_image(timed).axes == "TYX"
    tagged = ImageLayer(np.zeros((3, 16, 16), np.uint8), metadata={"decrappify": {"axes": "TYX"}})
    assert layer_to_image(tagged).axes == "TYX"


def test_layer_to_image_refusals():
    rgb = ImageLayer(np.zeros((16, 16, 3), np.uint8), rgb=True, name="photo")
    with pytest.raises(InputError) as err:
        layer_to_image(rgb)
    assert str(err.value) == (
        "photo: expected a single-channel image, got an RGB layer; split the channels first "
        "(right-click the layer > Split RGB)"
    )
    four = ImageLayer(np.zeros((2, 2, 16, 16), np.uint8), name="4d")
    with pytest.raises(
        InputError,
        match=r"4d: expected a 2D or 3D single-channel image, got shape \(2, 2, 16, 16\)",
    ):
        layer_to_image(four)
    turned = ImageLayer(np.zeros((16, 16), np.uint8), rotate=30, name="turned")
    with pytest.raises(InputError, match="turned: rotated or sheared layers are not supported"):
        layer_to_image(turned)


def test_kwargs_round_trip_through_a_layer():
    image = Image(
        np.arange(12 * 10, dtype=np.uint16).reshape(12, 10),
        pixel_size=(4.0, 4.0),
        units=("nanometer", "nanometer"),
        translate=(6.0, -2.0),
        source="em",
    )
    kwargs = image_layer_kwargs(image, name="em layer")
    layer = ImageLayer(image.data, **kwargs)
    back = layer_to_image(layer)
    assert back.pixel_size == (4.0, 4.0) and back.units == ("nanometer", "nanometer")
    assert back.translate == (6.0, -2.0) and back.axes == "YX"
    assert kwargs["metadata"]["decrappify"]["pixel_size"] == (4.0, 4.0)


def test_lr_region_maps_hr_box_to_lr_pixels():
    # HR rows 0..15 (continuous -0.5..15.5) are LR rows 0..3 with scale 4
    assert lr_region(((0, 15), (0, 15)), 4, (10, 10), margin=0) == (slice(0, 4), slice(0, 4))
    # a box from HR 4.2 to 9.8 meets LR pixels 1 and 2; the margin adds one each side
    assert lr_region(((4.2, 9.8), (4.2, 9.8)), 4, (10, 10), margin=1) == (
        slice(0, 4),
        slice(0, 4),
    )
    # clipped to the image; a box outside gives an empty region
    assert lr_region(((-100, 1000), (30, 50)), 4, (10, 12), margin=0) == (
        slice(0, 10),
        slice(7, 12),
    )
    ys, _ = lr_region(((500, 600), (0, 1)), 4, (10, 10), margin=1)
    assert ys.stop <= ys.start


def test_preview_region_is_capped_around_its_centre():
    from decrappify._napari.jobs.compute import central

    assert central(slice(10, 20), 50) == slice(10, 20)
    assert central(slice(0, 5000), 2048) == slice(1476, 3524)
