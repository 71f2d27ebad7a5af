"""Tests for decrappify.data.pairs and decrappify.data.dataset: LR/HR pairs made on the fly."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import torch

from decrappify.config.crappify import (
    CrappifyConfig,
    DownsampleStep,
    GaussianNoiseStep,
    PoissonStep,
    get_preset,
)
from decrappify.config.data import AugmentConfig, BackgroundConfig, DataConfig, ValidationConfig
from decrappify.config.normalization import NormalizationConfig
from decrappify.data.dataset import (
    EpochSampler,
    PairDataset,
    ValidationSet,
    build_datasets,
    describe,
    make_loaders,
)
from decrappify.data.pairs import PairMaker, image_stats
from decrappify.data.patches import whole_region
from decrappify.errors import InputError
from decrappify.io.image import Image

NO_AUGMENT = AugmentConfig(dihedral=False, contrast=(1.0, 1.0), brightness=0.0)
NO_BACKGROUND = BackgroundConfig(enabled=False)


def _area(scale: int, *steps) -> CrappifyConfig:
    """A crappifier: area downsampling then the given steps (noise)."""
    down = [DownsampleStep(method="area")] if scale > 1 else []
    return CrappifyConfig(scale=scale, steps=[*down, *steps])


def _block_mean(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape[-2:]
    return x.reshape(*x.shape[:-2], h // s, s, w // s, s).mean(axis=(-3, -1))


def _config(**kwargs) -> DataConfig:
    base = {"patch_size": 32, "samples_per_epoch": 8, "batch_size": 4, "validation": {"count": 0}}
    base.update(kwargs)
    return DataConfig.model_validate(base)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


@pytest.fixture
def stacks(rng):
    return [rng.integers(100, 4000, size=(4, 96, 80)).astype(np.uint16) for _ in range(3)]


# --- shapes and dtypes ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("n_frames", [1, 3])
def test_pair_shapes(stacks, scale, n_frames):
    config = _config(patch_size=64, n_frames=n_frames)
    train, val = build_datasets(stacks, config, _area(scale, GaussianNoiseStep(sigma=0.05)))
    assert val is None and len(train) == 8
    lr, hr = train[0]
    assert lr.shape == (n_frames, 64 // scale, 64 // scale) and hr.shape == (1, 64, 64)
    assert lr.dtype == hr.dtype == torch.float32
    loader, _ = make_loaders(train)
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0][0].shape == (4, n_frames, 64 // scale, 64 // scale)
    assert batches[0][1].shape == (4, 1, 64, 64)


def test_sixteen_bit_kept_in_normalised_units(rng):
    # a 16-bit image whose signal spans 1000..61000: normalised with its own percentiles
    image = rng.uniform(1000, 61000, size=(128, 128)).astype(np.uint16)
    config = _config(augment=NO_AUGMENT.model_dump(), background=NO_BACKGROUND.model_dump())
    train, _ = build_datasets([image], config, _area(1))
    stats = train.maker.stats[0]
    assert stats.lo == pytest.approx(np.percentile(image, 0.1))
    assert stats.hi == pytest.approx(np.percentile(image, 99.9))
    pair = train.sample(0, 0)
    p = pair.position
    expected = (image[p.row : p.row + 32, p.col : p.col + 32] - stats.lo) / (stats.hi - stats.lo)
    np.testing.assert_allclose(pair.hr[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pair.lr[0], expected, rtol=1e-5, atol=1e-6)
    # distinct 16-bit levels survive (no 8-bit squashing)
    assert len(np.unique(pair.hr)) > 256


# --- determinism --------------------------------------------------------------------------------


def test_same_key_same_sample_different_key_different(stacks):
    config = _config(n_frames=3, samples_per_epoch=6)
    crappify = get_preset("fluorescence", scale=2)
    train, _ = build_datasets(stacks, config, crappify)
    again, _ = build_datasets(stacks, config, crappify)
    for index in range(6):
        a, b = train[(1, index)], again[(1, index)]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    lr0, hr0 = train[(0, 0)]
    assert not torch.equal(train[(0, 1)][1], hr0)
    assert not torch.equal(train[(1, 0)][1], hr0)
    # integer indices use the dataset's epoch
    train.set_epoch(1)
    assert torch.equal(train[3][0], again[(1, 3)][0])
    # another seed gives other samples
    other, _ = build_datasets(stacks, _config(n_frames=3, samples_per_epoch=6, seed=1), crappify)
    assert not torch.equal(other[(0, 0)][1], hr0)
    with pytest.raises(IndexError, match=r"indices in \[0, 6\)"):
        train.sample(0, 6)


def test_epoch_sampler_advances_and_resumes(stacks):
    train, _ = build_datasets(stacks, _config(samples_per_epoch=8), _area(2))
    loader, _ = make_loaders(train, batch_size=4)
    epoch0 = [hr for _, hr in loader]
    epoch1 = [hr for _, hr in loader]
    assert not torch.equal(epoch0[0], epoch1[0])
    assert loader.sampler.epoch == 2
    loader.sampler.set_epoch(1)
    resumed = [hr for _, hr in loader]
    assert all(torch.equal(a, b) for a, b in zip(epoch1, resumed, strict=True))
    fresh, _ = make_loaders(train, batch_size=4, start_epoch=1)
    assert torch.equal(next(iter(fresh))[1], epoch1[0])
    assert list(EpochSampler(3, start_epoch=5)) == [(5, 0), (5, 1), (5, 2)]


def test_workers_give_the_same_batches(stacks):
    """Sample randomness comes from the key only: no duplicated or worker-dependent RNG."""
    train, _ = build_datasets(stacks, _config(samples_per_epoch=8), get_preset("em", scale=2))
    serial, _ = make_loaders(train, batch_size=2, num_workers=0)
    parallel, _ = make_loaders(train, batch_size=2, num_workers=2)
    a = [lr for lr, _ in serial]
    b = [lr for lr, _ in parallel]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    flat = torch.cat(b).reshape(8, -1)
    assert len({tuple(row[:16].tolist()) for row in flat}) == 8


# --- background rejection ---------------------------------------------------------------------


def test_background_rejection_prefers_the_signal(rng):
    image = rng.normal(100, 2, size=(256, 256))
    image[96:160, 96:160] += rng.normal(3000, 400, size=(64, 64))
    image = image.clip(0, 65535).astype(np.uint16)
    square = np.zeros((256, 256), bool)
    square[96:160, 96:160] = True

    def overlap_fraction(background: dict) -> float:
        config = _config(samples_per_epoch=300, background=background)
        train, _ = build_datasets([image], config, _area(2))
        hits = []
        for index in range(300):
            p = train.sample(0, index).position
            hits.append(square[p.row : p.row + 32, p.col : p.col + 32].any())
        return float(np.mean(hits))

    expected = (64 + 31) ** 2 / 225**2  # share of positions touching the square
    assert abs(overlap_fraction({"enabled": False}) - expected) < 0.07
    assert overlap_fraction({"enabled": True, "std_fraction": 0.25, "max_tries": 10}) > 0.8


def test_background_rejection_is_bounded(rng):
    # one tiny bright spot: nearly every candidate is background, sampling still ends
    image = rng.normal(100, 2, size=(256, 256))
    image[120:123, 120:123] = 3000
    image = image.astype(np.uint16)
    config = _config(samples_per_epoch=20, background={"enabled": True, "max_tries": 3})
    train, _ = build_datasets([image], config, _area(2))
    tries = [train.sample(0, index).tries for index in range(20)]
    assert max(tries) == 3 and np.mean(tries) > 2.5
    # a flat image gives no training signal at all: it is refused up front
    flat = np.full((64, 64), 7, np.uint16)
    with pytest.raises(InputError, match="HR image 0: every pixel is 7; a constant image"):
        build_datasets([flat], config, _area(2))


# --- augmentation and alignment ---------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_augmented_pairs_stay_aligned(rng, scale):
    """Dihedral, contrast and brightness are applied consistently to LR and HR."""
    image = rng.uniform(0, 60000, size=(3, 128, 128)).astype(np.uint16)
    augment = {"dihedral": True, "contrast": [0.5, 1.5], "brightness": 0.2}
    config = _config(patch_size=64, samples_per_epoch=24, augment=augment)
    train, _ = build_datasets([image], config, _area(scale))
    seen = set()
    for index in range(24):
        pair = train.sample(0, index)
        seen.add(pair.augment.dihedral)
        np.testing.assert_allclose(_block_mean(pair.hr[0], scale), pair.lr[0], atol=1e-5)
        # and the transform really is applied: the un-transformed target differs
        p = pair.position
        stats = train.maker.stats[0]
        raw = (image[p.plane, p.row : p.row + 64, p.col : p.col + 64] - stats.lo) / (
            stats.hi - stats.lo
        )
        jittered = raw * pair.augment.contrast + pair.augment.brightness
        if pair.augment.dihedral in (1, 2, 3, 4, 5, 6, 7):
            assert not np.allclose(pair.hr[0], jittered, atol=1e-4)
        else:
            np.testing.assert_allclose(pair.hr[0], jittered, atol=1e-4)
    assert len(seen) >= 6


def test_brightness_offset_survives_shot_noise(rng):
    """A negative offset added before Poisson noise would be clipped: LR and HR must agree."""
    image = rng.uniform(0, 1000, size=(64, 64)).astype(np.uint16)
    image[:32] = 0  # half background
    augment = {"dihedral": False, "contrast": [1, 1], "brightness": 0.2, "intensity_probability": 1}
    config = _config(
        patch_size=64, samples_per_epoch=12, augment=augment, background={"enabled": False}
    )
    crappify = _area(2, PoissonStep(photons=2000.0))
    train, _ = build_datasets([image], config, crappify)
    for index in range(12):
        pair = train.sample(0, index)
        diff = pair.lr[0] - _block_mean(pair.hr[0], 2)
        assert abs(float(diff.mean())) < 0.01, pair.augment
        assert abs(pair.augment.brightness) > 0


def test_lr_noise_only_on_the_input(rng):
    image = rng.uniform(0, 60000, size=(64, 64)).astype(np.uint16)
    augment = {"dihedral": False, "contrast": [1, 1], "brightness": 0.0, "lr_noise": 0.3}
    config = _config(samples_per_epoch=10, augment=augment)
    train, _ = build_datasets([image], config, _area(2))
    for index in range(10):
        pair = train.sample(0, index)
        residual = pair.lr[0] - _block_mean(pair.hr[0], 2)
        assert float(residual.std()) == pytest.approx(pair.augment.lr_noise, rel=0.25, abs=2e-3)


# --- 2.5D -------------------------------------------------------------------------------------


def test_frames_are_neighbouring_planes_with_shared_parameters():
    # plane z is constant z * 1000: the LR frames' means show which planes were stacked
    stack = (np.arange(6, dtype=np.uint16)[:, None, None] * 1000).repeat(64, 1).repeat(64, 2)
    crappify = _area(2, GaussianNoiseStep(sigma=(0.01, 0.3)))
    config = _config(n_frames=5, samples_per_epoch=12, augment=NO_AUGMENT.model_dump())
    train, _ = build_datasets([stack], config, crappify)
    stats = train.maker.stats[0]
    sigmas = []
    for index in range(12):
        pair = train.sample(0, index)
        z = pair.position.plane
        assert pair.planes == tuple(
            [abs(z + d) if z + d < 6 else 10 - (z + d) for d in range(-2, 3)]
        )
        levels = (np.array(pair.planes) * 1000 - stats.lo) / (stats.hi - stats.lo)
        np.testing.assert_allclose(pair.lr.mean(axis=(1, 2)), levels, atol=0.1)
        np.testing.assert_allclose(pair.hr, levels[2], atol=1e-5)
        noise = (pair.lr - levels[:, None, None]).std(axis=(1, 2))
        # one sigma drawn per sample, shared by its frames; independent noise per plane
        assert noise.max() / noise.min() < 1.35
        sigmas.append(noise.mean())
        distinct = {p: i for i, p in enumerate(pair.planes)}
        if len(distinct) > 1:
            a, b = list(distinct.values())[:2]
            assert not np.allclose(pair.lr[a] - levels[a], pair.lr[b] - levels[b])
    assert max(sigmas) / min(sigmas) > 2


def test_n_frames_needs_stacks(rng):
    image = rng.integers(0, 255, size=(64, 64)).astype(np.uint8)
    with pytest.raises(InputError) as err:
        build_datasets([Image(image, source="flat.tif")], _config(n_frames=3), _area(2))
    assert (
        str(err.value)
        == "flat.tif: n_frames=3 needs a stack (ZYX or TYX), got a 2D image of shape (64, 64)"
    )


# --- validation -------------------------------------------------------------------------------


def test_validation_split_by_image_and_fixed_crops(rng):
    images = [
        Image(rng.integers(0, 255, size=(64 + 8 * i, 64)).astype(np.uint8), source=f"im{i}.tif")
        for i in range(5)
    ]
    config = _config(validation={"count": 2, "patches": 6})
    crappify = get_preset("em", scale=2)
    train, val = build_datasets(images, config, crappify)
    assert isinstance(val, ValidationSet) and len(val) == 6
    train_images = {r.image for r in train.maker.regions}
    val_images = {r.image for r in val.maker.regions}
    assert len(val_images) == 2 and train_images.isdisjoint(val_images)
    assert all(
        train.sample(e, i).position.image in train_images for e in range(2) for i in range(8)
    )
    crops = [val.crop(k) for k in range(6)]
    assert all(c.position.image in val_images for c in crops)
    assert all(c.augment.contrast == 1.0 and c.augment.dihedral == 0 for c in crops)
    # identical every call, and for a freshly built set (another run)
    _, val_again = build_datasets(images, config, crappify)
    for k in range(6):
        a, b = val[k], val_again[k]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(val[k][0], a[0])
    assert val_again.crop(0).crappify_seed == crops[0].crappify_seed
    assert len({c.position for c in crops}) == 6
    _, loader = make_loaders(train, val, batch_size=4)
    # validation crops are larger than the 32² patches: as large as the 64-pixel images allow
    assert [tuple(b[1].shape) for b in loader] == [(4, 1, 64, 64), (2, 1, 64, 64)]


def test_validation_crops_are_twice_the_patch_unless_set(rng):
    images = [Image(rng.integers(0, 255, size=(512, 512)).astype(np.uint8)) for _ in range(3)]
    crappify = get_preset("em", scale=4)
    for validation, side in [({}, 256), ({"size": 384}, 384), ({"size": 1024}, 512)]:
        config = _config(patch_size=128, validation={"count": 1, "patches": 2, **validation})
        _, val = build_datasets(images, config, crappify)
        assert val.crop(0).hr.shape == (1, side, side)
        assert val.crop(0).lr.shape == (1, side // 4, side // 4)


def test_validation_of_a_single_stack_is_by_planes(rng):
    stack = rng.integers(0, 255, size=(10, 64, 64)).astype(np.uint8)
    config = _config(n_frames=3, validation={"fraction": 0.2, "patches": 4})
    train, val = build_datasets([stack], config, _area(2))
    assert train.maker.regions[0].planes == (0, 8) and val.maker.regions[0].planes == (8, 10)
    for index in range(8):
        assert all(z < 8 for z in train.sample(0, index).planes)
    assert all(z >= 8 for k in range(4) for z in val.crop(k).planes)


# --- paired mode ------------------------------------------------------------------------------


def test_paired_mode_is_aligned(rng):
    scale = 2
    hr = rng.uniform(0, 60000, size=(2, 96, 128)).astype(np.uint16)
    # the LR is the block mean, stored as 8 bit: normalised with its own percentiles
    lr = (_block_mean(hr.astype(np.float64), scale) / 256).astype(np.uint8)
    config = _config(samples_per_epoch=16, augment={"dihedral": True, "brightness": 0.1})
    train, _ = build_datasets([hr], config, lr_images=[lr])
    assert train.maker.paired and train.maker.scale == scale
    lr_stats, hr_stats = train.maker.lr_stats[0], train.maker.stats[0]
    assert lr_stats.hi < 256 < hr_stats.hi
    for index in range(16):
        pair = train.sample(0, index)
        assert pair.position.row % scale == 0 and pair.position.col % scale == 0
        assert pair.crappify_seed is None
        down = _block_mean(pair.hr[0], scale).ravel()
        assert np.corrcoef(down, pair.lr[0].ravel())[0, 1] > 0.999
        # a one-pixel LR misalignment would decorrelate white noise completely
        shifted = np.roll(pair.lr[0], 1, axis=0).ravel()
        assert abs(np.corrcoef(down, shifted)[0, 1]) < 0.3


def test_paired_mode_errors(rng):
    hr = rng.integers(0, 255, size=(64, 64)).astype(np.uint8)
    with pytest.raises(InputError) as err:
        build_datasets(
            [Image(hr, source="hr.tif")],
            _config(),
            lr_images=[Image(hr[:30, :32], source="lr.tif")],
        )
    assert str(err.value) == (
        "lr.tif: expected LR Y/X = HR Y/X // scale with an integer scale for hr.tif (64, 64), "
        "got (30, 32)"
    )
    with pytest.raises(InputError, match="expected one LR image per HR image, got 2 LR for 1 HR"):
        build_datasets([hr], _config(), lr_images=[hr, hr])
    with pytest.raises(InputError, match="not both or neither"):
        PairMaker([hr], [whole_region(0, hr.shape)], _config(), crappify=_area(1), lr_images=[hr])
    with pytest.raises(InputError, match="give either a crappify config"):
        build_datasets([hr], _config())


# --- laziness ---------------------------------------------------------------------------------


class CountingArray:
    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.reads: list = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


def test_samples_read_only_their_window(rng):
    base = rng.integers(0, 60000, size=(6, 512, 512)).astype(np.uint16)
    counting = CountingArray(base)
    lazy = da.from_array(counting, chunks=(1, 128, 128), asarray=False)
    config = _config(patch_size=64, n_frames=3, background=NO_BACKGROUND.model_dump())
    train, _ = build_datasets([lazy], config, _area(2))
    for index in range(5):
        counting.reads.clear()
        pair = train.sample(0, index)
        p = pair.position
        rows, cols = (p.row, p.row + 64), (p.col, p.col + 64)
        read = 0
        for key in counting.reads:
            z, y, x = ((k.start, k.stop) for k in key)
            assert z[0] >= min(pair.planes) and z[1] <= max(pair.planes) + 1
            assert y[0] >= rows[0] // 128 * 128 and y[1] <= -(-rows[1] // 128) * 128
            assert x[0] >= cols[0] // 128 * 128 and x[1] <= -(-cols[1] // 128) * 128
            read += (z[1] - z[0]) * (y[1] - y[0]) * (x[1] - x[0])
        # the target plane, then the frames' planes: a few patches, never the image
        assert read <= 8 * 64 * 64 < base.size / 40


def test_zarr_input_stays_lazy(tmp_path, rng):
    import zarr

    base = rng.integers(0, 255, size=(3, 96, 96)).astype(np.uint8)
    z = zarr.create_array(tmp_path / "a.zarr", shape=base.shape, chunks=(1, 32, 32), dtype="uint8")
    z[:] = base
    train, _ = build_datasets([z], _config(augment=NO_AUGMENT.model_dump()), _area(1))
    assert train.maker.hr_images[0].is_lazy
    pair = train.sample(0, 0)
    p = pair.position
    stats = train.maker.stats[0]
    expected = (base[p.plane, p.row : p.row + 32, p.col : p.col + 32] - stats.lo) / (
        stats.hi - stats.lo
    )
    np.testing.assert_allclose(pair.hr[0], expected, atol=1e-5)


# --- configuration and metadata ---------------------------------------------------------------


def test_configuration_errors(rng):
    image = rng.integers(0, 255, size=(64, 64)).astype(np.uint8)
    with pytest.raises(InputError) as err:
        build_datasets([image], _config(patch_size=64), get_preset("em", scale=3))
    assert str(err.value) == (
        "data.patch_size: must be divisible by the scale 3 so that the LR patch is whole, "
        "e.g. a multiple of 96 (got 64)"
    )
    with pytest.raises(InputError) as err:
        build_datasets([Image(image, source="small.tif")], _config(patch_size=128), _area(2))
    assert str(err.value) == (
        "small.tif: region of 64x64 pixels is smaller than the patch_size 128; "
        "use a smaller patch_size or larger images"
    )
    config = _config(normalization={"low": 1.0, "high": 99.0})
    with pytest.raises(InputError) as err:
        build_datasets([image], config, _area(2))
    assert str(err.value) == (
        "data.normalization: percentiles 1.0/99.0 differ from the crappify config's 0.1/99.9; "
        "set them in one place"
    )
    crappify = _area(2).with_overrides(normalization={"low": 1.0, "high": 99.0})
    train, _ = build_datasets([image], config, crappify)
    assert train.maker.normalization == NormalizationConfig(low=1.0, high=99.0)
    with pytest.raises(InputError, match="expected an Image, a path or an array, got int"):
        build_datasets([3], _config(), _area(2))


def test_describe_for_model_metadata(rng):
    images = [
        Image(
            rng.integers(0, 4000, size=(4, 64, 64)).astype(np.uint16),
            axes="ZYX",
            source=f"s{i}.tif",
        )
        for i in range(3)
    ]
    crappify = get_preset("fluorescence", scale=2)
    config = _config(n_frames=3, validation={"count": 1, "patches": 5})
    train, val = build_datasets(images, config, crappify)
    summary = describe(train, val)
    json.dumps(summary)  # JSON-friendly
    assert summary["mode"] == "crappify" and summary["scale"] == 2
    assert summary["patch_size"] == 32 and summary["lr_patch_size"] == 16
    assert summary["n_frames"] == 3 and summary["n_images"] == 2
    assert [im["source"] for im in summary["images"]] == ["s0.tif", "s1.tif", "s2.tif"]
    assert (
        summary["images"][0]["shape"] == [4, 64, 64] and summary["images"][0]["dtype"] == "uint16"
    )
    stats = image_stats(images[1], NormalizationConfig(), patch_size=32)
    assert summary["images"][1]["lo"] == stats.lo and summary["images"][1]["hi"] == stats.hi
    assert summary["crappify"] == crappify.model_dump(mode="json")
    assert summary["normalization"] == {"method": "percentile", "low": 0.1, "high": 99.9}
    assert summary["positions"] == 2 * 4 * 33 * 33
    assert summary["samples_per_epoch"] == 8 and summary["batch_size"] == 4
    assert summary["validation"]["crops"] == 5 and summary["validation"]["n_images"] == 1
    assert summary["validation"]["patch_size"] == 64  # the whole 64² planes
    assert summary["validation"]["positions"] == 4 * 1 * 1
    paired, _ = build_datasets([images[0]], _config(), lr_images=[images[0].data[:, ::2, ::2]])
    info = paired.describe()
    assert info["mode"] == "paired" and info["crappify"] is None
    assert info["images"][0]["lr"]["shape"] == [4, 32, 32]


def test_pair_dataset_direct_construction(stacks):
    config = _config(validation=ValidationConfig(count=0).model_dump())
    maker = PairMaker(stacks, [whole_region(0, stacks[0].shape)], config, crappify=_area(2))
    dataset = PairDataset(maker, 3, augment=False)
    assert dataset.sample(0, 1).augment.contrast == 1.0
    with pytest.raises(InputError, match=r"samples_per_epoch: must be >= 1 \(got 0\)"):
        PairDataset(maker, 0)
    with pytest.raises(InputError, match=r"validation.patches: must be >= 1 \(got 0\)"):
        ValidationSet(maker, 0)


def test_tiff_paths_and_pickling(tmp_path, rng):
    import pickle

    import tifffile

    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, rng.integers(0, 4000, size=(5, 64, 64)).astype(np.uint16))
    config = _config(validation={"count": 0})
    train, _ = build_datasets([path], config, get_preset("fluorescence", scale=2))
    assert train.describe()["images"][0]["source"] == str(path)
    # spawn-started DataLoader workers receive the dataset pickled
    clone = pickle.loads(pickle.dumps(train))
    assert torch.equal(clone[(2, 5)][0], train[(2, 5)][0])


def test_import_data_does_not_import_torch():
    import subprocess
    import sys

    import decrappify.data as data

    code = "import sys, decrappify.data; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert data.PairDataset is PairDataset and data.build_datasets is build_datasets
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        data.nothing  # noqa: B018


def test_non_finite_patch_names_the_image(rng):
    image = rng.random((64, 64)).astype(np.float32)
    image[:, :] = np.nan
    image[0, 0] = 1.0
    config = _config(validation={"count": 0}, background={"enabled": False})
    with pytest.raises(
        InputError,
        match=r"^nan.tif: 4095 NaN or Inf pixels; training needs finite values, fix or leave "
        r"out the image$",
    ):
        build_datasets([Image(image, source="nan.tif")], config, _area(2))
