"""Tests for decrappify.metrics.report: JSON, CSV, text table and comparison figure."""

from __future__ import annotations

import csv
import json
import struct

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.transform import downscale_local_mean

from decrappify.errors import InputError, OutputError
from decrappify.io.atomic import atomic_write
from decrappify.metrics.core import METRIC_NAMES, evaluate_pair
from decrappify.metrics.figure import comparison_figure
from decrappify.metrics.frc import frc
from decrappify.metrics.report import (
    MetricsTable,
    format_table,
    results_to_json,
    write_csv,
)
from decrappify.metrics.stack import evaluate_stack


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def make_stack(rng, n, shape=(48, 48)):
    planes = [gaussian_filter(rng.random(shape), 2.0) for _ in range(n)]
    gt = np.stack([(255 * (p - p.min()) / (p.max() - p.min())).astype(np.uint8) for p in planes])
    lr = np.stack([downscale_local_mean(g.astype(np.float32), 4) for g in gt])
    pred = gt + rng.normal(0, 6, gt.shape).astype(np.float32)
    return pred, gt, lr


@pytest.fixture
def results(rng):
    pred, gt, lr = make_stack(rng, 3)
    pred2, gt2, lr2 = make_stack(rng, 1)
    return {
        "stack": evaluate_stack(pred, gt, lr),
        "single": evaluate_stack(pred2[0], gt2[0], lr2[0]),
    }


def read_png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_results_to_json_structure_and_values(results, tmp_path):
    path = tmp_path / "metrics.json"
    doc = results_to_json(results, path)
    assert set(doc) == {"stack", "single", "mean"}
    stack = doc["stack"]
    for key in METRIC_NAMES:
        assert stack[key] == pytest.approx(results["stack"].mean()[key])
        assert stack["sd"][key] == pytest.approx(results["stack"].sd()[key])
    assert set(stack["baselines"]) == {"bicubic"}
    assert set(METRIC_NAMES) <= set(stack["baselines"]["bicubic"])
    assert stack["n_slices"] == 3 and stack["axes"] == "ZYX" and stack["scale"] == 4
    assert len(stack["slices"]) == 3
    assert stack["slices"][1]["psnr"] == pytest.approx(results["stack"].slice_metrics(1)["psnr"])
    assert "slices" not in doc["single"]  # 2D images have no planes to list
    mean = doc["mean"]
    assert mean["n_images"] == 2
    values = [doc["stack"]["ssim_norm"], doc["single"]["ssim_norm"]]
    assert mean["ssim_norm"] == {
        "mean": pytest.approx(np.mean(values)),
        "sd": pytest.approx(np.std(values, ddof=1)),
    }
    assert mean["baselines"]["bicubic"]["n_images"] == 2
    assert set(METRIC_NAMES) <= set(mean["baselines"]["bicubic"])
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_frc_resolution_and_pixel_size_are_reported(rng, tmp_path):
    from decrappify.io import Image

    pred, gt, lr = make_stack(rng, 2, shape=(64, 64))
    image = Image(gt, axes="ZYX", pixel_size=(0.2, 0.05, 0.05), units=("micrometer",) * 3)
    result = evaluate_stack(pred, image, lr)
    assert (result.pixel_size, result.unit) == (0.05, "micrometer")
    doc = results_to_json({"cells": result})
    entry = doc["cells"]
    expected = np.mean([frc(pred[i], gt[i]).resolution_px for i in range(2)])
    assert entry["frc_px"] == pytest.approx(expected)
    assert entry["pixel_size"] == 0.05 and entry["unit"] == "micrometer"
    assert entry["baselines"]["bicubic"]["frc_px"] > 2.0  # every method gets one
    row = next(r for r in format_table({"cells": result}).rows if r[1] == "prediction")
    assert row[-1] == f"{expected:.2f} ± {result.sd()['frc_px']:.2f}"
    rows = list(csv.DictReader(write_csv({"cells": result}, tmp_path / "m.csv").open()))
    assert float(rows[0]["frc_px"]) == pytest.approx(expected)


def test_json_accepts_evaluate_pair_dicts_and_writes_inf_as_null(rng, tmp_path):
    gt = gaussian_filter(rng.random((32, 32)), 1.0)
    perfect = evaluate_pair(gt.copy(), gt)
    doc = results_to_json({"a.tif": perfect}, tmp_path / "m.json", per_slice=False)
    assert doc["a.tif"]["psnr"] is None and doc["a.tif"]["ssim"] == pytest.approx(1.0)
    assert doc["a.tif"]["baselines"] == {}
    assert "Infinity" not in (tmp_path / "m.json").read_text()


def test_json_refuses_reserved_and_empty_names(results):
    with pytest.raises(InputError, match="'mean' is reserved for the summary"):
        results_to_json({"mean": results["stack"]})
    with pytest.raises(InputError, match="expected at least one evaluated image"):
        results_to_json({})
    with pytest.raises(
        InputError,
        match="x: prediction metrics lack ssim, nrmse, psnr_norm, ssim_norm, si_psnr, frc_px",
    ):
        results_to_json({"x": {"psnr": 1.0}})


