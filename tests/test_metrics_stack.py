"""Tests for decrappify.metrics.stack: per-plane evaluation of stacks with baselines."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.transform import downscale_local_mean

from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io.image import Image
from decrappify.metrics.baselines import upsample
from decrappify.metrics.core import METRIC_NAMES, evaluate_pair
from decrappify.metrics.planes import resize_plane
from decrappify.metrics.stack import StackResult, evaluate_stack, iter_evaluate_stack


class CountingArray:
    """Array-like that records every region dask reads from it."""

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
    return np.random.default_rng(31)


@pytest.fixture
def stack(rng):
    """A 4-plane uint16 ground truth, its 4x block-mean LR and a noisy prediction."""
    planes = [gaussian_filter(rng.random((48, 64)), 2.5) for _ in range(4)]
    gt = np.stack([(p - p.min()) / (p.max() - p.min()) for p in planes])
    gt = (100 + 5000 * gt).astype(np.uint16)
    lr = np.stack([downscale_local_mean(g.astype(np.float32), 4) for g in gt])
    pred = (gt + rng.normal(0, 150, gt.shape)).astype(np.float32)
    return pred, gt, lr


def test_per_slice_values_equal_plane_by_plane_evaluation(stack):
    pred, gt, lr = stack
    result = evaluate_stack(pred, gt, lr, baselines=("nearest", "bicubic"))
    assert isinstance(result, StackResult)
    assert result.methods == ("prediction", "nearest", "bicubic")
    assert result.baselines == ("nearest", "bicubic")
    assert result.n_slices == 4 and result.axes == "ZYX" and result.scale == 4
    assert result.shape == (4, 48, 64)
    for i in range(4):
        assert result.slice_metrics(i) == evaluate_pair(pred[i], gt[i])
        for method in ("nearest", "bicubic"):
            expected = evaluate_pair(upsample(lr[i], 4, method), gt[i])
            assert result.slice_metrics(i, method) == expected
    # the network beats the interpolation baselines here, and bicubic beats nearest
    assert result.mean()["psnr_norm"] > result.mean("bicubic")["psnr_norm"]
    assert result.mean("bicubic")["ssim_norm"] > result.mean("nearest")["ssim_norm"]


def test_mean_and_sd(stack):
    pred, gt, lr = stack
    result = evaluate_stack(pred, gt, lr)
    for k in METRIC_NAMES:
        values = [result.slice_metrics(i)[k] for i in range(4)]
        assert result.mean()[k] == pytest.approx(np.mean(values), rel=1e-12)
        assert result.sd()[k] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert result.sd()["psnr"] > 0


def test_dask_gives_the_same_as_numpy_one_plane_at_a_time(stack):
    pred, gt, lr = stack
    expected = evaluate_stack(pred, gt, lr, baselines=("bilinear", "bicubic"))
    sources = [CountingArray(a) for a in (pred, gt, lr)]
    lazy = [da.from_array(s, chunks=(1, 24, 32)) for s in sources]
    result = evaluate_stack(*lazy, baselines=("bilinear", "bicubic"))
    for method in expected.methods:
        for k in METRIC_NAMES:
            np.testing.assert_array_equal(result.values[method][k], expected.values[method][k])
    for source, array in zip(sources, lazy, strict=True):
        reads = [plane_of(key) for key in source.reads]
        reads = [r for r in reads if r is not None]  # dask's empty probe read
        # every read lies inside one plane (memory is bounded by a plane), and each chunk
        # of each plane is read exactly once
        chunks_per_plane = len(array.chunks[1]) * len(array.chunks[2])
        assert sorted(reads) == sorted(list(range(4)) * chunks_per_plane)


def plane_of(key):
    """Plane index of a read, None for an empty read; fails if it spans several planes."""
    first = key[0]
    if isinstance(first, int):
        return first
    if first.stop == first.start:
        return None
    assert first.stop - first.start == 1, key
    return first.start


def test_a_2d_pair_is_a_one_plane_stack(stack):
    pred, gt, lr = stack
    result = evaluate_stack(pred[0], gt[0], lr[0])
    assert result.n_slices == 1 and result.axes == "YX" and result.shape == (48, 64)
    assert result.mean() == evaluate_pair(pred[0], gt[0])
    assert result.sd() == dict.fromkeys(METRIC_NAMES, 0.0)
    no_lr = evaluate_stack(pred[0], gt[0])
    assert no_lr.methods == ("prediction",) and no_lr.scale is None


def test_progress_events(stack):
    pred, gt, lr = stack
    gen = iter_evaluate_stack(pred, Image(gt, axes="TYX", source="/data/movie.tif"), lr)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert all(isinstance(e, Progress) and e.total == 4 and e.phase == "evaluate" for e in events)
    assert events[1].message == "/data/movie.tif: plane 2/4"
    assert events[2].metrics == result.slice_metrics(2)
    assert result.axes == "TYX" and result.source == "/data/movie.tif"


def test_shape_mismatch_messages(stack):
    pred, gt, lr = stack
    with pytest.raises(InputError) as err:
        evaluate_stack(pred[0], gt[0, :46])
    assert str(err.value) == (
        "pred shape (48, 64) does not match gt shape (46, 64); pass --crop to compare "
        "the common region, or --resize to resample onto the gt grid"
    )
    with pytest.raises(InputError) as err:
        evaluate_stack(pred, gt, lr[:, :11], scale=4)
    assert str(err.value) == (
        "lr upsampled by scale 4 shape (4, 44, 64) does not match gt shape (4, 48, 64); pass "
        "--crop to compare the common region, or --resize to resample onto the gt grid"
    )
    with pytest.raises(InputError, match=r"has 3 planes but gt shape \(4, 48, 64\) has 4"):
        evaluate_stack(pred[:3], gt, resize=True)
    with pytest.raises(InputError, match=r"scale: cannot infer it, gt shape \(4, 48, 64\) is not"):
        evaluate_stack(pred, gt, lr[:, :, :15])
    with pytest.raises(InputError, match=r"pred has 2 dimensions \(48, 64\) but gt has 3"):
        evaluate_stack(pred[0], gt)
    with pytest.raises(InputError, match="baseline .cubic.: expected one of"):
        evaluate_stack(pred, gt, lr, baselines=("cubic",))
    with pytest.raises(InputError, match="data_range: expected a positive number, got -1"):
        evaluate_stack(pred, gt, data_range=-1)
    with pytest.raises(InputError, match="crop/resize: choose one way"):
        evaluate_stack(pred, gt, crop=True, resize=True)


def test_crop_compares_the_common_top_left_region(stack):
    pred, gt, lr = stack
    result = evaluate_stack(pred[:3, :45, :], gt, lr[:, :, :15], crop=True, scale=4)
    assert result.shape == (3, 45, 60)
    for i in range(3):
        assert result.slice_metrics(i) == evaluate_pair(pred[i, :45, :60], gt[i, :45, :60])
        bicubic = upsample(lr[i, :, :15], 4, "bicubic")[:45, :60]
        assert result.slice_metrics(i, "bicubic") == evaluate_pair(bicubic, gt[i, :45, :60])


def test_resize_resamples_prediction_and_baselines_onto_the_gt_grid(stack):
    pred, gt, lr = stack
    fine = np.stack([resize_plane(p, (96, 128), 1) for p in pred])
    result = evaluate_stack(fine, gt, lr[:, :, :15], resize=True, scale=4)
    assert result.shape == (4, 48, 64)
    for i in range(4):
        back = resize_plane(fine[i], (48, 64), 3)
        assert result.slice_metrics(i) == evaluate_pair(back, gt[i])
        bicubic = resize_plane(lr[i, :, :15], (48, 64), 3)
        assert result.slice_metrics(i, "bicubic") == evaluate_pair(bicubic, gt[i])
    # the factor need not be known: baselines go straight onto the gt grid
    unknown = evaluate_stack(fine, gt, lr[:, :, :15], resize=True)
    assert unknown.scale is None
    np.testing.assert_array_equal(
        unknown.values["bicubic"]["psnr"], result.values["bicubic"]["psnr"]
    )


def test_explicit_data_range_and_percentiles_are_passed_through(stack):
    pred, gt, _ = stack
    result = evaluate_stack(pred, gt, data_range=6000.0, norm_low=1.0, norm_high=99.0)
    assert result.data_range == 6000.0
    assert (result.norm_low, result.norm_high) == (1.0, 99.0)
    assert result.slice_metrics(1) == evaluate_pair(
        pred[1], gt[1], data_range=6000.0, norm_low=1.0, norm_high=99.0
    )


def test_a_plane_that_cannot_be_scored_is_named(stack):
    pred, gt, _ = stack
    gt = gt.copy()
    gt[2] = 7
    with pytest.raises(InputError, match=r"^slice 2 of 4: gt: image is constant \(value 7.0\)"):
        evaluate_stack(pred, gt)


def test_unknown_method_lookup(stack):
    pred, gt, _ = stack
    result = evaluate_stack(pred[0], gt[0])
    with pytest.raises(InputError, match="method: expected one of prediction, got 'bicubic'"):
        result.mean("bicubic")
