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
            "--json", str(out / "m.json"),
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
