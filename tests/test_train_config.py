"""Tests for decrappify.config.train: TrainConfig."""

from __future__ import annotations

import math

import pytest

from decrappify.config.crappify import CrappifyConfig, get_preset
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError


def test_defaults_are_consistent():
    cfg = TrainConfig()
    assert cfg.crappify == "em"
    assert cfg.resolved_crappify() == get_preset("em")
    assert cfg.generator.scale == cfg.resolved_crappify().scale == 4
    assert cfg.data.seed == cfg.seed == 0
    assert cfg.data.batch_size == cfg.batch_size
    assert cfg.gan.w_adv == 1.0 and cfg.gan.w_content == 1.5
    assert cfg.gan.critic_threshold == 0.65 and cfg.gan.betas == (0.0, 0.9)
    assert cfg.cycles == 1 and cfg.time_budget is None
    assert cfg.gan_enabled


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig.validate_dict(
        {"seed": 3, "time_budget": "1h30m", "gan": {"patience": 5}, "crappify": "fluorescence"}
    )
    path = tmp_path / "train.yaml"
    path.write_text(cfg.to_yaml())
    back = TrainConfig.from_yaml(path)
    assert back == cfg
    assert back.time_budget == 5400.0 and back.data.seed == 3
    resolved = cfg.resolved()
    assert isinstance(resolved.crappify, CrappifyConfig)
    path.write_text(resolved.to_yaml())
    assert TrainConfig.from_yaml(path) == resolved


def test_seed_and_batch_size_fill_data():
    cfg = TrainConfig.validate_dict({"seed": 7, "batch_size": 4})
    assert (cfg.data.seed, cfg.data.batch_size) == (7, 4)
    cfg = TrainConfig.validate_dict({"data": {"seed": 5, "batch_size": 2}})
    assert (cfg.seed, cfg.batch_size) == (5, 2)


def test_seed_conflict_message():
    with pytest.raises(InputError) as err:
        TrainConfig.validate_dict({"seed": 1, "data": {"seed": 2}})
    assert str(err.value) == ("config: seed is 1 but data.seed is 2; set it once, at the top level")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"time_budget": "soon"},
            "config: time_budget: expected seconds or a duration such as '20m', '1h30m', "
            "'90s' or '1.5h' (got 'soon')",
        ),
        (
            {"crappify": "nope"},
            "config: crappify: unknown preset; valid presets: em, em-poisson, fluorescence, "
            "fluorescence-pssr (got 'nope')",
        ),
        (
            {"generator": {"scale": 2}},
            "config: generator.scale 2 differs from the crappifier's scale 4; set both (or use "
            "--scale)",
        ),
        (
            {"data": {"patch_size": 32}},
            "config: data.patch_size 32 is smaller than the critic's input minimum 64 "
            "(2**(critic.n_blocks + 3)); lower critic.n_blocks or raise the patch size",
        ),
        (
            {"data": {"n_frames": 3}},
            "config: generator.n_frames 1 differs from data.n_frames 3",
        ),
        ({"cycles": 5}, "config: cycles: Input should be less than or equal to 4 (got 5)"),
        (
            {"gan": {"patience": 0}},
            "config: gan.patience: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"gan": {"betas": [0.0, 1.0]}},
            "config: gan.betas: must be two numbers in [0, 1) (got [0.0, 1.0])",
        ),
        (
            {"gan": {"w_adv": 0, "w_content": 0}},
            "config: gan: w_adv and w_content cannot both be 0",
        ),
        (
            {"device": "tpu"},
            "config: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got 'tpu')",
        ),
        (
            {"amp": "fp8"},
            "config: amp: Input should be 'auto', 'bf16', 'fp16' or 'off' (got 'fp8')",
        ),
        ({"learning_rate": 1}, "config: learning_rate: unknown parameter"),
        (
            {"pretrain_generator": {"max_lr": 0}},
            "config: pretrain_generator.max_lr: Input should be greater than 0 (got 0)",
        ),
    ],
)
def test_config_errors(raw, message):
    with pytest.raises(InputError) as err:
        TrainConfig.validate_dict(raw)
    assert str(err.value) == message


def test_critic_size_not_checked_without_gan():
    cfg = TrainConfig.validate_dict({"data": {"patch_size": 32}, "gan": {"max_steps": 0}})
    assert not cfg.gan_enabled


def test_budget_needs_generator_share():
    with pytest.raises(InputError, match="pretrain_generator.budget_share must be > 0"):
        TrainConfig.validate_dict({"time_budget": 60, "pretrain_generator": {"budget_share": 0}})


