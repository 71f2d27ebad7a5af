"""The Super-resolve dock widget: results over their input, lazy outputs, preview, errors."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest

from decrappify._napari import _predict_widget as module
from decrappify._napari._controls import recent_models_notifier
from decrappify._napari._predict_widget import PredictWidget
from decrappify._napari.jobs.models import CONFIG_DIR_ENV, recent_models, remember_model
from decrappify._napari.jobs.predict import visible_rect
from decrappify.api import iter_predict_image, predict_region
from decrappify.config.predict import PredictConfig
from decrappify.events import run_to_end
from decrappify.io import Image

pytestmark = pytest.mark.napari

#: Fast settings: one tile covers the small test images, no receptive-field probe.
FAST = {"tile": 64, "overlap": 16, "batch": 2, "device": "cpu", "dtype": "float32"}


@pytest.fixture(autouse=True)
def settings_dir(tmp_path, monkeypatch):
    """The recent models list goes to a per-test folder, never the user's."""
    folder = tmp_path / "settings"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder


def make_model(path, *, scale=2, n_frames=1, metrics=None, crappify=None):
    from decrappify.config.model import GeneratorConfig, ModelInfo
    from decrappify.models import build_generator, save_model

    cfg = GeneratorConfig(
        encoder="resnet18",
        scale=scale,
        n_frames=n_frames,
        self_attention=False,
        nf_factor=0.25,
        blur=False,
    )
    info = ModelInfo(generator=cfg, metrics=metrics or {}, crappify=crappify)
    return save_model(path, build_generator(cfg, seed=0), info)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    metrics = {"psnr": 25.0, "ssim": 0.8, "bicubic_psnr": 22.0, "bicubic_ssim": 0.7}
    return make_model(tmp_path_factory.mktemp("models") / "m.safetensors", metrics=metrics)


@pytest.fixture
def widget(viewer, qtbot, model):
    w = PredictWidget(viewer)
    viewer.window.add_dock_widget(w, name="Super-resolve")
    w.set_model(model)
    w.tile_spin.setValue(FAST["tile"])
    w.overlap_spin.setValue(FAST["overlap"])
    w.batch_spin.setValue(FAST["batch"])
    w.device_combo.setCurrentText(FAST["device"])
    w.dtype_combo.setCurrentText(FAST["dtype"])
    return w


def expected(model, data, **kwargs):
    image = Image(data, axes="YX" if data.ndim == 2 else "ZYX")
    result = run_to_end(iter_predict_image(str(model), image, None, {**FAST, **kwargs}))
    return np.asarray(result.image.data)


def test_model_summary_and_settings(widget, model):
    text = widget.model_info_label.text()
    assert text.splitlines() == [
        "×2 super-resolution, 2D",
        "resnet18 U-Net, normalisation: percentile 0.1–99.9 %",
        "validation: PSNR 25.00 dB (bicubic 22.00 dB), SSIM 0.800 (bicubic 0.700)",
    ]
    assert widget.settings().settings() == PredictConfig.build(FAST).settings()
    widget.overlap_spin.setValue(-1)
    widget.dtype_combo.setCurrentIndex(0)
    assert widget.settings().overlap == "auto" and widget.settings().dtype is None
    widget.set_model(model.parent / "missing.safetensors")
    assert widget.model_info_label.text() == (
        f"⚠ {model.parent / 'missing.safetensors'}: model not found (expected a folder with "
        "model.json and model.safetensors, or a .safetensors file)"
    )


