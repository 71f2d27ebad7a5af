"""``decrappify predict`` on bad input: one bad input fails alone, the report is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _tiny import FAST, em_model
from decrappify.io import read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A ×2 model folder whose metadata records the em crappifier at ×2."""
    return em_model(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("how", ["truncate", "random"])
def test_damaged_chunk_fails_alone_and_the_report_is_written(bad, model, how):
    store, key = bad.damaged_zarr(how=how)
    bad.tif("good.tif")
    result = bad.run("predict", model, store, "good.tif", "-o", "out", "--report", "r.json", *FAST)
    text = bad.assert_clean_failure(result, f"{store}: chunk {key} is damaged or truncated")
    assert "1 of 2 inputs failed" in text
    report = json.loads(bad.path("r.json").read_text())
    assert report["ok"] is False
    assert [r["ok"] for r in report["results"]] == [False, True]
    assert key in report["results"][0]["error"]
    assert read_image(bad.path("out") / "good.zarr").shape == (128, 128)
    bad.assert_nothing_left([bad.path("out") / "damaged.zarr"])


def test_every_input_failing_writes_the_report_and_no_output_folder(bad, model):
    bad.path("junk.tif").write_bytes(b"junk")
    result = bad.run("predict", model, "junk.tif", "-o", "out", "--report", "r.json", *FAST)
    bad.assert_clean_failure(result, "junk.tif: not a readable TIFF file", "1 of 1 inputs failed")
    assert json.loads(bad.path("r.json").read_text())["ok"] is False
    assert not bad.path("out").exists()


def test_a_tile_larger_than_the_image_is_cut_to_it(bad, model):
    bad.tif("small.tif", size=64)
    result = bad.run(
        "predict", model, "small.tif", "-o", "out", "--tile", "100000", "--report", "r.json",
        "--device", "cpu", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(bad.path("r.json").read_text())["results"][0]["info"]
    # the image and its context (twice 128 pixels for a small image)
    assert info["tile"] == 320 and info["output_shape"] == [128, 128]


def test_a_tile_too_large_for_memory_is_refused_with_what_it_needs(bad, model):
    bad.tif("strip.tif", data=np.full((16, 4200), 100, np.uint8))
    result = bad.run("predict", model, "strip.tif", "-o", "out", "--tile", "4128", "-q")
    bad.assert_clean_failure(
        result,
        "strip.tif: --tile 4128 makes 8256x8256 network inputs, which need at least 17.4 GB "
        "each; use --tile 4096 or less",
    )
    assert not bad.path("out").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda meta: meta["generator"].update(scale=4),
            "inconsistent model metadata: generator.scale is 4 but crappify.scale is 2; the "
            "model was trained for x2",
        ),
        (  # an "lr" generator's output layers depend on the scale: its weights tell
            lambda meta: (meta["generator"].update(scale=4), meta.update(crappify=None)),
            "model.safetensors: does not match the resnet18 wide generator described in its "
            "metadata",
        ),
        (  # what the weights' shapes cannot tell is checked against the weights' header
            lambda meta: (meta["generator"].update(y_range=None), meta.update(crappify=None)),
            "inconsistent model: model.json says generator.y_range is null, the weights were "
            "saved with [-0.2, 1.2]",
        ),
    ],
    ids=["crappifier", "weights", "weights-header"],
)
def test_edited_metadata_is_refused(bad, model, edit, message):
    """A model.json saying x4 for x2 weights would write x4 output silently: refused."""
    import shutil

    edited = shutil.copytree(model, bad.path("edited"))
    meta = json.loads((edited / "model.json").read_text())
    edit(meta)
    (edited / "model.json").write_text(json.dumps(meta))
    bad.tif("em.tif")
    result = bad.run("predict", edited, "em.tif", "-o", "out", *FAST)
    bad.assert_clean_failure(result, f"{edited}", message)
    assert not bad.path("out").exists()


def test_truncated_model_and_existing_output(bad, model):
    import shutil

    broken = shutil.copytree(model, bad.path("broken"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    bad.tif("em.tif")
    result = bad.run("predict", broken, "em.tif", "-o", "out", *FAST)
    bad.assert_clean_failure(result, f"{weights}: not a readable safetensors file")
    assert not bad.path("out").exists()
    assert bad.run("predict", model, "em.tif", "-o", "out", *FAST).exit_code == 0
    result = bad.run("predict", model, "em.tif", "-o", "out", *FAST)
    bad.assert_clean_failure(result, "out/em.zarr: already exists; pass --overwrite")
    assert not bad.leftovers(bad.path("out"))


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--overlap", "lots"], "--overlap must be 'auto' or an integer >= 0 (got 'lots')", 2),
        (["--tile", "20"], "tile 20: tile × scale must be a multiple of 64", 1),
        (["--scale", "4"], "upsamples ×2, but scale 4 was asked", 1),
        (["--workers", "2"], "--workers applies to --cluster local", 2),
    ],
)
def test_bad_options(bad, model, args, message, code):
    bad.tif("em.tif")
    result = bad.run("predict", model, "em.tif", "-o", "out", "--device", "cpu", *args, "-q")
    bad.assert_clean_failure(result, message, code=code)
    assert not bad.path("out").exists()
