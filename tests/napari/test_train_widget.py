"""The Train dock widget: a tiny NoGAN run with live curves and preview, Stop, Save, errors."""

from __future__ import annotations

import numpy as np
import pytest

from decrappify._napari._train_widget import (
    PREVIEW_LAYER,
    TrainCurves,
    TrainWidget,
    phase_text,
    preview_placement,
)
from decrappify._napari.jobs.models import CONFIG_DIR_ENV, recent_models
from decrappify.api import model_info
from decrappify.events import Progress
from decrappify.io import Image
from decrappify.sample import synthetic_image

pytestmark = pytest.mark.napari

#: A run in seconds on the CPU: 32 px patches, the smallest decoder, a tiny critic.
TINY = {
    "data.patch_size": 32,
    "data.samples_per_epoch": 16,
    "data.validation.count": 1,
    "data.validation.patches": 2,
    "batch_size": 2,
    "generator.nf_factor": 0.25,
    "generator.self_attention": False,
    "critic.nf": 8,
    "critic.n_blocks": 2,
    "critic.self_attention": False,
    "pretrain_generator.checkpoint_every": 2,
    "save_outputs.patches": 4,
    "pretrain_critic.max_steps": 2,
    "pretrain_critic.smoothing": 2,
    "gan.checkpoint_every": 1,
    "gan.patience": 5,
    "gan.max_critic_steps": 2,
    "gan.critic_threshold": 0.693,
    "num_threads": 1,
}


@pytest.fixture(autouse=True)
def settings_dir(tmp_path, monkeypatch):
    """The recent models list goes to a per-test folder, never the user's."""
    folder = tmp_path / "settings"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def widget(viewer, qtbot):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train")
    return w


def add_em(viewer, n=3, size=64):
    for i in range(n):
        image = synthetic_image("em", (size, size), seed=i)
        viewer.add_image(np.asarray(image.data), name=f"em {i}")
    return [f"em {i}" for i in range(n)]


def configure(widget, run_dir, *, generator_steps=2, gan_steps=0, preview_every=1):
    widget.form.layer_list.set_checked(widget.form.layer_list.names())
    widget.form.steps_radio.setChecked(True)
    widget.form.generator_steps.setValue(generator_steps)
    widget.form.gan_steps.setValue(gan_steps)
    widget.form.device_combo.setCurrentText("cpu")
    widget.form.preview_spin.setValue(preview_every)
    widget.form.set_overrides(TINY)
    widget.form.run_path.set_text(str(run_dir))


def record(widget):
    """Events, phase lines and drawn curves seen while the run was going."""
    seen = {"events": [], "phases": [], "draws": []}
    on_event, redraw = widget._on_event, widget.redraw

    def record_event(event):
        on_event(event)
        seen["events"].append(event)
        seen["phases"].append(widget.phase_label.text())

    def record_redraw():
        redraw()
        lines = sum(len(a.get_lines()) for a in (widget.plot.loss_axes, widget.plot.metric_axes))
        seen["draws"].append((widget.panel.is_running, lines))

    widget._on_event, widget.redraw = record_event, record_redraw
    return seen


def test_config_from_the_form(viewer, widget, tmp_path):
    add_em(viewer, 2)
    configure(widget, tmp_path / "run", generator_steps=7, gan_steps=3, preview_every=5)
    widget.form.scale_spin.setValue(2)
    widget.form.encoder_combo.setCurrentText("resnet34")
    widget.form.preset_combo.setCurrentText("fluorescence")
    widget.form.seed_spin.setValue(9)
    config = widget.form.current_config()
    assert config.generator.scale == 2 and config.generator.encoder.value == "resnet34"
    assert config.pretrain_generator.steps == 7 and config.gan.max_steps == 3
    assert config.preview_every == 5 and config.seed == 9 and config.device == "cpu"
    assert config.time_budget is None and config.data.patch_size == 32
    assert config.crappify.scale == 2 and config.crappify.name == "fluorescence"
    widget.form.budget_radio.setChecked(True)
    widget.form.budget_edit.setText("1h30m")
    assert widget.form.current_config().time_budget == 5400.0
    images = widget.form.training_images()
    assert [im.source for im in images] == ["em 1", "em 0"]  # top layer first
    assert all(isinstance(im.data, np.ndarray) for im in images)  # no pixel copied
    assert images[0].data is viewer.layers["em 1"].data
    widget.form.files_path.set_text("/data/em/*.tif")
    assert widget.form.training_images()[-1] == "/data/em/*.tif"


