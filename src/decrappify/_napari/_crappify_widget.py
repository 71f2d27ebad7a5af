"""The Crappify dock widget: degrade an image layer into a realistic LR layer that overlays it.

A thin shell over :func:`decrappify.crappify.crappify_image`: the widget turns the
selected layer into an :class:`~decrappify.io.Image` (:func:`layer_to_image`), builds a
:class:`~decrappify.config.crappify.CrappifyConfig` from a preset or a YAML file plus the
edited fields, and runs the jobs of :mod:`decrappify._napari.jobs` in a
:class:`~decrappify._napari._runner.TaskPanel`.
"""

from __future__ import annotations

import re
import typing
from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from decrappify._napari._controls import LayerPicker, PathEdit, scroll_body
from decrappify._napari._layers import (
    META_KEY,
    display_kwargs,
    image_layer_kwargs,
    layer_to_image,
    set_or_add_image,
)
from decrappify._napari._runner import TaskPanel, notify_error, report_errors
from decrappify._napari._viewer_geometry import current_plane, visible_data_box
from decrappify._napari.jobs.crappify import Preview, iter_crappify_layer, iter_crappify_preview
from decrappify.config.crappify import PRESETS, CrappifyConfig, get_preset
from decrappify.config.predict import MAX_IN_MEMORY
from decrappify.errors import InputError
from decrappify.io import Image, atomic_write_text

#: Entry of the preset list that reads a YAML config file instead.
FROM_FILE = "YAML file…"
#: Largest seed the seed box accepts.
MAX_SEED = 2**31 - 1


# ----------------------------------------------------------------------------- values


def format_value(value: Any) -> str:
    """Text of a parameter value in the form: ``"0.05"`` or ``"1, 2"`` for a range.

    Parameters
    ----------
    value : float, int or (min, max)
        The value.

    Returns
    -------
    str
        Compact text that :func:`parse_value` reads back exactly.
    """
    if isinstance(value, tuple | list):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def parse_value(text: str, key: str) -> float | int | list[float | int]:
    """Read a number or a ``min, max`` range typed in the form.

    Parameters
    ----------
    text : str
        ``"0.05"``, ``"1, 2"``, ``"[1, 2]"`` or ``"1 2"``.
    key : str
        The parameter (``"poisson.photons"``), for messages.

    Returns
    -------
    number or [min, max]
        Integers stay integers.

    Raises
    ------
    InputError
        For empty text, text that is not a number, or more than two numbers.
    """
    stripped = text.strip().strip("[]()").strip()
    tokens = [t for t in re.split(r"[,\s;]+", stripped) if t]
    if not tokens or len(tokens) > 2:
        raise InputError(f"{key}: expected a number or a range 'min, max', got {text!r}")
    values: list[float | int] = []
    for token in tokens:
        try:
            values.append(int(token) if re.fullmatch(r"[+-]?\d+", token) else float(token))
        except ValueError:
            raise InputError(
                f"{key}: expected a number or a range 'min, max', got {text!r}"
            ) from None
    return values[0] if len(values) == 1 else values


def parameter_docs(cls: type) -> dict[str, str]:
    """Descriptions of a step's parameters, from the numpydoc section of its docstring.

    Parameters
    ----------
    cls : type
        A step model of :mod:`decrappify.config.crappify`.

    Returns
    -------
    dict of str to str
        Parameter name to one-paragraph description.
    """
    doc = cls.__doc__ or ""
    if "Parameters" not in doc:
        return {}
    section = doc.split("Parameters", 1)[1].split("\n\n\n", 1)[0]
    out: dict[str, str] = {}
    names: list[str] = []
    for line in section.splitlines():
        if re.match(r"^\s{4}\S.* : ", line) or re.match(r"^\s{4}[a-z_, ]+ : ", line):
            names = [n.strip() for n in line.split(" : ", 1)[0].split(",")]
            for name in names:
                out[name] = ""
        elif names and line.strip() and not set(line.strip()) <= {"-"}:
            for name in names:
                out[name] = (out[name] + " " + line.strip().replace("``", "")).strip()
    return out


