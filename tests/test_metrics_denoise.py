"""Classical denoising baselines: what they do, fair tuning, baseline specs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage

from decrappify.errors import InputError
from decrappify.metrics import evaluate_pair
from decrappify.metrics.baselines import Baseline, baseline_label, parse_baseline
from decrappify.metrics.denoise import (
    DENOISERS,
    PARAM_GRIDS,
    bm3d_available,
    denoise,
    tune_denoiser,
)


def cells(seed: int, shape=(96, 96)) -> np.ndarray:
    """Smooth blobs in 0..200 grey levels."""
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 4) * 2000 - 800


def noisy_pair(seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    clean = np.clip(cells(seed), 0, 255).astype(np.float32)
    rng = np.random.default_rng(seed + 100)
    return (clean + rng.normal(0, noise, clean.shape)).astype(np.float32), clean


@pytest.mark.parametrize("name", ["gaussian", "nl-means", "tv"])
def test_each_denoiser_removes_noise_in_the_input_units(name):
    noisy, clean = noisy_pair(0, 20.0)
    out = denoise(noisy.astype(np.float64) + 1000, name)  # an offset changes nothing
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert abs(float(out.mean()) - 1000 - float(noisy.mean())) < 2.0
    before = evaluate_pair(noisy, clean)["psnr_norm"]
    after = evaluate_pair(out - 1000, clean)["psnr_norm"]
    assert after > before + 3.0


def test_denoiser_errors():
    with pytest.raises(InputError, match="expected one of gaussian, nl-means, tv, bm3d"):
        denoise(np.zeros((8, 8)), "median")
    with pytest.raises(InputError, match="sigma must be > 0"):
        denoise(np.zeros((8, 8)), "gaussian", 0)
    with pytest.raises(InputError, match=r"expected a 2D plane, got shape \(2, 8, 8\)"):
        denoise(np.zeros((2, 8, 8)), "tv")


def test_bm3d_is_optional(monkeypatch):
    if bm3d_available():
        noisy, clean = noisy_pair(1, 20.0)
        gain = evaluate_pair(denoise(noisy, "bm3d"), clean)["psnr_norm"]
        assert gain > evaluate_pair(noisy, clean)["psnr_norm"] + 3.0
    monkeypatch.setitem(sys.modules, "bm3d", None)  # as if the package were not installed
    assert not bm3d_available()
    with pytest.raises(InputError, match=r"pip install 'decrappify\[bm3d\]'"):
        parse_baseline("bm3d")


def test_tuning_chooses_more_smoothing_for_more_noise():
    choices = {}
    for noise in (5.0, 40.0):
        pairs = [noisy_pair(seed, noise) for seed in range(3)]
        result = tune_denoiser("gaussian", [p[0] for p in pairs], [p[1] for p in pairs], crop=64)
        assert result.param in PARAM_GRIDS["gaussian"] and result.n_images == 3
        assert result.scores[result.param] == max(result.scores.values())
        assert result.spec == f"gaussian={result.param:g}"
        choices[noise] = result.param
    assert choices[40.0] > choices[5.0]


def test_tuning_errors():
    noisy, clean = noisy_pair(0, 10.0)
    with pytest.raises(InputError, match="same positive number of noisy and clean images"):
        tune_denoiser("tv", [noisy], [])
    with pytest.raises(InputError, match=r"pair 0 must be two 2D planes of one shape"):
        tune_denoiser("tv", [noisy], [clean[:50]])


def test_baseline_specs():
    assert parse_baseline("bicubic") == Baseline("bicubic")
    assert parse_baseline(" Gaussian=1.5 ") == Baseline("gaussian", 1.5)
    assert parse_baseline("gaussian=1.5").key == "gaussian=1.5"
    assert parse_baseline("tv").key == "tv" and parse_baseline("input").order == 3
    assert baseline_label(1) == "input" and baseline_label(4) == "bicubic"
    for spec, message in [
        ("lanczos", "expected one of nearest, bilinear, bicubic, input, gaussian"),
        ("bicubic=2", "bicubic takes no parameter"),
        ("tv=-1", "weight must be a positive number"),
        ("nl-means=abc", "h must be a positive number"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_baseline(spec)
    assert set(DENOISERS) == {"gaussian", "nl-means", "tv", "bm3d"}


def test_denoiser_baseline_at_scale_above_one_is_denoised_then_interpolated():
    noisy, _ = noisy_pair(2, 20.0)
    up = Baseline("gaussian", 1.0).apply(noisy, (192, 192))
    assert up.shape == (192, 192)
    assert np.std(up) < np.std(noisy)
