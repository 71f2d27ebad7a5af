"""CrappifyConfig: validation messages, presets, overrides, YAML and parameter sampling."""

from __future__ import annotations

import math

import pytest

from decrappify.config.crappify import (
    PRESETS,
    CrappifyConfig,
    LocalVarianceNoiseStep,
    PoissonStep,
    get_preset,
    step_type,
)
from decrappify.crappify import sample_params
from decrappify.errors import InputError


def config_error(raw: dict) -> str:
    with pytest.raises(InputError) as err:
        CrappifyConfig.validate_dict(raw)
    return str(err.value)


def test_presets_are_valid_and_fresh():
    assert PRESETS == ("em", "em-poisson", "fluorescence", "fluorescence-pssr")
    for name in PRESETS:
        config = get_preset(name)
        assert isinstance(config, CrappifyConfig)
        assert config.name == name and config.scale == 4
        assert [s.kind for s in config.steps].count("downsample") == 1
    first = get_preset("fluorescence")
    first.steps[2].photons = (1.0, 2.0)
    assert get_preset("fluorescence").steps[2].photons == (50.0, 500.0)


def test_default_config_is_plain_area_downsampling():
    config = CrappifyConfig()
    assert config.scale == 4 and [s.kind for s in config.steps] == ["downsample"]
    assert config.steps[0].method == "area"
    assert config.normalization.low == 0.1 and config.normalization.high == 99.9


def test_em_preset_is_pssr_recipe():
    em = get_preset("em")
    noise, down = em.steps
    assert isinstance(noise, LocalVarianceNoiseStep)
    assert (noise.gain, noise.smooth_sigma, noise.min_variance) == (0.05, 3.0, 1e-10)
    assert down.method == "bilinear"
    pssr = get_preset("fluorescence-pssr")
    assert [s.kind for s in pssr.steps] == ["salt_pepper", "local_variance_noise", "downsample"]
    assert (pssr.steps[0].amount, pssr.steps[1].gain, pssr.steps[1].smooth_sigma) == (
        0.01,
        0.5,
        5.0,
    )


def test_fluorescence_preset_photon_budget():
    steps = {s.kind: s for s in get_preset("fluorescence").steps}
    assert steps["poisson"].photons == (50.0, 500.0)
    assert steps["downsample"].method == "area"
    assert steps["read_noise"].photons is None


def test_unknown_preset_lists_valid_names():
    with pytest.raises(InputError) as err:
        get_preset("confocal")
    assert str(err.value) == (
        "unknown crappify preset 'confocal'; valid presets: em, em-poisson, fluorescence, "
        "fluorescence-pssr"
    )


def test_bound_errors_are_one_line_and_name_the_parameter():
    raw = {"steps": [{"kind": "poisson", "photons": -5}, {"kind": "downsample"}]}
    assert config_error(raw) == "config: steps.0.poisson: photons must be > 0 (got -5)"
    raw = {"steps": [{"kind": "poisson", "photons": [500, 50]}, {"kind": "downsample"}]}
    assert config_error(raw) == (
        "config: steps.0.poisson: photons range must be [min, max] with min <= max (got [500, 50])"
    )
    raw = {"steps": [{"kind": "salt_pepper", "amount": [0.1, 1.5]}, {"kind": "downsample"}]}
    assert config_error(raw) == (
        "config: steps.0.salt_pepper: amount must be in [0, 0.5] (got [0.1, 1.5])"
    )
    raw = {"steps": [{"kind": "jpeg", "quality": 0}, {"kind": "downsample"}]}
    assert config_error(raw) == "config: steps.0.jpeg: quality must be in [1, 100] (got 0)"


def test_structural_errors():
    assert "unknown parameter" in config_error({"steps": [{"kind": "poisson", "photon": 5}]})
    assert config_error({"steps": []}) == (
        "config: scale 4 needs a step with kind: downsample (steps are [])"
    )
    raw = {"scale": 1, "steps": [{"kind": "read_noise", "sigma": 2}]}
    assert config_error(raw) == (
        "config: steps.0: read_noise without photons needs a poisson step before it"
    )
    raw = {"scale": 1, "steps": [{"kind": "blur"}]}
    assert config_error(raw) == "config: steps.0.blur: blur needs exactly one of sigma or fwhm"
    raw = {"scale": 2, "steps": [{"kind": "downsample"}, {"kind": "downsample"}]}
    assert "only one downsample step is allowed" in config_error(raw)
    assert "steps.0" in config_error({"scale": 1, "steps": [{"kind": "sharpen"}]})
    assert "scale" in config_error({"scale": 0, "steps": [{"kind": "downsample"}]})
    with pytest.raises(InputError, match="unknown step kind 'sharpen'"):
        step_type("sharpen")


