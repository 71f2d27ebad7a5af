"""The end-of-training self-check: classical methods on the validation crops, the verdict."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from _tiny import tiny_generator
from decrappify import api
from decrappify.cli import app
from decrappify.config.train import TrainConfig
from decrappify.metrics.baselines import upsample
from decrappify.metrics.selfcheck import loses_to, self_check_lines, self_check_warning
from decrappify.sample import synthetic_image
from decrappify.train.selfcheck import advice, classical_baselines, run_self_check
from decrappify.train.validation import mean_scores

runner = CliRunner()


def crops(scale: int, noise: float, n: int = 4, size: int = 64):
    """Validation-like crops: clean HR, and LR = area-downsampled HR plus Gaussian noise."""
    rng = np.random.default_rng(0)
    image = np.asarray(synthetic_image("fluorescence", (size * 2, size * 2), seed=1).data, float)
    image = (image - image.min()) / (image.max() - image.min())
    hr = np.stack([image[i * 16 : i * 16 + size, i * 16 : i * 16 + size] for i in range(n)])
    lr = hr.reshape(n, size // scale, scale, size // scale, scale).mean(axis=(2, 4))
    lr = lr + noise * rng.standard_normal(lr.shape)
    return lr[:, None].astype(np.float32), hr.astype(np.float32)


def test_loses_to_lists_the_better_baselines_best_first():
    baselines = {"bilinear": {"psnr": 20.0}, "bicubic": {"psnr": 19.0}, "gaussian=1": {"psnr": 21}}
    assert loses_to({"psnr": 19.5}, baselines) == ["gaussian=1", "bilinear"]
    assert loses_to({"psnr": 22.0}, baselines) == []
    check = {"model": {"psnr": 22.0, "ssim": 0.7}, "baselines": baselines, "loses_to": []}
    assert self_check_warning(check) is None
    assert self_check_lines(check)[-1] == "the model beats every classical method"


def test_at_scale_1_the_tuned_denoisers_beat_the_noisy_input():
    lr, hr = crops(1, noise=0.15)
    scores = classical_baselines(lr, hr, 1)
    names = list(scores)
    assert names[0] == "input"
    assert [n.split("=")[0] for n in names[1:]] == ["gaussian", "tv", "nl-means"]
    gaussian = next(v for k, v in scores.items() if k.startswith("gaussian="))
    assert gaussian["psnr"] > scores["input"]["psnr"] + 3.0


def test_at_scale_4_the_interpolations_are_scored_as_the_validator_does():
    lr, hr = crops(4, noise=0.05)
    scores = classical_baselines(lr, hr, 4)
    assert list(scores)[:2] == ["bilinear", "bicubic"] and list(scores)[2].startswith("gaussian=")
    bilinear = mean_scores(np.stack([upsample(x[0], 4, "bilinear") for x in lr]), hr)
    assert scores["bilinear"]["psnr"] == pytest.approx(bilinear["psnr"], abs=1e-4)
    # the Gaussian's sigma is chosen on these crops: it is at least as good as no smoothing
    assert scores[list(scores)[2]]["psnr"] >= scores["bicubic"]["psnr"] - 1e-6


def test_advice_names_a_longer_budget_a_starting_point_and_a_fitted_crappifier():
    config = TrainConfig.validate_dict({"crappify": "em", "time_budget": "3m"})
    tips = advice(config, {"from": None}, {"pretrain_generator": 100})
    assert tips[0].startswith("a longer time budget (this run: 3m")
    assert tips[-1].startswith("a crappifier fitted to your microscope")
    lr, hr = crops(4, noise=0.05)
    record = run_self_check(lr, hr, model={"psnr": 5.0, "ssim": 0.1}, config=config)
    assert set(record["loses_to"]) == set(record["baselines"]) and len(record["loses_to"]) == 3
    assert record["advice"] == advice(config, None, {})


#: Two steps at a learning rate that wrecks the network: it loses to every classical method.
WRECKED = {
    "data": {"patch_size": 64, "samples_per_epoch": 16, "validation": {"count": 1, "patches": 2}},
    "batch_size": 2,
    "generator": tiny_generator(4).model_dump(mode="json"),
    "pretrain_generator": {"steps": 2, "checkpoint_every": 2, "max_lr": 1.0},
    "gan": {"max_steps": 0},
    "preview_every": 0,
    "device": "cpu",
    "num_threads": 1,
    "start_from": "none",
}


@pytest.fixture(scope="module")
def losing_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for i in range(3):
        tifffile.imwrite(
            folder / f"em_{i}.tif", np.asarray(synthetic_image("em", (96, 96), seed=i).data)
        )
    config = folder / "wrecked.yaml"
    config.write_text(TrainConfig.validate_dict(WRECKED).to_yaml())
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["train", "--hr", str(folder), "--out", str(out), "--config", str(config), "-q"]
    return out, runner.invoke(app, args)


def test_the_cli_summary_warns_when_the_model_loses(losing_run):
    out, result = losing_run
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for name in ("bilinear", "bicubic", "gaussian="):
        assert f"│ {name}" in result.output
    assert "warning: the model loses to " in text
    lost = text.split("warning: the model loses to ")[1]
    assert "bilinear (" in lost and "gaussian=" in lost
    assert "Try: more training (2 generator steps here" in text


def test_info_warns_when_the_model_loses(losing_run):
    out, _ = losing_run
    result = runner.invoke(app, ["info", str(out / "model")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "self-check: model" in text and "against bilinear" in text
    assert "WARNING: the model loses to" in text and "bilinear (" in text
    info = api.model_info(out / "model")
    assert "bilinear" in info.training["self_check"]["loses_to"]


def test_the_curves_and_history_keep_the_self_check(losing_run):
    out, _ = losing_run
    info = api.model_info(out / "model")
    notes = [e["note"] for e in info.history if "note" in e]
    assert any(n.startswith("self-check: model") and n.endswith("it loses") for n in notes)
    assert (out / "curves.png").stat().st_size > 10_000