def test_pretraining_run_draws_curves_shows_preview_and_keeps_the_model(
    viewer, widget, tmp_path, wait_idle, notes
):
    add_em(viewer)
    run_dir = tmp_path / "run"
    configure(widget, run_dir, generator_steps=3)
    seen = record(widget)
    widget.start()
    assert not widget.start_button.isEnabled()
    wait_idle(widget.panel, timeout=60000)
    assert notes["error"] == [] and widget.panel.state == "done"
    events = seen["events"]
    assert [(e.phase, e.step) for e in events] == [("pretrain_generator", s) for s in range(4)]
    assert set(seen["phases"]) == {"Phase 1 of 1 · generator pretraining"}
    # the curves: content loss per step, validation at the checkpoints (0, 2, 3)
    curves = widget.curves
    assert curves.losses["content"][0] == [1, 2, 3]
    assert curves.losses["content"][1] == pytest.approx([e.losses["loss"] for e in events[1:]])
    assert curves.metrics["psnr"][0] == [0, 2, 3] and curves.metrics["ssim"][0] == [0, 2, 3]
    assert (
        set(curves.baseline) == {"psnr", "ssim", "frc", "hf"} and curves.baseline_name == "bicubic"
    )
    label = "step (dashed: bicubic, dotted: classical methods)"  # the self-check's, at the end
    assert widget.plot.metric_axes.get_xlabel() == label
    assert widget.plot.loss_axes.get_lines()[0].get_xdata().tolist() == [1, 2, 3]
    assert any(running and lines for running, lines in seen["draws"])  # drawn while running
    # the preview layer: LR | prediction | HR of the validation crop, normalised units
    preview = viewer.layers[PREVIEW_LAYER]
    assert preview.data.shape == (64, 192) and preview.data.dtype == np.float32
    np.testing.assert_array_equal(preview.data, events[-1].preview)
    assert tuple(preview.contrast_limits) == (0.0, 1.0)
    center = viewer.scene.camera.center[-2:]  # centred in the view (pixel units here)
    assert tuple(preview.translate) == pytest.approx((center[0] - 31.5, center[1] - 95.5))
    assert "training preview" not in widget.form.layer_list.names()
    # the model is kept, remembered, and its metrics shown
    model = run_dir / "model"
    assert widget.model_path == model and widget.result.model_path == model
    info = model_info(model)
    assert info.generator.scale == 4 and info.training["finished"] is True
    assert recent_models() == [model.resolve()]
    assert widget.phase_label.text() == "Finished"
    assert f"validation PSNR {widget.result.metrics['psnr']:.2f} dB" in widget.result_label.text()
    assert f"(bicubic {widget.result.baseline['psnr']:.2f})" in widget.result_label.text()
    assert widget.save_button.isEnabled() and widget.start_button.isEnabled()
    # Save copies it to one file, checked by loading it, and remembers that copy
    target = tmp_path / "exported.safetensors"
    widget.save_model(target)
    wait_idle(widget.panel)
    assert widget.panel.state == "done" and target.is_file()
    assert model_info(target).generator == info.generator
    assert recent_models() == [target.resolve(), model.resolve()]


def test_a_model_that_loses_to_bilinear_gets_a_plain_warning(
    viewer, widget, tmp_path, wait_idle, notes
):
    add_em(viewer)
    configure(widget, tmp_path / "run", generator_steps=2, preview_every=0)
    widget.form.set_overrides({**TINY, "pretrain_generator.max_lr": 1.0})  # wrecks the network
    widget.form.start_combo.setCurrentIndex(1)
    assert widget.form.start_combo.currentText().startswith("none (")
    assert widget.form.current_config().start_from == "none"
    widget.start()
    wait_idle(widget.panel, timeout=60000)
    assert notes["error"] == [] and widget.panel.state == "done"
    text = widget.result_label.text()
    assert "self-check: model" in text and "against bilinear" in text
    warning = text.split("⚠ Warning: ")[1]
    assert warning.startswith("the model loses to ") and "bilinear (" in warning
    assert "Try: more training" in warning
    assert {"bilinear", "bicubic"} <= set(widget.curves.classical)
    psnr_lines = [line.get_ydata()[0] for line in widget.plot.metric_axes.get_lines()[1:]]
    assert pytest.approx(widget.curves.classical["bilinear"]["psnr"]) in psnr_lines


def test_the_start_choices_list_the_shipped_starting_points(widget):
    items = [widget.form.start_combo.itemText(i) for i in range(widget.form.start_combo.count())]
    assert items[0].startswith("auto (") and items[1].startswith("none (")
    assert [i.split(" ")[0] for i in items[2:]] == ["em-4x", "fluo-4x", "fluo-denoise"]
    widget.form.start_combo.setCurrentIndex(3)
    assert widget.form.start_from == "fluo-4x"
    widget.form.start_combo.setEditText("/models/my run/model")
    assert widget.form.start_from == "/models/my run/model"


