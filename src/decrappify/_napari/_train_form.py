"""The Train widget's settings form: training images, crappifier, length, run folder.

The settings that are fields of :class:`~decrappify.config.train.TrainConfig` (scale,
encoder, device, seed, step counts, preview interval) are made from the config
(:mod:`decrappify._napari._form`), so their choices, ranges and defaults are the
config's. :meth:`TrainForm.current_config` builds the validated config with
:func:`decrappify.api.train_config`, as ``decrappify train`` does from its flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLineEdit,
    QRadioButton,
    QWidget,
)

from decrappify import api
from decrappify._napari._controls import LayerChecklist, PathEdit, is_usable_image
from decrappify._napari._crappify_widget import FROM_FILE, MAX_SEED
from decrappify._napari._form import ConfigFields, FieldView
from decrappify._napari._layers import derived_role, layer_to_image
from decrappify.config.base import parse_overrides
from decrappify.config.crappify import PRESETS
from decrappify.config.train import TrainConfig
from decrappify.errors import InputError

#: The settings of :class:`TrainConfig` the form shows, and how.
FIELDS = {
    "generator.scale": FieldView("Scale", tooltip="Super-resolution factor"),
    "generator.arch": FieldView(
        "Network",
        tooltip=(
            "Generator family: naf (a U-Net on the input grid, no BatchNorm) or resnet "
            "(an ImageNet-style ResNet encoder, which can start from your ImageNet weights)"
        ),
    ),
    "generator.encoder": FieldView(
        "Encoder",
        tooltip="ResNet encoder of the resnet network: larger ones learn more and run slower",
    ),
    "pretrain_generator.steps": FieldView("G", tooltip="Generator pretraining steps"),
    "gan.max_steps": FieldView("GAN", tooltip="GAN steps at most (0: generator pretraining only)"),
    "device": FieldView(
        "Device", choices=("auto", "cpu", "cuda"), tooltip="auto: the GPU when there is one"
    ),
    "seed": FieldView(
        "Seed",
        maximum=MAX_SEED,
        tooltip="Seed of everything random (same seed, same run on the CPU)",
    ),
    "preview_every": FieldView(
        "Preview every",
        special="checkpoints",
        maximum=1_000_000,
        suffix=" steps",
        tooltip=(
            "Update the preview layer (LR | prediction | HR of a validation crop) every N steps"
        ),
    ),
}
#: Settings a resumed run takes from its own train.yaml (their controls are disabled).
FRESH_ONLY = ["generator.scale", "generator.arch", "generator.encoder", "seed"]


class TrainForm(QWidget):
    """The settings of a training run, as a form.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer (its image layers are the training images offered).
    exclude : str
        A layer name never offered (the training preview).
    """

    def __init__(self, viewer: Any, *, exclude: str = "") -> None:
        super().__init__()
        self.layer_list = LayerChecklist(
            viewer,
            accept=lambda layer: (
                is_usable_image(layer) and layer.name != exclude and derived_role(layer) is None
            ),
        )
        self.layer_list.setToolTip(
            "High-resolution training images (tick one or several layers); layers the "
            "widgets made (crappified, super-resolved, maps) are not offered"
        )
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
        self.fields = ConfigFields(TrainConfig, FIELDS)
        self.scale_spin = self.fields.widget("generator.scale")
        self.arch_combo = self.fields.widget("generator.arch")
        self.encoder_combo = self.fields.widget("generator.encoder")
        self.generator_steps = self.fields.widget("pretrain_generator.steps")
        self.gan_steps = self.fields.widget("gan.max_steps")
        self.device_combo = self.fields.widget("device")
        self.seed_spin = self.fields.widget("seed")
        self.preview_spin = self.fields.widget("preview_every")
        self.budget_radio = QRadioButton("Time budget")
        self.budget_radio.setChecked(True)
        self.budget_edit = QLineEdit("20m")
        self.budget_edit.setToolTip(
            "Wall-clock budget split over the phases: 20m, 1h30m, 90s or seconds"
        )
        self.steps_radio = QRadioButton("Steps")
        self._length_group = QButtonGroup(self)
        self._length_group.addButton(self.budget_radio)
        self._length_group.addButton(self.steps_radio)
        self.run_path = PathEdit("folder", placeholder="new folder for the run")
        self.run_path.setToolTip(
            "Run folder: train.yaml, log.csv, curves.png, checkpoints and the model"
        )
        self.resume_check = QCheckBox("Resume the run in this folder")
        self.resume_check.setToolTip(
            "Continue from the last checkpoint with the run's own settings (give the same "
            "training images again)"
        )
        self.start_combo = start_from_combo()
        self.config_path = PathEdit("open", placeholder="optional", file_filter="YAML (*.yaml)")
        self.config_path.setToolTip("A train.yaml to start from; the fields above override it")
        self.overrides_edit = QLineEdit()
        self.overrides_edit.setPlaceholderText("key=value; … e.g. data.patch_size=96")
        self.overrides_edit.setToolTip(
            "Any setting of train.yaml as dotted key=value pairs separated by ';' "
            "(see docs/training.md); applied last"
        )
        self._layout()
        self.preset_combo.currentIndexChanged.connect(lambda *_: self._update())
        self.crappify_path.path_changed.connect(self._scale_from_crappify_file)
        self.budget_radio.toggled.connect(lambda *_: self._update())
        self.resume_check.toggled.connect(lambda *_: self._update())
        self.arch_combo.currentIndexChanged.connect(lambda *_: self._update())
        self._update()

    def _layout(self) -> None:
        # one setting per row: a dock narrow enough to leave the canvas room on a laptop
        length = QGridLayout()
        length.setContentsMargins(0, 0, 0, 0)
        length.addWidget(self.budget_radio, 0, 0)
        length.addWidget(self.budget_edit, 0, 1)
        length.addWidget(self.steps_radio, 1, 0, 1, 2)
        form = self._form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("HR layers", self.layer_list)
        form.addRow("HR files", self.files_path)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Crappify file", self.crappify_path)
        form.addRow("Scale", self.scale_spin)
        form.addRow("Network", self.arch_combo)
        form.addRow("Encoder", self.encoder_combo)
        form.addRow("Length", length)
        form.addRow("Generator steps", self.generator_steps)
        form.addRow("GAN steps", self.gan_steps)
        form.addRow("Start from", self.start_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Preview every", self.preview_spin)
        form.addRow("Run folder", self.run_path)
        form.addRow("", self.resume_check)
        form.addRow("Config file", self.config_path)
        form.addRow("Overrides", self.overrides_edit)

    # -- what the form describes

    @property
    def device(self) -> str:
        """The device field (a resumed run takes it too)."""
        return str(self.fields.value("device"))

    @property
    def start_from(self) -> str:
        """Where the generator starts: ``auto``, ``none``, a starting point or a model path."""
        text = self.start_combo.currentText().strip()
        if self.start_combo.findText(text) >= 0:  # a listed choice: its name, then what it is
            return text.split(" ", 1)[0]
        return text or "auto"  # a model path typed in

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

    def current_config(self) -> TrainConfig:
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
        values = self.fields.values()
        overrides: dict[str, Any] = {
            "preview_every": values["preview_every"],
            "generator.arch": values["generator.arch"],
        }
        budget: str | None = None
        if self.budget_radio.isChecked():
            budget = self.budget_edit.text().strip()
            if not budget:
                raise InputError("time budget: expected a duration such as '20m' (got nothing)")
        else:
            for key in ("pretrain_generator.steps", "gan.max_steps"):
                overrides[key] = values[key]
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
            scale=values["generator.scale"],
            encoder=values["generator.encoder"],
            time_budget=budget,
            device=values["device"],
            seed=values["seed"],
            start_from=self.start_from,
            overrides=overrides,
        )

    def run_folder(self) -> Path:
        """The run folder (``~`` expanded).

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        InputError
            When the field is empty.
        """
        folder = self.run_path.text()
        if not folder:
            raise InputError("run folder: choose a new folder for the run")
        return Path(folder).expanduser()

    # -- state

    def _scale_from_crappify_file(self, path: str) -> None:
        """A crappify file sets the factor (a fitted same-grid config: 1); unreadable: no-op."""
        from decrappify.config.crappify import CrappifyConfig
        from decrappify.errors import DecrappifyError

        try:
            self.scale_spin.setValue(CrappifyConfig.from_yaml(path).scale)
        except (DecrappifyError, OSError):
            pass  # the error is reported when the run starts

    def _update(self) -> None:
        from_file = self.preset_combo.currentText() == FROM_FILE
        self.crappify_path.setVisible(from_file)
        label = self._form.labelForField(self.crappify_path)
        if label is not None:
            label.setVisible(from_file)
        budget = self.budget_radio.isChecked()
        fresh = not self.resume_check.isChecked()  # a resumed run keeps its own settings
        for control in (
            self.preset_combo,
            self.start_combo,
            self.crappify_path,
            self.budget_radio,
            self.steps_radio,
            self.config_path,
            self.overrides_edit,
        ):
            control.setEnabled(fresh)
        self.fields.set_enabled(fresh, FRESH_ONLY)
        self.budget_edit.setEnabled(fresh and budget)
        self.fields.set_enabled(fresh and not budget, ["pretrain_generator.steps", "gan.max_steps"])
        resnet = str(self.fields.value("generator.arch")) == "resnet"
        self.fields.set_enabled(fresh and resnet, ["generator.encoder"])


def start_from_combo() -> QComboBox:
    """An editable choice of the generator's start: auto, none, a shipped starting point or a path.

    Returns
    -------
    QComboBox
        Items ``auto (...)``, ``none (...)`` and one per shipped starting point (its name,
        then what it is for); a model path can be typed in.
    """
    combo = QComboBox()
    combo.setEditable(True)
    # long item texts must not widen the dock (the canvas keeps its room on a laptop)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(12)
    combo.addItems(
        [
            "auto (the shipped starting point that fits, else random)",
            "none (random weights)",
            *(f"{sp.name} ({sp.summary})" for sp in api.starting_points()),
        ]
    )
    combo.setToolTip(
        "The generator's starting weights: a starting point shipped with decrappify "
        "(fine-tuned, a few minutes are enough), random weights, or a model folder or "
        ".safetensors file you type in"
    )
    return combo
