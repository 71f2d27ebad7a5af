"""Tests for decrappify.data.patches: regions, splits, sampling, lazy window reads."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

from decrappify.data.patches import (
    PatchSampler,
    Region,
    neighbour_planes,
    read_window,
    split_by_image,
    whole_region,
)
from decrappify.errors import InputError
from decrappify.io.image import Image


class CountingArray:
    """Array-like that records every slice dask asks of it (one per chunk read)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _image(shape, source="img", dtype=np.uint16, rng=None):
    rng = rng or np.random.default_rng(0)
    return Image(
        rng.integers(0, 1000, size=shape).astype(dtype),
        axes="YX" if len(shape) == 2 else "ZYX",
        source=source,
    )


# --- regions and positions -------------------------------------------------------------------


def test_region_positions_count_and_grid():
    region = Region(0, (0, 3), (0, 100), (10, 74))
    assert region.n_positions(32) == 3 * 69 * 33
    # grid 4: rows 0..68 step 4 -> 18, cols 12..40 step 4 -> 8
    assert region.n_positions(32, grid=4) == 3 * 18 * 8
    assert region.n_positions(128) == 0


def test_sampler_weights_proportional_to_positions(rng):
    regions = [Region(0, (0, 1), (0, 64), (0, 64)), Region(1, (0, 4), (0, 96), (0, 64))]
    sampler = PatchSampler(regions, 32)
    np.testing.assert_allclose(
        sampler.probabilities, [33 * 33, 4 * 65 * 33] / np.float64(33 * 33 + 4 * 65 * 33)
    )
    draws = [sampler.draw(rng) for _ in range(4000)]
    frac1 = np.mean([d.image == 1 for d in draws])
    assert abs(frac1 - sampler.probabilities[1]) < 0.02
    for d in draws:
        region = regions[d.region]
        assert region.planes[0] <= d.plane < region.planes[1]
        assert region.rows[0] <= d.row <= region.rows[1] - 32
        assert region.cols[0] <= d.col <= region.cols[1] - 32
    # positions cover the whole valid range
    rows = {d.row for d in draws if d.image == 1}
    assert min(rows) == 0 and max(rows) == 64


def test_sampler_grid_aligns_corners(rng):
    sampler = PatchSampler([Region(0, (0, 1), (3, 70), (0, 70))], 32, grid=4)
    for _ in range(200):
        p = sampler.draw(rng)
        assert p.row % 4 == 0 and p.col % 4 == 0
        assert p.row >= 3 and p.row + 32 <= 70


def test_sampler_is_deterministic():
    sampler = PatchSampler([Region(0, (0, 5), (0, 300), (0, 200))], 32)
    a = [sampler.draw(np.random.default_rng([7, i])) for i in range(20)]
    b = [sampler.draw(np.random.default_rng([7, i])) for i in range(20)]
    assert a == b
    assert len(set(a)) == 20


def test_sampler_rejects_small_region():
    with pytest.raises(InputError) as err:
        PatchSampler([Region(0, (0, 1), (0, 100), (0, 80))], 128, names=["tiny.tif"])
    assert str(err.value) == (
        "tiny.tif: region of 100x80 pixels is smaller than the patch_size 128; "
        "use a smaller patch_size or larger images"
    )
    with pytest.raises(InputError, match="expected at least one image region"):
        PatchSampler([], 32)


# --- 2.5D neighbours --------------------------------------------------------------------------


def test_neighbour_planes_reflect():
    assert neighbour_planes(0, 5, (0, 5)) == (2, 1, 0, 1, 2)
    assert neighbour_planes(4, 5, (0, 5)) == (2, 3, 4, 3, 2)
    assert neighbour_planes(2, 3, (0, 5)) == (1, 2, 3)
    assert neighbour_planes(7, 3, (7, 9)) == (8, 7, 8)
    assert neighbour_planes(3, 1, (0, 5)) == (3,)
    # frames stay inside the region (training never sees held-out planes)
    assert neighbour_planes(5, 7, (5, 8)) == (6, 7, 6, 5, 6, 7, 6)
    assert neighbour_planes(0, 3, (0, 1)) == (0, 0, 0)


# --- lazy reads -------------------------------------------------------------------------------


def _read_boxes(reads):
    return [tuple((k.start, k.stop) for k in key) for key in reads]