@pytest.mark.slow
def test_nogan_run_goes_through_the_four_phases(viewer, widget, tmp_path, wait_idle, notes):
    add_em(viewer)
    configure(widget, tmp_path / "run", generator_steps=2, gan_steps=2, preview_every=0)
    seen = record(widget)
    widget.start()
    wait_idle(widget.panel, timeout=120000)
    assert notes["error"] == [] and widget.panel.state == "done"
    assert list(dict.fromkeys(seen["phases"])) == [
        "Phase 1 of 4 · generator pretraining",
        "Phase 2 of 4 · saving generator outputs",
        "Phase 3 of 4 · critic pretraining",
        "Phase 4 of 4 · GAN",
    ]
    curves = widget.curves
    critic_steps = widget.result.steps["pretrain_critic"]
    assert [mark for _, mark in curves.phases] == ["G", "C", "GAN"]
    assert [x for x, _ in curves.phases] == [0, 2, 2 + critic_steps]
    assert curves.losses["adversarial"][0] == [2 + critic_steps + 1, 2 + critic_steps + 2]
    assert curves.metrics["psnr"][0] == [0, 2, 2 + critic_steps + 1, 2 + critic_steps + 2]
    assert widget.result.best["phase"] in ("pretrain_generator", "gan")
    assert (widget.result.model_path / "model.json").is_file()


def test_stop_before_the_first_model_keeps_nothing_and_says_so(
    viewer, widget, tmp_path, wait_idle, notes
):
    add_em(viewer)
    run_dir = tmp_path / "run"
    configure(widget, run_dir, generator_steps=50)
    widget.panel.progressed.connect(lambda e: e.step == 1 and widget.stop())
    widget.start()
    wait_idle(widget.panel, timeout=60000)
    assert notes["error"] == [] and widget.panel.state == "cancelled"
    steps = widget.curves.losses["content"][0]
    assert steps[0] == 1 and len(steps) <= 3  # the step under way ends, then the run stops
    assert not (run_dir / "model").exists() and not list(run_dir.rglob("*.partial"))
    assert (run_dir / "checkpoints" / "state.json").is_file()  # Resume continues from here
    assert widget.result_label.text() == (
        f"Stopped at pretrain_generator step {steps[-1]}: no model yet (one is saved when "
        "generator pretraining ends). Tick Resume and Start to continue from the last "
        "checkpoint."
    )
    assert widget.phase_label.text() == "Stopped" and widget.model_path is None
    assert not widget.save_button.isEnabled() and recent_models() == []


@pytest.mark.slow
def test_stop_after_pretraining_keeps_the_pretrained_model_and_resume_finishes(
    viewer, widget, tmp_path, wait_idle, notes
):
    add_em(viewer)
    run_dir = tmp_path / "run"
    configure(widget, run_dir, generator_steps=2, gan_steps=2)

    def stop_after_pretraining(event):
        if event.phase == "save_outputs":
            widget.stop()

    widget.panel.progressed.connect(stop_after_pretraining)
    widget.start()
    wait_idle(widget.panel, timeout=60000)
    assert notes["error"] == [] and widget.panel.state == "cancelled"
    model = run_dir / "model"
    assert widget.model_path == model and recent_models() == [model.resolve()]
    assert model_info(model).training["finished"] is False
    text = widget.result_label.text()
    assert text.startswith("Stopped at ") and f". Kept {model}: the generator saved after " in text
    assert widget.save_button.isEnabled() and not list(run_dir.rglob("*.partial"))
    # Resume: the run's own settings from the last checkpoint, to the end
    widget.panel.progressed.disconnect(stop_after_pretraining)
    widget.form.resume_check.setChecked(True)
    widget.start()
    wait_idle(widget.panel, timeout=60000)
    assert notes["error"] == [] and widget.panel.state == "done"
    assert widget.result.steps["gan"] == 2 and model_info(model).training["finished"] is True


