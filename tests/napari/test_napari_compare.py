"""The Compare dock widget: table values, per-plane updates, added layers, export, refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from decrappify._napari._compare_widget import CompareWidget
from decrappify._napari._layers import image_layer_kwargs
from decrappify._napari._metric_table import format_metric
from decrappify.crappify import crappify_image, get_preset
from decrappify.metrics import evaluate_pair, evaluate_stack, upsample
from decrappify.metrics.maps import error_plane
from decrappify.sample import synthetic_image

pytestmark = pytest.mark.napari


@pytest.fixture(scope="module")
def stack():
    """GT (3 x 64 x 64 uint16), its 4x crappified LR and a noisy 'prediction'."""
    rng = np.random.default_rng(99)
    gt = synthetic_image("fluorescence", (3, 64, 64), seed=5)
    gt = gt.with_data(gt.data, translate=(0.0, 1.0, -1.0), source="gt")
    lr = crappify_image(gt, get_preset("fluorescence"), seed=2)
    lr = lr.with_data(np.asarray(lr.data.compute()), source="lr")
    noise = rng.normal(0, 60, gt.shape)
    pred = gt.with_data((gt.data + noise).astype(np.float32), source="pred")
    return pred, gt, lr


@pytest.fixture
def widget(viewer, stack):
    for image in stack:
        viewer.add_image(image.data, **image_layer_kwargs(image, name=image.source))
    w = CompareWidget(viewer)
    viewer.window.add_dock_widget(w, name="Compare")
    w.pred_picker.set_layer("pred")
    w.gt_picker.set_layer("gt")
    w.lr_picker.set_layer("lr")
    return w


def test_table_matches_evaluate_pair_and_layers_align(viewer, widget, stack, wait_idle):
    pred, gt, lr = stack
    viewer.dims.set_current_step(0, 1)
    widget.compare()
    wait_idle(widget.panel)
    assert widget.panel.state == "done" and widget.plane == 1
    assert widget.plane_label.text() == "<b>Plane 1</b>"
    assert widget.plane_table.methods() == ["prediction", "bicubic"]
    assert widget.metrics("prediction") == evaluate_pair(pred.data[1], gt.data[1])
    bicubic = upsample(lr.data[1], 4, "bicubic")
    assert widget.metrics("bicubic") == evaluate_pair(bicubic, gt.data[1])
    full = evaluate_stack(pred.data, gt.data, lr.data)
    assert widget.metrics("prediction", "stack") == pytest.approx(full.mean())
    assert widget.metrics("bicubic", "stack") == pytest.approx(full.mean("bicubic"))
    item = widget.stack_table.item(3, 0)  # psnr_norm of the prediction, mean ± sd
    assert item.text() == format_metric(
        "psnr_norm", full.mean()["psnr_norm"], full.sd()["psnr_norm"]
    )
    assert not widget.stack_table.isHidden()
    rows = widget.stack_table.rowCount()
    titles = [widget.stack_table.verticalHeaderItem(r).text() for r in range(rows)]
    assert titles[-1] == "FRC res. (px)"  # the FRC resolution in the results, not only figures
    assert widget.metrics("prediction", "stack")["frc_px"] == pytest.approx(full.mean()["frc_px"])

    error = viewer.layers["pred error"]
    assert tuple(error.scale) == pytest.approx(gt.scale)
    assert tuple(error.translate) == pytest.approx(gt.translate)
    np.testing.assert_allclose(
        np.asarray(error.data[1]), error_plane(pred.data[1], gt.data[1]), rtol=0, atol=1e-6
    )
    base = viewer.layers["lr bicubic"]
    assert base.data.shape == gt.shape
    assert tuple(base.scale) == pytest.approx(gt.scale)
    assert tuple(base.translate) == pytest.approx(gt.translate)
    np.testing.assert_allclose(np.asarray(base.data[1]), bicubic, rtol=0, atol=1e-3)


def test_table_follows_current_plane(viewer, widget, stack, qtbot, wait_idle):
    pred, gt, _ = stack
    widget.compare()
    wait_idle(widget.panel)
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: widget.plane_label.text() == "<b>Plane 2</b>", timeout=3000)
    assert widget.metrics("prediction") == evaluate_pair(pred.data[2], gt.data[2])
    lines = widget.axes.get_lines()
    assert len(lines) == 3  # prediction, bicubic and the current-plane marker
    np.testing.assert_allclose(
        lines[0].get_ydata(), widget.comparison.result.values["prediction"]["psnr_norm"]
    )
    assert list(lines[2].get_xdata()) == [2, 2]


def test_export_json_and_csv(widget, tmp_path, wait_idle):
    widget.compare()
    wait_idle(widget.panel)
    result = widget.comparison.result
    doc = json.loads(widget.export(tmp_path / "m.json").read_text())
    assert doc["pred"]["n_slices"] == 3
    assert doc["pred"]["psnr_norm"] == pytest.approx(result.mean()["psnr_norm"])
    assert doc["pred"]["baselines"]["bicubic"]["ssim"] == pytest.approx(
        result.mean("bicubic")["ssim"]
    )
    rows = list(csv.DictReader(widget.export(tmp_path / "p.csv", per_slice=True).open()))
    assert len(rows) == 6 and {r["method"] for r in rows} == {"prediction", "bicubic"}
    assert float(rows[1]["psnr"]) == pytest.approx(result.values["prediction"]["psnr"][1])


def test_prediction_on_another_grid_is_resampled(viewer, widget, stack, wait_idle):
    pred, gt, _ = stack
    coarse = pred.with_data(pred.data[:, ::2, ::2], yx_factor=2, source="coarse")
    viewer.add_image(coarse.data, **image_layer_kwargs(coarse, name="coarse"))
    widget.pred_picker.set_layer("coarse")
    widget.lr_picker.set_layer(None)
    viewer.dims.set_current_step(0, 0)
    widget.compare()
    wait_idle(widget.panel)
    assert widget.comparison.plan.mode == "resize"
    assert widget.plane_table.methods() == ["prediction"]
    assert widget.metrics("prediction") == evaluate_pair(coarse.data[0], gt.data[0], resize=True)
    assert "lr bicubic" not in [lyr.name for lyr in viewer.layers]


def test_misaligned_layers_are_refused(viewer, widget, stack, notes, wait_idle):
    pred, _, _ = stack
    moved = pred.with_data(pred.data, translate=(0.0, 50.0, 0.0), source="moved")
    viewer.add_image(moved.data, **image_layer_kwargs(moved, name="moved"))
    widget.pred_picker.set_layer("moved")
    widget.compare()
    wait_idle(widget.panel)
    assert widget.panel.state == "failed" and widget.comparison is None
    assert notes["error"][-1].startswith("prediction 'moved' does not overlay ground truth 'gt'")
    assert widget.plane_table.columnCount() == 0 and widget.stack_table.isHidden()
    widget.gt_picker.set_layer("moved")
    widget.compare()
    assert notes["error"][-1] == "Compare: prediction and ground truth are the same layer 'moved'"


def test_2d_comparison(viewer, rng, wait_idle):
    gt = synthetic_image("em", (64, 64), seed=1)
    pred = gt.with_data(np.clip(gt.data + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8))
    viewer.add_image(gt.data, **image_layer_kwargs(gt, name="gt2"))
    viewer.add_image(pred.data, **image_layer_kwargs(pred, name="pred2"))
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.pred_picker.set_layer("pred2")
    widget.gt_picker.set_layer("gt2")
    widget.compare()
    wait_idle(widget.panel)
    assert widget.plane_label.text() == "<b>Image</b>" and widget.stack_table.isHidden()
    assert widget.metrics("prediction") == evaluate_pair(pred.data, gt.data)
    assert len(widget.axes.patches) == 1  # one bar per method
    assert tuple(viewer.layers["pred2 error"].scale) == (4.0, 4.0)


def test_same_grid_comparison_scores_the_noisy_input(viewer, rng, wait_idle):
    gt = synthetic_image("fluorescence", (64, 64), seed=2)
    noisy = crappify_image(gt, get_preset("fluorescence", scale=1), seed=1)
    noisy = noisy.with_data(np.asarray(noisy.data.compute()))
    pred = gt.with_data(np.clip(gt.data + rng.normal(0, 30, gt.shape), 0, 65535).astype(np.uint16))
    for image, name in ((gt, "gt1"), (noisy, "noisy1"), (pred, "pred1")):
        viewer.add_image(image.data, **image_layer_kwargs(image, name=name))
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.pred_picker.set_layer("pred1")
    widget.gt_picker.set_layer("gt1")
    widget.lr_picker.set_layer("noisy1")
    widget.compare()
    wait_idle(widget.panel)
    assert widget.plane_table.methods() == ["prediction", "input"]
    assert widget.metrics("input") == evaluate_pair(noisy.data, gt.data)
    assert "noisy1 bicubic" not in viewer.layers and "noisy1 input" not in viewer.layers


def test_trust_maps_of_the_prediction_are_ranked_against_its_error(
    viewer, stack, wait_idle, tmp_path
):
    """Linked layers (Super-resolve's) or the maps written beside the prediction's file."""
    from decrappify.io import write_image

    pred, gt, lr = stack
    rng = np.random.default_rng(3)
    # a map that knows the error (its magnitude), and one that knows nothing (on the LR grid)
    knows = pred.with_data(np.abs(np.asarray(pred.data) - np.asarray(gt.data)), source=None)
    blind = lr.with_data(rng.normal(size=lr.shape).astype(np.float32), source=None)
    maps = {"uncertainty": "pred uncertainty", "consistency": "pred consistency"}
    meta = {"decrappify": {"predict": {"maps": maps}}}
    viewer.add_image(gt.data, **image_layer_kwargs(gt, name="gt"))
    viewer.add_image(pred.data, **image_layer_kwargs(pred, name="pred", metadata=meta))
    viewer.add_image(knows.data, **image_layer_kwargs(knows, name="pred uncertainty"))
    viewer.add_image(blind.data, **image_layer_kwargs(blind, name="pred consistency"))
    w = CompareWidget(viewer)
    viewer.window.add_dock_widget(w, name="Compare")
    w.pred_picker.set_layer("pred")
    w.gt_picker.set_layer("gt")
    viewer.dims.set_current_step(0, 2)
    w.compare()
    wait_idle(w.panel)
    agreement = w.comparison.agreement
    assert agreement["uncertainty"] > 0.9 and abs(agreement["consistency"]) < 0.1
    uncertainty, consistency = w.trust_label.text().splitlines()
    assert uncertainty == (
        "The uncertainty map shows well where the prediction is wrong on plane 2 (rank "
        f"correlation {agreement['uncertainty']:.2f}; 1 would be perfect, 0 no relation)."
    )
    assert consistency.startswith("The consistency map says nothing about where the prediction")

    # a prediction opened from a file: the maps beside it are read and shown as layers
    store = write_image(pred, tmp_path / "pred.zarr")
    write_image(knows, store / "uncertainty", format="zarr")
    meta = {"decrappify": {"predict": {"path": str(store)}}}
    viewer.add_image(pred.data, **image_layer_kwargs(pred, name="from file", metadata=meta))
    w.pred_picker.set_layer("from file")
    w.compare()
    wait_idle(w.panel)
    assert set(w.comparison.agreement) == {"uncertainty"}
    assert w.comparison.agreement["uncertainty"] > 0.9
    shown = viewer.layers["from file uncertainty"]
    assert shown.data.shape == pred.shape and shown.colormap.name == "magma"
