"""metrics.alignment: how a prediction, its ground truth and an LR input are put on one grid."""

from __future__ import annotations

import numpy as np
import pytest

from decrappify.errors import InputError
from decrappify.io import Image
from decrappify.metrics.alignment import in_units_of, plan_comparison, same_field_of_view


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