def test_bad_settings_are_notifications(viewer, widget, tmp_path, notes):
    widget.start()
    add_em(viewer, 1)
    widget.form.run_path.set_text(str(tmp_path / "run"))
    widget.start()
    widget.form.layer_list.set_checked(["em 0"])
    widget.form.overrides_edit.setText("gan.max_steps")
    widget.start()
    widget.form.overrides_edit.setText("gan.max_stepz=3")
    widget.start()
    widget.form.overrides_edit.setText("")
    widget.form.budget_edit.setText("soon")
    widget.start()
    widget.form.resume_check.setChecked(True)
    widget.start()
    assert notes["error"] == [
        "run folder: choose a new folder for the run",
        "training images: tick at least one image layer or give a folder, file or glob of HR "
        "images",
        "overrides: expected KEY=VALUE, e.g. gan.max_steps=0 (got 'gan.max_steps')",
        notes["error"][3],
        notes["error"][4],
        f"{tmp_path / 'run' / 'train.yaml'}: no run to resume here; untick Resume to start one",
    ]
    assert notes["error"][3] == "override gan.max_stepz: unknown setting 'max_stepz'"
    assert notes["error"][4] == (
        "train config: time_budget: expected seconds or a duration such as '20m', '1h30m', "
        "'90s' or '1.5h' (got 'soon')"
    )
    assert widget.panel.state == "idle" and not (tmp_path / "run").exists()
    assert not widget.form.budget_edit.isEnabled() and not widget.form.preset_combo.isEnabled()


def test_curves_put_the_phases_one_after_the_other():
    curves = TrainCurves()
    base = {"baseline": {"psnr": 20.0, "ssim": 0.5}, "baseline_name": "input"}
    events = [
        Progress("pretrain_generator", 0, 2, metrics={"psnr": 21.0, "ssim": 0.6}, info=base),
        Progress("pretrain_generator", 1, 2, losses={"loss": 0.9, "l1": 0.3}),
        Progress("pretrain_generator", 2, 2, losses={"loss": 0.7}, metrics={"psnr": 22.0}),
        Progress("save_outputs 1/2", 4, 4),
        Progress("pretrain_critic 1/2", 1, 2, losses={"critic": 0.69}),
        Progress("pretrain_critic 1/2", 2, 2, losses={"critic": 0.6}),
        Progress("gan 1/2", 1, 1, losses={"content": 0.5, "adv": 0.7, "critic": 0.65}),
        Progress("pretrain_critic 2/2", 1, 1, losses={"critic": 0.5}),
    ]
    for event in events:
        curves.add(event)
    assert curves.events == 8 and curves.baseline == {"psnr": 20.0, "ssim": 0.5}
    assert curves.baseline_name == "input"  # scale 1: the input itself is the baseline
    assert curves.phases == [(0, "G"), (2, "C 1"), (4, "GAN 1"), (5, "C 2")]
    assert curves.losses["content"] == ([1, 2, 5], [0.9, 0.7, 0.5])
    assert curves.losses["critic"] == ([3, 4, 5, 6], [0.69, 0.6, 0.65, 0.5])
    assert curves.losses["adversarial"] == ([5], [0.7])
    assert curves.metrics == {"psnr": ([0, 2], [21.0, 22.0]), "ssim": ([0], [0.6])}
    assert curves.x_end == 6


def test_phase_text():
    assert phase_text("pretrain_generator", 4) == "Phase 1 of 4 · generator pretraining"
    assert phase_text("gan 2/3", 4) == "Phase 4 of 4 · GAN (cycle 2/3)"
    assert phase_text("pretrain_generator", 1) == "Phase 1 of 1 · generator pretraining"


def test_preview_goes_where_the_user_looks():
    """In the middle of the view (it used to go beside the image, outside the view)."""
    image = Image(
        np.zeros((5, 40, 50), np.uint8),
        axes="ZYX",
        pixel_size=(0.2, 0.05, 0.04),
        units=("micrometer",) * 3,
        translate=(1.0, 2.0, 3.0),
    )
    place = preview_placement(image, (2.5, 4.0), (64, 192))
    assert place["pixel_size"] == (0.05, 0.04) and place["units"] == ("micrometer",) * 2
    assert place["translate"] == pytest.approx((2.5 - 31.5 * 0.05, 4.0 - 95.5 * 0.04))
    assert preview_placement(Image(np.zeros((8, 10))), (4.0, 5.0), (3, 9)) == {
        "pixel_size": None,
        "units": None,
        "translate": (3.0, 1.0),
    }
    assert preview_placement(None, (0.0, 0.0), (1, 1))["translate"] == (0.0, 0.0)


def test_a_fitted_same_grid_crappifier_sets_scale_one(viewer, widget, tmp_path):
    from decrappify.crappify import get_preset

    add_em(viewer, 2)
    configure(widget, tmp_path / "run")
    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(get_preset("fluorescence", scale=1).to_yaml())
    widget.form.preset_combo.setCurrentIndex(widget.form.preset_combo.count() - 1)  # from a file
    widget.form.crappify_path.set_text(str(fitted))
    assert widget.form.scale_spin.value() == 1
    config = widget.form.current_config()
    assert config.generator.scale == 1 and config.crappify.scale == 1
    assert "downsample" not in [s.kind for s in config.crappify.steps]
