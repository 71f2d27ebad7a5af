"""Trust maps beside a prediction: ``--tta`` and ``--consistency`` through tiles, files, reports."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr
from torch import nn
from typer.testing import CliRunner

from _tiny import FAST, tiny_generator
from decrappify import api
from decrappify.cli import app
from decrappify.config.model import ModelInfo
from decrappify.crappify import get_preset
from decrappify.crappify.consistency import (
    ForwardModel,
    calibrate,
    data_consistency,
    forward_model,
    local_residual,
)
from decrappify.events import run_to_end
from decrappify.io import Image, read_image, write_image
from decrappify.metrics.maps import map_agreement
from decrappify.models import build_generator, save_model
from decrappify.normalize import normalize
from decrappify.predict.device_arrays import TorchArrays
from decrappify.predict.network import model_handle
from decrappify.predict.tta import tta_predict

runner = CliRunner()

#: The crappifier the models record: a blur, area downsampling ×2, shot and read noise.
CRAPPIFY = get_preset("fluorescence", scale=2)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A ×2 U-Net that records its crappifier."""
    cfg = tiny_generator()
    net = build_generator(cfg, seed=0).eval()
    info = ModelInfo(generator=cfg, crappify=CRAPPIFY.model_dump(mode="json"))
    return save_model(tmp_path_factory.mktemp("models") / "x2.safetensors", net, info)


@pytest.fixture(autouse=True)
def one_torch_thread(one_torch_thread):
    yield


