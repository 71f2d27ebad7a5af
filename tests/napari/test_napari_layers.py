"""Layers to Image records and back; visible regions; how Compare aligns grids."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from napari.layers import Image as ImageLayer

from decrappify._napari._alignment import (
    in_units_of,
    lr_region,
    plan_comparison,
    same_field_of_view,
)
from decrappify._napari._layers import image_layer_kwargs, layer_to_image
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


def _rec(shape, size, shift=None, units=("micrometer", "micrometer"), name="x"):
    axes = "YX" if len(shape) == 2 else "ZYX"
    return Image(
        np.zeros(shape, np.float32),
        axes=axes,
        pixel_size=size,
        units=units,
        translate=shift,
        source=name,
    )


def test_plan_exact_crop_and_resize():
    gt = _rec((64, 64), (0.1, 0.1), name="gt")
    lr = gt.with_data(np.zeros((16, 16), np.float32), yx_factor=4, source="lr")
    plan = plan_comparison(_rec((64, 64), (0.1, 0.1), name="pred"), gt, lr)
    assert (plan.mode, plan.scale, plan.n_planes) == ("exact", 4, 1)
    assert plan.evaluate_kwargs() == {"crop": False, "resize": False, "scale": 4}

    # an HR size that is not a multiple of the scale: the LR covers the top-left 64 rows
    gt66 = _rec((66, 64), (0.1, 0.1), name="gt")
    plan = plan_comparison(_rec((66, 64), (0.1, 0.1)), gt66, lr)
    assert (plan.mode, plan.scale) == ("crop", 4)

    # a prediction on a coarser grid covering the same field of view is resampled
    coarse = gt.with_data(np.zeros((32, 32), np.float32), yx_factor=2, source="pred")
    assert same_field_of_view(coarse, gt)
    plan = plan_comparison(coarse, gt, lr)
    assert (plan.mode, plan.scale) == ("resize", 4)


def test_plan_converts_units():
    gt = _rec((64, 64), (0.1, 0.1), name="gt")
    pred_nm = _rec((64, 64), (100.0, 100.0), units=("nanometer", "nanometer"), name="pred")
    assert in_units_of(pred_nm, gt).pixel_size == pytest.approx((0.1, 0.1))
    assert plan_comparison(pred_nm, gt).mode == "exact"


def test_plan_refusals():
    gt = _rec((64, 64), (0.1, 0.1), name="gt")
    moved = _rec((64, 64), (0.1, 0.1), shift=(10.0, 0.0), name="pred")
    with pytest.raises(InputError) as err:
        plan_comparison(moved, gt)
    assert str(err.value) == (
        "prediction 'pred' does not overlay ground truth 'gt': it covers y 9.95-16.35, "
        "x -0.05-6.35 micrometer, the ground truth y -0.05-6.35, x -0.05-6.35 micrometer; "
        "give both layers the same field of view (scale and translate)"
    )
    stack = _rec((3, 64, 64), (1.0, 0.1, 0.1), units=None, name="gt3")
    with pytest.raises(
        InputError, match="prediction 'p' has 2 planes but ground truth 'gt3' has 3"
    ):
        plan_comparison(_rec((2, 64, 64), (1.0, 0.1, 0.1), units=None, name="p"), stack)
    with pytest.raises(InputError, match="prediction 'p' is 2D"):
        plan_comparison(_rec((64, 64), (0.1, 0.1), units=None, name="p"), stack)
    off = gt.with_data(np.zeros((16, 16), np.float32), yx_factor=4, source="lr")
    off = Image(
        off.data, pixel_size=off.pixel_size, units=off.units, translate=(0.0, 0.0), source="lr"
    )
    with pytest.raises(InputError, match="LR input 'lr' does not overlay ground truth 'gt'"):
        plan_comparison(_rec((64, 64), (0.1, 0.1), name="p"), gt, off)


def test_preview_region_is_capped_around_its_centre():
    from decrappify._napari._jobs import _central

    assert _central(slice(10, 20), 50) == slice(10, 20)
    assert _central(slice(0, 5000), 2048) == slice(1476, 3524)
