"""Starting points: the registry, ``train --from``, ``predict NAME``, ``info NAME``.

The mechanism is tested with tiny starting points made here (the registry's folder is
pointed at them); one test reads the files that ship with the package.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

import decrappify.pretrained as pretrained
from _tiny import tiny_generator
from decrappify import api
from decrappify.cli import app
from decrappify.config.crappify import get_preset
from decrappify.config.model import ModelInfo
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError, ModelFileError
from decrappify.models import build_generator, load_model, save_model
from decrappify.models.store import read_model_info
from decrappify.sample import synthetic_image
from decrappify.train.start import choose_start

runner = CliRunner()

#: What the tiny starting points are: name, scale, crappifier preset.
TINY_POINTS = {
    "em-4x": (4, "em"),
    "fluo-4x": (4, "fluorescence"),
    "fluo-denoise": (1, "fluorescence"),
}

#: A run of seconds: two generator steps on 64-px patches.
QUICK = {
    "data.patch_size": 64,
    "data.samples_per_epoch": 16,
    "data.validation.count": 1,
    "data.validation.patches": 2,
    "batch_size": 2,
    "pretrain_generator.steps": 2,
    "pretrain_generator.checkpoint_every": 2,
    "gan.max_steps": 0,
    "preview_every": 0,
    "device": "cpu",
    "num_threads": 1,
}


def make_point(path, scale: int, preset: str, seed: int = 0):
    """A tiny generator saved as a single-file model with a starting point's provenance."""
    cfg = tiny_generator(scale)
    crappify = get_preset(preset).with_scale(scale).model_dump(mode="json")
    provenance = {
        "data": [{"what": "tiny synthetic images", "licence": "made by the test"}],
        "weights_licence": "BSD-3-Clause",
        "not_used": "nothing else",
    }
    info = ModelInfo(generator=cfg, crappify=crappify, training={"provenance": provenance})
    return save_model(path, build_generator(cfg, seed=seed), info)


@pytest.fixture(scope="module")
def points_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("points")
    for k, (name, (scale, preset)) in enumerate(TINY_POINTS.items()):
        make_point(folder / f"{name}.safetensors", scale, preset, seed=k)
    return folder


@pytest.fixture
def tiny_points(points_folder, monkeypatch):
    """The registry finds the tiny starting points instead of the shipped ones."""
    monkeypatch.setattr(pretrained, "_folder", lambda: points_folder)
    return points_folder


@pytest.fixture(scope="module")
def hr_images():
    return [np.asarray(synthetic_image("em", (96, 96), seed=i).data) for i in range(3)]


def quick_config(scale: int = 4, preset: str | None = "em", **changes) -> TrainConfig:
    values = {**QUICK, **changes}
    config = api.train_config(preset=preset, scale=scale, overrides=values)
    return config.with_overrides({"generator": tiny_generator(scale).model_dump(mode="json")})


# -- the registry


def test_names_stand_for_the_installed_files(tiny_points, tmp_path, monkeypatch):
    assert pretrained.resolve_model_path("em-4x") == tiny_points / "em-4x.safetensors"
    assert [sp.name for sp in pretrained.shipped()] == list(TINY_POINTS)
    monkeypatch.chdir(tmp_path)
    assert pretrained.resolve_model_path("runs/model") == Path("runs/model")
    (tmp_path / "em-4x").mkdir()  # an existing path wins over a name
    assert pretrained.resolve_model_path("em-4x") == Path("em-4x")
    with pytest.raises(InputError, match="'em-8x': unknown; the shipped ones are em-4x, fluo-4x"):
        pretrained.starting_point_path("em-8x")


def test_a_missing_file_says_the_installation_lacks_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "_folder", lambda: tmp_path)
    assert pretrained.shipped() == []
    with pytest.raises(ModelFileError, match="em-4x.safetensors is missing from this installation"):
        pretrained.starting_point_path("em-4x")


