"""Screenshots of the decrappify napari plugin for docs/napari.md.

Run from the repository root::

    .venv/bin/python docs/scripts/napari_screenshots.py

Without a display the script restarts itself under ``xvfb-run`` (install ``xvfb``).
It opens a napari window of a laptop's size (1366x768) with the synthetic sample data,
docks decrappify's "All tools" dock, runs each tool in its tab, and saves
``docs/images/napari_<widget>.png`` (whole window, docks included). Everything is
deterministic (fixed seeds); widgets that do not exist yet are skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "images"
WINDOW = (1366, 768)
_XVFB_FLAG = "DECRAPPIFY_SCREENSHOTS_XVFB"


def _ensure_display() -> None:
    """Re-run this script under xvfb-run when there is no display."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if os.environ.get(_XVFB_FLAG) or not shutil.which("xvfb-run"):
        sys.exit("napari_screenshots: no display; install xvfb (xvfb-run) or set DISPLAY")
    os.environ[_XVFB_FLAG] = "1"
    screen = f"-screen 0 {WINDOW[0] + 100}x{WINDOW[1] + 100}x24"
    args = ["xvfb-run", "-a", "-s", screen, sys.executable, str(Path(__file__).resolve())]
    os.execvp("xvfb-run", [*args, *sys.argv[1:]])


