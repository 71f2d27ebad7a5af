"""Tests for decrappify.data.augment and the data configuration."""

from __future__ import annotations

import numpy as np
import pytest

from decrappify.config.data import AugmentConfig, DataConfig
from decrappify.data.augment import (
    IDENTITY,
    N_DIHEDRAL,
    add_noise,
    dihedral,
    draw_augment,
    jitter_intensity,
)
from decrappify.errors import InputError


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def _block_mean(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape[-2:]
    return x.reshape(*x.shape[:-2], h // s, s, w // s, s).mean(axis=(-3, -1))


def test_dihedral_group_is_the_8_distinct_transforms(rng):
    x = rng.random((2, 6, 6))
    outs = [dihedral(x, k) for k in range(N_DIHEDRAL)]
    for i in range(N_DIHEDRAL):
        for j in range(i + 1, N_DIHEDRAL):
            assert not np.array_equal(outs[i], outs[j])
    np.testing.assert_array_equal(outs[1], np.rot90(x, 1, axes=(1, 2)))
    np.testing.assert_array_equal(outs[4], x[..., ::-1])
    np.testing.assert_array_equal(outs[6], x[..., ::-1, :])
    assert all(o.flags.c_contiguous for o in outs)
    # leading axes untouched: each channel transformed alike
    np.testing.assert_array_equal(dihedral(x, 5)[1], dihedral(x[1], 5))


def test_dihedral_commutes_with_block_downsampling(rng):
    """Applied identically to LR and HR, the pair stays aligned for every transform."""
    hr = rng.random((1, 32, 32))
    for s in (1, 2, 4):
        lr = _block_mean(hr, s)
        for k in range(N_DIHEDRAL):
            np.testing.assert_allclose(_block_mean(dihedral(hr, k), s), dihedral(lr, k), atol=1e-12)


def test_dihedral_bad_index():
    with pytest.raises(ValueError, match=r"dihedral index must be in \[0, 8\) \(got 8\)"):
        dihedral(np.zeros((2, 2)), 8)


def test_draw_augment_ranges_and_probability(rng):
    config = AugmentConfig(
        contrast=(0.5, 1.5), brightness=0.2, intensity_probability=0.75, lr_noise=0.1
    )
    draws = [draw_augment(rng, config) for _ in range(4000)]
    contrast = np.array([d.contrast for d in draws])
    brightness = np.array([d.brightness for d in draws])
    jittered = (contrast != 1.0) | (brightness != 0.0)
    assert abs(jittered.mean() - 0.75) < 0.03
    assert contrast[jittered].min() >= 0.5 and contrast[jittered].max() <= 1.5
    assert abs(contrast[jittered].mean() - 1.0) < 0.02
    assert (
        np.abs(brightness).max() <= 0.2
        and abs(brightness[jittered].std() - 0.2 / np.sqrt(3)) < 0.005
    )
    noise = np.array([d.lr_noise for d in draws])
    assert noise.min() >= 0 and noise.max() <= 0.1 and abs(noise.mean() - 0.05) < 0.003
    assert sorted({d.dihedral for d in draws}) == list(range(8))


def test_draw_augment_disabled_is_identity(rng):
    config = AugmentConfig(dihedral=False, contrast=(1.0, 1.0), brightness=0.0, lr_noise=0.0)
    assert all(draw_augment(rng, config) == IDENTITY for _ in range(50))


def test_draw_augment_toggles_do_not_shift_other_draws():
    on = AugmentConfig(dihedral=True, lr_noise=0.1)
    off = AugmentConfig(dihedral=False, lr_noise=0.1)
    a = draw_augment(np.random.default_rng(3), on)
    b = draw_augment(np.random.default_rng(3), off)
    assert (a.contrast, a.brightness, a.lr_noise) == (b.contrast, b.brightness, b.lr_noise)
    assert b.dihedral == 0


def test_jitter_intensity(rng):
    x = rng.random((8, 8)).astype(np.float32)
    y = jitter_intensity(x, 1.5, -0.2)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 1.5 * x - 0.2, rtol=1e-6, atol=1e-6)
    assert jitter_intensity(x, 1.0, 0.0) is x


def test_add_noise_statistics(rng):
    x = np.full((256, 256), 0.5, np.float32)
    y = add_noise(x, 0.1, rng)
    assert y.dtype == np.float32
    assert abs(float(y.mean()) - 0.5) < 0.002
    assert abs(float(y.std()) - 0.1) < 0.002
    assert add_noise(x, 0.0, rng) is x


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"patch_size": 100}, "data: patch_size: must be a multiple of 32 for the U-Net (got 100)"),
        (
            {"patch_size": 16},
            "data: patch_size: Input should be greater than or equal to 32 (got 16)",
        ),
        (
            {"n_frames": 2},
            "data: n_frames: must be odd so that the target is the centre plane (got 2)",
        ),
        (
            {"augment": {"contrast": [1.5, 0.5]}},
            "data: augment.contrast: must be [min, max] with 0 < min <= max <= 10 (got [1.5, 0.5])",
        ),
        (
            {"augment": {"brightness": -0.1}},
            "data: augment.brightness: Input should be greater than or equal to 0 (got -0.1)",
        ),
        (
            {"background": {"max_tries": 0}},
            "data: background.max_tries: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"validation": {"fraction": 0.95}},
            "data: validation.fraction: Input should be less than or equal to 0.9 (got 0.95)",
        ),
        ({"batchsize": 4}, "data: batchsize: unknown parameter"),
    ],
)
def test_config_errors(raw, message):
    with pytest.raises(InputError) as err:
        DataConfig.validate_dict(raw, source="data")
    assert str(err.value) == message


def test_config_check_scale_and_round_trip(tmp_path):
    config = DataConfig(patch_size=96)
    config.check_scale(3)
    config.check_scale(1)
    with pytest.raises(InputError) as err:
        DataConfig(patch_size=128).check_scale(3)
    assert str(err.value) == (
        "data.patch_size: must be divisible by the scale 3 so that the LR patch is whole, "
        "e.g. a multiple of 96 (got 128)"
    )
    path = tmp_path / "data.yaml"
    config = DataConfig(n_frames=3, augment=AugmentConfig(lr_noise=0.05), validation={"count": 2})
    path.write_text(config.to_yaml())
    assert DataConfig.from_yaml(path) == config
    assert config.validation.enabled
    assert not DataConfig(validation={"fraction": 0.0}).validation.enabled
    assert not DataConfig(validation={"count": 0, "fraction": 0.5}).validation.enabled