def test_with_overrides():
    cfg = TrainConfig().with_overrides(
        {"seed": 5, "gan.max_steps": 0, "data.patch_size": 96, "time_budget": "5m"}
    )
    assert cfg.seed == cfg.data.seed == 5
    assert cfg.gan.max_steps == 0 and cfg.data.patch_size == 96 and cfg.time_budget == 300.0
    paired = TrainConfig().with_overrides({"crappify": None, "time_budget": None})
    assert paired.crappify is None and paired.time_budget is None
    with pytest.raises(InputError, match=r"^override gan.max_step: unknown setting 'max_step'$"):
        TrainConfig().with_overrides({"gan.max_step": 1})
    with pytest.raises(InputError, match=r"^override foo.bar: unknown setting 'foo'$"):
        TrainConfig().with_overrides({"foo.bar": 1})


def test_a_mapping_for_a_section_updates_it_key_by_key():
    cfg = TrainConfig().with_overrides(
        {"generator": {"encoder": "resnet34"}, "data": {"validation": {"count": 2}}}
    )
    default = TrainConfig()
    assert cfg.generator.encoder.value == "resnet34"
    assert cfg.generator.model_dump(exclude={"encoder"}) == default.generator.model_dump(
        exclude={"encoder"}
    )
    assert cfg.data.validation.count == 2 and cfg.data.patch_size == default.data.patch_size
    assert cfg.data.validation.fraction == default.data.validation.fraction
    weights = TrainConfig().with_overrides({"loss.weights": {"l1": 1.0}}).loss.weights
    assert weights == {"l1": 1.0}  # a plain mapping setting is replaced, not merged
    preset = get_preset("fluorescence").model_dump(mode="json")
    crappify = TrainConfig().with_overrides({"crappify": preset}).resolved_crappify()
    assert crappify == get_preset("fluorescence")  # a whole crappify config replaces em's
    with pytest.raises(InputError, match="generator.encodr: unknown parameter"):
        TrainConfig().with_overrides({"generator": {"encodr": "resnet34"}})


def test_frozen_fraction_default_depends_on_weights():
    cfg = TrainConfig().pretrain_generator
    assert cfg.resolved_frozen_fraction(True) == 0.25
    assert cfg.resolved_frozen_fraction(False) == 0.0
    assert cfg.model_copy(update={"frozen_fraction": 0.5}).resolved_frozen_fraction(False) == 0.5


def test_paired_config_has_no_crappifier():
    cfg = TrainConfig.validate_dict({"crappify": None, "generator": {"scale": 2}})
    assert cfg.resolved_crappify() is None and cfg.resolved().crappify is None
    assert math.isclose(cfg.pretrain_generator.max_lr, 1e-3)


@pytest.mark.parametrize(
    ("grid", "depth", "patch", "side"),
    [("lr", 3, 128, 2), ("lr", 3, 256, None), ("lr", 4, 256, 2), ("hr", 4, 128, None)],
)
def test_small_patches_for_the_network_depth_are_warned(grid, depth, patch, side):
    """The deepest features must be >= 4x4 on a training patch, or the output collapses."""
    from decrappify.config.model import GeneratorConfig

    generator = GeneratorConfig(grid=grid, encoder_depth=depth, scale=4)
    message = generator.context_warning(patch)
    if side is None:
        assert message is None
    else:
        assert f"data.patch_size {patch}" in message
        assert f"{side}x{side} pixels" in message and "generator.encoder_depth" in message


def test_a_partial_generator_section_changes_the_default_network():
    """``generator: {scale: 2}`` in a config file kept GeneratorConfig's ResNet defaults."""
    default = TrainConfig().generator
    cfg = TrainConfig.validate_dict({"crappify": None, "generator": {"scale": 2}})
    assert cfg.generator == default.model_copy(update={"scale": 2})
    naf = TrainConfig.validate_dict({"generator": {"naf": {"width": 16}}}).generator
    assert naf.naf.width == 16 and naf.naf.blocks == default.naf.blocks
    # a section naming a ResNet-only setting (an older run's train.yaml) is the ResNet U-Net
    resnet = TrainConfig.validate_dict({"generator": {"encoder": "resnet34"}}).generator
    assert resnet.arch.value == "resnet" and resnet.encoder.value == "resnet34"
    assert resnet.nf_factor == default.nf_factor  # the tuned ResNet settings of the default