def test_csv_one_row_per_image_and_method(results, tmp_path):
    path = write_csv(results, tmp_path / "metrics.csv")
    rows = list(csv.DictReader(path.open()))
    assert [(r["image"], r["method"]) for r in rows] == [
        ("stack", "prediction"),
        ("stack", "bicubic"),
        ("single", "prediction"),
        ("single", "bicubic"),
    ]
    assert list(rows[0]) == ["image", "method", "n_slices"] + [
        c for k in METRIC_NAMES for c in (k, f"{k}_sd")
    ]
    assert float(rows[1]["psnr_norm"]) == results["stack"].mean("bicubic")["psnr_norm"]
    assert float(rows[0]["ssim_sd"]) == results["stack"].sd()["ssim"]
    assert rows[2]["n_slices"] == "1" and float(rows[2]["psnr_sd"]) == 0.0

    per_slice = list(csv.DictReader(write_csv(results, tmp_path / "s.csv", per_slice=True).open()))
    assert len(per_slice) == (3 + 1) * 2
    assert list(per_slice[0]) == ["image", "method", "slice", *METRIC_NAMES]
    assert float(per_slice[2]["nrmse"]) == results["stack"].slice_metrics(2)["nrmse"]


def test_format_table(results):
    table = format_table(results)
    assert isinstance(table, MetricsTable)
    assert table.columns == (
        "image",
        "method",
        "PSNR (dB)",
        "SSIM",
        "NRMSE",
        "PSNR norm (dB)",
        "SSIM norm",
        "SI-PSNR (dB)",
        "FRC res. (px)",
    )
    assert [row[:2] for row in table.rows] == [
        ("stack", "prediction"),
        ("stack", "bicubic"),
        ("single", "prediction"),
        ("single", "bicubic"),
        ("mean", "prediction"),
        ("mean", "bicubic"),
    ]
    mean, sd = results["stack"].mean(), results["stack"].sd()
    assert table.rows[0][2] == f"{mean['psnr']:.2f} ± {sd['psnr']:.2f}"
    assert table.rows[0][3] == f"{mean['ssim']:.4f} ± {sd['ssim']:.4f}"
    assert "±" not in table.rows[2][2]  # a 2D image has no spread
    text = table.render()
    lines = text.splitlines()
    assert len(lines) == 2 + len(table.rows)
    assert lines[0].startswith("image ") and set(lines[1]) <= {"-", " "}
    assert str(table) == text
    # columns are aligned: each column starts at the same offset on every line
    offset = lines[0].index("SSIM norm")
    assert all(line[offset - 2 : offset] == "  " for line in lines[2:])


def test_comparison_figure_writes_a_png_of_the_requested_size(rng, tmp_path):
    pred, gt, lr = make_stack(rng, 1, shape=(96, 96))
    path = comparison_figure(
        lr[0], None, pred[0], gt[0], path=tmp_path / "fig.png", figsize=(8.0, 4.0), dpi=50
    )
    assert path == tmp_path / "fig.png"
    assert read_png_size(path) == (400, 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_comparison_figure_with_stacks_curves_and_no_frc(rng, tmp_path):
    pred, gt, lr = make_stack(rng, 3, shape=(64, 64))
    baseline = np.stack([np.repeat(np.repeat(p, 4, 0), 4, 1) for p in lr])
    curves = {"prediction": frc(pred[1], gt[1], pixel_size=0.1, unit="micrometer")}
    out = comparison_figure(
        lr,
        baseline,
        pred,
        gt,
        path=tmp_path / "a.png",
        frc_curves=curves,
        plane=1,
        dpi=40,
        title="plane 1",
    )
    assert read_png_size(out) == (640, 320)
    out = comparison_figure(
        None, baseline[0], pred[0], gt[0], path=tmp_path / "b.png", frc_curves={}, dpi=30
    )
    assert read_png_size(out) == (480, 240)


def test_comparison_figure_errors(rng, tmp_path):
    pred, gt, lr = make_stack(rng, 1, shape=(48, 48))
    with pytest.raises(InputError, match=r"pred shape \(40, 48\) does not match gt shape"):
        comparison_figure(lr[0], None, pred[0, :40], gt[0], path=tmp_path / "x.png")
    with pytest.raises(InputError, match="--figure needs the low-res inputs"):
        comparison_figure(None, None, pred[0], gt[0], path=tmp_path / "x.png")
    with pytest.raises(InputError, match="scale: cannot infer it"):
        comparison_figure(lr[0, :, :11], None, pred[0], gt[0], path=tmp_path / "x.png")
    with pytest.raises(OutputError, match="does not exist"):
        comparison_figure(lr[0], None, pred[0], gt[0], path=tmp_path / "missing" / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def failing(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"report.json: cannot write \(No space left on device\)"):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_figure_panels_each_get_their_own_contrast(rng, tmp_path):
    # dim texture beside a few very bright spots (fluorescence puncta): on the ground
    # truth's 0.1-99.9 % scale the texture would be black; each panel's own percentiles
    # show it in grey levels
    from matplotlib.image import imread

    texture = gaussian_filter(rng.random((256, 256)), 2.0)
    gt = 100 + 400 * (texture - texture.min()) / (texture.max() - texture.min())
    gt[rng.random(gt.shape) < 0.004] = 20000
    lr = downscale_local_mean(gt, 4)
    pred = gt + rng.normal(0, 5, gt.shape)
    grey = imread(comparison_figure(lr, None, pred, gt, path=tmp_path / "f.png"))
    grey = grey[..., :3].mean(axis=2)
    top = grey[: grey.shape[0] // 2]
    quarter = top.shape[1] // 4
    mid_grey = [
        float(((q > 0.15) & (q < 0.85)).mean())
        for q in (top[:, i * quarter : (i + 1) * quarter] for i in range(4))
    ]
    assert mid_grey[1] > 0.1 and mid_grey[2] > 0.3 and mid_grey[3] > 0.3, mid_grey
