"""``decrappify info``: a short summary, ``--json`` for the record, damaged models refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from decrappify.config.crappify import get_preset
from decrappify.config.model import GeneratorConfig, ModelInfo
from decrappify.config.train import TrainConfig
from decrappify.models import build_generator, save_model

TINY = {"encoder": "resnet18", "self_attention": False, "nf_factor": 0.25, "blur": False}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A trained-looking ×4 model, as a folder and as a single file."""
    cfg = GeneratorConfig(scale=4, **TINY)
    config = TrainConfig(generator=cfg)
    training = {
        "finished": True,
        "recipe": "NoGAN",
        "steps": {
            "pretrain_generator": 760,
            "save_outputs": 512,
            "pretrain_critic": 40,
            "gan": 150,
        },
        "seconds": 1190.4,
        "time_budget": 1200.0,
        "device": "cpu",
        "precision": "float32",
        "best": {"phase": "gan", "cycle": 0, "step": 100},
        "data": {
            "mode": "crappify",
            "scale": 4,
            "patch_size": 128,
            "n_train_images": 7,
            "n_validation_images": 1,
            "images": [f"hr/em_{i}.tif" for i in range(8)],
            "batch_size": 8,
            "seed": 0,
        },
        "config": config.model_dump(mode="json"),
    }
    info = ModelInfo(
        generator=cfg,
        crappify=get_preset("em").model_dump(mode="json"),
        training=training,
        metrics={"psnr": 24.31, "ssim": 0.712, "bicubic_psnr": 22.5, "bicubic_ssim": 0.65},
        history=[{"phase": "gan", "note": "done"}] * 12,
        description="decrappify NoGAN generator",
    )
    net = build_generator(cfg, seed=0)
    folder = tmp_path_factory.mktemp("models")
    return {
        "folder": save_model(folder / "em_x4", net, info),
        "file": save_model(folder / "em_x4.safetensors", net, info),
    }


@pytest.mark.parametrize("layout", ["folder", "file"])
def test_info_prints_a_short_summary(bad, models, layout):
    result = bad.run("info", models[layout])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) <= 16  # wrapped at 80 columns, ten lines of summary
    text = bad.text_of(result)
    assert "training: NoGAN, finished, 19m50s on cpu (budget 20m)" in text
    assert "steps: pretrain_generator 760, save_outputs 512, pretrain_critic 40, gan 150; " in text
    assert "best generator: gan, cycle 1, step 100" in text
    assert "data: 8 images (7 training, 1 validation), LR crappified on the fly, 128 px" in text
    assert "validation: PSNR 24.31 dB, SSIM 0.7120 (bicubic 22.50 dB, 0.6500)" in text
    assert "history: 12 entries (the full record: --json)" in text
    assert "samples_per_epoch" not in text  # the training config is in --json only


def test_info_json_is_the_full_record(bad, models):
    result = bad.run("info", "--json", models["folder"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["generator"]["scale"] == 4
    assert record["training"]["config"]["data"]["samples_per_epoch"] == 1024
    assert len(record["history"]) == 12


def test_truncated_weights_are_refused(bad, models):
    folder = shutil.copytree(models["folder"], bad.path("m"))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad.assert_clean_failure(
        bad.run("info", folder), f"{weights}: not a readable safetensors file, it may be truncated"
    )
    single = bad.path("m.safetensors")
    single.write_bytes(models["file"].read_bytes()[:100_000])
    bad.assert_clean_failure(bad.run("info", single), f"{single}: not a readable safetensors")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda meta: meta["generator"].update(scale=2),
            "inconsistent model metadata: generator.scale is 2 but crappify.scale is 4",
        ),
        (
            lambda meta: (meta["generator"].update(scale=2), meta.update(crappify=None)),
            "inconsistent model metadata: generator.scale is 2 but training.data.scale is 4",
        ),
        (
            lambda meta: (
                meta["generator"].update(y_range=None),
                meta.update(crappify=None, training={}),
            ),
            "inconsistent model: model.json says generator.y_range is null, the weights were "
            "saved with [-0.2, 1.2]",
        ),
        (lambda meta: meta.update(format_version=99), "model format version 99 is newer"),
    ],
)
def test_edited_metadata_is_refused(bad, models, edit, message):
    folder = shutil.copytree(models["folder"], bad.path("m"))
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    bad.assert_clean_failure(bad.run("info", folder), message)