def test_run_2d_result_overlays_input(viewer, widget, model, rng, wait_idle, settings_dir):
    layer = viewer.add_image(
        (rng.random((40, 48)) * 200).astype(np.uint8),
        name="cells",
        scale=(0.5, 0.5),
        translate=(1.0, 2.0),
        units=("micrometer", "micrometer"),
    )
    widget.layer_picker.set_layer(layer)
    widget.run()
    wait_idle(widget.panel)
    assert widget.panel.state == "done"
    result = viewer.layers["cells super-resolved"]
    assert isinstance(result.data, np.ndarray) and result.data.dtype == np.float32
    assert result.data.shape == (80, 96)
    assert tuple(result.scale) == pytest.approx((0.25, 0.25))
    # HR pixel centres split each LR pixel: a quarter of an LR pixel before its centre
    assert tuple(result.translate) == pytest.approx((1.0 - 0.125, 2.0 - 0.125))
    assert [str(u) for u in result.units] == ["micrometer", "micrometer"]
    np.testing.assert_allclose(result.data, expected(model, layer.data), rtol=1e-6, atol=1e-4)
    assert tuple(result.contrast_limits) == pytest.approx(tuple(layer.contrast_limits))
    meta = result.metadata["decrappify"]["predict"]
    assert meta["input"] == "cells" and meta["settings"] == PredictConfig.build(FAST).settings()
    assert recent_models() == [model.resolve()]


def test_lazy_stack_stays_lazy_and_goes_to_ome_zarr(
    viewer, widget, model, rng, wait_idle, tmp_path
):
    data = (rng.random((3, 24, 32)) * 200 + 20).astype(np.uint8)
    lazy = da.from_array(data, chunks=(1, 24, 32))
    layer = viewer.add_image(lazy, name="stack", scale=(2.0, 0.5, 0.5))
    widget.layer_picker.set_layer(layer)
    widget.dtype_combo.setCurrentText("same as input")
    out = tmp_path / "out"
    widget.output_path.set_text(str(out))
    widget.run()
    wait_idle(widget.panel)
    result = viewer.layers["stack super-resolved"]
    assert isinstance(result.data, da.Array)  # opened lazily from the store
    assert result.data.shape == (3, 48, 64) and result.data.dtype == np.uint8
    assert [p.name for p in out.iterdir()] == ["stack_x2.zarr"]
    assert result.metadata["decrappify"]["predict"]["path"] == str(out / "stack_x2.zarr")
    assert tuple(result.scale) == pytest.approx((2.0, 0.25, 0.25))
    assert tuple(result.translate) == pytest.approx((0.0, -0.125, -0.125))
    want = expected(model, data, dtype=None)
    np.testing.assert_array_equal(np.asarray(result.data), want)


def test_preview_is_the_visible_region_placed_over_the_full_run(
    viewer, widget, model, rng, wait_idle
):
    data = (rng.random((2, 40, 48)) * 200).astype(np.uint8)
    layer = viewer.add_image(data, name="cells", translate=(0, 3.0, -2.0))
    widget.layer_picker.set_layer(layer)
    viewer.dims.set_current_step(0, 1)
    camera = viewer.scene.camera
    camera.center = (0.0, 3.0 + 20.0, -2.0 + 24.0)
    camera.zoom = 40.0
    height, width = viewer.canvas.size
    half_h, half_w = height / 40.0 / 2, width / 40.0 / 2
    rows = (max(0, int(np.floor(20 - half_h + 0.5))), min(40, int(np.ceil(20 + half_h + 0.5))))
    cols = (max(0, int(np.floor(24 - half_w + 0.5))), min(48, int(np.ceil(24 + half_w + 0.5))))
    assert 0 < rows[0] and rows[1] < 40 and 0 < cols[0] and cols[1] < 48  # a part of the image
    widget.preview()
    wait_idle(widget.panel)
    assert widget.panel.state == "done"
    preview = viewer.layers["cells super-resolved preview"]
    # exactly the API's preview of the visible LR pixels of the current plane ...
    image = Image(data, axes="ZYX", translate=(0.0, 3.0, -2.0))
    want = predict_region(str(model), image, (rows, cols), FAST, plane=1)
    assert preview.data.shape == (1, *want.shape)
    np.testing.assert_array_equal(preview.data[0], want.data)
    # ... placed over the same pixels of the full run
    widget.run()
    wait_idle(widget.panel)
    full = viewer.layers["cells super-resolved"]
    assert tuple(preview.scale) == pytest.approx(tuple(full.scale))
    y0, x0 = 2 * rows[0], 2 * cols[0]
    assert tuple(preview.translate) == pytest.approx(
        (1.0, full.translate[1] + y0 * 0.5, full.translate[2] + x0 * 0.5)
    )
    h, w = preview.data.shape[1:]
    same = np.abs(preview.data[0] - full.data[1, y0 : y0 + h, x0 : x0 + w]).mean()
    shifted = np.abs(preview.data[0, 1:] - full.data[1, y0 : y0 + h - 1, x0 : x0 + w]).mean()
    # the U-Net's tiles start elsewhere in a preview than in the full run: a residual of
    # about 0.5 % of the range on noise, far below a shift of one HR pixel
    assert same < 1.5 and same < shifted / 3


