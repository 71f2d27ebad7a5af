"""The Super-resolve dock widget: run a trained model on an image layer, tile by tile.

A thin shell over :func:`decrappify.api.iter_predict_image` and
:func:`decrappify.api.predict_region`: the widget turns the selected layer into an
:class:`~decrappify.io.Image` (:func:`layer_to_image`, lazy layers stay lazy), reads the
model's metadata for its summary (:func:`decrappify.api.model_info`, no weights loaded)
and runs the jobs of :mod:`decrappify._napari.jobs` in a
:class:`~decrappify._napari._runner.TaskPanel`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from decrappify import api
from decrappify._napari._controls import LayerPicker, ModelPicker, PathEdit, scroll_body
from decrappify._napari._form import ConfigFields, FieldView
from decrappify._napari._layers import (
    META_KEY,
    breakable,
    crappified_scale,
    display_kwargs,
    image_layer_kwargs,
    layer_to_image,
    set_or_add_image,
    trust_layer_kwargs,
)
from decrappify._napari._runner import TaskPanel, report_errors
from decrappify._napari._trust_text import trust_summary_text
from decrappify._napari._viewer_geometry import current_plane, visible_data_box
from decrappify._napari.jobs.models import remember_model
from decrappify._napari.jobs.predict import (
    LayerPrediction,
    iter_predict_layer,
    iter_predict_preview,
    model_summary,
)
from decrappify.config.choices import DEVICE_CHOICES
from decrappify.config.predict import MAX_IN_MEMORY, PredictConfig
from decrappify.errors import DecrappifyError, InputError
from decrappify.io import Image

#: The settings of :class:`PredictConfig` the form shows, and how.
FIELDS = {
    "scale": FieldView(
        "Expected scale",
        special="model's",
        minimum=1,
        maximum=16,
        tooltip="Refuse a model with another factor; set from a layer made by Crappify",
    ),
    "tile": FieldView("Tile", minimum=8, maximum=4096, step=8),
    "overlap": FieldView("Overlap", special="auto", minimum=0, maximum=2048),
    "batch": FieldView("Batch", minimum=1, maximum=1024),
    "device": FieldView("Device", choices=DEVICE_CHOICES),
    "dtype": FieldView("Output type", special="same as input"),
    "tta": FieldView(
        "Uncertainty map",
        tooltip="Test-time augmentation, 8× the time: predict each tile in its 8 "
        "rotations/mirrors; their mean is the result, their spread a layer of where the "
        "model guesses",
    ),
    "consistency": FieldView(
        "Consistency map",
        tooltip="A layer of where the input does not explain the result: the result "
        "degraded by the model's crappifier against the input, in noise standard "
        "deviations (models that record their crappifier)",
    ),
}


class PredictWidget(QWidget):
    """Dock widget that super-resolves an image layer (2D or 3D) with a trained model.

    The result's ``scale`` is the input's divided by the model's factor in Y and X and
    its ``translate`` puts it exactly over the input. Results up to
    :attr:`memory_limit` bytes are computed into memory block by block; larger ones (or
    all, when an output folder is set) are written to OME-Zarr and opened lazily.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer.

    Attributes
    ----------
    memory_limit : int
        Largest result kept in memory, in bytes (default 2 GiB, the API's limit).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.memory_limit = MAX_IN_MEMORY

        self.model_picker = ModelPicker()
        self.model_picker.setToolTip(
            "A model folder (a training run's 'model') or a .safetensors model file; the "
            "list holds the models trained or used recently"
        )
        self.model_path_label = QLabel("")  # the whole path, which the field scrolls
        self.model_path_label.setWordWrap(True)
        self.model_path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_info_label = QLabel("")
        self.model_info_label.setWordWrap(True)
        self.layer_picker = LayerPicker(napari_viewer)
        self.layer_picker.setToolTip("The low-resolution image layer (2D or 3D) to super-resolve")
        self.fields = ConfigFields(PredictConfig, FIELDS)
        self.scale_spin = self.fields.widget("scale")
        self.tile_spin = self.fields.widget("tile")
        self.overlap_spin = self.fields.widget("overlap")
        self.batch_spin = self.fields.widget("batch")
        self.device_combo = self.fields.widget("device")
        self.dtype_combo = self.fields.widget("dtype")
        self.tta_check = self.fields.widget("tta")
        self.consistency_check = self.fields.widget("consistency")
        self.output_path = PathEdit("folder", placeholder="in memory")
        self.output_path.setToolTip(
            "Folder for the result as OME-Zarr, opened lazily; empty: in memory when it "
            "fits in 2 GiB, else a temporary OME-Zarr removed when napari exits"
        )
        self.preview_button = QPushButton("Preview current view")
        self.preview_button.setToolTip(
            "Super-resolve only the region on screen of the current plane (a few seconds)"
        )
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Super-resolve the whole layer into a new layer")
        self.panel = TaskPanel("Super-resolve")
        self.trust_label = QLabel("")  # what the trust maps found, in words
        self.trust_label.setWordWrap(True)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Model", self.model_picker)
        form.addRow(self.model_path_label)  # the whole width: a path and a few lines
        form.addRow(self.model_info_label)
        form.addRow("Image", self.layer_picker)
        self.fields.add_rows(form)
        form.addRow("Output folder", self.output_path)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.panel)
        layout.addWidget(self.trust_label)
        layout.addStretch(1)

        self.model_picker.model_changed.connect(lambda *_: self.update_model_info())
        self.layer_picker.layer_changed.connect(lambda *_: self._expect_layer_scale())
        self.preview_button.clicked.connect(lambda *_: self.preview())
        self.run_button.clicked.connect(lambda *_: self.run())
        self.panel.running_changed.connect(self._set_busy)
        self._expect_layer_scale()
        self.update_model_info()

    # -- settings

    @property
    def model_path(self) -> str:
        """The chosen model (text of the model field)."""
        return self.model_picker.path()

    def set_model(self, path: str | Path) -> None:
        """Choose a model and show its summary.

        Parameters
        ----------
        path : str or Path
            Model folder or ``.safetensors`` file.
        """
        self.model_picker.set_path(str(path))
        self.update_model_info()

    def update_model_info(self) -> str:
        """Show the chosen model's summary (scale, planes, normalisation, metrics).

        Returns
        -------
        str
            The text shown: the summary, or the reason the model cannot be read.
        """
        path = self.model_path
        if not path:
            text = "Choose a model: a training run's 'model' folder or a .safetensors file."
        else:
            try:
                text = model_summary(api.model_info(path))
            except DecrappifyError as err:
                text = f"⚠ {err}"
        self.model_path_label.setText(breakable(path))
        self.model_path_label.setVisible(bool(path))
        self.model_info_label.setText(text)
        return text

    def settings(self) -> PredictConfig:
        """The prediction settings the form describes.

        Returns
        -------
        PredictConfig
            What :func:`decrappify.api.iter_predict_image` runs with (the same object
            ``decrappify predict --config`` reads).

        Raises
        ------
        InputError
            For a value the config refuses (an overlap above half the tile, a misspelt
            device).
        """
        return PredictConfig.build(self.fields.values())

    @property
    def expected_scale(self) -> int | None:
        """The factor a model must have (None: any)."""
        return self.fields.value("scale")

    # -- actions

    def _inputs(self) -> tuple[str, Any, Image]:
        model = self.model_path
        if not model:
            raise InputError("Super-resolve: choose a model (a model folder or .safetensors file)")
        layer = self.layer_picker.layer()
        if layer is None:
            raise InputError("Super-resolve: choose an image layer (open or add one first)")
        return model, layer, layer_to_image(layer)

    @report_errors("Preview")
    def preview(self) -> None:
        """Super-resolve the region on screen of the current plane into a preview layer.

        The ``<layer> super-resolved preview`` layer (replaced at each preview) equals
        the same region of a full run with the same settings, placed over the input.
        """
        model, layer, image = self._inputs()
        box = visible_data_box(self.viewer, layer)
        plane = current_plane(self.viewer, layer) if image.ndim == 3 else 0
        settings = self.settings()
        display, name = display_kwargs(layer), layer.name
        self.panel.start(
            lambda: iter_predict_preview(model, image, settings, box=box, plane=plane),
            on_result=partial(self._show_preview, name, display),
            title="Preview",
        )

    @report_errors("Super-resolve")
    def run(self) -> None:
        """Super-resolve the whole selected layer into a new ``<layer> super-resolved`` layer.

        The trust maps the form asks for are added hidden, as ``<layer> uncertainty`` (over
        the result) and ``<layer> consistency`` (over the input) layers, so that the result
        is the top visible layer; the result's metadata names the maps and holds their
        summaries, which :attr:`trust_label` says in words.
        """
        model, layer, image = self._inputs()
        settings = self.settings()
        self.trust_label.setText("")
        out_dir = self.output_path.text() or None
        display, name, limit = display_kwargs(layer), layer.name, self.memory_limit
        self.panel.start(
            lambda: iter_predict_layer(
                model, image, settings, out_dir=out_dir, memory_limit=limit, name=name
            ),
            on_result=partial(self._add_result, name, display, model, settings),
            title="Super-resolve",
        )

    def cancel(self) -> None:
        """Cancel the running preview or run (nothing is added; partial files are removed)."""
        self.panel.cancel()

    # -- results (main thread)

    def _show_preview(self, name: str, display: dict[str, Any], result: Image) -> None:
        kwargs = image_layer_kwargs(result, name=f"{name} super-resolved preview", **display)
        set_or_add_image(self.viewer, result.data, kwargs)

    def _add_result(
        self,
        name: str,
        display: dict[str, Any],
        model: str,
        settings: PredictConfig,
        result: LayerPrediction,
    ) -> None:
        info: dict[str, Any] = {
            "model": str(api.model_location(model).resolve()),
            "input": name,
            "settings": settings.settings(),
        }
        image = result.image
        if image.source and image.source != name:
            info["path"] = image.source
        if result.trust:
            info["trust"] = result.trust
            info["maps"] = {key: f"{name} {key}" for key in result.maps}
        kwargs = image_layer_kwargs(
            image,
            name=f"{name} super-resolved",
            metadata={META_KEY: {"predict": info}},
            **display,
        )
        shown = self.viewer.add_image(image.data, **kwargs)
        # the maps hidden, so that the result is what the user sees; ticking a map's eye
        # lays it over the result
        for key, trust_map in result.maps.items():
            meta = {META_KEY: {"trust_map": key, "prediction": f"{name} super-resolved"}}
            layer_kwargs = trust_layer_kwargs(
                trust_map, key, name=f"{name} {key}", metadata=meta, visible=False
            )
            set_or_add_image(self.viewer, trust_map.data, layer_kwargs).visible = False
        self.viewer.layers.selection.active = shown
        self.trust_label.setText(trust_summary_text(result.trust))
        remember_model(model)

    def _expect_layer_scale(self) -> None:
        self.fields.set_value("scale", crappified_scale(self.layer_picker.layer()))

    def _set_busy(self, busy: bool) -> None:
        for button in (self.preview_button, self.run_button):
            button.setEnabled(not busy)
        if not busy:
            api.release_device_memory()