def test_read_window_dask_touches_only_needed_chunks(rng):
    base = rng.integers(0, 60000, size=(4, 256, 256), dtype=np.uint16)
    counting = CountingArray(base)
    data = da.from_array(counting, chunks=(1, 64, 64), asarray=False)
    counting.reads.clear()
    # rows 100..139 span chunk rows 1-2, cols 130..169 chunk col 2, planes 1-2: 4 chunks
    window = read_window(data, (1, 2, 1), 100, 130, 40)
    np.testing.assert_array_equal(window, base[[1, 2, 1], 100:140, 130:170])
    assert window.dtype == np.uint16
    boxes = _read_boxes(counting.reads)
    # dask may push the slice into the read, but never reads outside the 4 overlapping chunks
    chunk_boxes = {((z, z + 1), (y, y + 64), (128, 192)) for z in (1, 2) for y in (64, 128)}
    for box in boxes:
        assert any(
            all(c0 <= b0 and b1 <= c1 for (b0, b1), (c0, c1) in zip(box, chunk, strict=True))
            for chunk in chunk_boxes
        ), box
    read = sum(np.prod([b1 - b0 for b0, b1 in box]) for box in boxes)
    assert 2 * 40 * 40 <= read <= 4 * 64 * 64
    assert len(boxes) <= 4


def test_read_window_zarr_array(tmp_path, rng):
    base = rng.integers(0, 255, size=(3, 128, 96), dtype=np.uint8)
    z = zarr.create_array(tmp_path / "a.zarr", shape=base.shape, chunks=(1, 32, 32), dtype="uint8")
    z[:] = base
    window = read_window(z, (0, 0, 1), 10, 20, 32)
    np.testing.assert_array_equal(window, base[[0, 0, 1], 10:42, 20:52])


def test_read_window_2d(rng):
    base = rng.random((50, 60), dtype=np.float32)
    np.testing.assert_array_equal(read_window(base, None, 5, 6, 10), base[None, 5:15, 6:16])
    three = read_window(base, (0, 0, 0), 5, 6, 10)
    assert three.shape == (3, 10, 10)
    with pytest.raises(InputError, match="a 2D image has only plane 0"):
        read_window(base, (1,), 0, 0, 10)


# --- split ------------------------------------------------------------------------------------


def test_split_by_image_never_shares_an_image():
    images = [_image((40, 40), f"im{i}") for i in range(10)]
    train, val = split_by_image(images, val_fraction=0.3, seed=5)
    assert len(val) == 3 and len(train) == 7
    assert {r.image for r in train}.isdisjoint({r.image for r in val})
    assert {r.image for r in train} | {r.image for r in val} == set(range(10))
    # whole images, deterministic from the seed, different for another seed
    assert all(r == whole_region(r.image, (40, 40)) for r in train + val)
    assert split_by_image(images, val_fraction=0.3, seed=5) == (train, val)
    assert {r.image for r in split_by_image(images, val_fraction=0.3, seed=6)[1]} != {
        r.image for r in val
    }
    assert len(split_by_image(images, val_count=1)[1]) == 1
    assert split_by_image(images, val_fraction=0.0)[1] == []
    assert len(split_by_image(images[:2], val_fraction=0.1)[1]) == 1


def test_split_too_many_held_out():
    images = [_image((40, 40), f"im{i}") for i in range(3)]
    with pytest.raises(InputError) as err:
        split_by_image(images, val_count=3)
    assert str(err.value) == "validation.count: holding out 3 of 3 images leaves none for training"


def test_split_single_stack_by_planes():
    stack = _image((10, 64, 64), "stack.tif")
    train, val = split_by_image([stack], val_fraction=0.2)
    assert train == [Region(0, (0, 8), (0, 64), (0, 64))]
    assert val == [Region(0, (8, 10), (0, 64), (0, 64))]
    train, val = split_by_image([stack], val_count=3)
    assert train[0].planes == (0, 7) and val[0].planes == (7, 10)
    with pytest.raises(InputError) as err:
        split_by_image([stack], val_count=10)
    assert str(err.value) == (
        "stack.tif: holding out 10 of its 10 planes for validation leaves none for training"
    )


def test_split_single_2d_spatially():
    image = _image((300, 200), "one.tif")
    train, val = split_by_image([image], val_fraction=0.1, patch_size=64, grid=4)
    # the strip is along the longer axis (rows), at least one patch, cut on the grid
    assert train == [Region(0, (0, 1), (0, 236), (0, 200))]
    assert val == [Region(0, (0, 1), (236, 300), (0, 200))]
    wide = _image((100, 400), "wide.tif")
    train, val = split_by_image([wide], val_fraction=0.25, patch_size=32)
    assert train[0].cols == (0, 300) and val[0].cols == (300, 400)
    assert train[0].rows == val[0].rows == (0, 100)
    assert split_by_image([image], val_fraction=0.0) == ([whole_region(0, (300, 200))], [])
    with pytest.raises(InputError) as err:
        split_by_image([_image((100, 100), "small.tif")], patch_size=64)
    assert str(err.value) == (
        "small.tif: a single 100x100 image is too small to split into training and validation "
        "parts of at least patch_size=64 pixels; give more images or set validation.fraction to 0"
    )


def test_split_bad_arguments():
    with pytest.raises(InputError, match="expected at least one image, got none"):
        split_by_image([])
    with pytest.raises(InputError, match=r"validation.fraction: must be in \[0, 1\) \(got 1.0\)"):
        split_by_image([_image((40, 40))], val_fraction=1.0)