def editable_parameters(config: CrappifyConfig) -> list[tuple[str, Any, Any, str]]:
    """The fields shown in the form: numeric parameters with a value and choice fields.

    Parameters
    ----------
    config : CrappifyConfig
        The base configuration.

    Returns
    -------
    list of (key, value, choices, description)
        ``key`` is ``"<kind>.<parameter>"`` (the first step of each kind; an override
        applies to every step of that kind), ``choices`` the allowed values of a choice
        field (None for numbers).
    """
    seen: set[str] = set()
    out = []
    for step in config.steps:
        docs = parameter_docs(type(step))
        numeric = set(step.numeric_parameters())
        for name, field in type(step).model_fields.items():
            key = f"{step.kind}.{name}"
            if name == "kind" or key in seen:
                continue
            value = getattr(step, name)
            if name in numeric:
                if value is None:
                    continue
                choices = None
            elif typing.get_origin(field.annotation) is typing.Literal:
                choices = typing.get_args(field.annotation)
            else:
                continue
            seen.add(key)
            out.append((key, value, choices, docs.get(name, "")))
    return out


# ----------------------------------------------------------------------------- widget


class CrappifyWidget(QWidget):
    """Dock widget that crappifies an image layer (2D or 3D) into a new LR layer.

    The result's ``scale`` is the input's times the factor in Y and X and its
    ``translate`` puts each LR pixel centre over the centre of the HR block it came
    from, so it overlays the input exactly. Results up to :attr:`memory_limit` bytes
    are computed into memory block by block; larger ones (or all, when an output
    folder is set) are written to OME-Zarr and opened lazily.

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
        self._base: CrappifyConfig | None = None
        self._fields: dict[str, QLineEdit | QComboBox] = {}

        self.layer_picker = LayerPicker(napari_viewer)
        self.layer_picker.setToolTip("The high-resolution image layer to degrade (2D or 3D)")
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([*PRESETS, FROM_FILE])
        self.preset_combo.setToolTip("Degradation recipe; see docs/crappify.md")
        self.config_path = PathEdit(
            "open", placeholder="crappify YAML", file_filter="YAML (*.yaml *.yml)"
        )
        self.config_path.setToolTip(
            "A config written by 'decrappify crappify --fit' or 'Save config…'"
        )
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(1, 32)
        self.scale_spin.setToolTip("Downsampling factor between the input and the result")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_spin.setToolTip("Same seed, same parameters and noise")
        self.params_box = QGroupBox("Degradation parameters")
        self.params_box.setToolTip("A number, or 'min, max' for a range drawn from the seed")
        self.params_form = QFormLayout(self.params_box)
        self.params_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.output_path = PathEdit("folder", placeholder="in memory")
        self.output_path.setToolTip(
            "Folder for the result as OME-Zarr, opened lazily; empty: in memory when it "
            "fits in 2 GiB, else a temporary OME-Zarr removed when napari exits"
        )
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip("Crappify only the region on screen (current plane)")
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Crappify the whole layer into a new layer")
        self.save_button = QPushButton("Save config…")
        self.save_button.setToolTip("Write the current settings as YAML for the CLI (--config)")
        self.panel = TaskPanel("Crappify")

        form = self._form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Image", self.layer_picker)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Config file", self.config_path)
        form.addRow("Scale", self.scale_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Output folder", self.output_path)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.params_box)
        layout.addLayout(buttons)
        layout.addWidget(self.panel)
        layout.addStretch(1)

        self.preset_combo.currentIndexChanged.connect(lambda *_: self._load_base())
        self.config_path.path_changed.connect(lambda *_: self._load_base())
        self.scale_spin.valueChanged.connect(lambda *_: self._update_summary())
        self.preview_button.clicked.connect(lambda *_: self.preview())
        self.run_button.clicked.connect(lambda *_: self.run())
        self.save_button.clicked.connect(lambda *_: self._save_dialog())
        self.panel.running_changed.connect(self._set_busy)
        self._load_base()

    # -- configuration

    @property
    def seed(self) -> int:
        """The seed in the seed box."""
        return int(self.seed_spin.value())

    def set_preset(self, name: str) -> None:
        """Select a preset (or :data:`FROM_FILE`) and rebuild the parameter form.

        Parameters
        ----------
        name : str
            A name of :data:`decrappify.config.crappify.PRESETS` or :data:`FROM_FILE`.
        """
        index = self.preset_combo.findText(name)
        if index < 0:
            raise InputError(f"preset: expected one of {', '.join(PRESETS)}, got {name!r}")
        if index == self.preset_combo.currentIndex():
            self._load_base()  # same entry: reload it (drops the form's edits)
        else:
            self.preset_combo.setCurrentIndex(index)  # reloads through the signal

    def parameters(self) -> dict[str, str]:
        """The form's fields as shown: ``{"poisson.photons": "50, 500", ...}``.

        Returns
        -------
        dict of str to str
            Field key to its text (the current choice for menus).
        """
        return {
            key: field.currentText() if isinstance(field, QComboBox) else field.text()
            for key, field in self._fields.items()
        }

    def set_parameter(self, key: str, value: Any) -> None:
        """Set a field of the form (``"poisson.photons"``) as if typed.

        Parameters
        ----------
        key : str
            ``"<kind>.<parameter>"``.
        value : object
            A number, a ``(min, max)`` pair, a choice, or text.

        Raises
        ------
        InputError
            For a key the form does not show.
        """
        if key not in self._fields:
            raise InputError(f"{key}: not a parameter of this config ({', '.join(self._fields)})")
        field = self._fields[key]
        if isinstance(field, QComboBox):
            field.setCurrentText(str(value))
        else:
            field.setText(value if isinstance(value, str) else format_value(value))
        self._update_summary()

    def base_config(self) -> CrappifyConfig:
        """The preset or the YAML file's config, before the form's edits.

        Returns
        -------
        CrappifyConfig
            The configuration.

        Raises
        ------
        InputError
            For a missing or invalid YAML file.
        """
        choice = self.preset_combo.currentText()
        if choice == FROM_FILE:
            path = self.config_path.text()
            if not path:
                raise InputError("config file: choose a crappify YAML file")
            return CrappifyConfig.from_yaml(path)
        return get_preset(choice)

    def current_config(self) -> CrappifyConfig:
        """The configuration the buttons use: the base config with the form's values.

        Returns
        -------
        CrappifyConfig
            A validated configuration.

        Raises
        ------
        InputError
            For text that is not a number or range, or values the config refuses (the
            message names the parameter).
        """
        base = self._base if self._base is not None else self.base_config()
        overrides: dict[str, Any] = {}
        for key, field in self._fields.items():
            if isinstance(field, QComboBox):
                overrides[key] = field.currentText()
            else:
                overrides[key] = parse_value(field.text(), key)
        return base.with_overrides(scale=int(self.scale_spin.value()), **overrides)

    def _load_base(self) -> None:
        is_file = self.preset_combo.currentText() == FROM_FILE
        self.config_path.setVisible(is_file)
        label = self._form.labelForField(self.config_path)
        if label is not None:
            label.setVisible(is_file)
        self._base = None
        try:
            if is_file and not self.config_path.text():
                self._build_form(None)
                self.summary.setText("Choose a crappify YAML file.")
                return
            self._base = self.base_config()
        except InputError as err:
            notify_error(err, "Crappify")
            self._build_form(None)
            self.summary.setText(str(err))
            return
        self.scale_spin.blockSignals(True)
        self.scale_spin.setValue(self._base.scale)
        self.scale_spin.blockSignals(False)
        self._build_form(self._base)
        self._update_summary()

    def _build_form(self, config: CrappifyConfig | None) -> None:
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self._fields = {}
        if config is None:
            return
        for key, value, choices, doc in editable_parameters(config):
            if choices is not None:
                field: QLineEdit | QComboBox = QComboBox()
                field.addItems([str(c) for c in choices])
                field.setCurrentText(str(value))
                field.currentIndexChanged.connect(lambda *_: self._update_summary())
            else:
                field = QLineEdit(format_value(value))
                field.editingFinished.connect(self._update_summary)
            field.setToolTip(doc)
            kind, _, name = key.partition(".")
            label = QLabel(f"{kind} · {name}")
            label.setToolTip(doc)
            self.params_form.addRow(label, field)
            self._fields[key] = field

    def _update_summary(self) -> None:
        try:
            text = self.current_config().summary()
        except InputError as err:
            text = f"⚠ {err}"
        self.summary.setText(text)

    # -- actions

    def _input(self) -> tuple[Any, Image]:
        layer = self.layer_picker.layer()
        if layer is None:
            raise InputError("Crappify: choose an image layer (open or add one first)")
        return layer, layer_to_image(layer)

    @report_errors("Preview")
    def preview(self) -> None:
        """Crappify the region of the current plane on screen into the ``<layer> preview`` layer.

        The preview equals the same region of a full run with the same settings: the
        crappifier's noise lives on a fixed grid in image coordinates.
        """
        layer, image = self._input()
        config = self.current_config()
        seed = self.seed
        box = visible_data_box(self.viewer, layer)
        plane = current_plane(self.viewer, layer) if image.ndim == 3 else 0
        display = display_kwargs(layer)
        name = layer.name
        self.panel.start(
            lambda: iter_crappify_preview(image, config, seed, box=box, plane=plane),
            on_result=partial(self._show_preview, name, display),
            title="Preview",
        )

    @report_errors("Crappify")
    def run(self) -> None:
        """Crappify the whole selected layer into a new ``<layer> crappified`` layer."""
        layer, image = self._input()
        config = self.current_config()
        seed = self.seed
        out_dir = self.output_path.text() or None
        display = display_kwargs(layer)
        name = layer.name
        limit = self.memory_limit
        self.panel.start(
            lambda: iter_crappify_layer(
                image, config, seed, out_dir=out_dir, memory_limit=limit, name=name
            ),
            on_result=partial(self._add_result, name, display, config, seed),
            title="Crappify",
        )

    def cancel(self) -> None:
        """Cancel the running preview or run (partial outputs are removed)."""
        self.panel.cancel()

    @report_errors("Save config")
    def save_config(self, path: str | Path) -> Path:
        """Write the current settings as a crappify YAML file (for ``--config``).

        Parameters
        ----------
        path : str or Path
            The file (``.yaml`` added when it has no suffix).

        Returns
        -------
        Path
            The written file.
        """
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".yaml")
        config = self.current_config()
        header = f"# decrappify crappify config (seed used in napari: {self.seed})\n"
        atomic_write_text(path, header + config.to_yaml())
        return path

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save crappify config", "crappify.yaml", "YAML (*.yaml *.yml)"
        )
        if path:
            self.save_config(path)

    # -- results (main thread)

    def _show_preview(self, name: str, display: dict[str, Any], preview: Preview) -> None:
        kwargs = image_layer_kwargs(preview.image, name=f"{name} preview", **display)
        set_or_add_image(self.viewer, preview.data, kwargs)

    def _add_result(
        self, name: str, display: dict[str, Any], config: CrappifyConfig, seed: int, lr: Image
    ) -> None:
        info = {"config": config.model_dump(mode="json"), "seed": seed, "input": name}
        kwargs = image_layer_kwargs(
            lr,
            name=f"{name} crappified",
            metadata={META_KEY: {"crappify": info}},
            **display,
        )
        self.viewer.add_image(lr.data, **kwargs)

    def _set_busy(self, busy: bool) -> None:
        for button in (self.preview_button, self.run_button):
            button.setEnabled(not busy)
