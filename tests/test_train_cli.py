"""Tests of ``decrappify train`` / ``decrappify info`` and the api.train wrappers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from decrappify import api
from decrappify.cli import app
from decrappify.config.crappify import get_preset
from decrappify.config.model import MODEL_FORMAT_VERSION
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError, ModelFileError
from decrappify.sample import synthetic_image

runner = CliRunner()

#: The smallest useful run: generator pretraining only, two steps.
QUICK = {
    "data": {"patch_size": 64, "samples_per_epoch": 16, "validation": {"count": 1, "patches": 2}},
    "batch_size": 2,
    "generator": {"encoder": "resnet18", "nf_factor": 0.25, "self_attention": False},
    "pretrain_generator": {"steps": 2, "checkpoint_every": 2},
    "gan": {"max_steps": 0},
    "preview_every": 0,
    "device": "cpu",
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for i in range(3):
        tifffile.imwrite(
            folder / f"em_{i}.tif", np.asarray(synthetic_image("em", (96, 96), seed=i).data)
        )
    return folder


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "quick.yaml"
    path.write_text(TrainConfig.validate_dict(QUICK).to_yaml())
    return path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, hr_folder, config_file):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = runner.invoke(
        app,
        ["train", "--hr", str(hr_folder), "--out", str(out), "--config", str(config_file), "-q"],
    )
    return out, result


def test_cli_train(cli_run):
    out, result = cli_run
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "validation crops" in text and "steps: pretrain_generator 2" in text
    assert f"model: {out / 'model'}" in text
    saved = TrainConfig.from_yaml(out / "train.yaml")
    assert saved.crappify == get_preset("em")  # the default preset, expanded
    summary = json.loads((out / "data.json").read_text())
    assert [im["source"].rsplit("/", 1)[-1] for im in summary["images"]] == [
        "em_0.tif",
        "em_1.tif",
        "em_2.tif",
    ]


def test_cli_resume_of_finished_run(cli_run):
    out, _ = cli_run
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "-q"])
    assert result.exit_code == 0, result.output
    assert "this run is already finished; nothing to do" in " ".join(result.output.split())


def test_cli_info(cli_run):
    out, _ = cli_run
    result = runner.invoke(app, ["info", str(out / "model")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"decrappify model (format {MODEL_FORMAT_VERSION}")
    assert "resnet18 U-Net, wide decoder (nf_factor 0.25" in result.output
    assert "crappifier:    em, x4: local_variance_noise -> downsample" in result.output


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["train", "--out", "R"], "error: train: give the high-res training images with --hr", 2),
        (["train", "--hr", "nothing/here.tif", "--out", "R"], "error: nothing/here.tif", 1),
        (["train", "--hr", "x.tif"], "error: train: --out RUN_DIR is required", 2),
        (
            ["train", "--hr", "x.tif", "--out", "R", "--set", "gan.max_step=1"],
            "error: override gan.max_step: unknown setting 'max_step'",
            1,
        ),
        (
            ["train", "--hr", "x.tif", "--out", "R", "--set", "oops"],
            "error: --set: expected KEY=VALUE, e.g. gan.max_steps=0 (got 'oops')",
            2,
        ),
        (
            ["train", "--hr", "x.tif", "--out", "R", "--time-budget", "soon"],
            "error: --time-budget: expected seconds or a duration",
            2,
        ),
        (
            ["train", "--hr", "x.tif", "--out", "R", "--config", "missing.yaml"],
            "error: missing.yaml: config file not found",
            1,
        ),
        (["info", "no_model_here"], "error: no_model_here: model not found", 1),
    ],
)
def test_cli_errors(tmp_path, monkeypatch, args, message, code):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == code
    text = " ".join(result.output.split())
    assert text.startswith(message), text
    assert len(result.output.strip().splitlines()) <= 3  # one message (wrapped at most)


def test_cli_bad_config_file(tmp_path, hr_folder):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gan:\n  patience: 0\nlearning_rate: 1\n")
    result = runner.invoke(
        app, ["train", "--hr", str(hr_folder), "--out", str(tmp_path / "r"), "-c", str(bad)]
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert text == (
        f"error: {bad}: gan.patience: Input should be greater than or equal to 1 (got 0); "
        "learning_rate: unknown parameter"
    )
    assert not (tmp_path / "r").exists()


def test_train_config_settings(tmp_path):
    cfg = api.train_config(preset="fluorescence", scale=2, encoder="resnet34", time_budget="5m")
    assert cfg.generator.scale == 2 and cfg.resolved_crappify().scale == 2
    assert cfg.resolved_crappify().name == "fluorescence"
    assert cfg.generator.encoder.value == "resnet34" and cfg.time_budget == 300.0
    assert api.train_config(scale=2).resolved_crappify() == get_preset("em").with_scale(2)
    crappify = tmp_path / "crappify.yaml"
    crappify.write_text(get_preset("em-poisson").to_yaml())
    cfg = api.train_config(crappify_file=crappify, seed=3, overrides={"gan.max_steps": 0})
    assert cfg.resolved_crappify().name == "em-poisson" and cfg.seed == cfg.data.seed == 3
    fitted = tmp_path / "fitted.yaml"  # crappify --fit on same-grid pairs writes scale 1
    fitted.write_text(
        get_preset("fluorescence", scale=1).model_copy(update={"name": "fitted"}).to_yaml()
    )
    same_grid = api.train_config(crappify_file=fitted)
    assert same_grid.generator.scale == 1 and same_grid.resolved_crappify().scale == 1
    assert "downsample" not in [s.kind for s in same_grid.resolved_crappify().steps]
    assert same_grid.data.patch_size == 128  # scale 1's own default patch
    paired = api.train_config(paired=True, scale=2)
    assert paired.crappify is None and paired.generator.scale == 2
    with pytest.raises(InputError, match=r"^crappify: paired training \(--lr\)"):
        api.train_config(paired=True, preset="em")
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("crappify: em\n")
    with pytest.raises(InputError, match="crappify must be null for paired training"):
        api.train_config(explicit, paired=True)


def test_default_patch_follows_the_scale_unless_set(tmp_path):
    assert api.train_config().data.patch_size == 256
    assert api.train_config(preset="fluorescence", scale=1).data.patch_size == 128
    assert api.train_config(scale=1, overrides={"data.patch_size": 64}).data.patch_size == 64
    given = tmp_path / "train.yaml"
    given.write_text("data: {patch_size: 192}\n")
    assert api.train_config(given, scale=1).data.patch_size == 192  # the file's choice
    one = tmp_path / "one.yaml"
    one.write_text("generator: {scale: 1}\ncrappify: null\n")
    assert api.train_config(one, paired=True).data.patch_size == 128
    resumed = api.train_config(scale=1)  # a run's train.yaml keeps its patch at any scale
    assert api.train_config(resumed, scale=4).data.patch_size == 128


def test_api_train_and_resume_from_recorded_sources(tmp_path, hr_folder, config_file):
    out = tmp_path / "run"
    gen = api.iter_train([hr_folder], out, config=config_file)
    next(gen)  # the initial validation: a checkpoint exists
    gen.close()
    result = api.train(None, out, resume=True)  # config and images from the run folder
    assert result.steps == {"pretrain_generator": 2} and result.metrics
    assert api.model_info(result.model_path).training["steps"] == result.steps
    with pytest.raises(InputError, match=r"^train: unknown settings \['tile'\]"):
        api.train([hr_folder], tmp_path / "x", tile=4)
    with pytest.raises(InputError, match="give at least one HR training image"):
        api.train([], tmp_path / "y")


def test_model_info_reads_metadata_only(cli_run, tmp_path):
    out, _ = cli_run
    info = api.model_info(out / "model")
    assert info.generator.nf_factor == 0.25 and info.metrics
    with pytest.raises(ModelFileError, match="not a decrappify model folder"):
        api.model_info(tmp_path)
    not_model = tmp_path / "x.safetensors"
    not_model.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        api.model_info(not_model)


def test_last_metrics_stay_visible():
    from decrappify.cli.train_cmd import with_last_metrics
    from decrappify.events import Progress

    def events():
        yield Progress("p", 0, 3, metrics={"psnr": 20.0, "ssim": 0.5})
        yield Progress("p", 1, 3)
        yield Progress("p", 2, 3, message="busy")
        return "done"

    gen = with_last_metrics(events())
    seen = [next(gen).message for _ in range(3)]
    assert seen == ["", "val psnr 20 ssim 0.5", "busy"]
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"
