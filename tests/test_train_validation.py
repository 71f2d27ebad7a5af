"""Tests for decrappify.train.validation: normalised scores, bicubic baseline, previews."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from decrappify.config.crappify import CrappifyConfig, DownsampleStep
from decrappify.config.data import DataConfig
from decrappify.data.dataset import build_datasets
from decrappify.metrics import evaluate_pair, upsample
from decrappify.train.validation import Validator, mean_scores, normalized_scores


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_normalized_scores_match_evaluate_pair(rng):
    gt = rng.random((40, 48)).astype(np.float32) * 200
    pred = 0.5 * gt + rng.normal(0, 10, gt.shape) + 30
    psnr, ssim = normalized_scores(pred, gt)
    reference = evaluate_pair(pred, gt)
    assert psnr == pytest.approx(reference["psnr_norm"], abs=1e-9)
    assert ssim == pytest.approx(reference["ssim_norm"], abs=1e-9)


def test_scores_ignore_gain_and_offset(rng):
    gt = rng.random((32, 32))
    pred = gt + rng.normal(0, 0.05, gt.shape)
    assert normalized_scores(3 * pred - 1, gt) == pytest.approx(normalized_scores(pred, gt))


def test_mean_scores_cap_perfect_crops(rng):
    gts = rng.random((2, 24, 24))
    scores = mean_scores(gts.copy(), gts)
    assert scores == {
        "psnr": 100.0,
        "ssim": pytest.approx(1.0),
        "frc": pytest.approx(2.0, abs=0.01),
        "hf": pytest.approx(1.0),
    }


class Bicubic(nn.Module):
    """A 'network' that upsamples like the baseline (to check the scoring plumbing)."""

    scale = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = [upsample(p[0].numpy(), self.scale, "bicubic") for p in x]
        return torch.from_numpy(np.stack(up))[:, None]


def test_validator_baseline_and_preview(rng):
    images = [rng.random((64, 64)).astype(np.float32) for _ in range(3)]
    # background with one small bright corner: most of its crops are constant (a wholly
    # constant image is refused as training data)
    corner = np.zeros((64, 64), np.float32)
    corner[:3, :3] = 1.0
    images.append(corner)
    data = DataConfig(
        patch_size=32,
        validation={"count": 2, "patches": 4, "size": 32},
        background={"enabled": False},
        seed=1,
    )
    crappify = CrappifyConfig(scale=2, steps=[DownsampleStep(method="area")])
    _, val = build_datasets(images, data, crappify)
    validator = Validator(val, scale=2, device=torch.device("cpu"), batch_size=3)
    crops = [val.crop(i) for i in range(4)]
    kept = [c for c in crops if c.hr.max() > c.hr.min()]
    assert validator.n_crops == len(kept) and validator.n_skipped == 4 - len(kept)
    expected = mean_scores(
        np.stack([upsample(c.lr[0], 2, "bicubic") for c in kept]),
        np.stack([c.hr[0] for c in kept]),
        scale=2,
    )
    assert validator.baseline == pytest.approx(expected)
    net = Bicubic()
    assert validator.evaluate(net) == pytest.approx(validator.baseline, abs=1e-5)
    preview = validator.preview(net)
    assert preview.shape == (32, 96) and preview.dtype == np.float32
    np.testing.assert_array_equal(preview[:, 64:], kept[0].hr[0])
    np.testing.assert_array_equal(preview[::2, :32:2], kept[0].lr[0])
    net.train()
    validator.evaluate(net)
    assert net.training  # the training flag is restored
