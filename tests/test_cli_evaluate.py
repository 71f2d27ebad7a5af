"""decrappify evaluate: table, JSON keys, CSV, figure, pairing errors."""

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from decrappify.cli import app
from decrappify.metrics import evaluate_pair, upsample

runner = CliRunner()


@pytest.fixture
def triplet(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128]
    gt = (120 + 80 * np.sin(x / 6.0) * np.cos(y / 9.0)).astype(np.float32)
    lr = gt.reshape(32, 4, 32, 4).mean(axis=(1, 3))
    pred = gt + rng.normal(0, 1, gt.shape)
    paths = {}
    for name, arr in (("gt", gt), ("lr", lr), ("pred", pred)):
        paths[name] = tmp_path / name / "img.tif"
        paths[name].parent.mkdir()
        tifffile.imwrite(paths[name], arr.clip(0, 255).astype(np.uint8))
    return paths


def test_evaluate_writes_json_csv_figure(triplet, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--pred", str(triplet["pred"]),
            "--gt", str(triplet["gt"]),
            "--lr", str(triplet["lr"]),
            "--baselines", "bicubic,bilinear",
            "--report", str(out / "m.json"),
            "--csv", str(out / "m.csv"),
            "--figure", str(out / "fig.png"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "m.json").read_text())
    entry = doc["img"]
    for key in ("psnr", "ssim", "nrmse", "psnr_norm", "ssim_norm"):
        assert key in entry
        assert key in entry["baselines"]["bicubic"]
        assert key in entry["baselines"]["bilinear"]
    gt = tifffile.imread(triplet["gt"])
    pred = tifffile.imread(triplet["pred"])
    expected = evaluate_pair(pred, gt)
    assert entry["psnr"] == pytest.approx(expected["psnr"], abs=1e-6)
    bicubic = evaluate_pair(upsample(tifffile.imread(triplet["lr"]), 4, "bicubic"), gt)
    assert entry["baselines"]["bicubic"]["psnr_norm"] == pytest.approx(bicubic["psnr_norm"], 1e-6)
    assert entry["psnr_norm"] > entry["baselines"]["bicubic"]["psnr_norm"]
    assert (out / "m.csv").read_text().count("\n") >= 3
    assert (out / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bicubic" in result.output
    assert "FRC res. (px)" in result.output
    assert entry["frc_px"] == pytest.approx(expected["frc_px"], rel=1e-9)
    assert entry["pixel_size"] is None


def test_evaluate_pairing_and_baseline_errors(triplet):
    second = triplet["pred"].with_name("other.tif")
    second.write_bytes(triplet["pred"].read_bytes())
    two = runner.invoke(
        app,
        ["evaluate", "--pred", str(triplet["pred"]), "--pred", str(second),
         "--gt", str(triplet["gt"])],
    )  # fmt: skip
    assert two.exit_code == 1
    assert "--gt: got 1 images for 2 predictions" in two.output
    bad = runner.invoke(
        app,
        ["evaluate", "--pred", str(triplet["pred"]), "--gt", str(triplet["gt"]),
         "--lr", str(triplet["lr"]), "--baselines", "lanczos"],
    )  # fmt: skip
    assert bad.exit_code == 1
    assert "unknown lanczos" in bad.output


@pytest.fixture
def denoising(tmp_path):
    """Same-grid noisy/clean pairs: two to tune on, one to evaluate."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:96, 0:96]
    paths = {}
    for i, role in enumerate(("tune0", "tune1", "test")):
        clean = 120 + 90 * np.sin(x / (5.0 + i)) * np.cos(y / 7.0)
        noisy = clean + rng.normal(0, 25, clean.shape)
        for kind, arr in (
            ("gt", clean),
            ("lr", noisy),
            ("pred", clean + rng.normal(0, 3, clean.shape)),
        ):
            folder = tmp_path / f"{role}-{kind}"
            folder.mkdir()
            paths[role, kind] = folder / "img.tif"
            tifffile.imwrite(paths[role, kind], arr.clip(0, 255).astype(np.uint8))
    return paths


def test_evaluate_at_scale_one_compares_with_the_input_and_tuned_denoisers(denoising, tmp_path):
    args = ["evaluate", "--pred", denoising["test", "pred"], "--gt", denoising["test", "gt"],
            "--lr", denoising["test", "lr"], "--report", tmp_path / "m.json"]  # fmt: skip
    plain = runner.invoke(app, [str(a) for a in args])
    assert plain.exit_code == 0, plain.output
    entry = json.loads((tmp_path / "m.json").read_text())["img"]
    assert list(entry["baselines"]) == ["input"]  # auto: the noisy input itself at scale 1
    noisy = evaluate_pair(
        tifffile.imread(denoising["test", "lr"]), tifffile.imread(denoising["test", "gt"])
    )
    assert entry["baselines"]["input"]["psnr_norm"] == pytest.approx(noisy["psnr_norm"], abs=1e-6)

    tuned = runner.invoke(
        app,
        [str(a) for a in args]
        + ["--baselines", "auto,gaussian,tv=0.05", "--figure", str(tmp_path / "f.png"),
           "--tune-lr", str(denoising["tune0", "lr"]), "--tune-lr", str(denoising["tune1", "lr"]),
           "--tune-gt", str(denoising["tune0", "gt"]), "--tune-gt", str(denoising["tune1", "gt"])],
    )  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    assert "chosen on 2 tuning images" in tuned.output
    entry = json.loads((tmp_path / "m.json").read_text())["img"]
    names = list(entry["baselines"])
    assert names[0] == "input" and names[1].startswith("gaussian=") and names[2] == "tv=0.05"
    smoothed = entry["baselines"][names[1]]["psnr_norm"]
    assert smoothed > entry["baselines"]["input"]["psnr_norm"] + 3.0
    assert (tmp_path / "f.png").is_file()


def test_evaluate_baseline_errors_at_scale_one_and_four(denoising, triplet):
    input_at_4 = runner.invoke(
        app,
        ["evaluate", "--pred", str(triplet["pred"]), "--gt", str(triplet["gt"]),
         "--lr", str(triplet["lr"]), "--baselines", "input"],
    )  # fmt: skip
    assert input_at_4.exit_code == 1
    assert "baseline input: the input is on the output grid only at scale 1 (got scale 4)" in (
        " ".join(input_at_4.output.split())
    )
    half = runner.invoke(
        app,
        ["evaluate", "--pred", str(denoising["test", "pred"]), "--gt", str(denoising["test", "gt"]),
         "--lr", str(denoising["test", "lr"]), "--baselines", "gaussian",
         "--tune-lr", str(denoising["tune0", "lr"])],
    )  # fmt: skip
    assert half.exit_code == 1 and "--tune-lr and --tune-gt go together" in half.output


def test_evaluate_aligns_images_by_pixel_size_as_the_compare_widget_does(tmp_path):
    """A prediction on a coarser grid of the same field of view is resampled, not refused."""
    from decrappify import api
    from decrappify.events import run_to_end
    from decrappify.io import Image, read_image, write_image
    from decrappify.metrics import evaluate_stack
    from decrappify.metrics.alignment import plan_comparison

    y, x = np.mgrid[0:128, 0:128]
    values = (120 + 80 * np.sin(x / 6.0) * np.cos(y / 9.0)).astype(np.uint8)
    units = ("micrometer", "micrometer")
    gt = Image(values, pixel_size=(0.1, 0.1), units=units, source="gt")
    lr = gt.with_data(values.reshape(32, 4, 32, 4).mean(axis=(1, 3)).astype(np.uint8), yx_factor=4)
    coarse = values.reshape(64, 2, 64, 2).mean(axis=(1, 3)).astype(np.uint8)
    pred = gt.with_data(coarse, yx_factor=2)  # half the resolution, the same field of view
    paths = {}
    for name, image in (("gt", gt), ("lr", lr), ("pred", pred)):
        paths[name] = write_image(image, tmp_path / name / "img.zarr")
    read = {name: read_image(path) for name, path in paths.items()}
    plan = plan_comparison(read["pred"], read["gt"], read["lr"])
    assert (plan.mode, plan.scale) == ("resize", 4)

    result = runner.invoke(
        app,
        [
            "evaluate", "--pred", str(paths["pred"]), "--gt", str(paths["gt"]),
            "--lr", str(paths["lr"]), "--report", str(tmp_path / "m.json"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "m.json").read_text())["img"]
    expected = evaluate_stack(
        read["pred"].data, read["gt"].data, read["lr"].data, **plan.evaluate_kwargs()
    )
    comparison = run_to_end(api.iter_compare(read["pred"], read["gt"], read["lr"]))
    widget = comparison.result  # what the Compare widget shows
    [note] = comparison.notes
    assert note.endswith(
        "img.zarr' (64x64, pixel size 0.2 micrometer) was resampled bicubically onto the "
        "ground truth's grid (128x128, pixel size 0.1 micrometer) before scoring"
    )
    for key in ("psnr", "ssim_norm"):
        assert entry[key] == pytest.approx(expected.mean()[key], abs=1e-9)
        assert entry[key] == pytest.approx(widget.mean()[key], abs=1e-9)
    assert entry["baselines"]["bicubic"]["psnr"] == pytest.approx(
        widget.mean("bicubic")["psnr"], abs=1e-9
    )
    # an explicit --resize gives the same
    report = api.evaluate([paths["pred"]], [paths["gt"]], crop=False, resize=True)
    assert report.results["img"].mean()["psnr"] == pytest.approx(entry["psnr"], abs=1e-9)
