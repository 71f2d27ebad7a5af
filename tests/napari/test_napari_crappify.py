"""The Crappify dock widget: results placed over their input, preview, Cancel, errors."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest

from decrappify._napari import _crappify_widget as module
from decrappify._napari._crappify_widget import CrappifyWidget
from decrappify._napari._layers import layer_to_image
from decrappify.config.crappify import CrappifyConfig, get_preset
from decrappify.crappify import crappify_image
from decrappify.sample import synthetic_image

pytestmark = pytest.mark.napari


@pytest.fixture
def widget(viewer, qtbot):
    w = CrappifyWidget(viewer)
    viewer.window.add_dock_widget(w, name="Crappify")
    return w


def add_fluorescence(viewer, shape, *, translate=None, name="cells"):
    image = synthetic_image("fluorescence", shape, seed=3)
    kwargs = {"scale": image.pixel_size, "units": image.units, "name": name}
    if translate is not None:
        kwargs["translate"] = translate
    return viewer.add_image(image.data, **kwargs)


def expected_lr(layer, config, seed):
    return np.asarray(crappify_image(layer_to_image(layer), config, seed=seed).data.compute())


def test_run_2d_result_overlays_input(viewer, widget, wait_idle):
    layer = add_fluorescence(viewer, (98, 101), translate=(1.0, 2.0))
    widget.layer_picker.set_layer(layer)
    widget.set_preset("fluorescence")
    widget.seed_spin.setValue(7)
    widget.run()
    wait_idle(widget.panel)
    assert widget.panel.state == "done"
    result = viewer.layers["cells crappified"]
    assert isinstance(result.data, np.ndarray)
    assert result.data.shape == (24, 25) and result.data.dtype == np.uint16
    assert tuple(result.scale) == pytest.approx((0.26, 0.26))
    # LR pixel centres sit over the centres of the 4x4 HR blocks: + 1.5 HR pixels
    assert tuple(result.translate) == pytest.approx((1.0 + 1.5 * 0.065, 2.0 + 1.5 * 0.065))
    assert [str(u) for u in result.units] == ["micrometer", "micrometer"]
    np.testing.assert_array_equal(result.data, expected_lr(layer, get_preset("fluorescence"), 7))
    meta = result.metadata["decrappify"]["crappify"]
    assert meta["seed"] == 7 and meta["input"] == "cells"
    assert CrappifyConfig.model_validate(meta["config"]) == get_preset("fluorescence")
    assert tuple(result.contrast_limits) == pytest.approx(tuple(layer.contrast_limits))


def test_run_3d_with_edited_parameters(viewer, widget, wait_idle):
    layer = add_fluorescence(viewer, (3, 64, 64))
    widget.layer_picker.set_layer(layer)
    widget.set_preset("em")
    widget.scale_spin.setValue(2)
    widget.set_parameter("local_variance_noise.gain", (0.02, 0.08))
    widget.set_parameter("downsample.method", "area")
    config = widget.current_config()
    assert config.scale == 2 and config.steps[0].gain == (0.02, 0.08)
    assert config.steps[1].method == "area"
    widget.run()
    wait_idle(widget.panel)
    result = viewer.layers["cells crappified"]
    assert result.data.shape == (3, 32, 32) and result.data.dtype == np.uint16
    assert tuple(result.scale) == pytest.approx((0.2, 0.13, 0.13))
    assert tuple(result.translate) == pytest.approx((0.0, 0.0325, 0.0325))
    np.testing.assert_array_equal(result.data, expected_lr(layer, config, 0))


def test_preview_equals_region_of_full_run(viewer, widget, wait_idle):
    layer = add_fluorescence(viewer, (2, 256, 256))
    widget.layer_picker.set_layer(layer)
    widget.set_preset("fluorescence")
    viewer.dims.set_current_step(0, 1)
    camera = viewer.scene.camera
    camera.center = (0.0, 40 * 0.065, 60 * 0.065)  # world (µm): around HR pixel (40, 60)
    camera.zoom = 200.0  # screen pixels per µm: a field of view of a few µm
    widget.preview()
    wait_idle(widget.panel)
    preview = viewer.layers["cells preview"]
    full = expected_lr(layer, widget.current_config(), 0)
    assert preview.data.ndim == 3 and preview.data.shape[0] == 1
    h, w = preview.data.shape[1:]
    assert 0 < h < full.shape[1] and 0 < w < full.shape[2]
    lr_scale = 4 * 0.065
    z0, y0, x0 = (
        np.asarray(preview.translate) - np.array([0.0, 1.5 * 0.065, 1.5 * 0.065])
    ) / np.array([0.2, lr_scale, lr_scale])
    z0, y0, x0 = (int(round(v)) for v in (z0, y0, x0))
    assert z0 == 1
    np.testing.assert_array_equal(preview.data[0], full[1, y0 : y0 + h, x0 : x0 + w])
    # the region is around the camera centre (LR pixel 10, 15)
    assert y0 <= 10 < y0 + h and x0 <= 15 < x0 + w
    assert tuple(preview.scale) == pytest.approx((0.2, lr_scale, lr_scale))


def test_large_result_goes_to_ome_zarr(viewer, widget, wait_idle, tmp_path):
    layer = add_fluorescence(viewer, (64, 64))
    widget.layer_picker.set_layer(layer)
    widget.set_preset("fluorescence")
    widget.output_path.set_text(str(tmp_path / "out"))
    widget.run()
    wait_idle(widget.panel)
    result = viewer.layers["cells crappified"]
    assert isinstance(result.data, da.Array)
    store = tmp_path / "out" / "cells_crappified.zarr"
    assert store.is_dir() and result.metadata["decrappify"]["source"] == str(store)
    np.testing.assert_array_equal(
        result.data.compute(), expected_lr(layer, widget.current_config(), 0)
    )
    assert tuple(result.scale) == pytest.approx((0.26, 0.26))
    # a second run never overwrites the first store
    widget.run()
    wait_idle(widget.panel)
    assert (tmp_path / "out" / "cells_crappified_2.zarr").is_dir()


def test_memory_limit_sends_result_to_temporary_zarr(viewer, widget, wait_idle):
    layer = add_fluorescence(viewer, (64, 64))
    widget.layer_picker.set_layer(layer)
    widget.memory_limit = 100  # bytes: the 16x16 uint16 result does not fit
    widget.run()
    wait_idle(widget.panel)
    result = viewer.layers["cells crappified"]
    assert isinstance(result.data, da.Array)
    assert "decrappify-napari-" in result.metadata["decrappify"]["source"]


def test_cancel_leaves_no_output(viewer, widget, wait_idle, tmp_path, monkeypatch):
    layer = add_fluorescence(viewer, (3, 64, 64))
    widget.layer_picker.set_layer(layer)
    out = tmp_path / "out"
    widget.output_path.set_text(str(out))
    gate = threading.Event()
    original = module.iter_crappify_layer

    def gated(*args, **kwargs):
        for event in original(*args, **kwargs):
            yield event
            if event.phase == "write":
                gate.wait(5)  # hold the worker until the test has pressed Cancel
        return None  # pragma: no cover - cancelled before

    monkeypatch.setattr(module, "iter_crappify_layer", gated)

    def cancel_on_write(event):
        if event.phase == "write":
            widget.cancel()
            gate.set()

    widget.panel.progressed.connect(cancel_on_write)
    n_layers = len(viewer.layers)
    widget.run()
    wait_idle(widget.panel)
    assert widget.panel.state == "cancelled"
    assert len(viewer.layers) == n_layers
    assert list(out.iterdir()) == []  # the partial store was removed


def test_errors_are_notified(viewer, widget, wait_idle, notes):
    widget.layer_picker.set_layer(None)
    widget.run()
    assert notes["error"] == ["Crappify: choose an image layer (open or add one first)"]

    layer = add_fluorescence(viewer, (32, 32))
    widget.layer_picker.set_layer(layer)
    widget.set_preset("fluorescence")
    widget.set_parameter("poisson.photons", "abc")
    widget.run()
    assert (
        notes["error"][-1] == "poisson.photons: expected a number or a range 'min, max', got 'abc'"
    )
    widget.set_parameter("poisson.photons", -5)
    widget.run()
    assert "photons must be > 0 (got -5)" in notes["error"][-1]
    assert not widget.panel.is_running

    widget.set_parameter("poisson.photons", (50, 500))
    nan = np.full((32, 32), np.nan, dtype=np.float32)
    viewer.add_image(nan, name="holes")
    widget.layer_picker.set_layer("holes")
    widget.run()
    wait_idle(widget.panel)
    assert widget.panel.state == "failed"
    assert "holes: contains NaN or Inf values" in notes["error"][-1]
    assert "holes crappified" not in [lyr.name for lyr in viewer.layers]


def test_picker_follows_layers_and_rgb_is_explained(viewer, widget, notes):
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), rgb=True, name="photo")
    viewer.add_image(np.zeros((2, 2, 16, 16), np.uint8), name="4d")
    layer = viewer.add_image(np.zeros((16, 16), np.uint8), name="gray")
    assert widget.layer_picker.names() == ["gray", "photo"]
    widget.layer_picker.set_layer("photo")
    widget.run()
    assert notes["error"] == [
        "photo: expected a single-channel image, got an RGB layer; split the channels first "
        "(right-click the layer > Split RGB)"
    ]
    widget.layer_picker.set_layer(layer)
    layer.name = "renamed"
    assert widget.layer_picker.layer_name() == "renamed"
    viewer.layers.remove("renamed")
    assert widget.layer_picker.layer_name() == "photo"


def test_presets_rebuild_the_form_and_save_config(widget, tmp_path):
    widget.set_preset("fluorescence")
    shown = widget.parameters()
    assert {"blur.sigma", "poisson.photons", "read_noise.sigma", "downsample.method"} <= set(shown)
    assert shown["blur.sigma"] == "1, 2" and shown["downsample.method"] == "area"
    widget.set_preset("em")
    assert set(widget.parameters()) == {
        "local_variance_noise.gain",
        "local_variance_noise.smooth_sigma",
        "local_variance_noise.min_variance",
        "downsample.method",
    }
    widget.scale_spin.setValue(3)
    widget.set_parameter("local_variance_noise.gain", 0.1)
    path = widget.save_config(tmp_path / "mine")
    assert path == tmp_path / "mine.yaml"
    loaded = CrappifyConfig.from_yaml(path)
    assert loaded == widget.current_config() and loaded.scale == 3
    widget.set_preset(module.FROM_FILE)
    widget.config_path.set_text(str(path))
    assert widget.current_config() == loaded
    assert widget.parameters()["local_variance_noise.gain"] == "0.1"


def test_scale_one_degrades_in_place(viewer, widget, wait_idle):
    layer = add_fluorescence(viewer, (64, 72), translate=(1.0, 2.0))
    widget.layer_picker.set_layer(layer)
    widget.set_preset("fluorescence")
    widget.scale_spin.setValue(1)
    config = widget.current_config()
    assert config.scale == 1 and "downsample" not in [s.kind for s in config.steps]
    widget.run()
    wait_idle(widget.panel)
    result = viewer.layers["cells crappified"]
    assert result.data.shape == (64, 72)  # same grid: denoising/deblurring pairs
    assert tuple(result.scale) == pytest.approx(tuple(layer.scale))
    assert tuple(result.translate) == pytest.approx(tuple(layer.translate))
    np.testing.assert_array_equal(result.data, expected_lr(layer, config, widget.seed_spin.value()))
