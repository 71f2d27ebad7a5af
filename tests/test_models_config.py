"""Validation of the model configuration (pure, no torch)."""

from __future__ import annotations

import json
import re

import pytest

from decrappify.config.model import (
    MODEL_FORMAT_VERSION,
    CriticConfig,
    EncoderName,
    GeneratorConfig,
    LossConfig,
    ModelInfo,
    NormType,
    Preset,
)
from decrappify.config.normalization import NormalizationConfig
from decrappify.errors import InputError


def test_generator_defaults_and_preset_resolution() -> None:
    cfg = GeneratorConfig()
    assert cfg.encoder is EncoderName.RESNET34
    assert cfg.preset is Preset.WIDE
    assert cfg.norm_type is NormType.BATCH
    assert (cfg.resolved_nf_factor, cfg.resolved_blocks_per_stage) == (2.0, 1)
    deep = GeneratorConfig(preset="deep")
    assert (deep.resolved_nf_factor, deep.resolved_blocks_per_stage) == (1.5, 2)
    custom = GeneratorConfig(preset="deep", nf_factor=0.5, blocks_per_stage=3)
    assert (custom.resolved_nf_factor, custom.resolved_blocks_per_stage) == (0.5, 3)
    assert cfg.y_range == (-0.2, 1.2)
    assert cfg.attention_block == -3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"n_frames": 2}, "n_frames: must be odd so that there is a centre frame (got 2)"),
        ({"y_range": [1.0, 0.0]}, "y_range: must be [low, high] with low < high (got [1.0, 0.0])"),
        ({"encoder": "vgg"}, "encoder: Input should be 'resnet18', 'resnet34', 'resnet50'"),
        ({"attention_block": 4}, "attention_block: Input should be less than 4 (got 4)"),
        ({"scale": 0}, "scale: Input should be greater than or equal to 1 (got 0)"),
        ({"width": 3}, "width: unknown parameter"),
    ],
)
def test_generator_config_errors(raw: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(f"generator: {message}")):
        GeneratorConfig.validate_dict(raw, source="generator")


def test_critic_config_min_size_and_errors() -> None:
    assert CriticConfig().min_size == 64
    assert CriticConfig(n_blocks=2).min_size == 32
    with pytest.raises(InputError, match=re.escape("critic: pool: Input should be 'global'")):
        CriticConfig.validate_dict({"pool": "max"}, source="critic")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"weights": {"l2": 1.0}},
            "weights: unknown loss term 'l2'; expected one of "
            "['l1', 'mse', 'ssim', 'ms_ssim', 'feature']",
        ),
        ({"weights": {"l1": 0.0}}, "weights: at least one loss weight must be > 0"),
        ({"weights": {"l1": -1.0}}, "weights: weight of 'l1' must be >= 0 (got -1.0)"),
        ({"ssim_window": 10}, "ssim_window: must be odd (got 10)"),
        ({"feature_layers": [50]}, "feature_layers: layer indices must be in [0, 42] (got 50)"),
        (
            {"feature_layers": [5, 12]},
            "feature_layer_weights needs one weight per feature layer (got 3 for 2 layers)",
        ),
    ],
)
def test_loss_config_errors(raw: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(f"loss: {message}")):
        LossConfig.validate_dict(raw, source="loss")


def test_loss_config_weight_lookup() -> None:
    cfg = LossConfig(weights={"l1": 1.0, "feature": 0.25})
    assert cfg.weight("feature") == 0.25
    assert cfg.weight("ms_ssim") == 0.0


def test_model_info_json_round_trip() -> None:
    info = ModelInfo(
        generator=GeneratorConfig(encoder="resnet18", scale=2, n_frames=3),
        normalization=NormalizationConfig(low=1.0, high=99.0),
        crappify={"steps": [{"kind": "blur", "sigma": [0.5, 1.5]}]},
        training={"images": 12, "patch": 128},
        metrics={"psnr": 31.25},
        history=[{"epoch": 1, "loss": 0.5}],
        description="test",
    )
    text = info.model_dump_json()
    raw = json.loads(text)
    assert raw["format_version"] == MODEL_FORMAT_VERSION
    assert raw["generator"]["scale"] == 2
    assert raw["generator"]["encoder"] == "resnet18"
    back = ModelInfo.model_validate_json(text)
    assert back == info
    assert back.created.tzinfo is not None
