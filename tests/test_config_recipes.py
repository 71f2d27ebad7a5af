"""The default network and loss, and the settings that change with the kind of data."""

from __future__ import annotations

from decrappify import api
from decrappify.config.crappify import get_preset
from decrappify.config.recipes import MODALITY_DEFAULTS, preset_name, recipe_defaults
from decrappify.config.train import TrainConfig


def test_the_default_generator_is_the_naf_unet_and_resnet_is_one_setting_away() -> None:
    generator = TrainConfig().generator
    assert generator.arch.value == "naf" and generator.residual and generator.scale == 4
    resnet = TrainConfig().with_overrides({"generator.arch": "resnet"}).generator
    assert (resnet.encoder.value, resnet.encoder_depth, resnet.tail.value) == (
        "resnet18",
        3,
        "shuffle",
    )
    assert resnet.resolved_nf_factor == 0.5 and not resnet.self_attention
    assert TrainConfig().loss.weights == {"l1": 1.0}


def test_preset_names() -> None:
    assert preset_name("em") == "em" and preset_name(None) is None
    assert preset_name(get_preset("fluorescence")) == "fluorescence"
    assert preset_name({"name": "fitted", "scale": 1}) == "fitted"
    assert recipe_defaults("fluorescence") == {} and recipe_defaults("fitted") == {}


def test_em_presets_get_their_recipe_unless_a_setting_says_otherwise(tmp_path) -> None:
    em = api.train_config(preset="em")
    for key, value in MODALITY_DEFAULTS["em"].items():
        assert em.model_dump(mode="json")[key.split(".")[0]][key.split(".")[1]] == value
    assert api.train_config(preset="em-poisson", scale=2).loss.weights == {"l1": 1.0, "ssim": 0.2}
    assert api.train_config(preset="fluorescence").loss.weights == {"l1": 1.0}
    mine = api.train_config(preset="em", overrides={"loss.weights": {"mse": 1.0}})
    assert mine.loss.weights == {"mse": 1.0}
    config = tmp_path / "train.yaml"
    config.write_text("loss:\n  weights: {l1: 1.0}\n")
    assert api.train_config(config, preset="em").loss.weights == {"l1": 1.0}
    # a run's own train.yaml (every setting written out) is taken as it is
    run_config = tmp_path / "run.yaml"
    run_config.write_text(api.train_config(preset="fluorescence").to_yaml())
    assert api.train_config(run_config).loss.weights == {"l1": 1.0}
