"""Tests of decrappify.normalize: percentiles (exact and sampled), normalise and back."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from decrappify.errors import InputError
from decrappify.normalize import denormalize, normalize, percentile_range


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_percentile_range_exact_for_small_arrays(rng):
    x = rng.gamma(2.0, 100.0, size=(300, 200)).astype(np.float32)
    lo, hi = percentile_range(x, 0.1, 99.9)
    assert (lo, hi) == tuple(float(v) for v in np.percentile(x.astype(np.float64), [0.1, 99.9]))
    assert isinstance(lo, float) and isinstance(hi, float)


def test_percentile_range_dask_small_is_exact(rng):
    x = (rng.random((120, 90)) * 4000).astype(np.uint16)
    expected = percentile_range(x, 1.0, 99.0)
    assert percentile_range(da.from_array(x, chunks=(50, 40)), 1.0, 99.0) == expected


def test_percentile_range_sampled_numpy_is_close_and_deterministic(rng):
    x = rng.normal(1000.0, 100.0, size=(400, 500))
    exact = np.percentile(x, [1, 99])
    lo, hi = percentile_range(x, 1, 99, max_samples=20_000)
    assert lo == pytest.approx(exact[0], rel=0.01)
    assert hi == pytest.approx(exact[1], rel=0.01)
    assert percentile_range(x, 1, 99, max_samples=20_000) == (lo, hi)


def test_percentile_range_dask_reads_only_some_blocks(rng):
    values = rng.normal(500.0, 50.0, size=(1024, 1024)).astype(np.float32)
    touched: list[tuple[int, ...]] = []

    def record(block, block_info=None):
        touched.append(tuple(block_info[0]["chunk-location"]))
        return block

    lazy = da.from_array(values, chunks=(64, 64)).map_blocks(record, dtype=np.float32)
    lo, hi = percentile_range(lazy, 0.5, 99.5, max_samples=16 * 1024)
    assert len(set(touched)) <= 16 < 256
    exact = np.percentile(values, [0.5, 99.5])
    assert lo == pytest.approx(exact[0], rel=0.02)
    assert hi == pytest.approx(exact[1], rel=0.02)
    # Deterministic: the same blocks and values every time.
    assert percentile_range(lazy, 0.5, 99.5, max_samples=16 * 1024) == (lo, hi)


def test_percentile_range_flat_image_fallbacks():
    almost_flat = np.zeros((100, 100), dtype=np.uint8)
    almost_flat[3, 7] = 5
    assert percentile_range(almost_flat) == (0.0, 5.0)
    assert percentile_range(np.full((10, 10), 7.0)) == (7.0, 8.0)
    assert percentile_range(np.full((4, 4), np.nan)) == (0.0, 1.0)


def test_percentile_range_ignores_non_finite(rng):
    x = rng.random((50, 50))
    with_nan = x.copy()
    with_nan[0, :10] = np.nan
    with_nan[1, :3] = np.inf
    finite = with_nan[np.isfinite(with_nan)]
    assert percentile_range(with_nan, 5, 95) == tuple(np.percentile(finite, [5, 95]))


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (50, 10, "percentiles must satisfy 0 <= low < high <= 100 (got low=50, high=10)"),
        (-1, 10, "percentiles must satisfy 0 <= low < high <= 100 (got low=-1, high=10)"),
    ],
)
def test_percentile_range_rejects_bad_percentiles(low, high, message):
    with pytest.raises(InputError) as err:
        percentile_range(np.zeros((4, 4)), low, high)
    assert str(err.value) == message


def test_normalize_maps_lo_hi_to_0_1():
    x = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    y = normalize(x, 100.0, 1100.0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 0.1], [0.2, 1.0]], rtol=1e-6)


def test_normalize_dask_matches_numpy_bitwise(rng):
    x = (rng.random((64, 48)) * 65535).astype(np.uint16)
    lazy = normalize(da.from_array(x, chunks=(20, 16)), 12.5, 60000.25)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), normalize(x, 12.5, 60000.25))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_denormalize_round_trips_integers(rng, dtype):
    top = np.iinfo(dtype).max
    x = rng.integers(0, top + 1, size=(40, 30)).astype(dtype)
    lo, hi = 3.0, float(top) - 7.0
    back = denormalize(normalize(x, lo, hi), lo, hi, dtype)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, x)


def test_denormalize_rounds_and_clips():
    y = np.array([-1.0, 0.0, 0.0049, 0.0051, 1.0, 2.0], dtype=np.float32)
    out = denormalize(y, 0.0, 100.0, np.uint8)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 100, 200])
    out = denormalize(np.array([3.0, np.nan]), 0.0, 100.0, np.uint8)
    np.testing.assert_array_equal(out, [255, 0])
    as_float = denormalize(np.array([0.5], dtype=np.float32), 10.0, 20.0, np.float32)
    assert as_float.dtype == np.float32 and as_float[0] == 15.0


def test_denormalize_dask_is_lazy_and_equal(rng):
    y = rng.normal(0.5, 0.6, size=(30, 30)).astype(np.float32)
    lazy = denormalize(da.from_array(y, chunks=10), 100.0, 900.0, np.uint16)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), denormalize(y, 100.0, 900.0, np.uint16))


def test_normalize_rejects_bad_range():
    with pytest.raises(InputError) as err:
        normalize(np.zeros(3), 5.0, 5.0)
    assert str(err.value) == "normalisation range must have finite lo < hi (got lo=5.0, hi=5.0)"
    with pytest.raises(InputError, match="dtype must be an integer or float dtype"):
        denormalize(np.zeros(3), 0.0, 1.0, np.bool_)