def test_info_and_load_take_a_name(tiny_points):
    info = read_model_info("fluo-denoise")
    assert info.generator.scale == 1
    assert info.training["provenance"]["weights_licence"] == "BSD-3-Clause"
    loaded = load_model("em-4x")
    assert loaded.path == tiny_points / "em-4x.safetensors"
    result = runner.invoke(app, ["info", "fluo-4x"])
    assert result.exit_code == 0, result.output
    assert "licence:       weights BSD-3-Clause" in result.output
    assert "trained on:    tiny synthetic images: made by the test" in result.output


# -- choosing the start


@pytest.mark.parametrize(
    ("scale", "preset", "chosen", "reason"),
    [
        (4, "em", "em-4x", "from the shipped starting point em-4x (x4, modality em"),
        (4, "fluorescence-pssr", "fluo-4x", "fluo-4x (x4, modality fluorescence"),
        (1, "fluorescence", "fluo-denoise", "fluo-denoise (x1, modality fluorescence"),
        (2, "em", None, "random initial weights: no shipped starting point for x2 em"),
        (1, "em", None, "no shipped starting point for x1 em"),
    ],
)
def test_auto_takes_the_starting_point_of_the_scale_and_modality(
    tiny_points, scale, preset, chosen, reason
):
    start = choose_start(quick_config(scale, preset))
    assert start.name == chosen
    assert reason in start.reason


def test_auto_without_a_modality(tiny_points):
    fitted = get_preset("fluorescence").model_copy(update={"name": "fitted"})
    at_one = quick_config(1, None).with_overrides(
        {"crappify": fitted.with_scale(1).model_dump(mode="json")}
    )
    start = choose_start(at_one)
    assert start.name == "fluo-denoise" and "the only one at this scale" in start.reason
    at_four = quick_config(4, None).with_overrides({"crappify": fitted.model_dump(mode="json")})
    start = choose_start(at_four)
    assert start.name is None
    assert "does not say which modality (--from em-4x or --from fluo-4x)" in start.reason


def test_auto_skips_a_starting_point_of_another_network(tiny_points):
    config = quick_config().with_overrides({"generator.nf_factor": 0.5})
    start = choose_start(config)
    assert start.name is None
    assert "em-4x does not fit (its network differs: generator.nf_factor is 0.25 there" in (
        start.reason
    )
    with_encoder = quick_config().with_overrides({"encoder_weights": "imagenet.pth"})
    assert choose_start(with_encoder).name is None


def test_a_misfit_is_refused_before_the_run_folder_exists(tiny_points, hr_images, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError) as err:
        api.train(hr_images, out, config=quick_config(), start_from="fluo-denoise")
    assert str(err.value).startswith(
        "start_from 'fluo-denoise': cannot start from this model: it is a x1 model, this run "
        "trains x4; choose a starting point that fits the run"
    )
    assert not out.exists()
    with pytest.raises(ModelFileError, match="model not found"):
        api.train(hr_images, out, config=quick_config(), start_from=str(tmp_path / "nope"))
    assert not out.exists()


# -- training from a starting point


