"""The crappifier's forward model as banded per-axis operators (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from decrappify.crappify import crappify_array, get_preset
from decrappify.crappify.consistency import ForwardModel, forward_model
from decrappify.crappify.forward_operator import (
    NUMPY,
    AxisStep,
    NumpyArrays,
    apply_2d,
    axis_band,
    blur_band,
)
from decrappify.crappify.sampling import area_downsample, bilinear_downsample
from decrappify.predict.block_geometry import BlockGrid
from decrappify.predict.trust_blocks import DegradedSlots

F64 = NumpyArrays(np.float64)


@pytest.fixture
def x():
    return np.random.default_rng(0).random((37, 53)).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.3, 1.5, 3.0, 12.0])  # 12: reflected more than once
def test_blur_band_is_scipys_reflecting_gaussian_filter(x, sigma):
    bands = (blur_band(37, sigma), blur_band(53, sigma))
    got = apply_2d(bands, ((0, 37), (0, 53)), x, (0, 0), F64)
    expected = ndimage.gaussian_filter(x.astype(np.float64), sigma, mode="reflect")
    np.testing.assert_allclose(got, expected, atol=1e-7)


@pytest.mark.parametrize("method", ["area", "bilinear"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_blocks_of_an_image_add_up_to_its_forward_model(x, method, scale):
    steps = (AxisStep("blur", 1.3), AxisStep(method, scale))
    bands = (axis_band(steps, 37), axis_band(steps, 53))
    box = ((0, 37 // scale), (0, 53 // scale))
    whole = apply_2d(bands, box, x, (0, 0), NUMPY)
    down = {"area": area_downsample, "bilinear": bilinear_downsample}[method]
    expected = down(ndimage.gaussian_filter(x, 1.3, mode="reflect"), scale)
    np.testing.assert_allclose(whole, expected, atol=2e-7)
    pieces = np.zeros_like(whole)
    for y0 in range(0, 37, 8):
        for x0 in range(0, 53, 12):
            pieces += apply_2d(bands, box, x[y0 : y0 + 8, x0 : x0 + 12], (y0, x0), NUMPY)
    np.testing.assert_allclose(pieces, whole, atol=5e-7)


def test_degraded_slots_of_the_blocks_assemble_the_whole_forward_model():
    config = get_preset("fluorescence", scale=2).with_overrides(**{"blur.sigma": 2.5})
    rng = np.random.default_rng(3)
    hr = ndimage.gaussian_filter(rng.random((2, 200, 136)), 3).astype(np.float32)
    grid = BlockGrid.plan((2, 100, 68), 2, chunk=32, block=64)  # 4 x 3 blocks a plane
    forward = ForwardModel.build(config, hr.shape)
    slots = DegradedSlots.plan(grid, forward)
    assert slots.counts == (4, 3) and slots.block == (32, 32) and slots.pad[0] >= 3
    sink = np.zeros(slots.shape, np.float32)
    for index in grid.indices():
        (y0, y1), (x0, x1) = grid.bounds(index)
        block = hr[index[0], y0:y1, x0:x1]
        sink[slots.slot(index)] = slots.share(forward, block, index, (y0, x0))
    for plane in range(2):
        whole = forward_model(hr[plane], config)
        np.testing.assert_allclose(slots.assemble(sink, (plane,), ((0, 100), (0, 68))),
                                   whole, atol=1e-6)  # fmt: skip
        part = slots.assemble(sink, (plane,), ((30, 71), (5, 40)))
        np.testing.assert_allclose(part, whole[30:71, 5:40], atol=1e-6)


def test_the_forward_model_still_matches_the_crappifier_without_noise():
    config = get_preset("em", scale=4)
    hr = ndimage.gaussian_filter(np.random.default_rng(1).random((128, 96)), 2)
    steps = [s.model_dump() for s in config.steps if s.kind in ("blur", "downsample")]
    lr, _ = crappify_array(hr, config.with_overrides(steps=steps), seed=0)
    np.testing.assert_allclose(forward_model(hr, config), lr, atol=1e-6)
