"""The Train dock widget: NoGAN training on image layers or files, with live curves.

A thin shell over :func:`decrappify.api.iter_train`: the widget builds a
:class:`~decrappify.config.train.TrainConfig` with :func:`decrappify.api.train_config`
(preset or crappify YAML, scale, encoder, time budget or steps, overrides), turns the
checked layers into :class:`~decrappify.io.Image` records (lazy layers stay lazy) and
drives the training generator in a :class:`~decrappify._napari._runner.TaskPanel`.
Each progress event updates the phase bar, the loss / validation plot and the preview
layer (both throttled, so the viewer stays smooth); Stop closes the generator at the
next step (see :meth:`TrainWidget.stop` for what is kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from decrappify import api
from decrappify._napari._compare_widget import _style_axes
from decrappify._napari._controls import (
    LayerChecklist,
    PathEdit,
    is_usable_image,
    recent_models_notifier,
    theme_colors,
)
from decrappify._napari._crappify_widget import FROM_FILE, MAX_SEED
from decrappify._napari._jobs import (
    iter_export_model,
    parse_overrides,
    release_device_memory,
    remember_model,
    run_model,
)
from decrappify._napari._layers import image_layer_kwargs, layer_to_image, set_or_add_image
from decrappify._napari._runner import TaskPanel, report_errors
from decrappify.config.crappify import PRESETS
from decrappify.config.model import EncoderName
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image

#: Name of the layer showing LR | prediction | HR of the first validation crop.
PREVIEW_LAYER = "training preview"
#: HR pixels between the first training layer and the preview layer placed beside it.
PREVIEW_GAP = 16
#: Shortest time between two redraws of the plot and the preview layer (ms).
REDRAW_MS = 400
#: The plot is redrawn at most this often relative to the time a redraw takes, so that
#: drawing never takes more than a fifth of the main thread, however long the curves.
REDRAW_COST_FACTOR = 5
#: Devices offered for training.
DEVICES = ("auto", "cpu", "cuda")
#: The NoGAN phases with their titles.
PHASE_TITLES = {
    "pretrain_generator": "generator pretraining",
    "save_outputs": "saving generator outputs",
    "pretrain_critic": "critic pretraining",
    "gan": "GAN",
}
#: Short labels of the training phases on the plot.
PHASE_MARKS = {"pretrain_generator": "G", "pretrain_critic": "C", "gan": "GAN"}
#: Which loss of which phase goes on which curve.
LOSS_CURVES = {
    ("pretrain_generator", "loss"): "content",
    ("gan", "content"): "content",
    ("gan", "adv"): "adversarial",
    ("pretrain_critic", "critic"): "critic",
    ("gan", "critic"): "critic",
}


def base_phase(label: str) -> str:
    """The NoGAN phase of an event's phase label (``"gan 1/2"`` -> ``"gan"``).

    Parameters
    ----------
    label : str
        ``Progress.phase``.

    Returns
    -------
    str
        The phase name.
    """
    return label.split(" ", 1)[0]


def phase_text(label: str, n_phases: int) -> str:
    """Title of a phase for the phase line: ``"Phase 4 of 4 · GAN (cycle 1/2)"``.

    Parameters
    ----------
    label : str
        ``Progress.phase``.
    n_phases : int
        4 for NoGAN, 1 for generator pretraining only.

    Returns
    -------
    str
        The title.
    """
    name = base_phase(label)
    if name not in PHASE_TITLES:
        return label
    index = list(PHASE_TITLES).index(name) + 1
    cycle = label[len(name) :].strip()
    text = f"Phase {min(index, n_phases)} of {n_phases} · {PHASE_TITLES[name]}"
    return f"{text} (cycle {cycle})" if cycle else text


def preview_placement(image: Image | None) -> dict[str, Any]:
    """Where the preview layer goes: beside a training image, with its pixel size and units.

    The preview's pixels are HR pixels of the validation crop, so it takes the training
    image's Y/X pixel size and units, and sits :data:`PREVIEW_GAP` pixels right of it.

    Parameters
    ----------
    image : Image or None
        The first training image (None: pixel units at the origin).

    Returns
    -------
    dict
        ``pixel_size``, ``units`` and ``translate`` of a 2D :class:`~decrappify.io.Image`.
    """
    if image is None:
        return {}
    py, px = image.scale[-2:]
    ty, tx = (image.translate or (0.0,) * image.ndim)[-2:]
    return {
        "pixel_size": (py, px) if image.pixel_size is not None else None,
        "units": tuple(image.units[-2:]) if image.units is not None else None,
        "translate": (ty, tx + (image.shape[-1] + PREVIEW_GAP) * px),
    }


@dataclass
class TrainCurves:
    """Losses and validation metrics of a run, against a step axis over all phases.

    The training phases follow each other on the axis (save_outputs, which trains
    nothing, takes no room): step ``s`` of a phase that started at ``x0`` is at
    ``x0 + s``.

    Attributes
    ----------
    losses : dict of str to (list, list)
        ``content`` (pixel loss of the generator), ``adversarial`` and ``critic``:
        steps and values.
    metrics : dict of str to (list, list)
        Validation ``psnr`` and ``ssim`` (normalised) at the checkpoints.
    baseline : dict of str to float
        Bicubic ``psnr`` / ``ssim`` on the same crops.
    phases : list of (int, str)
        Where each training phase starts on the axis, and its short label.
    events : int
        Events seen.
    """

    losses: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    metrics: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    phases: list[tuple[int, str]] = field(default_factory=list)
    events: int = 0
    _current: str | None = None
    _offset: int = 0
    _end: int = 0

    @property
    def x_end(self) -> int:
        """The last step on the axis."""
        return self._end

    def add(self, event: Progress) -> None:
        """Record one progress event of :func:`decrappify.api.iter_train`.

        Parameters
        ----------
        event : Progress
            The event.
        """
        self.events += 1
        name = base_phase(event.phase)
        baseline = event.info.get("baseline") if isinstance(event.info, dict) else None
        if baseline:
            self.baseline = {k: float(v) for k, v in baseline.items()}
        if name not in PHASE_MARKS:
            return
        if event.phase != self._current:
            self._current, self._offset = event.phase, self._end
            cycle = event.phase[len(name) :].strip()
            mark = PHASE_MARKS[name] + (f" {cycle.split('/')[0]}" if cycle else "")
            self.phases.append((self._offset, mark))
        x = self._offset + int(event.step)
        self._end = max(self._end, x)
        for key, value in event.losses.items():
            curve = LOSS_CURVES.get((name, key))
            if curve is not None and np.isfinite(value):
                xs, ys = self.losses.setdefault(curve, ([], []))
                xs.append(x)
                ys.append(float(value))
        for key in ("psnr", "ssim"):
            if key in event.metrics and np.isfinite(event.metrics[key]):
                xs, ys = self.metrics.setdefault(key, ([], []))
                xs.append(x)
                ys.append(float(event.metrics[key]))


class TrainWidget(QWidget):
    """Dock widget that trains a super-resolution model with NoGAN.

    Training images are checked image layers (2D or stacks, lazy or not) and/or files
    (a file, a folder or a glob). The run folder receives the run's ``train.yaml``,
    ``log.csv``, ``curves.png``, checkpoints and ``model/`` (see ``docs/training.md``).
    When the run finishes, its model is added to the recent models the Super-resolve
    widget offers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer.

    Attributes
    ----------
    curves : TrainCurves
        What the plot shows.
    result : TrainResult or None
        The last finished run.
    model_path : Path or None
        The model of the last run (finished, or kept by Stop).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.curves = TrainCurves()
        self.result: Any = None
        self.model_path: Path | None = None
        self._n_phases = 4
        self._run_dir: Path | None = None
        self._last_event: Progress | None = None
        self._pending_preview: np.ndarray | None = None
        self._dirty = False
        self._last_draw = 0.0
        self._draw_ms = 0.0

        self._preview_place: dict[str, Any] = {}

        self.layer_list = LayerChecklist(
            napari_viewer,
            accept=lambda layer: is_usable_image(layer) and layer.name != PREVIEW_LAYER,
        )
        self.layer_list.setToolTip("High-resolution training images (tick one or several layers)")
        self.files_path = PathEdit("folder", placeholder="and/or a folder, file or glob")
        self.files_path.setToolTip(
            "High-resolution training images on disk: a file, a folder (its images) or a "
            "glob such as /data/em/*.tif"
        )
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([*PRESETS, FROM_FILE])
        self.preset_combo.setToolTip("How the LR inputs are made from the HR images")
        self.crappify_path = PathEdit(
            "open", placeholder="crappify YAML", file_filter="YAML (*.yaml *.yml)"
        )
        self.crappify_path.setToolTip("A config written by 'decrappify crappify --fit'")
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(1, 16)
        self.scale_spin.setValue(4)
        self.scale_spin.setToolTip("Super-resolution factor")
        self.encoder_combo = QComboBox()
        self.encoder_combo.addItems([e.value for e in EncoderName])
        self.encoder_combo.setToolTip("Generator encoder: larger ones learn more and run slower")
        self.budget_radio = QRadioButton("Time budget")
        self.budget_radio.setChecked(True)
        self.budget_edit = QLineEdit("20m")
        self.budget_edit.setToolTip(
            "Wall-clock budget split over the phases: 20m, 1h30m, 90s or seconds"
        )
        self.steps_radio = QRadioButton("Steps")
        self.generator_steps = QSpinBox()
        self.generator_steps.setRange(1, 10_000_000)
        self.generator_steps.setValue(1000)
        self.generator_steps.setToolTip("Generator pretraining steps")
        self.gan_steps = QSpinBox()
        self.gan_steps.setRange(0, 10_000_000)
        self.gan_steps.setValue(1000)
        self.gan_steps.setToolTip("GAN steps at most (0: generator pretraining only)")
        self._length_group = QButtonGroup(self)
        self._length_group.addButton(self.budget_radio)
        self._length_group.addButton(self.steps_radio)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto: the GPU when there is one")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_spin.setToolTip("Seed of everything random (same seed, same run on the CPU)")
        self.preview_spin = QSpinBox()
        self.preview_spin.setRange(0, 1_000_000)
        self.preview_spin.setValue(50)
        self.preview_spin.setSpecialValueText("checkpoints")
        self.preview_spin.setSuffix(" steps")
        self.preview_spin.setToolTip(
            "Update the preview layer (LR | prediction | HR of a validation crop) every N steps"
        )
        self.run_path = PathEdit("folder", placeholder="new folder for the run")
        self.run_path.setToolTip(
            "Run folder: train.yaml, log.csv, curves.png, checkpoints and the model"
        )
        self.resume_check = QCheckBox("Resume the run in this folder")
        self.resume_check.setToolTip(
            "Continue from the last checkpoint with the run's own settings (give the same "
            "training images again)"
        )
        self.config_path = PathEdit("open", placeholder="optional", file_filter="YAML (*.yaml)")
        self.config_path.setToolTip("A train.yaml to start from; the fields above override it")
        self.overrides_edit = QLineEdit()
        self.overrides_edit.setPlaceholderText("key=value; … e.g. data.patch_size=96")
        self.overrides_edit.setToolTip(
            "Any setting of train.yaml as dotted key=value pairs separated by ';' "
            "(see docs/training.md); applied last"
        )
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train in the background; the viewer stays usable")
        self.save_button = QPushButton("Save model…")
        self.save_button.setToolTip(
            "Copy the run's model to a .safetensors file or a folder of your choice"
        )
        self.save_button.setEnabled(False)
        self.phase_label = QLabel("")
        self.panel = TaskPanel("Train")
        self.panel.cancel_button.setText("Stop")
        self.panel.cancel_button.setToolTip(
            "Stop at the next step; the model saved so far and the last checkpoint stay "
            "(Resume continues the run)"
        )
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.figure, self.loss_axes, self.metric_axes, self.ssim_axes, self.canvas = _make_figure(
            self
        )

        length = QGridLayout()
        length.setContentsMargins(0, 0, 0, 0)
        length.addWidget(self.budget_radio, 0, 0)
        length.addWidget(self.budget_edit, 0, 1, 1, 3)
        length.addWidget(self.steps_radio, 1, 0)
        length.addWidget(QLabel("G"), 1, 1)
        length.addWidget(self.generator_steps, 1, 2)
        length.addWidget(QLabel("GAN"), 1, 3)
        length.addWidget(self.gan_steps, 1, 4)
        form = self._form = QFormLayout()
        form.addRow("HR layers", self.layer_list)
        form.addRow("HR files", self.files_path)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Crappify file", self.crappify_path)
        row = QHBoxLayout()
        row.addWidget(self.scale_spin)
        row.addWidget(QLabel("Encoder"))
        row.addWidget(self.encoder_combo, 1)
        form.addRow("Scale", row)
        form.addRow("Length", length)
        row = QHBoxLayout()
        row.addWidget(self.device_combo, 1)
        row.addWidget(QLabel("Seed"))
        row.addWidget(self.seed_spin, 1)
        form.addRow("Device", row)
        form.addRow("Preview every", self.preview_spin)
        form.addRow("Run folder", self.run_path)
        form.addRow("", self.resume_check)
        form.addRow("Config file", self.config_path)
        form.addRow("Overrides", self.overrides_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.panel)
        layout.addWidget(self.result_label)
        layout.addWidget(self.canvas, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._flush)
        self.preset_combo.currentIndexChanged.connect(lambda *_: self._update_form())
        self.crappify_path.path_changed.connect(self._scale_from_crappify_file)
        self.budget_radio.toggled.connect(lambda *_: self._update_form())
        self.resume_check.toggled.connect(lambda *_: self._update_form())
        self.start_button.clicked.connect(lambda *_: self.start())
        self.save_button.clicked.connect(lambda *_: self._save_dialog())
        self.panel.running_changed.connect(self._set_busy)
        self._update_form()
        self.redraw()

    # -- configuration

    def training_images(self) -> list[Any]:
        """The HR training images: records of the checked layers, then the path field.

        Returns
        -------
        list
            :class:`~decrappify.io.Image` records (no pixels copied) and the path text
            (expanded by the API: a file, a folder or a glob).

        Raises
        ------
        InputError
            For a checked layer that cannot be used (RGB, 4D ...).
        """
        images: list[Any] = [layer_to_image(layer) for layer in self.layer_list.checked_layers()]
        if self.files_path.text():
            images.append(self.files_path.text())
        return images

    def set_overrides(self, overrides: dict[str, Any]) -> None:
        """Fill the overrides field from a dict (``{"data.patch_size": 96}``).

        Parameters
        ----------
        overrides : dict
            Dotted key to value.
        """
        import yaml

        parts = []
        for key, value in overrides.items():
            text = yaml.safe_dump(value, default_flow_style=True).strip()
            parts.append(f"{key}={text.removesuffix('...').strip()}")
        self.overrides_edit.setText("; ".join(parts))
        self.overrides_edit.setCursorPosition(0)

    def current_config(self) -> Any:
        """The training configuration the form describes (validated).

        Returns
        -------
        TrainConfig
            The config file (if any) with the form's settings and the overrides applied.

        Raises
        ------
        InputError
            For an invalid budget, a missing crappify file, an unknown override or an
            invalid value (the message names the setting).
        """
        overrides: dict[str, Any] = {"preview_every": int(self.preview_spin.value())}
        budget: str | None = None
        if self.budget_radio.isChecked():
            budget = self.budget_edit.text().strip()
            if not budget:
                raise InputError("time budget: expected a duration such as '20m' (got nothing)")
        else:
            overrides["pretrain_generator.steps"] = int(self.generator_steps.value())
            overrides["gan.max_steps"] = int(self.gan_steps.value())
        overrides.update(parse_overrides(self.overrides_edit.text()))
        preset, crappify_file = self.preset_combo.currentText(), None
        if preset == FROM_FILE:
            crappify_file = self.crappify_path.text()
            if not crappify_file:
                raise InputError("crappify file: choose a crappify YAML file")
            preset = None
        return api.train_config(
            self.config_path.text() or None,
            preset=preset,
            crappify_file=crappify_file,
            scale=int(self.scale_spin.value()),
            encoder=self.encoder_combo.currentText(),
            time_budget=budget,
            device=self.device_combo.currentText(),
            seed=int(self.seed_spin.value()),
            overrides=overrides,
        )

    # -- actions

    @report_errors("Train")
    def start(self) -> None:
        """Start (or resume) training in a worker thread."""
        if self.panel.is_running:
            raise InputError("Train: a run is already going; Stop it first")
        folder = self.run_path.text()
        if not folder:
            raise InputError("run folder: choose a new folder for the run")
        run_dir = Path(folder).expanduser()
        images = self.training_images()
        resume = self.resume_check.isChecked()
        if resume:
            saved = run_dir / "train.yaml"
            if not saved.is_file():
                raise InputError(f"{saved}: no run to resume here; untick Resume to start one")
            config = api.train_config(saved)
            events = partial(
                api.iter_train,
                images or None,
                run_dir,
                resume=True,
                device=self.device_combo.currentText(),
            )
        else:
            if not images:
                raise InputError(
                    "training images: tick at least one image layer or give a folder, file or "
                    "glob of HR images"
                )
            config = self.current_config()
            events = partial(api.iter_train, images, run_dir, config=config)
        self._n_phases = 4 if config.gan.max_steps > 0 else 1
        self._run_dir = run_dir
        first = next((im for im in images if isinstance(im, Image)), None)
        self._preview_place = preview_placement(first)
        self._reset()
        self.panel.start(
            events,
            on_event=self._on_event,
            on_result=self._on_result,
            on_cancelled=self._on_cancelled,
            title="Train",
        )

    def stop(self) -> None:
        """Stop the run at its next step.

        The generator is closed: nothing half-written stays (the API removes partial
        outputs), the last checkpoint stays for Resume, and the run folder's ``model``
        is whatever the API had saved so far: nothing before generator pretraining
        ends, the pretrained generator afterwards (the GAN phase's best generator is
        saved to ``model`` only when the run finishes).
        """
        self.panel.cancel()

    @report_errors("Save model")
    def save_model(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Copy the run's model to ``path`` in the background (a file or a folder).

        Parameters
        ----------
        path : str or Path
            ``name.safetensors`` for one file, anything else for a model folder.
        overwrite : bool
            Replace an existing model there.

        Raises
        ------
        InputError
            When there is no model yet or a run is going.
        """
        if self.model_path is None:
            raise InputError("Save model: no model yet; train (or stop after pretraining) first")
        if self.panel.is_running:
            raise InputError("Save model: wait for the run to end")
        source, target = self.model_path, Path(path).expanduser()
        self.panel.start(
            lambda: iter_export_model(source, target, overwrite=overwrite),
            on_result=self._on_saved,
            title="Save model",
        )

    # -- events (main thread)

    def _on_event(self, event: Progress) -> None:
        if base_phase(event.phase) not in PHASE_TITLES:
            return  # "done": a resumed run that had finished
        self._last_event = event
        self.curves.add(event)
        self.phase_label.setText(phase_text(event.phase, self._n_phases))
        if event.preview is not None:
            self._pending_preview = np.asarray(event.preview)
        self._dirty = True
        if not self._timer.isActive():
            interval = max(REDRAW_MS, REDRAW_COST_FACTOR * self._draw_ms)
            wait = interval - (time.perf_counter() - self._last_draw) * 1000
            self._timer.start(max(0, int(wait)))

    def _on_result(self, result: Any) -> None:
        self.result = result
        self.model_path = Path(result.model_path)
        remember_model(self.model_path)
        recent_models_notifier().changed.emit()
        metrics, baseline = result.metrics, result.baseline
        text = f"Model: {self.model_path}"
        if "psnr" in metrics:
            text += f"<br>validation PSNR {metrics['psnr']:.2f} dB"
            if "psnr" in baseline:
                text += f" (bicubic {baseline['psnr']:.2f})"
        if "ssim" in metrics:
            text += f", SSIM {metrics['ssim']:.3f}"
            if "ssim" in baseline:
                text += f" (bicubic {baseline['ssim']:.3f})"
        best = result.best
        if best.get("phase"):
            text += f"<br>best generator: {best['phase']} step {best.get('step')}"
        if result.already_finished:
            text += "<br>(this run had already finished; nothing was trained)"
        self.result_label.setText(text)
        self.phase_label.setText("Finished")
        self._update_buttons()

    def _on_cancelled(self) -> None:
        event = self._last_event
        where = f"at {event.phase} step {event.step}" if event is not None else "before training"
        kept = run_model(self._run_dir) if self._run_dir is not None else None
        if kept is None:
            text = (
                f"Stopped {where}: no model yet (one is saved when generator pretraining "
                "ends). Tick Resume and Start to continue from the last checkpoint."
            )
        else:
            self.model_path = kept
            remember_model(kept)
            recent_models_notifier().changed.emit()
            text = (
                f"Stopped {where}. Kept {kept}: the generator saved after pretraining "
                "(GAN progress is in the last checkpoint). Tick Resume and Start to continue."
            )
        self.result_label.setText(text)
        self.phase_label.setText("Stopped")
        self._update_buttons()

    def _on_saved(self, path: Path) -> None:
        remember_model(path)
        recent_models_notifier().changed.emit()
        self.result_label.setText(f"Saved the model to {path}")

    # -- plot and preview

    def redraw(self) -> None:
        """Redraw the loss and validation plot from :attr:`curves`."""
        start = time.perf_counter()
        self._dirty = False
        colors = theme_colors(self.viewer)
        curves = self.curves
        ax, mx, sx = self.loss_axes, self.metric_axes, self.ssim_axes
        for axes in (ax, mx, sx):
            axes.clear()
        _style_axes(ax, colors)
        _style_axes(mx, colors)
        _style_axes(sx, colors)
        sx.patch.set_visible(False)  # the twin axis lies over the PSNR axis
        sx.yaxis.set_label_position("right")
        sx.yaxis.tick_right()
        if not curves.losses and not curves.metrics:
            ax.text(
                0.5,
                0.5,
                "Start training to see the curves",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=colors["text"],
            )
        styles = {"content": "C0", "adversarial": "C2", "critic": "C3"}
        for name, (xs, ys) in curves.losses.items():
            ax.plot(xs, ys, lw=1, color=styles.get(name), label=name)
        if curves.losses:
            ax.legend(
                loc="upper right",
                fontsize="x-small",
                frameon=False,
                ncols=3,
                labelcolor=colors["text"],
            )
        ax.set_ylabel("loss", fontsize="small")
        for key, axes, color, label in (
            ("psnr", mx, "C0", "PSNR (dB)"),
            ("ssim", sx, "C1", "SSIM"),
        ):
            if key in curves.metrics:
                xs, ys = curves.metrics[key]
                axes.plot(xs, ys, marker="o", ms=3, lw=1, color=color, label=f"model {key}")
            if key in curves.baseline:
                axes.axhline(curves.baseline[key], color=color, lw=1, ls="--")
            axes.set_ylabel(label, fontsize="small", color=color)
        for x, mark in curves.phases:
            for axes in (ax, mx):
                axes.axvline(x, color=colors["text"], lw=0.6, ls=":", alpha=0.7)
            ax.annotate(
                mark,
                (x, 0.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, 2),
                textcoords="offset points",
                va="bottom",
                fontsize="x-small",
                color=colors["text"],
            )
        mx.set_xlabel("step (dashed: bicubic)", fontsize="small")
        if curves.phases:
            right = max(1.0, curves.x_end)
            ax.set_xlim(0, right)
            mx.set_xlim(0, right)
        self.figure.tight_layout()
        self.canvas.draw_idle()
        self._last_draw = time.perf_counter()
        self._draw_ms = (self._last_draw - start) * 1000

    def show_preview(self) -> None:
        """Put the latest preview (LR | prediction | HR) in the preview layer."""
        preview, self._pending_preview = self._pending_preview, None
        if preview is None:
            return
        record = Image(preview, axes="YX", source=PREVIEW_LAYER, **self._preview_place)
        kwargs = image_layer_kwargs(
            record,
            name=PREVIEW_LAYER,
            contrast_limits=(0.0, 1.0),
            colormap="gray",
            metadata={"description": "LR (nearest) | prediction | HR of a validation crop"},
        )
        set_or_add_image(self.viewer, preview, kwargs)

    def _flush(self) -> None:
        if self._dirty:
            self.redraw()
        self.show_preview()

    # -- helpers

    def _reset(self) -> None:
        self.curves = TrainCurves()
        self.result = None
        self.model_path = None
        self._last_event = None
        self._pending_preview = None
        self.result_label.setText("")
        self.phase_label.setText("Starting…")
        self.redraw()

    def _scale_from_crappify_file(self, path: str) -> None:
        """A crappify file sets the factor (a fitted same-grid config: 1); unreadable: no-op."""
        from decrappify.config.crappify import CrappifyConfig
        from decrappify.errors import DecrappifyError

        try:
            self.scale_spin.setValue(CrappifyConfig.from_yaml(path).scale)
        except (DecrappifyError, OSError):
            pass  # the error is reported when the run starts

    def _update_form(self) -> None:
        from_file = self.preset_combo.currentText() == FROM_FILE
        self.crappify_path.setVisible(from_file)
        label = self._form.labelForField(self.crappify_path)
        if label is not None:
            label.setVisible(from_file)
        budget = self.budget_radio.isChecked()
        fresh = not self.resume_check.isChecked()  # a resumed run keeps its own settings
        for control in (
            self.preset_combo,
            self.crappify_path,
            self.scale_spin,
            self.encoder_combo,
            self.budget_radio,
            self.steps_radio,
            self.seed_spin,
            self.config_path,
            self.overrides_edit,
        ):
            control.setEnabled(fresh)
        self.budget_edit.setEnabled(fresh and budget)
        self.generator_steps.setEnabled(fresh and not budget)
        self.gan_steps.setEnabled(fresh and not budget)

    def _update_buttons(self) -> None:
        busy = self.panel.is_running
        self.start_button.setEnabled(not busy)
        self.save_button.setEnabled(not busy and self.model_path is not None)

    def _set_busy(self, busy: bool) -> None:
        self._update_buttons()
        if not busy:
            self._timer.stop()
            self._flush()
            self.redraw()
            release_device_memory()

    def _save_dialog(self) -> None:
        start = str(self._run_dir / "model.safetensors") if self._run_dir else "model.safetensors"
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save the model",
            start,
            "Single file (*.safetensors);;Model folder (*)",
        )
        if path:  # the dialog has asked before replacing a file
            self.save_model(path, overwrite=Path(path).exists())


def _make_figure(parent: QWidget) -> tuple[Any, Any, Any, Any, Any]:
    """The loss (top) and validation (bottom, SSIM on a twin axis) plot, as a Qt widget."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.0, 3.4), dpi=90)
    loss_axes = figure.add_subplot(2, 1, 1)
    metric_axes = figure.add_subplot(2, 1, 2, sharex=loss_axes)
    ssim_axes = metric_axes.twinx()
    canvas = FigureCanvasQTAgg(figure)
    canvas.setParent(parent)
    canvas.setMinimumHeight(240)
    return figure, loss_axes, metric_axes, ssim_axes, canvas