@pytest.fixture(scope="module")
def spoilt_run(points_folder, hr_images, tmp_path_factory):
    """A fine-tune at a rate that wrecks the network: the start is the better model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrained, "_folder", lambda: points_folder)
        config = quick_config(**{"pretrain_generator.max_lr": 1.0})
        config = config.with_overrides({"pretrain_generator.fine_tune_lr_factor": 1.0})
        out = tmp_path_factory.mktemp("spoilt") / "run"
        return api.train(hr_images, out, config=config)


def test_a_run_starts_from_the_matching_starting_point(spoilt_run, points_folder):
    start = spoilt_run.start
    assert start["from"] == "em-4x"
    assert start["path"] == str(points_folder / "em-4x.safetensors")
    digest = hashlib.sha256((points_folder / "em-4x.safetensors").read_bytes())
    assert start["sha256"] == digest.hexdigest()
    assert start["provenance"]["weights_licence"] == "BSD-3-Clause"
    info = read_model_info(spoilt_run.model_path)
    assert info.training["start"]["from"] == "em-4x"


def test_a_fine_tune_worse_than_its_start_returns_the_start(spoilt_run, points_folder):
    notes = [e["note"] for e in spoilt_run.history if "note" in e]
    assert any(
        n.startswith("generator start: from the shipped starting point em-4x") for n in notes
    )
    assert any("did not beat its start em-4x" in n for n in notes)
    assert spoilt_run.best["phase"] == "start"
    trained = load_model(spoilt_run.model_path).net.state_dict()
    start = load_model(points_folder / "em-4x.safetensors").net.state_dict()
    assert trained.keys() == start.keys()
    assert all(torch.equal(trained[k], start[k]) for k in start)
    step0 = next(e for e in spoilt_run.history if e.get("step") == 0 and "psnr" in e)
    assert spoilt_run.metrics["psnr"] == pytest.approx(step0["psnr"])


@pytest.mark.parametrize(("factor", "expected"), [(None, 1.0), (0.1, 0.1)])
def test_a_fine_tune_runs_at_fine_tune_lr_factor_times_max_lr(
    factor, expected, tiny_points, hr_images, tmp_path
):
    # the default is the full rate (EM isbi from em-4x, 200 steps: 17.87 dB at a tenth,
    # 17.95 dB at the full rate; docs/benchmarks.md)
    config = quick_config()
    if factor is not None:
        config = config.with_overrides({"pretrain_generator.fine_tune_lr_factor": factor})
    model = tiny_points / "em-4x.safetensors"
    result = api.train(hr_images, tmp_path / "run", config=config, start_from=str(model))
    assert result.start["from"] == str(model)
    rates = [float(r.split(",")[4]) for r in (tmp_path / "run/log.csv").read_text().split()[2:]]
    assert max(rates) == pytest.approx(config.pretrain_generator.max_lr * expected)


def test_from_none_starts_from_random_weights(tiny_points, hr_images, tmp_path):
    result = api.train(hr_images, tmp_path / "run", config=quick_config(), start_from="none")
    assert result.start == {"from": None, "reason": "random initial weights (start_from none)"}


# -- predict with a starting point's name


def test_predict_with_a_starting_point_name(tiny_points, tmp_path):
    lr = np.asarray(synthetic_image("fluorescence", (64, 64), seed=3).data)
    tifffile.imwrite(tmp_path / "lr.tif", lr)
    results = api.predict(
        "fluo-denoise", [tmp_path / "lr.tif"], tmp_path / "out", {"tile": 32, "device": "cpu"}
    )
    assert results[0].ok, results[0].error
    assert tuple(results[0].info["output_shape"]) == (64, 64)
    assert "consistency" in results[0].info["trust"]


# -- the files that ship with the package


@pytest.mark.parametrize("name", list(pretrained.STARTING_POINTS))
def test_the_shipped_starting_points_load_with_their_provenance(name):
    point = pretrained.STARTING_POINTS[name]
    path = pretrained.starting_point_path(name)
    assert path.parent.name == "pretrained" and path.stat().st_size < 30 * 2**20
    info = read_model_info(name)
    assert info.generator.scale == point.scale
    # the default network (what --from auto fits them to), at their scale
    default = TrainConfig().generator.model_copy(update={"scale": point.scale})
    assert (info.generator.arch, info.generator.naf) == (default.arch, default.naf)
    assert pretrained.crappifier_modality(info.crappify) == point.modality
    provenance = info.training["provenance"]
    assert provenance["name"] == name
    assert provenance["weights_licence"].startswith("BSD-3-Clause")
    assert "ISBI" in provenance["not_used"] and "W2S" in provenance["not_used"]
    assert provenance["data"] and all(group["licence"] for group in provenance["data"])
    assert "tools/train_starting_points.py" in provenance["trained"]["command"]
    net = load_model(name).net
    x = torch.rand(1, info.generator.n_frames, 32, 32)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == (1, 1, 32 * point.scale, 32 * point.scale)
    assert torch.isfinite(y).all()
    assert json.loads(info.model_dump_json())["description"].startswith(
        f"decrappify starting point {name}"
    )