def test_missing_models(bad, models):
    bad.assert_clean_failure(bad.run("info", "nothing"), "nothing: model not found")
    folder = shutil.copytree(models["folder"], bad.path("m"))
    (folder / "model.safetensors").unlink()
    bad.assert_clean_failure(bad.run("info", folder), "(model.safetensors missing)")


def test_weights_of_another_run_dropped_into_a_model_folder_are_refused(bad, models):
    """Issue 20.6: the same architecture's weights passed the shape checks unnoticed."""
    folder = shutil.copytree(models["folder"], bad.path("m"))
    cfg = GeneratorConfig(scale=4, **TINY)
    other = save_model(bad.path("other"), build_generator(cfg, seed=1), ModelInfo(generator=cfg))
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    message = f"{folder}: the weights are not the ones its metadata describes"
    bad.assert_clean_failure(bad.run("info", folder), message, "model.safetensors was replaced")
    bad.tif("em.tif")
    result = bad.run("predict", folder, "em.tif", "-o", "out", "--device", "cpu", "-q")
    bad.assert_clean_failure(result, message)
    assert not bad.path("out").exists()


def test_a_model_saved_before_weight_digests_still_loads_and_says_so(bad, models):
    folder = shutil.copytree(models["folder"], bad.path("m"))
    meta = json.loads((folder / "model.json").read_text())
    assert len(meta.pop("weights_sha256")) == 64
    meta["format_version"] = 2
    (folder / "model.json").write_text(json.dumps(meta))
    result = bad.run("info", folder)
    assert result.exit_code == 0, result.output
    assert "weights: no digest recorded (saved before format 3), not checked" in bad.text_of(result)


def test_metadata_without_its_generator_is_refused_not_filled_in(bad, models):
    folder = shutil.copytree(models["folder"], bad.path("m"))
    meta = json.loads((folder / "model.json").read_text())
    del meta["generator"]
    (folder / "model.json").write_text(json.dumps(meta))
    bad.assert_clean_failure(
        bad.run("info", folder), "model.json: the model metadata has no 'generator' section"
    )


def test_the_weights_file_of_a_model_folder_is_named_as_such(bad, models):
    weights = models["folder"] / "model.safetensors"
    bad.assert_clean_failure(
        bad.run("info", weights),
        f"{weights}: this is the weights file of the model folder {models['folder']}; pass the "
        "folder",
    )


def _sparkle_model(bad, models) -> Path:
    """A copy of the model whose crappifier has a step this version does not know."""
    folder = shutil.copytree(models["folder"], bad.path("m"))
    meta = json.loads((folder / "model.json").read_text())
    meta["crappify"]["steps"][0]["kind"] = "sparkle"
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_an_unknown_crappifier_step_is_said_by_info(bad, models):
    result = bad.run("info", _sparkle_model(bad, models))
    assert result.exit_code == 0, result.output
    text = bad.text_of(result)
    assert "(this version cannot use it: steps.0: " in text and "'sparkle'" in text


def test_an_unknown_crappifier_step_is_said_by_export(bad, models):
    """Said before the halo is measured (that took about a minute before failing)."""
    folder = _sparkle_model(bad, models)
    result = bad.run("export", folder, "--bioimageio", "m.zip", "-q")
    bad.assert_clean_failure(result, "the model's crappifier (pass --test-image", "'sparkle'")
    assert "ValidationError" not in result.output
    bad.assert_nothing_left([bad.path("m.zip")])
