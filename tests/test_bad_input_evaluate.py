"""``decrappify evaluate`` on bad input: loud warnings, one bad pair fails alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decrappify.sample import synthetic_image


def _gt(bad, name="gt.tif", size=64):
    return bad.tif(name, size=size)


@pytest.mark.parametrize(
    ("convert", "dtype"),
    [
        (lambda x: (x / 255.0).astype(np.float32), "float32"),
        (lambda x: x.astype(np.uint16) * 257, "uint16"),
    ],
    ids=["float-0-1", "uint16"],
)
def test_prediction_on_another_intensity_scale_is_flagged(bad, convert, dtype):
    gt = _gt(bad)
    bad.tif("pred.tif", data=convert(np.asarray(synthetic_image("em", (64, 64), seed=0).data)))
    result = bad.run("evaluate", "--pred", "pred.tif", "--gt", gt, "--report", "m.json", "-q")
    assert result.exit_code == 0, result.output
    text = bad.text_of(result)
    assert f"warning: pred.tif ({dtype}, values" in text
    assert f"and ground truth {gt} (uint8, values" in text
    assert "are on different intensity scales" in text
    doc = json.loads(bad.path("m.json").read_text())
    assert len(doc["warnings"]) == 1 and "pred.tif" in doc["warnings"][0]
    assert doc["gt"]["psnr_norm"] > 100  # the normalised metrics match the intensities


def test_prediction_on_the_same_scale_is_not_flagged(bad):
    gt = _gt(bad)
    noisy = np.asarray(synthetic_image("em", (64, 64), seed=0).data).astype(np.int16) + 3
    bad.tif("pred.tif", data=noisy.clip(0, 255).astype(np.uint8))
    result = bad.run("evaluate", "--pred", "pred.tif", "--gt", gt, "--report", "m.json", "-q")
    assert result.exit_code == 0 and "warning" not in result.output
    assert "warnings" not in json.loads(bad.path("m.json").read_text())


def test_a_damaged_pair_fails_alone_and_the_report_is_written(bad):
    store, key = bad.damaged_zarr("pred_a.zarr")
    _gt(bad, "a.tif")
    bad.tif("pred_b.tif", seed=1)
    _gt(bad, "b.tif").write_bytes(bad.path("pred_b.tif").read_bytes())
    result = bad.run(
        "evaluate", "--pred", store, "--pred", "pred_b.tif", "--gt", "a.tif", "--gt", "b.tif",
        "--report", "m.json", "--csv", "m.csv", "-q",
    )  # fmt: skip
    bad.assert_clean_failure(result, f"{store}: chunk {key} is damaged", "1 of 2 pairs failed")
    doc = json.loads(bad.path("m.json").read_text())
    assert list(doc) == ["b", "mean", "failed"]
    assert doc["failed"][0]["pred"] == str(store) and key in doc["failed"][0]["error"]
    assert bad.path("m.csv").is_file()


def test_every_pair_failing_writes_nothing(bad):
    store, key = bad.damaged_zarr("pred.zarr")
    _gt(bad)
    result = bad.run("evaluate", "--pred", store, "--gt", "gt.tif", "--report", "m.json", "-q")
    bad.assert_clean_failure(result, f"{store}: chunk {key} is damaged")
    bad.assert_nothing_left([bad.path("m.json")])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pred", "p.tif", "--gt", "gt.tif", "--figure", "f.png"], "--figure needs the low-res"),
        (["--pred", "big.tif", "--gt", "gt.tif"], "pass --crop to compare the common region, or "),
        (["--pred", "p.tif", "--gt", "gt.tif", "--lr", "odd.tif"], "; pass --scale"),
        (["--pred", "p.tif", "--pred", "big.tif", "--gt", "gt.tif"], "--gt: got 1 images for 2"),
        (
            ["--pred", "p.tif", "--gt", "gt.tif", "--lr", "p.tif", "--baselines", "magic"],
            "--baselines: unknown magic",
        ),
        (["--pred", "missing.tif", "--gt", "gt.tif"], "missing.tif"),
    ],
)
def test_bad_pairs_and_options(bad, args, message):
    _gt(bad)
    bad.tif("p.tif")
    bad.tif("big.tif", size=96)
    bad.tif("odd.tif", data=np.zeros((27, 27), np.uint8))
    result = bad.run("evaluate", *args, "-q")
    bad.assert_clean_failure(result, message)
    bad.assert_nothing_left([bad.path("f.png")])
