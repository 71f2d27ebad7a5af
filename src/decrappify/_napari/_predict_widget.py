"""The Super-resolve dock widget: run a trained model on an image layer, tile by tile.

A thin shell over :func:`decrappify.api.iter_predict_image` and
:func:`decrappify.api.predict_region`: the widget turns the selected layer into an
:class:`~decrappify.io.Image` (:func:`layer_to_image`, lazy layers stay lazy), reads the
model's metadata for its summary (:func:`decrappify.api.model_info`, no weights loaded)
and runs the jobs of :mod:`decrappify._napari._jobs` in a
:class:`~decrappify._napari._runner.TaskPanel`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from decrappify._napari._alignment import current_plane, visible_data_box
from decrappify._napari._controls import LayerPicker, ModelPicker, PathEdit
from decrappify._napari._jobs import (
    MEMORY_LIMIT,
    iter_predict_layer,
    iter_predict_preview,
    model_summary,
    release_device_memory,
    remember_model,
)
from decrappify._napari._layers import (
    META_KEY,
    crappified_scale,
    display_kwargs,
    image_layer_kwargs,
    layer_to_image,
    set_or_add_image,
)
from decrappify._napari._runner import TaskPanel, report_errors
from decrappify.errors import DecrappifyError, InputError
from decrappify.io import Image

#: Devices offered (``auto``: CUDA when present, else the CPU).
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Output types offered; the first keeps the input's.
OUT_DTYPES = ("same as input", "uint8", "uint16", "float32")
#: Value of the overlap box meaning "auto" (cover the model's receptive field).
AUTO_OVERLAP = -1
#: Value of the scale box meaning "accept the model's factor".
ANY_SCALE = 0


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
        Largest result kept in memory, in bytes (default 1 GiB).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.memory_limit = MEMORY_LIMIT

        self.model_picker = ModelPicker()
        self.model_picker.setToolTip(
            "A model folder (a training run's 'model') or a .safetensors model file; the "
            "list holds the models trained or used recently"
        )
        self.model_info_label = QLabel("")
        self.model_info_label.setWordWrap(True)
        self.layer_picker = LayerPicker(napari_viewer)
        self.layer_picker.setToolTip("The low-resolution image layer (2D or 3D) to super-resolve")
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(ANY_SCALE, 16)
        self.scale_spin.setSpecialValueText("model's")
        self.scale_spin.setToolTip(
            "Refuse a model with another factor; set from a layer made by Crappify"
        )
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(8, 4096)
        self.tile_spin.setSingleStep(8)
        self.tile_spin.setValue(128)
        self.tile_spin.setToolTip(
            "Tile side in input pixels; tile × scale must be a multiple of 32 (larger tiles "
            "are faster on a GPU and need more memory)"
        )
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(AUTO_OVERLAP, 2048)
        self.overlap_spin.setSpecialValueText("auto")
        self.overlap_spin.setValue(AUTO_OVERLAP)
        self.overlap_spin.setToolTip(
            "Overlap of neighbouring tiles in input pixels (at most tile / 2); auto covers "
            "the model's receptive field, so tiles join without seams"
        )
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 1024)
        self.batch_spin.setValue(8)
        self.batch_spin.setToolTip(
            "Tiles per forward pass (halved automatically when out of memory)"
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto: the GPU when there is one, else the CPU")
        self.dtype_combo = QComboBox()
        self.dtype_combo.addItems(OUT_DTYPES)
        self.dtype_combo.setToolTip("Pixel type of the result (integer types are clipped)")
        self.output_path = PathEdit(
            "folder", placeholder="in memory (large results: temporary OME-Zarr)"
        )
        self.output_path.setToolTip(
            "Folder for the result as OME-Zarr, opened lazily; empty: in memory when it "
            "fits in 1 GiB, else a temporary OME-Zarr removed when napari exits"
        )
        self.preview_button = QPushButton("Preview current view")
        self.preview_button.setToolTip(
            "Super-resolve only the region on screen of the current plane (a few seconds)"
        )
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Super-resolve the whole layer into a new layer")
        self.panel = TaskPanel("Super-resolve")

        form = QFormLayout()
        form.addRow("Model", self.model_picker)
        form.addRow("", self.model_info_label)
        form.addRow("Image", self.layer_picker)
        form.addRow("Expected scale", self.scale_spin)
        form.addRow("Tile", self.tile_spin)
        form.addRow("Overlap", self.overlap_spin)
        form.addRow("Batch", self.batch_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Output type", self.dtype_combo)
        form.addRow("Output folder", self.output_path)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.panel)
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
            from decrappify.api import model_info

            try:
                text = model_summary(model_info(path))
            except DecrappifyError as err:
                text = f"⚠ {err}"
        self.model_info_label.setText(text)
        return text

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of the prediction: tile, overlap, batch, device, out_dtype.

        Returns
        -------
        dict
            Settings for :func:`decrappify.api.iter_predict_image`.
        """
        overlap = int(self.overlap_spin.value())
        dtype = self.dtype_combo.currentText()
        return {
            "tile": int(self.tile_spin.value()),
            "overlap": "auto" if overlap == AUTO_OVERLAP else overlap,
            "batch": int(self.batch_spin.value()),
            "device": self.device_combo.currentText(),
            "out_dtype": None if dtype == OUT_DTYPES[0] else dtype,
        }

    @property
    def expected_scale(self) -> int | None:
        """The factor a model must have (None: any)."""
        value = int(self.scale_spin.value())
        return None if value == ANY_SCALE else value

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
        settings, scale = self.settings(), self.expected_scale
        display, name = display_kwargs(layer), layer.name
        self.panel.start(
            lambda: iter_predict_preview(
                model, image, box=box, plane=plane, scale=scale, **settings
            ),
            on_result=partial(self._show_preview, name, display),
            title="Preview",
        )

    @report_errors("Super-resolve")
    def run(self) -> None:
        """Super-resolve the whole selected layer into a new ``<layer> super-resolved`` layer."""
        model, layer, image = self._inputs()
        settings, scale = self.settings(), self.expected_scale
        out_dir = self.output_path.text() or None
        display, name, limit = display_kwargs(layer), layer.name, self.memory_limit
        self.panel.start(
            lambda: iter_predict_layer(
                model,
                image,
                out_dir=out_dir,
                memory_limit=limit,
                name=name,
                scale=scale,
                **settings,
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
        settings: dict[str, Any],
        result: Image,
    ) -> None:
        info = {"model": str(Path(model).resolve()), "input": name, "settings": settings}
        if result.source and result.source != name:
            info["path"] = result.source
        kwargs = image_layer_kwargs(
            result,
            name=f"{name} super-resolved",
            metadata={META_KEY: {"predict": info}},
            **display,
        )
        self.viewer.add_image(result.data, **kwargs)
        remember_model(model)

    def _expect_layer_scale(self) -> None:
        scale = crappified_scale(self.layer_picker.layer())
        self.scale_spin.setValue(scale if scale is not None else ANY_SCALE)

    def _set_busy(self, busy: bool) -> None:
        for button in (self.preview_button, self.run_button):
            button.setEnabled(not busy)
        if not busy:
            release_device_memory()