def test_cancel_leaves_nothing(viewer, widget, rng, wait_idle, tmp_path, monkeypatch):
    layer = viewer.add_image((rng.random((2, 40, 48)) * 200).astype(np.uint8), name="cells")
    widget.layer_picker.set_layer(layer)
    out = tmp_path / "out"
    widget.output_path.set_text(str(out))
    gate = threading.Event()
    original = module.iter_predict_layer

    def gated(*args, **kwargs):
        for event in original(*args, **kwargs):
            yield event
            if event.info.get("level") == 0:
                gate.wait(5)  # hold the worker until the test has pressed Cancel
        return None  # pragma: no cover - cancelled before

    monkeypatch.setattr(module, "iter_predict_layer", gated)

    def cancel_on_block(event):
        if event.info.get("level") == 0:
            widget.cancel()
            gate.set()

    widget.panel.progressed.connect(cancel_on_block)
    n_layers = len(viewer.layers)
    widget.run()
    wait_idle(widget.panel)
    assert widget.panel.state == "cancelled"
    assert len(viewer.layers) == n_layers
    assert list(out.iterdir()) == []  # the partial store was removed
    assert recent_models() == []


def test_scale_mismatch_is_an_error_notification(viewer, widget, model, rng, notes, wait_idle):
    layer = viewer.add_image((rng.random((16, 16)) * 200).astype(np.uint8), name="lr")
    layer.metadata = {"decrappify": {"crappify": {"config": {"scale": 4}}}}
    widget.layer_picker.set_layer("lr")
    widget.layer_picker.layer_changed.emit("lr")
    assert widget.expected_scale == 4  # a layer made by Crappify sets the factor
    n_layers = len(viewer.layers)
    widget.run()
    wait_idle(widget.panel)
    widget.preview()
    wait_idle(widget.panel)
    message = "m.safetensors: this model upsamples ×2, but scale 4 was asked"
    assert notes["error"] == [message, message]
    assert widget.panel.state == "failed" and len(viewer.layers) == n_layers


def test_model_and_setting_errors_are_notifications(
    viewer, widget, tmp_path, rng, notes, wait_idle
):
    layer = viewer.add_image((rng.random((16, 16)) * 200).astype(np.uint8), name="flat")
    widget.layer_picker.set_layer(layer)
    widget.set_model(make_model(tmp_path / "z3.safetensors", n_frames=3))
    assert widget.model_info_label.text().startswith("×2 super-resolution, 2.5D (3 input planes)")
    widget.run()
    wait_idle(widget.panel)
    widget.set_model(tmp_path / "m.safetensors")  # missing file
    widget.run()
    wait_idle(widget.panel)
    widget.model_picker.set_path(make_model(tmp_path / "m2.safetensors"))
    widget.tile_spin.setValue(12)
    widget.overlap_spin.setValue(-1)  # auto: the tile is checked against the model's rule
    widget.run()
    wait_idle(widget.panel)
    widget.model_picker.set_path("")
    widget.run()
    assert notes["error"] == [
        "flat: the model z3.safetensors takes 3 neighbouring planes (2.5D) but the image is 2D "
        "(shape (16, 16)); use a ZYX or TYX stack or a 2D model",
        f"{tmp_path / 'm.safetensors'}: model not found (expected a folder with model.json "
        "and model.safetensors, or a .safetensors file)",
        "tile 12: tile × scale must be a multiple of 64 (12 × 2 = 24); use a multiple of 32 "
        "such as 32",
        "Super-resolve: choose a model (a model folder or .safetensors file)",
    ]
    assert [layer.name for layer in viewer.layers] == ["flat"]