def _wait(panel: object, timeout: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    start = time.perf_counter()
    while panel.is_running:  # type: ignore[attr-defined]
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("widget did not finish")
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    if panel.state != "done":  # type: ignore[attr-defined]
        raise RuntimeError(f"widget ended with state {panel.state}: {panel.last_error}")  # type: ignore[attr-defined]


def _settle(viewer: object, seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def _save(viewer: object, name: str) -> Path:
    from skimage.io import imsave

    _settle(viewer)
    shot = viewer.screenshot(canvas_only=False, flash=False)  # type: ignore[attr-defined]
    path = OUT / f"napari_{name}.png"
    imsave(path, shot[..., :3], check_contrast=False)
    print(f"wrote {path} {shot.shape[1]}x{shot.shape[0]}")
    return path


def _fresh_viewer() -> object:
    import napari

    viewer = napari.Viewer(show=True, title="decrappify")
    viewer.window.resize(*WINDOW)
    return viewer


def _tool(viewer: object, name: str) -> object:
    """Dock "All tools" and bring one tool's tab to the front."""
    _, tools = viewer.window.add_plugin_dock_widget("decrappify", "All tools")  # type: ignore[attr-defined]
    return tools.show_tool(name)


def crappify_screenshot() -> Path:
    """Sample fluorescence image, crappified by the Crappify widget; HR and LR side by side."""
    viewer = _fresh_viewer()
    viewer.open_sample("decrappify", "fluorescence")  # type: ignore[attr-defined]
    widget = _tool(viewer, "crappify")
    widget.layer_picker.set_layer("synthetic fluorescence")
    widget.set_preset("fluorescence")
    widget.seed_spin.setValue(1)
    widget.run()
    _wait(widget.panel)
    viewer.canvas.grid.enabled = True  # type: ignore[attr-defined]
    _settle(viewer)
    camera = viewer.scene.camera  # type: ignore[attr-defined]
    camera.center = (0.0, 700 * 0.065, 380 * 0.065)  # a nucleus among filaments
    camera.zoom = 28.0  # screen pixels per micrometre
    path = _save(viewer, "crappify")
    viewer.close()  # type: ignore[attr-defined]
    return path


def compare_screenshot() -> Path:
    """A focal series, its crappified LR and a stand-in prediction in the Compare widget."""
    from decrappify._napari._layers import image_layer_kwargs
    from decrappify.crappify import crappify_image, get_preset
    from decrappify.metrics import upsample
    from decrappify.sample import synthetic_image

    gt = synthetic_image("fluorescence", (9, 384, 384), seed=4)
    lr = crappify_image(gt, get_preset("fluorescence"), seed=1)
    lr = lr.with_data(np.asarray(lr.data.compute()))
    # no trained model here: bilinear upsampling stands in for a network's output
    stand_in = gt.with_data(upsample(lr.data, 4, "bilinear"))
    viewer = _fresh_viewer()
    viewer.add_image(gt.data, **image_layer_kwargs(gt, name="ground truth"))  # type: ignore[attr-defined]
    viewer.add_image(lr.data, **image_layer_kwargs(lr, name="LR"))  # type: ignore[attr-defined]
    viewer.add_image(  # type: ignore[attr-defined]
        stand_in.data, **image_layer_kwargs(stand_in, name="prediction (bilinear stand-in)")
    )
    widget = _tool(viewer, "compare")
    widget.pred_picker.set_layer("prediction (bilinear stand-in)")
    widget.gt_picker.set_layer("ground truth")
    widget.lr_picker.set_layer("LR")
    viewer.dims.set_current_step(0, 4)  # type: ignore[attr-defined]
    widget.compare()
    _wait(widget.panel)
    shown = (
        "ground truth",
        "prediction (bilinear stand-in)",
        "prediction (bilinear stand-in) error",
    )
    for layer in viewer.layers:  # type: ignore[attr-defined]
        layer.visible = layer.name in shown
    # grid panels follow the layer list from the bottom: ground truth, prediction, error
    viewer.layers.move(viewer.layers.index("ground truth"), 0)  # type: ignore[attr-defined]
    viewer.canvas.grid.shape = (1, 3)  # type: ignore[attr-defined]
    viewer.canvas.grid.enabled = True  # type: ignore[attr-defined]
    _settle(viewer)
    viewer.reset_view()  # type: ignore[attr-defined]
    path = _save(viewer, "compare")
    viewer.close()  # type: ignore[attr-defined]
    return path


#: The run folder of the Train screenshot; its model is used by the Super-resolve one.
_RUN: list[Path] = []

#: A short NoGAN run on the EM sample (a few minutes on 2 CPU cores; one torch thread
#: is the fastest on a busy machine).
SCREENSHOT_TRAINING = {
    # the demo's short-budget recipe: 128-px patches with the encoder to layer2 keep the
    # deepest features 4 x 4 (64-px patches leave 1 x 1: a model that fails on whole images)
    "data.patch_size": 128,
    "generator.encoder_depth": 2,
    "loss.weights": {"l1": 1.0},
    "data.samples_per_epoch": 256,
    "data.validation.patches": 8,
    "batch_size": 4,
    "num_threads": 1,
    "pretrain_generator.checkpoint_every": 25,
    "save_outputs.patches": 32,
    "pretrain_critic.max_steps": 20,
    "gan.checkpoint_every": 5,
}


def train_screenshot() -> Path:
    """The Train widget after a short NoGAN run on the EM sample: curves and preview."""
    import tempfile

    viewer = _fresh_viewer()
    viewer.open_sample("decrappify", "em")  # type: ignore[attr-defined]
    widget = _tool(viewer, "train")
    widget.form.layer_list.set_checked(["synthetic em"])
    widget.form.preset_combo.setCurrentText("em")
    widget.form.scale_spin.setValue(4)
    widget.form.steps_radio.setChecked(True)
    widget.form.generator_steps.setValue(600)
    widget.form.gan_steps.setValue(20)
    widget.form.device_combo.setCurrentText("cpu")
    widget.form.preview_spin.setValue(10)
    widget.form.set_overrides(SCREENSHOT_TRAINING)
    run_dir = Path(tempfile.mkdtemp(prefix="decrappify-screenshot-")) / "em-x4"
    widget.form.run_path.set_text(str(run_dir))
    widget.start()
    _wait(
        widget.panel, timeout=3 * 3600
    )  # a few minutes on a quiet machine, much more on a busy one
    _RUN.append(run_dir)
    # the preview layer (LR | prediction | HR) lies in the middle of the view: zoom onto it
    preview = viewer.layers["training preview"]  # type: ignore[attr-defined]
    (h, w), (sy, sx) = preview.data.shape, preview.scale
    ty, tx = preview.translate
    _settle(viewer)
    camera = viewer.scene.camera  # type: ignore[attr-defined]
    camera.center = (ty + h * sy / 2, tx + w * sx / 2)
    camera.zoom = 0.9 * viewer.canvas.size[1] / (w * sx)  # type: ignore[attr-defined]
    path = _save(viewer, "train")
    viewer.close()  # type: ignore[attr-defined]
    return path


def predict_screenshot() -> Path:
    """The Super-resolve widget on a 4x crappified EM image: LR, result and ground truth."""
    from decrappify._napari._layers import image_layer_kwargs
    from decrappify.crappify import crappify_image, get_preset
    from decrappify.sample import synthetic_image

    if not _RUN:
        train_screenshot()
    model = _RUN[-1] / "model"
    gt = synthetic_image("em", (1024, 1024), seed=7)  # not the training image
    gt = gt.with_data(np.asarray(gt.data))
    lr = crappify_image(gt, get_preset("em"), seed=3)
    lr = lr.with_data(np.asarray(lr.data.compute()))
    viewer = _fresh_viewer()
    viewer.add_image(gt.data, **image_layer_kwargs(gt, name="ground truth"))  # type: ignore[attr-defined]
    viewer.add_image(lr.data, **image_layer_kwargs(lr, name="LR (em, x4)"))  # type: ignore[attr-defined]
    widget = _tool(viewer, "predict")
    widget.set_model(model)
    widget.layer_picker.set_layer("LR (em, x4)")
    widget.device_combo.setCurrentText("cpu")
    widget.consistency_check.setChecked(False)  # three panels: ground truth, LR, result
    widget.run()
    _wait(widget.panel)
    # grid panels follow the layer list from the bottom: ground truth, LR, result
    viewer.layers.move(viewer.layers.index("ground truth"), 0)  # type: ignore[attr-defined]
    viewer.canvas.grid.shape = (1, 3)  # type: ignore[attr-defined]
    viewer.canvas.grid.enabled = True  # type: ignore[attr-defined]
    _settle(viewer)
    camera = viewer.scene.camera  # type: ignore[attr-defined]
    camera.center = (0.0, 512 * 4.0, 512 * 4.0)  # nanometres
    camera.zoom = 0.45  # screen pixels per nanometre: about 1 um of each image
    path = _save(viewer, "super_resolve")
    viewer.close()  # type: ignore[attr-defined]
    return path


def docked_screenshot(display_name: str) -> Path:
    """Any other widget of the manifest: docked beside the EM sample, not run."""
    viewer = _fresh_viewer()
    viewer.open_sample("decrappify", "em")  # type: ignore[attr-defined]
    viewer.window.add_plugin_dock_widget("decrappify", display_name)  # type: ignore[attr-defined]
    path = _save(viewer, _slug(display_name))
    viewer.close()  # type: ignore[attr-defined]
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


#: Screenshots that run their widget, by widget display name.
SCREENSHOTS = {
    "Crappify": crappify_screenshot,
    "Compare": compare_screenshot,
    "Train": train_screenshot,
    "Super-resolve": predict_screenshot,
}


def plugin_widgets() -> list[str]:
    """Display names of the widgets in decrappify's installed manifest, in order."""
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("decrappify")
    return [w.display_name for w in manifest.contributions.widgets or []]


def main() -> None:
    """Write one screenshot per widget (all, or those named on the command line)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help="widget display names (default: all)")
    args = parser.parse_args()
    _ensure_display()
    widgets = plugin_widgets()
    unknown = [n for n in args.names if n not in widgets]
    if unknown:
        parser.error(f"unknown widgets {unknown}; the manifest has {widgets}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or widgets:
        make = SCREENSHOTS.get(name)
        if make is not None:
            make()
        else:
            docked_screenshot(name)


if __name__ == "__main__":
    main()
