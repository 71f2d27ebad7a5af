"""The Train dock widget: NoGAN training on image layers or files, with live curves.

A thin shell over :func:`decrappify.api.iter_train`: the form
(:class:`~decrappify._napari._train_form.TrainForm`) builds a
:class:`~decrappify.config.train.TrainConfig` with :func:`decrappify.api.train_config`
and turns the checked layers into :class:`~decrappify.io.Image` records (lazy layers
stay lazy); the widget drives the training generator in a
:class:`~decrappify._napari._runner.TaskPanel`. Each progress event updates the phase
line, the loss / validation plot (:mod:`decrappify._napari._train_plot`) and the preview
layer (both throttled, so the viewer stays smooth); Stop closes the generator at the
next step (see :meth:`TrainWidget.stop` for what is kept).
"""

from __future__ import annotations

import html
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from decrappify import api
from decrappify._napari._controls import recent_models_notifier, scroll_body
from decrappify._napari._layers import META_KEY, image_layer_kwargs, set_or_add_image
from decrappify._napari._plots import theme_colors
from decrappify._napari._runner import TaskPanel, report_errors
from decrappify._napari._train_form import TrainForm
from decrappify._napari._train_plot import (
    PHASE_TITLES,
    TrainCurves,
    TrainPlot,
    base_phase,
    phase_text,
)
from decrappify._napari.jobs.models import remember_model, run_model
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image

__all__ = [
    "PREVIEW_LAYER",
    "TrainCurves",
    "TrainWidget",
    "phase_text",
    "preview_placement",
]

#: Name of the layer showing LR | prediction | HR of the first validation crop.
PREVIEW_LAYER = "training preview"
#: Shortest time between two redraws of the plot and the preview layer (ms).
REDRAW_MS = 400
#: The plot is redrawn at most this often relative to the time a redraw takes, so that
#: drawing never takes more than a fifth of the main thread, however long the curves.
REDRAW_COST_FACTOR = 5


def preview_placement(
    image: Image | None, center: tuple[float, float], shape: tuple[int, int]
) -> dict[str, Any]:
    """Where the preview layer goes: centred where the user looks, at the images' pixel size.

    The preview's pixels are HR pixels of the validation crop, so it takes the training
    image's Y/X pixel size and units; it is centred on the middle of the view (the
    camera's centre), over whatever is there, so that it is seen as soon as it appears.

    Parameters
    ----------
    image : Image or None
        The first training image (None: pixel units).
    center : (float, float)
        World Y/X of the middle of the view.
    shape : (int, int)
        The preview's shape.

    Returns
    -------
    dict
        ``pixel_size``, ``units`` and ``translate`` of a 2D :class:`~decrappify.io.Image`.
    """
    py, px = image.scale[-2:] if image is not None else (1.0, 1.0)
    known = image is not None and image.pixel_size is not None
    return {
        "pixel_size": (py, px) if known else None,
        "units": tuple(image.units[-2:]) if image is not None and image.units else None,
        "translate": (
            center[0] - (shape[0] - 1) * py / 2,
            center[1] - (shape[1] - 1) * px / 2,
        ),
    }


def self_check_html(check: Any) -> str:
    """The self-check for the result line: the classical methods' scores and the verdict.

    Parameters
    ----------
    check : dict or None
        ``TrainResult.self_check``.

    Returns
    -------
    str
        HTML: ``<br>`` then the lines; a model that loses gets its warning in bold.
    """
    lines, warning = api.self_check_summary(check)
    if not lines:
        return ""
    text = "<br>self-check: " + html.escape(lines[0])
    if warning:
        return text + f"<br><b>⚠ Warning: {html.escape(warning)}</b>"
    return text + "<br>" + html.escape(lines[1])


def classical_lines(check: Any) -> dict[str, dict[str, float]]:
    """The classical methods' validation scores to draw beside the model's (name: psnr, ssim)."""
    if not check:
        return {}
    return {str(k): dict(v) for k, v in (check.get("baselines") or {}).items()}


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
    form : TrainForm
        The settings.
    plot : TrainPlot
        The loss and validation plot.
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
        self._preview_image: Image | None = None

        self.form = TrainForm(napari_viewer, exclude=PREVIEW_LAYER)
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
        self.plot = TrainPlot(self)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.panel)
        layout.addWidget(self.result_label)
        layout.addWidget(self.plot.canvas, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._flush)
        self.start_button.clicked.connect(lambda *_: self.start())
        self.save_button.clicked.connect(lambda *_: self._save_dialog())
        self.panel.running_changed.connect(self._set_busy)
        self.redraw()

    # -- actions

    @report_errors("Train")
    def start(self) -> None:
        """Start (or resume) training in a worker thread."""
        if self.panel.is_running:
            raise InputError("Train: a run is already going; Stop it first")
        form = self.form
        run_dir = form.run_folder()
        images = form.training_images()
        resume = form.resume_check.isChecked()
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
                device=form.device,
            )
        else:
            if not images:
                raise InputError(
                    "training images: tick at least one image layer or give a folder, file or "
                    "glob of HR images"
                )
            config = form.current_config()
            events = partial(api.iter_train, images, run_dir, config=config)
        self._n_phases = 4 if config.gan.max_steps > 0 else 1
        self._run_dir = run_dir
        self._preview_image = next((im for im in images if isinstance(im, Image)), None)
        self._preview_place = {}  # placed in the view when the first preview comes
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
            lambda: api.iter_copy_model(source, target, overwrite=overwrite),
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
                text += f" ({result.baseline_name} {baseline['psnr']:.2f})"
        if "ssim" in metrics:
            text += f", SSIM {metrics['ssim']:.3f}"
            if "ssim" in baseline:
                text += f" ({result.baseline_name} {baseline['ssim']:.3f})"
        best = result.best
        if best.get("phase"):
            text += f"<br>best generator: {best['phase']} step {best.get('step')}"
        if result.already_finished:
            text += "<br>(this run had already finished; nothing was trained)"
        text += self_check_html(result.self_check)
        self.curves.classical = classical_lines(result.self_check)
        self.result_label.setText(text)
        self.redraw()
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
        self.plot.draw(self.curves, theme_colors(self.viewer))
        self._last_draw = time.perf_counter()
        self._draw_ms = (self._last_draw - start) * 1000

    def show_preview(self) -> None:
        """Put the latest preview (LR | prediction | HR) in the preview layer."""
        preview, self._pending_preview = self._pending_preview, None
        if preview is None:
            return
        if not self._preview_place:  # the first preview of a run: where the user looks
            center = tuple(float(c) for c in self.viewer.scene.camera.center[-2:])
            shape = (int(preview.shape[0]), int(preview.shape[1]))
            self._preview_place = preview_placement(self._preview_image, center, shape)
        record = Image(preview, axes="YX", source=PREVIEW_LAYER, **self._preview_place)
        kwargs = image_layer_kwargs(
            record,
            name=PREVIEW_LAYER,
            contrast_limits=(0.0, 1.0),
            colormap="gray",
            metadata={
                META_KEY: {"role": "preview"},
                "description": "LR (nearest) | prediction | HR of a validation crop",
            },
        )
        layer = set_or_add_image(self.viewer, preview, kwargs)
        layer.visible = True

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
            api.release_device_memory()

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