def test_with_scale_and_overrides():
    config = get_preset("em")
    assert config.with_scale(2).scale == 2 and config.scale == 4
    tuned = get_preset("fluorescence", scale=2, **{"poisson.photons": [20, 200]})
    assert tuned.scale == 2
    assert tuned.steps[2].photons == (20.0, 200.0)
    with pytest.raises(InputError, match="this config has no 'jpeg' step"):
        config.with_overrides(**{"jpeg.quality": 50})
    with pytest.raises(InputError, match="local_variance_noise has no parameter 'sigma'"):
        config.with_overrides(**{"local_variance_noise.sigma": 1})
    with pytest.raises(InputError, match="photons must be > 0"):
        get_preset("fluorescence", **{"poisson.photons": 0})


def test_scale_one_drops_the_downsample_step_and_scaling_up_restores_one():
    for name in PRESETS:
        preset = get_preset(name)
        same_grid = preset.with_scale(1)
        kinds = [s.kind for s in preset.steps]
        assert same_grid.scale == 1
        assert [s.kind for s in same_grid.steps] == [k for k in kinds if k != "downsample"]
        assert get_preset(name, scale=1) == same_grid
    # A config without a downsample step gets an area one after its last blur.
    back = get_preset("fluorescence").with_scale(1).with_scale(3)
    assert [s.kind for s in back.steps] == ["blur", "downsample", "poisson", "read_noise"]
    assert back.steps[1].method == "area" and back.scale == 3
    noise_only = CrappifyConfig(scale=1, steps=[{"kind": "gaussian_noise"}]).with_scale(2)
    assert [s.kind for s in noise_only.steps] == ["downsample", "gaussian_noise"]
    # Explicit steps are kept as given; an identity downsample at scale 1 stays valid.
    explicit = get_preset("em").with_overrides(scale=1, steps=[{"kind": "downsample"}])
    assert [s.kind for s in explicit.steps] == ["downsample"]


def test_yaml_round_trip(tmp_path):
    for name in PRESETS:
        config = get_preset(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(config.to_yaml())
        assert CrappifyConfig.from_yaml(path) == config
    assert "photons:\n  - 50.0\n  - 500.0" in get_preset("fluorescence").to_yaml()


def test_summary_mentions_every_step():
    summary = get_preset("fluorescence").summary()
    assert summary.startswith("fluorescence (x4): blur(sigma=[1, 2]")
    assert "poisson(photons=[50, 500]" in summary


# ----------------------------------------------------------------------- sampling


def test_sampled_parameters_are_within_ranges_and_per_seed():
    config = get_preset("fluorescence")
    draws = [sample_params(config, seed) for seed in range(200)]
    photons = [d["steps"][2]["photons"] for d in draws]
    assert all(50.0 <= p <= 500.0 for p in photons)
    assert len(set(photons)) == 200
    # log-uniform: about half of the draws below the geometric mean.
    below = sum(p < math.sqrt(50.0 * 500.0) for p in photons)
    assert 70 < below < 130
    sigmas = [d["steps"][0]["sigma"] for d in draws]
    assert all(1.0 <= s <= 2.0 for s in sigmas)
    assert abs(sum(sigmas) / len(sigmas) - 1.5) < 0.06
    # read noise shares the photon budget of the poisson step
    assert all(d["steps"][3]["photons"] == d["steps"][2]["photons"] for d in draws)
    assert sample_params(config, 7) == sample_params(config, 7)
    assert draws[0]["seed"] == 0 and draws[0]["scale"] == 4


def test_integer_ranges_and_fixed_values():
    config = CrappifyConfig(
        scale=1,
        steps=[{"kind": "jpeg", "quality": [10, 12]}, PoissonStep(photons=30.0)],
    )
    qualities = {sample_params(config, s)["steps"][0]["quality"] for s in range(60)}
    assert qualities == {10, 11, 12}
    assert {sample_params(config, s)["steps"][1]["photons"] for s in range(5)} == {30.0}


def test_fixing_a_parameter_does_not_change_the_others():
    ranged = CrappifyConfig(
        scale=1, steps=[PoissonStep(photons=(10.0, 100.0), background=(0.0, 0.5))]
    )
    fixed = ranged.with_overrides(**{"poisson.photons": 42.0})
    for seed in range(5):
        a, b = sample_params(ranged, seed), sample_params(fixed, seed)
        assert a["steps"][0]["background"] == b["steps"][0]["background"]


def test_sample_params_rejects_bad_seeds():
    with pytest.raises(InputError, match=r"seed must be a non-negative integer \(got -1\)"):
        sample_params(get_preset("em"), -1)
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        sample_params(get_preset("em"), 1.5)
