"""Tests of predict.tile_geometry and predict.block_geometry: tiles, weights, block regions."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from decrappify.errors import InputError
from decrappify.predict.block_geometry import input_region_for_output, output_blocks
from decrappify.predict.receptive import radius_from_response
from decrappify.predict.tile_geometry import (
    Tile,
    default_overlap,
    normalize_bounds,
    plan_tiles,
    ramp_profile,
    split_overlap,
    tile_quantum,
    validate_tile,
)
from decrappify.predict.windows import border_extension, extract_window, reflect_indices


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def weight_sum(tiles: list[Tile], region, scale: int) -> np.ndarray:
    (y0, y1), (x0, x1) = region
    total = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale))
    for tile in tiles:
        total[tile.output_slices((y0, x0))] += tile.weights(np.float64)
    return total


def random_config(rng):
    scale = int(rng.choice([1, 2, 3, 4, 8]))
    quantum = tile_quantum(scale)
    tile = quantum * int(rng.integers(1, 9))
    overlap = int(rng.integers(0, tile // 2 + 1))
    shape = tuple(int(n) for n in rng.integers(1, 1 + 1200 // (scale * 4), size=2))
    blend = float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]))
    return shape, tile, overlap, scale, blend


# --- blending weights sum to one ------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "tile", "overlap", "scale"),
    [
        ((512, 512), 128, 32, 4),  # divisible
        ((500, 333), 128, 32, 4),  # not divisible by the stride
        ((20, 13), 64, 16, 2),  # smaller than one tile
        ((1, 1), 32, 0, 1),  # a single pixel
        ((1, 300), 32, 16, 1),  # a single row, overlap of exactly half the tile
        ((97, 101), 16, 7, 2),  # odd overlap
        ((64, 200), (32, 64), (8, 16), 4),  # rectangular tiles and overlaps
        ((300, 300), 96, 0, 1),  # no overlap: tiles abut
    ],
)
@pytest.mark.parametrize("blend", [0.0, 0.5, 1.0])
def test_weights_sum_to_one(shape, tile, overlap, scale, blend):
    tiles = plan_tiles(shape, tile, overlap, scale=scale, blend=blend)
    total = weight_sum(tiles, ((0, shape[0]), (0, shape[1])), scale)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_weights_sum_to_one_for_many_random_plans(rng):
    for _ in range(250):
        shape, tile, overlap, scale, blend = random_config(rng)
        tiles = plan_tiles(shape, tile, overlap, scale=scale, blend=blend)
        total = weight_sum(tiles, ((0, shape[0]), (0, shape[1])), scale)
        assert np.abs(total - 1.0).max() < 1e-12, (shape, tile, overlap, scale, blend)


def test_weights_sum_to_one_over_a_region(rng):
    for _ in range(100):
        shape, tile, overlap, scale, blend = random_config(rng)
        y0, x0 = (int(rng.integers(0, n)) for n in shape)
        y1, x1 = (int(rng.integers(lo + 1, n + 1)) for lo, n in zip((y0, x0), shape, strict=True))
        region = ((y0, y1), (x0, x1))
        tiles = plan_tiles(shape, tile, overlap, scale=scale, blend=blend, region=region)
        for t in tiles:  # cores stay inside the region
            for (c0, c1), (r0, r1) in zip(t.core, region, strict=True):
                assert r0 <= c0 < c1 <= r1
        total = weight_sum(tiles, region, scale)
        assert np.abs(total - 1.0).max() < 1e-12, (shape, tile, overlap, scale, blend, region)


def test_float32_weights_sum_to_one_within_float_precision():
    tiles = plan_tiles((300, 260), 64, 24, scale=4)
    total = np.zeros((1200, 1040), dtype=np.float32)
    for t in tiles:
        total[t.output_slices()] += t.weights()
    assert tiles[0].weights().dtype == np.float32
    assert np.abs(total - 1.0).max() < 1e-6


# --- geometry -------------------------------------------------------------------------


def test_plan_geometry_stride_margins_and_full_size_windows():
    # 1000 px, tile 256, overlap 32 (margin 8, band 16): 5 tiles, shrunk to 232 px.
    tiles = plan_tiles((1000, 1000), 256, 32, scale=4)
    assert len(tiles) == 25
    assert {t.shape for t in tiles} == {(232, 232)}
    starts = sorted({t.window[1][0] for t in tiles})
    assert np.diff(starts).tolist() == [232 - 32] * 4  # stride = tile - overlap
    margin, band = split_overlap(32)
    assert (margin, band) == (8, 16)
    for t in tiles:
        for (w0, w1), (c0, c1), (lo, hi) in zip(t.window, t.core, t.ramps, strict=True):
            # every core pixel has `margin` context inside its window
            assert c0 - w0 >= margin and w1 - c1 >= margin
            assert lo in (0, band) and hi in (0, band)
    # windows are centred on the image: the reflect-padded overhang is split evenly
    (w0, _), (_, w1) = tiles[0].window[1], tiles[-1].window[1]
    assert abs(-w0 - (w1 - 1000)) <= 1


def test_tile_count_is_minimal(rng):
    for _ in range(200):
        shape, tile, overlap, scale, blend = random_config(rng)
        margin, band = split_overlap(overlap, blend)
        stride = tile - overlap
        tiles = plan_tiles(shape, tile, overlap, scale=scale, blend=blend)
        rows = len({t.index[0] for t in tiles})
        cols = len({t.index[1] for t in tiles})
        for n, count in zip(shape, (rows, cols), strict=True):
            # `count` windows cover it, one fewer (of the full tile size) would not
            assert count * stride + band >= n
            assert count == 1 or (count - 1) * stride + band < n
        assert tiles[0].shape[0] <= tile and tiles[0].shape[0] % tile_quantum(scale) == 0


def test_image_smaller_than_a_tile_is_one_small_tile():
    (only,) = plan_tiles((20, 13), 256, 32, scale=4)
    # 20 px + 2 × margin 8 = 36 → 40 (multiple of 8); 13 + 16 = 29 → 32
    assert only.shape == (40, 32)
    assert only.core == ((0, 20), (0, 13))
    assert only.ramps == ((0, 0), (0, 0))
    np.testing.assert_array_equal(only.weights(), 1.0)


def test_weights_are_not_ramped_at_image_borders_and_fade_in_the_band():
    tiles = plan_tiles((40, 150), 64, 16, scale=2)  # one row, three columns
    assert [t.index for t in tiles] == [(0, 0), (0, 1), (0, 2)]
    first, second, _ = tiles
    w_first = first.weights(np.float64)
    assert w_first[:, 0].min() == 1.0 and w_first[0, :].min() > 0.0  # border: weight 1
    band = split_overlap(16)[1] * 2  # HR pixels
    fade_out = w_first[0, -band:]
    fade_in = second.weights(np.float64)[0, :band]
    assert np.all(np.diff(fade_out) < 0) and np.all(np.diff(fade_in) > 0)
    np.testing.assert_allclose(fade_out + fade_in, 1.0, atol=1e-15)
    np.testing.assert_allclose(fade_in, fade_out[::-1], atol=1e-15)  # symmetric ramps
    # the band sits in the middle of the overlap of the two windows
    (_, a1), (b0, _) = first.window[1], second.window[1]
    assert (b0 + 4, a1 - 4) == (second.core[1][0], first.core[1][1])


def test_ramp_profile_values():
    profile = ramp_profile(10, 4, 2)
    expected_up = np.sin(0.5 * np.pi * (np.arange(4) + 0.5) / 4) ** 2
    np.testing.assert_allclose(profile[:4], expected_up)
    np.testing.assert_array_equal(profile[4:8], 1.0)
    np.testing.assert_allclose(profile[8:], np.cos(0.5 * np.pi * np.array([0.5, 1.5]) / 2) ** 2)
    assert not profile.flags.writeable
    with pytest.raises(InputError, match=r"ramps 6 \+ 6 do not fit in a profile of length 10"):
        ramp_profile(10, 6, 6)


def test_tile_slices_map_core_between_network_output_and_result():
    tiles = plan_tiles((40, 70), 32, 8, scale=2, region=((4, 36), (10, 70)))
    origin = (4, 10)
    for t in tiles:
        crop_y, crop_x = t.crop_slices()
        out_y, out_x = t.output_slices(origin)
        assert crop_y.stop - crop_y.start == out_y.stop - out_y.start == t.output_shape[0]
        assert crop_x.stop - crop_x.start == out_x.stop - out_x.start == t.output_shape[1]
        assert crop_y.start == (t.core[0][0] - t.window[0][0]) * 2
        assert out_x.start == (t.core[1][0] - origin[1]) * 2
        assert t.weights().shape == t.output_shape


def test_region_windows_prefer_real_context_over_reflection():
    # A block with an 8 px halo on the right only (left is the image border).
    tiles = plan_tiles((40, 48), 64, 16, scale=2, region=((0, 40), (0, 40)))
    (only,) = tiles
    (_, _), (x0, x1) = only.window
    assert x1 <= 48 and only.core[1] == (0, 40)  # uses the halo, reflects only at the border


# --- validation -------------------------------------------------------------------------


def test_tile_times_scale_must_be_a_multiple_of_32():
    with pytest.raises(InputError) as info:
        plan_tiles((500, 500), 100, 8, scale=4)
    assert str(info.value) == "tile × scale must be a multiple of 32 (tile 100 × scale 4 = 400)"
    assert validate_tile(24, 4) == (24, 24)
    assert validate_tile((16, 48), 2) == (16, 48)
    assert tile_quantum(4) == 8 and tile_quantum(3) == 32 and tile_quantum(64) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"shape": (64, 64), "tile": 64, "overlap": 40},
            "overlap must be at most half the tile (tile 64, overlap 40)",
        ),
        ({"shape": (64, 64), "tile": 64, "overlap": -1}, "overlap must be >= 0 (got -1)"),
        ({"shape": (64, 64), "tile": 0, "overlap": 0}, "tile must be positive (got 0)"),
        (
            {"shape": (0, 64), "tile": 32, "overlap": 0},
            "shape: expected a non-empty plane, got (0, 64)",
        ),
        (
            {"shape": (64, 64, 3), "tile": 32, "overlap": 0},
            "shape: expected (H, W), got (64, 64, 3)",
        ),
        (
            {"shape": (64, 64), "tile": 32, "overlap": 8, "blend": 1.5},
            "blend must be between 0 and 1 (got 1.5)",
        ),
        (
            {"shape": (64, 64), "tile": 32.0, "overlap": 8},
            "tile must be an integer or a pair of integers (got 32.0)",
        ),
        (
            {"shape": (64, 64), "tile": 32, "overlap": 8, "region": ((0, 65), (0, 10))},
            "region: expected a non-empty rectangle inside (64, 64), got ((0, 65), (0, 10))",
        ),
    ],
)
def test_plan_errors(kwargs, message):
    with pytest.raises(InputError) as info:
        plan_tiles(**kwargs)
    assert str(info.value) == message


def test_normalize_bounds_accepts_slices_and_pairs():
    assert normalize_bounds((slice(2, 5), slice(None)), (10, 20)) == ((2, 5), (0, 20))
    assert normalize_bounds([(0, 3), (4, 8)], (10, 20)) == ((0, 3), (4, 8))
    with pytest.raises(InputError, match="slices must have no step"):
        normalize_bounds((slice(0, 10, 2), slice(None)), (10, 20))


# --- overlap rules ------------------------------------------------------------------------


def test_split_overlap():
    assert split_overlap(32) == (8, 16)
    assert split_overlap(10) == (2, 6)
    assert split_overlap(10, blend=0.0) == (5, 0)
    assert split_overlap(11, blend=0.0) == (5, 1)
    assert split_overlap(10, blend=1.0) == (0, 10)
    for overlap in range(40):
        for blend in (0.0, 0.3, 0.5, 1.0):
            margin, band = split_overlap(overlap, blend)
            assert 2 * margin + band == overlap and margin >= 0 and band >= 0


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("blend", [0.0, 0.5, 0.75])
def test_default_overlap_is_the_smallest_that_covers_the_radius(scale, blend):
    for radius in range(1, 40):
        overlap = default_overlap(radius, scale, blend=blend)
        margin, band = split_overlap(overlap, blend)
        assert margin >= radius
        min_band = -(-16 // scale) if blend > 0 else 0
        assert band >= min_band
        smaller = split_overlap(overlap - 1, blend)
        assert smaller[0] < radius or smaller[1] < min_band
    assert default_overlap(0, scale) == 0


def test_default_overlap_values():
    assert default_overlap(8, 4) == 32  # margin 8, band 16 LR = 64 HR pixels
    assert default_overlap(2, 4) == 8  # margin 2, band 4 LR = 16 HR pixels
    assert default_overlap(2, 2) == 14  # the band must reach 16 HR pixels: 8 LR
    assert default_overlap(5, 1, blend=0.0) == 10
    with pytest.raises(InputError, match="blend must be below 1 to leave a context margin"):
        default_overlap(3, 2, blend=1.0)


# --- reading windows ----------------------------------------------------------------------


def test_reflect_indices_match_numpy_pad(rng):
    for _ in range(200):
        length = int(rng.integers(1, 12))
        start = int(rng.integers(-40, 20))
        stop = start + int(rng.integers(1, 60))
        pad = 100
        padded = np.pad(np.arange(length), pad, mode="reflect")
        expected = padded[start + pad : stop + pad]
        np.testing.assert_array_equal(reflect_indices(start, stop, length), expected)


def test_extract_window_equals_reflect_padded_crop(rng):
    image = rng.random((3, 17, 23)).astype(np.float32)
    padded = np.pad(image, ((0, 0), (60, 60), (60, 60)), mode="reflect")
    for window in [
        ((0, 17), (0, 23)),
        ((-5, 12), (3, 40)),
        ((-40, 30), (-50, 2)),
        ((16, 17), (22, 60)),
    ]:
        (y0, y1), (x0, x1) = window
        got = extract_window(image, window)
        np.testing.assert_array_equal(got, padded[:, y0 + 60 : y1 + 60, x0 + 60 : x1 + 60])
        np.testing.assert_array_equal(extract_window(image[1], window), got[1])


def test_extract_window_reads_only_what_it_needs_from_lazy_arrays(rng):
    image = rng.random((64, 64)).astype(np.float32)
    lazy = da.from_array(image, chunks=16)
    got = extract_window(lazy, ((-4, 12), (50, 70)))
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, np.pad(image, 8, mode="reflect")[4:20, 58:78])


# --- blocks for the dask stage -----------------------------------------------------------


def test_input_region_for_output():
    # An interior block: the full halo on every side.
    inputs, region = input_region_for_output(
        ((64, 128), (256, 320)), scale=4, halo=8, lr_shape=(100, 120)
    )
    assert inputs == ((8, 40), (56, 88))
    assert region == ((8, 24), (8, 24))
    # A corner block: the halo is clipped at the image border.
    inputs, region = input_region_for_output(
        (slice(0, 32), slice(448, 480)), scale=4, halo=8, lr_shape=(100, 120)
    )
    assert inputs == ((0, 16), (104, 120))
    assert region == ((0, 8), (8, 16))


def test_input_region_for_output_errors():
    with pytest.raises(InputError) as info:
        input_region_for_output(((0, 30), (0, 32)), scale=4, halo=8, lr_shape=(100, 120))
    assert str(info.value) == (
        "output block ((0, 30), (0, 32)) must start and stop on multiples of the scale 4"
    )
    with pytest.raises(InputError, match=r"inside \(400, 480\)"):
        input_region_for_output(((0, 32), (0, 484)), scale=4, halo=8, lr_shape=(100, 120))
    with pytest.raises(InputError, match=r"halo must be >= 0 \(got -1\)"):
        input_region_for_output(((0, 32), (0, 32)), scale=4, halo=-1, lr_shape=(100, 120))


def test_output_blocks_tile_the_output_exactly():
    blocks = output_blocks((50, 37), 4, (64, 90))
    hits = np.zeros((200, 148), dtype=int)
    for (y0, y1), (x0, x1) in blocks:
        assert y0 % 4 == 0 and x0 % 4 == 0 and y1 % 4 == 0 and x1 % 4 == 0
        hits[y0:y1, x0:x1] += 1
    np.testing.assert_array_equal(hits, 1)
    assert blocks[0] == ((0, 64), (0, 88))  # 90 rounded down to a multiple of the scale


# --- receptive field from a response map ---------------------------------------------------


def test_radius_from_response():
    response = np.zeros((21, 21))
    response[10, 10] = 100.0
    response[7, 12] = 1.0  # Chebyshev distance 3
    response[10, 19] = 0.01  # distance 9, a 1e-4 tail
    assert radius_from_response(response, (10, 10)) == 9  # exact support
    assert radius_from_response(response, (10, 10), tol=1e-3) == 3
    assert radius_from_response(response, (10, 10), tol=0.5) == 0
    assert radius_from_response(np.zeros((5, 5)), (2, 2)) == 0


def test_windows_read_the_context_past_the_image_borders():
    # margin 8 (overlap 32) and a context of 22: the cores reach 14 past the borders,
    # rounded up to the network's grid of 8; a region side 24 from the array's edge reads
    # real pixels there and is not extended
    assert border_extension(((0, 96), (24, 60)), (96, 84), (8, 8), 22, 8) == ((16, 16), (0, 0))
    assert border_extension(((0, 96), (0, 84)), (96, 84), (8, 8), 8, 8) == ((0, 0), (0, 0))
    plan = plan_tiles((96, 84), 64, 32, scale=2, multiple=16, grid=8, context=22)
    weights = np.zeros((2 * (96 + 32), 2 * (84 + 32)))
    for tile in plan:
        assert all(start % 8 == 0 for start, _ in tile.window)  # on the grid
        weights[tile.output_slices((-16, -16))] += tile.weights()
    np.testing.assert_allclose(weights, 1.0, atol=1e-6)  # the extended region, once
    for axis, n in ((0, 96), (1, 84)):
        assert min(t.window[axis][0] for t in plan) <= -22
        assert max(t.window[axis][1] for t in plan) >= n + 22
    # without a context, windows read the margin past the borders (on the grid: 16)
    plain = plan_tiles((96, 84), 64, 32, scale=2, multiple=16, grid=8)
    assert min(t.window[0][0] for t in plain) == -16