def test_recent_models_fill_the_model_list(viewer, model, tmp_path, qtbot):
    other = make_model(tmp_path / "other.safetensors", scale=4)
    remember_model(model)
    remember_model(other)
    widget = PredictWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.model_picker.recent() == [str(other.resolve()), str(model.resolve())]
    assert widget.model_path == str(other.resolve())  # the most recent is chosen
    assert widget.model_info_label.text().startswith("×4 super-resolution")
    remember_model(model)
    recent_models_notifier().changed.emit()  # a run finished in the Train widget
    assert widget.model_picker.recent() == [str(model.resolve()), str(other.resolve())]
    assert widget.model_path == str(other.resolve())  # the choice is kept


def test_the_shipped_starting_points_follow_the_recent_models(viewer, model, qtbot):
    remember_model(model)
    widget = PredictWidget(viewer)
    qtbot.addWidget(widget)
    items = [
        widget.model_picker.combo.itemText(i) for i in range(widget.model_picker.combo.count())
    ]
    assert items == [str(model.resolve()), "em-4x", "fluo-4x", "fluo-denoise"]
    assert widget.model_picker.recent() == [str(model.resolve())]
    widget.set_model("fluo-denoise")  # usable by name, without training data
    text = widget.model_info_label.text()
    assert text.startswith("restoration on the same grid (×1)")
    assert "a starting point shipped with decrappify, not trained on your images" in text
    remember_model("fluo-denoise")  # always listed: not added to the recent models
    assert recent_models() == [model.resolve()]


def test_visible_rect_is_clipped_and_centred():
    assert visible_rect(((-3.2, 10.4), (4.6, 7.4)), (20, 30), 100) == ((0, 11), (5, 8))
    assert visible_rect(((0.0, 99.0), (-50.0, -10.0)), (100, 30), 40) == ((30, 70), (0, 0))


def test_scale_one_model_restores_on_the_input_grid(viewer, rng, wait_idle, tmp_path, qtbot):
    same_grid = make_model(
        tmp_path / "s1.safetensors", scale=1, metrics={"psnr": 24.0, "bicubic_psnr": 20.0}
    )
    w = PredictWidget(viewer)
    viewer.window.add_dock_widget(w, name="Super-resolve")
    w.set_model(same_grid)
    w.tile_spin.setValue(64)
    w.overlap_spin.setValue(16)
    w.device_combo.setCurrentText("cpu")
    assert w.model_info_label.text().splitlines()[0] == "restoration on the same grid (×1), 2D"
    assert "(input 20.00 dB)" in w.model_info_label.text()
    layer = viewer.add_image(
        (rng.random((40, 48)) * 200).astype(np.uint8), name="noisy", scale=(0.5, 0.5)
    )
    w.layer_picker.set_layer(layer)
    w.run()
    wait_idle(w.panel)
    result = viewer.layers["noisy super-resolved"]
    assert result.data.shape == (40, 48)
    assert tuple(result.scale) == pytest.approx((0.5, 0.5))
    assert tuple(result.translate) == pytest.approx(tuple(layer.translate))


