"""``decrappify demo``: the whole method end to end, and its report folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from decrappify import api
from decrappify.api import _demo as demo_module  # api.demo's module: tests patch its sizes
from decrappify.cli import app
from decrappify.errors import InputError, OutputError
from decrappify.io import read_image
from decrappify.models import load_model

runner = CliRunner()


#: Cheaper training for the tiny demos (the critic's self-attention dominates on a CPU).
CHEAP = {"critic.self_attention": False, "data.patch_size": 64, "gan.max_critic_steps": 1}


def cheap_cli_demo(monkeypatch):
    """Make ``decrappify demo`` cheap: CHEAP under the settings the command line gives."""
    real = api.iter_demo

    def cheap(*args, overrides=None, **kwargs):
        return real(*args, overrides={**CHEAP, **(overrides or {})}, **kwargs)

    monkeypatch.setattr(api, "iter_demo", cheap)


@pytest.fixture
def tiny_demo(monkeypatch):
    """A demo small enough for the default suite: 3 + 1 images of 128^2, a few seconds."""
    monkeypatch.setattr(demo_module, "SIZE", 128)
    monkeypatch.setattr(demo_module, "N_TRAIN", 3)
    monkeypatch.setattr(demo_module, "N_TEST", 1)
    monkeypatch.setattr(demo_module, "RESERVED_SECONDS", 2.0)
    monkeypatch.setattr(demo_module, "MIN_TRAIN_SECONDS", 1.0)


def test_demo_writes_a_complete_report(tmp_path, tiny_demo):
    out = tmp_path / "demo"
    phases = []
    gen = api.iter_demo(out, time_budget="10s", seed=3, overrides=CHEAP)
    while True:
        try:
            phases.append(next(gen).phase)
        except StopIteration as stop:
            report = stop.value
            break
    # every step of the method ran, in order
    firsts = list(dict.fromkeys(p.split(":")[0] for p in phases))
    assert firsts == ["data", "crappify held-back", "train", "predict", "evaluate"]
    assert "train: pretrain_generator" in set(phases)
    for role in ("model", "metrics_json", "metrics_csv", "training_log", "training_curves"):
        assert report.files[role].exists(), role
    # the prediction is an OME-Zarr 4x the held-back LR image, on the HR grid
    (pred,) = sorted((out / "predictions").glob("*.zarr"))
    assert zarr.open_group(pred, mode="r")["0"].shape == (128, 128)
    metrics = json.loads((out / "metrics.json").read_text())
    gain = (
        metrics["mean"]["psnr_norm"]["mean"]
        - (metrics["mean"]["baselines"]["bicubic"]["psnr_norm"]["mean"])
    )
    assert report.gain_db == pytest.approx(gain)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["psnr_norm_gain_db_vs_bicubic"] == pytest.approx(gain, abs=1e-3)
    # a 10 s budget leaves no room for a GAN cycle after pretraining: it is skipped, and said
    # (when the critic's share cannot pay for its steps, already while pretraining: a busy
    # machine, whose data step took the reserve, gets there)
    steps = summary["training"]["steps"]
    history = load_model(report.files["model"]).info.history
    assert "pretrain_generator" in steps
    assert (
        "gan" in steps
        or any("too little for a GAN cycle" in h.get("note", "") for h in history)
        or any(h.get("skipped") == "gan" for h in history)
    )
    assert np.isfinite(report.gain_db)


@pytest.mark.slow  # the round trip itself is in tests/test_scale_one.py
def test_demo_at_scale_one_trains_predicts_and_scores_on_the_same_grid(
    tmp_path, tiny_demo, monkeypatch
):
    cheap_cli_demo(monkeypatch)
    out = tmp_path / "demo1"
    result = runner.invoke(
        app,
        ["demo", "--out", str(out), "--time-budget", "10s", "--scale", "1", "--seed", "2", "-q"],
    )
    assert result.exit_code == 0, result.output
    assert "model" in result.output and "input by" in result.output
    (lr,) = sorted((out / "data" / "test_lr").glob("*.zarr"))
    (pred,) = sorted((out / "predictions").glob("*.zarr"))
    lr_image, pred_image = read_image(lr), read_image(pred)
    assert lr_image.shape == pred_image.shape == (128, 128)  # no upsampling anywhere
    assert pred_image.pixel_size == pytest.approx(lr_image.pixel_size)
    info = api.model_info(out / "run" / "model")
    assert info.generator.scale == 1 and info.crappify["scale"] == 1
    assert "downsample" not in [s["kind"] for s in info.crappify["steps"]]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["mean"]["baselines"]) == ["input", "gaussian"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scale"] == 1 and "psnr_norm_gain_db_vs_input" in summary


def test_demo_trains_its_minimum_when_the_data_took_the_reserve(tmp_path, tiny_demo):
    # a busy machine: preparing the data outlasts the reserve, leaving less than the
    # minimum for training (it used to reach TrainConfig as a negative time budget)
    messages = []
    gen = api.iter_demo(tmp_path / "demo", time_budget="3.2s", seed=3, overrides=CHEAP)
    while True:
        try:
            messages.append(next(gen).message or "")
        except StopIteration as stop:
            report = stop.value
            break
    assert any("training for 1 s (the least it can)" in m for m in messages)
    assert report.files["model"].exists()


def test_demo_refuses_an_existing_folder_and_a_short_budget(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        api.demo(tmp_path / "taken")
    with pytest.raises(InputError, match="--time-budget must leave at least 30 s"):
        api.demo(tmp_path / "new", time_budget="1m")
    assert not (tmp_path / "new").exists()


def test_demo_cli(tmp_path, tiny_demo, monkeypatch):
    cheap_cli_demo(monkeypatch)
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--time-budget", "10s", "-q"])
    assert result.exit_code == 0, result.output
    assert "bicubic by" in result.output and "dB normalised PSNR" in result.output
    assert (out / "summary.json").exists()
    # NoGAN, unless the 10 s cannot pay for the critic's steps (a busy machine): then said so
    assert api.model_info(out / "run" / "model").training["recipe"] in (
        "NoGAN",
        "generator pretraining only (the time budget could not pay for the GAN phases)",
    )
    result = runner.invoke(
        app, ["demo", "-o", str(tmp_path / "d2"), "-t", "10s", "--set", "gan.max_steps=0"]
    )
    assert result.exit_code == 0, result.output
    recipe = api.model_info(tmp_path / "d2" / "run" / "model").training["recipe"]
    assert recipe == "generator pretraining only"  # --set reached the demo's training
    result = runner.invoke(app, ["demo", "--out", str(out), "--kind", "brightfield"])
    assert result.exit_code == 2  # a usage error (docs/cli.md)
    assert "--kind: 'brightfield' is not one of 'em', 'fluorescence'" in result.output
    result = runner.invoke(app, ["demo", "--out", str(out), "--scale", "0"])
    assert result.exit_code == 2 and "--scale: expected an integer from 1 to 8" in result.output


@pytest.mark.slow
def test_default_demo_beats_bicubic_by_2_db(tmp_path):
    report = api.demo(tmp_path / "demo")
    assert report.gain_db >= 2.0


@pytest.mark.parametrize(("kind", "name"), [("fluorescence", "fluo-4x"), ("em", "em-4x")])
def test_the_demo_fine_tunes_the_default_network_and_scores_images_its_start_never_saw(kind, name):
    """The demo trains what ``decrappify train`` trains by default: the default network,
    from the matching shipped starting point; its held-back images are not among the
    synthetic images that starting point was trained on (seeds in its provenance)."""
    import re

    from decrappify.config.train import TrainConfig
    from decrappify.pretrained import read_header_info
    from decrappify.train.start import choose_start

    config = api.train_config(
        preset=demo_module._preset(kind), scale=4, overrides=demo_module.DEMO_RECIPE
    )
    assert config.generator == TrainConfig().generator.model_copy(update={"scale": 4})
    start = choose_start(config)
    assert start.name == name
    provenance = read_header_info(start.path)["training"]["provenance"]
    seen: set[int] = set()
    for data in provenance["data"]:
        for first, last in re.findall(r"seeds (\d+)-(\d+)", data["what"]):
            seen |= set(range(int(first), int(last) + 1))
    assert seen  # the provenance names the seeds
    n_train, n_test = demo_module.N_TRAIN, demo_module.N_TEST
    held_back = {demo_module.image_seed(0, i) for i in range(n_train, n_train + n_test)}
    assert not held_back & seen
