"""The docks on a laptop screen: real windows under Xvfb at 1366x768 and 1920x1080.

A whole session is driven (crappify the EM sample, super-resolve it, compare) and then
the window must not be taller than the screen, no text may be cut off in any dock, and
each step must leave its result on top and in view.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _layout import clipped_texts, settle, window_height

from decrappify import api
from decrappify._napari._layers import image_layer_kwargs
from decrappify._napari.jobs.models import CONFIG_DIR_ENV

pytestmark = pytest.mark.napari

SCREENS = [(1366, 768), (1920, 1080)]
TOOLS = ("Crappify", "Train", "Super-resolve", "Compare")
#: Set to a folder to keep the screenshots of these tests (to look at them).
SHOTS_ENV = "DECRAPPIFY_LAYOUT_SHOTS"


@pytest.fixture(autouse=True)
def settings_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "settings"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small ×4 model that records the em crappifier (so it makes a consistency map)."""
    from decrappify.config.model import GeneratorConfig, ModelInfo
    from decrappify.crappify import get_preset
    from decrappify.models import build_generator, save_model

    cfg = GeneratorConfig(
        encoder="resnet18", scale=4, self_attention=False, nf_factor=0.25, blur=False
    )
    info = ModelInfo(generator=cfg, crappify=get_preset("em").model_dump(mode="json"))
    folder = tmp_path_factory.mktemp("a-model-folder-with-a-rather-long-name") / "em-x4"
    return save_model(folder / "model", build_generator(cfg, seed=0), info)


def laptop_viewer(make_napari_viewer, size):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*size)
    image = api.sample_image("em", (256, 256), seed=3)
    viewer.add_image(np.asarray(image.data), **image_layer_kwargs(image, name="synthetic em"))
    return viewer


def shoot(viewer, name):
    folder = os.environ.get(SHOTS_ENV)
    if folder:
        from skimage.io import imsave

        shot = viewer.screenshot(canvas_only=False, flash=False)
        imsave(Path(folder) / f"{name}.png", shot[..., :3], check_contrast=False)


def top_visible(viewer):
    return next(layer.name for layer in reversed(viewer.layers) if layer.visible)


def assert_fits(viewer, size, docks):
    settle()
    height, least = window_height(viewer)
    assert least <= size[1], f"the docks ask for a {least} px tall window on a {size} screen"
    assert height <= size[1]
    for name, widget in docks:
        assert clipped_texts(widget) == [], name


@pytest.mark.parametrize("size", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_four_docks_stacked_fit_the_screen(make_napari_viewer, size):
    """As the Plugins menu adds them: one under the other, each scrolls instead of growing."""
    viewer = laptop_viewer(make_napari_viewer, size)
    docks = [(name, viewer.window.add_plugin_dock_widget("decrappify", name)[1]) for name in TOOLS]
    assert_fits(viewer, size, docks)
    shoot(viewer, f"stacked_{size[0]}")


@pytest.mark.parametrize("size", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_session_in_the_tabbed_dock_fits_and_shows_each_result(
    make_napari_viewer, size, model, wait_idle
):
    viewer = laptop_viewer(make_napari_viewer, size)
    _, tools = viewer.window.add_plugin_dock_widget("decrappify", "All tools")
    assert_fits(viewer, size, [("All tools", tools)])
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= 0.4 * size[0]  # the dock leaves the image most of the room

    crappify = tools.show_tool("crappify")
    crappify.layer_picker.set_layer("synthetic em")
    crappify.run()
    wait_idle(crappify.panel, timeout=300000)
    assert viewer.layers[-1].name == "synthetic em crappified"

    predict = tools.show_tool("predict")
    predict.set_model(model)
    predict.layer_picker.set_layer("synthetic em crappified")
    predict.tile_spin.setValue(64)
    predict.device_combo.setCurrentText("cpu")
    predict.run()
    wait_idle(predict.panel, timeout=300000)
    assert top_visible(viewer) == "synthetic em crappified super-resolved"
    assert viewer.layers.selection.active.name == "synthetic em crappified super-resolved"
    maps = [layer for layer in viewer.layers if layer.name.endswith(" consistency")]
    assert len(maps) == 1 and not maps[0].visible  # made, but hidden
    assert predict.trust_label.text().startswith("Consistency: ")
    assert_fits(viewer, size, [("All tools", tools)])
    shoot(viewer, f"predict_{size[0]}")

    compare = tools.show_tool("compare")  # distinct layers, chosen from what they are
    assert compare.pred_picker.layer_name() == "synthetic em crappified super-resolved"
    assert compare.gt_picker.layer_name() == "synthetic em"
    assert compare.lr_picker.layer_name() == "synthetic em crappified"
    assert "synthetic em crappified consistency" not in compare.pred_picker.names()
    compare.compare()
    wait_idle(compare.panel, timeout=300000)
    assert top_visible(viewer) == "synthetic em crappified super-resolved"
    hidden = {layer.name for layer in viewer.layers if not layer.visible}
    assert {
        "synthetic em crappified super-resolved error",
        "synthetic em crappified bicubic",
    } <= hidden
    assert "rank correlation" in compare.trust_label.text()
    assert_fits(viewer, size, [("All tools", tools)])
    shoot(viewer, f"compare_{size[0]}")
    # derived layers are no training images
    offered = tools.show_tool("train").form.layer_list.names()
    assert offered == ["synthetic em"]


def test_trust_numbers_in_words():
    from decrappify._napari._trust_text import agreement_text, trust_summary_text

    assert agreement_text("consistency", -0.02) == (
        "The consistency map says nothing about where the prediction is wrong on the image "
        "(rank correlation -0.02; 1 would be perfect, 0 no relation)."
    )
    assert agreement_text("uncertainty", 0.62, "plane 4").startswith(
        "The uncertainty map shows well where the prediction is wrong on plane 4"
    )
    assert "cannot be compared" in agreement_text("uncertainty", float("nan"))
    text = trust_summary_text(
        {"consistency": {"score": 1.04, "flagged_fraction": 0.0002}, "uncertainty": {"mean": 0.008}}
    )
    assert text.splitlines() == [
        "Consistency: the input explains the result, as noise alone would (score "
        "1.04, about 1 for noise alone; 0.02 % of the pixels off by more than 4 noise levels).",
        "Uncertainty: the 8 rotations of the input disagree by 0.8 % of the intensity range on "
        "average; the uncertainty layer shows where they disagree most.",
    ]
    assert trust_summary_text({"consistency": {"skipped": "model m records no crappifier"}}) == (
        "No consistency map: model m records no crappifier."
    )