def test_widget_and_cli_config_give_the_output_of_the_same_flags(
    viewer, widget, model, rng, wait_idle, tmp_path
):
    """One settings object: the form, a --config YAML and the flags give the same pixels."""
    import tifffile
    import torch
    from typer.testing import CliRunner

    from decrappify.cli import app
    from decrappify.io import read_image

    threads = str(torch.get_num_threads())  # what the widget uses: same float arithmetic
    data = (rng.random((2, 40, 48)) * 200 + 20).astype(np.uint8)
    source = tmp_path / "cells.tif"
    tifffile.imwrite(source, data)
    layer = viewer.add_image(data, name="cells")
    widget.layer_picker.set_layer(layer)
    widget.tile_spin.setValue(32)
    widget.overlap_spin.setValue(8)
    widget.batch_spin.setValue(3)
    widget.dtype_combo.setCurrentText("uint16")
    widget.output_path.set_text(str(tmp_path / "napari"))
    widget.run()
    wait_idle(widget.panel)
    assert widget.panel.state == "done"
    from_widget = np.asarray(viewer.layers["cells super-resolved"].data)

    config = tmp_path / "p.yaml"
    config.write_text(widget.settings().to_yaml())
    runner = CliRunner()
    common = [str(model), str(source), "--threads", threads, "--quiet"]
    by_file = runner.invoke(app, ["predict", *common, "--out", str(tmp_path / "f"), "-c", config])
    flags = ["--tile", "32", "--overlap", "8", "--batch", "3", "--dtype", "uint16"]
    by_flags = runner.invoke(
        app, ["predict", *common, "--out", str(tmp_path / "g"), "--device", "cpu", *flags]
    )
    assert by_file.exit_code == 0 and by_flags.exit_code == 0, by_file.output + by_flags.output
    from_file = np.asarray(read_image(tmp_path / "f" / "cells.zarr").data)
    from_flags = np.asarray(read_image(tmp_path / "g" / "cells.zarr").data)
    assert from_widget.dtype == np.uint16 and from_widget.shape == (2, 80, 96)
    np.testing.assert_array_equal(from_file, from_flags)
    # the same arithmetic up to float summation order (the widget feeds the layer's array,
    # the CLI a TIFF through dask): a value on a rounding boundary may differ by one level
    difference = np.abs(from_widget.astype(np.int64) - from_flags)
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3


def test_trust_maps_become_layers_over_the_result_and_the_input(viewer, rng, wait_idle, tmp_path):
    from decrappify.crappify import get_preset

    crappify = get_preset("fluorescence", scale=2).model_dump(mode="json")
    trusted = make_model(tmp_path / "t.safetensors", crappify=crappify)
    w = PredictWidget(viewer)
    viewer.window.add_dock_widget(w, name="Super-resolve")
    w.set_model(trusted)
    for name, value in FAST.items():
        w.fields.set_value(name, value)
    assert w.consistency_check.isChecked() and not w.tta_check.isChecked()  # the defaults
    w.tta_check.setChecked(True)
    assert w.settings().tta is True and w.settings().consistency is True
    data = (rng.random((40, 48)) * 200).astype(np.uint8)
    layer = viewer.add_image(data, name="cells", scale=(0.4, 0.4), translate=(3.0, -2.0))
    w.layer_picker.set_layer(layer)
    w.run()
    wait_idle(w.panel)
    assert w.panel.state == "done"
    result = viewer.layers["cells super-resolved"]
    spread, consistency = viewer.layers["cells uncertainty"], viewer.layers["cells consistency"]
    # the spread lies over the result, the consistency map over the input
    assert spread.data.shape == result.data.shape == (80, 96)
    assert tuple(spread.scale) == pytest.approx(tuple(result.scale))
    assert tuple(spread.translate) == pytest.approx(tuple(result.translate))
    assert consistency.data.shape == (40, 48)
    assert tuple(consistency.scale) == pytest.approx((0.4, 0.4))
    assert tuple(consistency.translate) == pytest.approx((3.0, -2.0))
    assert consistency.colormap.name == "PiYG" and tuple(consistency.contrast_limits) == (-5, 5)
    assert spread.colormap.name == "magma" and spread.contrast_limits[1] > 0
    # the same numbers as the API, and the result names its maps and their summaries
    image = Image(data, axes="YX", pixel_size=(0.4, 0.4), translate=(3.0, -2.0))
    api_result = run_to_end(iter_predict_image(str(trusted), image, None, {**FAST, "tta": True}))
    np.testing.assert_allclose(spread.data, api_result.maps["uncertainty"].data, atol=1e-5)
    np.testing.assert_allclose(consistency.data, api_result.maps["consistency"].data, atol=1e-4)
    info = result.metadata["decrappify"]["predict"]
    assert info["maps"] == {"uncertainty": "cells uncertainty", "consistency": "cells consistency"}
    assert info["trust"]["consistency"]["score"] == pytest.approx(
        api_result.stats["trust"]["consistency"]["score"], rel=1e-4
    )