@pytest.fixture
def cells(tmp_path):
    """A 48×64 fluorescence-like LR image with a pixel size of 0.2 µm."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:48, 0:64]
    img = 60 + 120 * np.exp(-((x - 30) ** 2 + (y - 20) ** 2) / 60.0) + 30 * np.sin(x / 4.0)
    img = img + rng.normal(0, 6, img.shape)
    image = Image(img.clip(0, 255).astype(np.uint8), axes="YX", pixel_size=(0.2, 0.2),
                  units=("micrometer", "micrometer"))  # fmt: skip
    return write_image(image, tmp_path / "cells.tif")


class AsymmetricSR(nn.Module):
    """Bilinear ×2 and a fixed lopsided 3×3 convolution (reflect padding): not dihedral-equivariant,
    with a receptive field of a few pixels, so tiles with enough overlap equal the whole image."""

    multiple = 32
    n_frames = 1
    scale = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect", bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.tensor([[[[0.0, 0.1, 0.6], [0.0, 0.2, 0.3], [-0.2, 0.0, 0.0]]]])
            )

    def forward(self, x):
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(up) + 0.3 * up**2


def test_tta_and_consistency_are_written_into_the_store_and_summarised(model, cells, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = runner.invoke(
        app, ["predict", str(model), str(cells), "--out", str(out), "--tta",
              "--report", str(report), *FAST],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    store = out / "cells.zarr"
    prediction = read_image(store)
    uncertainty, consistency = read_image(store / "uncertainty"), read_image(store / "consistency")
    # the spread on the output's grid, the consistency on the input's, both placed there
    assert prediction.shape == uncertainty.shape == (96, 128) and uncertainty.dtype == np.float32
    assert consistency.shape == (48, 64) and consistency.dtype == np.float32
    assert uncertainty.pixel_size == pytest.approx((0.1, 0.1))
    assert consistency.pixel_size == pytest.approx((0.2, 0.2))
    assert consistency.units == ("micrometer", "micrometer")
    for name in ("uncertainty", "consistency"):
        attrs = zarr.open_group(store / name, mode="r").attrs.asdict()
        assert attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "0"
        assert attrs["decrappify"]["map"] == name and attrs["decrappify"]["description"]
    assert not list(out.glob(".*"))  # no scratch left behind
    # the report and the table summarise them
    info = json.loads(report.read_text())["results"][0]["info"]
    trust = info["trust"]
    assert (
        0 < trust["consistency"]["score"] < 50
        and 0 <= trust["consistency"]["flagged_fraction"] <= 1
    )
    assert trust["consistency"]["pixels"] == 48 * 64 and trust["uncertainty"]["pixels"] == 96 * 128
    spread = np.asarray(uncertainty.data, np.float64)
    lo, hi = info["lo"], info["hi"]
    assert trust["uncertainty"]["mean"] == pytest.approx(spread.mean() / (hi - lo), rel=1e-5)
    assert trust["uncertainty"]["max"] == pytest.approx(spread.max() / (hi - lo), rel=1e-5)
    assert trust["uncertainty"]["mean"] > 0  # a random U-Net is no dihedral-equivariant model
    assert info["maps"] == {"uncertainty": str(store / "uncertainty"),
                            "consistency": str(store / "consistency")}  # fmt: skip
    assert info["trust_seconds"] > 0
    text = " ".join(result.output.split())
    assert "consistency" in text and "TTA spread" in text and "> 4σ" in text
    # the napari side opens them from the file
    assert set(api.trust_maps(store)) == {"uncertainty", "consistency"}


def test_tif_outputs_get_sibling_maps_and_no_consistency_turns_it_off(model, cells, tmp_path):
    out = tmp_path / "out"
    plain = runner.invoke(
        app, ["predict", str(model), str(cells), "--out", str(out), "--format", "tif", *FAST]
    )
    assert plain.exit_code == 0, plain.output
    # on by default for a model that records its crappifier, without TTA
    assert sorted(p.name for p in out.iterdir()) == ["cells.consistency.tif", "cells.tif"]
    assert read_image(out / "cells.consistency.tif").shape == (48, 64)
    assert set(api.trust_maps(out / "cells.tif")) == {"consistency"}
    # a second run is refused before any work, the maps included
    again = runner.invoke(
        app, ["predict", str(model), str(cells), "--out", str(out), "--format", "tif", "--tta",
              *FAST],
    )  # fmt: skip
    assert again.exit_code == 1 and "already exists" in again.output
    off = runner.invoke(
        app, ["predict", str(model), str(cells), "--out", str(out), "--format", "tif",
              "--no-consistency", "--overwrite", *FAST],
    )  # fmt: skip
    assert off.exit_code == 0, off.output
    assert sorted(p.name for p in out.iterdir()) == ["cells.tif"]  # the old map went with it
    assert "TTA spread" not in off.output and "> 4σ" not in off.output


def test_a_model_without_its_crappifier_says_why_there_is_no_consistency_map(cells, tmp_path):
    cfg = tiny_generator()
    bare = save_model(tmp_path / "bare.safetensors", build_generator(cfg, seed=0).eval(),
                      ModelInfo(generator=cfg))  # fmt: skip
    results = api.predict(bare, [cells], tmp_path / "out", {"tile": 32, "device": "cpu"})
    assert results[0].ok
    assert results[0].info["trust"] == {
        "consistency": {"skipped": "model bare.safetensors records no crappifier"}
    }
    assert not (tmp_path / "out" / "cells.zarr" / "consistency").exists()


def test_resume_predicts_again_an_output_that_lacks_its_maps(model, cells, tmp_path):
    out = tmp_path / "out"
    settings = {"tile": 32, "device": "cpu", "threads": 1}
    first = api.predict(model, [cells], out, {**settings, "consistency": False})
    assert first[0].ok and not (out / "cells.zarr" / "uncertainty").exists()
    redo = api.predict(model, [cells], out, {**settings, "tta": True, "resume": True})
    assert redo[0].ok and "skipped" not in redo[0].info
    assert (out / "cells.zarr" / "uncertainty").is_dir()
    kept = api.predict(model, [cells], out, {**settings, "tta": True, "resume": True})
    assert kept[0].info == {"skipped": "output exists (kept by --resume)"}


def test_block_by_block_maps_equal_the_maps_of_the_whole_image(tmp_path):
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:48, 0:64]
    lr = 50 + 100 * np.sin(x / 5.0) * np.cos(y / 6.0) ** 2 + rng.normal(0, 5, x.shape)
    lr = lr.clip(0, 255).astype(np.uint8)
    net = AsymmetricSR().eval()
    handle = replace(model_handle(net), crappify=CRAPPIFY.model_dump(mode="json"))
    config = {"tile": 32, "overlap": 12, "block": 32, "chunk": 32, "batch": 3,
              "device": "cpu", "dtype": "float32", "tta": True}  # fmt: skip
    result = run_to_end(api.iter_predict_image(handle, Image(lr, axes="YX"), None, config))
    assert result.stats["blocks"] == 12  # 96×128 HR in 32-px blocks
    lo, hi = result.stats["lo"], result.stats["hi"]
    # TTA of the whole image (reflect-padded as the tiles are at its border), one pass
    pad = 8
    whole = np.pad(normalize(lr, lo, hi), pad, mode="reflect")

    def predict(a):
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(a))[None, None].float())[0, 0].numpy()

    reference = tta_predict(predict, whole)
    core = (slice(2 * pad, -2 * pad), slice(2 * pad, -2 * pad))
    mean = reference.mean[core] * (hi - lo) + lo
    np.testing.assert_allclose(np.asarray(result.image.data), mean, rtol=0, atol=1e-3 * (hi - lo))
    spread = np.asarray(result.maps["uncertainty"].data)
    np.testing.assert_allclose(
        spread, reference.std[core] * (hi - lo), rtol=0, atol=1e-3 * (hi - lo)
    )
    assert spread.max() > 0.01 * (hi - lo)  # the lopsided kernel does care about orientation
    # the consistency map of the blocks (16 LR px + halo) is the whole image's
    maps = data_consistency(
        normalize(np.asarray(result.image.data), lo, hi), normalize(lr, lo, hi), CRAPPIFY
    )
    np.testing.assert_allclose(np.asarray(result.maps["consistency"].data), maps.z, atol=1e-4)
    summary = result.stats["trust"]["consistency"]
    assert summary["score"] == pytest.approx(maps.score, rel=1e-5)
    assert summary["flagged_fraction"] == pytest.approx(maps.stats.flagged_fraction)
    assert result.maps["consistency"].shape == lr.shape


def test_an_equivariant_model_has_no_spread():
    class Nearest(nn.Module):
        multiple, n_frames, scale = 32, 1, 2

        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="nearest") ** 2

    lr = (np.random.default_rng(1).random((40, 48)) * 200).astype(np.uint8)
    settings = {"tile": 32, "device": "cpu", "tta": True}
    result = run_to_end(api.iter_predict_image(Nearest(), Image(lr, axes="YX"), None, settings))
    assert np.abs(np.asarray(result.maps["uncertainty"].data)).max() < 1e-3
    assert result.stats["trust"]["uncertainty"]["max"] < 1e-5
    assert set(result.maps) == {"uncertainty"}  # a bare network records no crappifier


def test_map_agreement_ranks_a_map_against_the_error():
    rng = np.random.default_rng(0)
    error = rng.random((64, 64))
    assert map_agreement(error, error) == pytest.approx(1.0)
    assert abs(map_agreement(rng.random((64, 64)), error)) < 0.1
    # a signed map on the input's grid (×2 coarser), ranked by magnitude
    coarse = rng.normal(size=(32, 32))
    blocks = np.kron(np.abs(coarse), np.ones((2, 2)))
    assert map_agreement(coarse, blocks, magnitude=True) == pytest.approx(1.0)
    assert np.isnan(map_agreement(np.zeros((64, 64)), error))


def test_the_consistency_arithmetic_on_the_device_equals_the_numpy_path():
    """One implementation, two backends: torch tensors (the model's device) and numpy."""
    config = get_preset("fluorescence", scale=2)
    rng = np.random.default_rng(2)
    hr = (rng.random((160, 120)) * 0.8 + 0.1).astype(np.float32)
    lr = (forward_model(hr, config) + rng.normal(0, 0.02, (80, 60))).astype(np.float32)
    reference = data_consistency(hr, lr, config)
    model = ForwardModel.build(config, hr.shape)
    arrays = TorchArrays(torch.device("cpu"))
    box = model.lr_box()
    degraded = model.degrade(arrays.asarray(hr), (0, 0), box, arrays)
    assert isinstance(degraded, torch.Tensor)
    np.testing.assert_allclose(arrays.numpy(degraded), forward_model(hr, config), atol=1e-6)
    calibration = calibrate(hr, lr, config)
    residual, z = local_residual(
        model, degraded, arrays.asarray(lr), calibration, region=box, out=box, arrays=arrays
    )
    np.testing.assert_allclose(arrays.numpy(residual), reference.residual, atol=1e-6)
    np.testing.assert_allclose(arrays.numpy(z), reference.z, atol=1e-4)


def test_resume_keeps_the_degraded_shares_of_the_blocks_it_skips(tmp_path):
    rng = np.random.default_rng(9)
    lr = (rng.random((64, 64)) * 200 + 20).astype(np.uint8)
    net = AsymmetricSR().eval()
    handle = replace(model_handle(net), crappify=CRAPPIFY.model_dump(mode="json"))
    config = api.predict_config(
        {"tile": 32, "overlap": 12, "block": 32, "chunk": 32, "device": "cpu", "threads": 1}
    )
    image = Image(lr, axes="YX")
    whole = run_to_end(api.iter_predict_image(handle, image, tmp_path / "ref.zarr", config))
    resumable = config.model_copy(update={"resume": True})
    events = api.iter_predict_image(handle, image, tmp_path / "sr.zarr", resumable)
    written = 0
    for event in events:
        written += event.info.get("level") == 0
        if written == 5:
            break
    events.close()  # interrupted: the partial store and the degraded shares are kept
    assert (tmp_path / ".sr.zarr.degraded.partial").is_dir()
    again = run_to_end(api.iter_predict_image(handle, image, tmp_path / "sr.zarr", resumable))
    assert (again.stats["blocks_resumed"], again.stats["blocks_computed"]) == (5, 11)
    np.testing.assert_array_equal(
        np.asarray(again.maps["consistency"].data), np.asarray(whole.maps["consistency"].data)
    )
    assert again.stats["trust"] == whole.stats["trust"]
    assert not list(tmp_path.glob(".*"))  # the scratch went with the finished output
