"""Form controls made from the fields of a configuration model (one source of truth).

The Super-resolve and Train widgets do not re-declare their settings: each control is
made from a field of :class:`~decrappify.config.predict.PredictConfig` or
:class:`~decrappify.config.train.TrainConfig` (nested fields by dotted name, such as
``generator.scale``), which gives its kind, choices, range, default and tooltip. The
widget adds only how it shows the field (label, step, the text of a ``None`` or
``"auto"`` value) as a :class:`FieldView`. :meth:`ConfigFields.values` reads the controls
back as the config's values, so what the form describes is what the CLI's flags and
YAML files describe.

Field kinds: ``bool`` (check box), an :class:`enum.Enum` (combo box of its values),
``str`` with choices (editable combo box), ``int`` (spin box; ``None`` or ``"auto"`` as
the value below the range, shown as a word), ``float`` (double spin box).
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

#: Largest value of an integer field without an upper bound (Qt spin boxes are 32-bit).
MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class FieldView:
    """How a form shows one field of a config.

    Parameters
    ----------
    label : str
        Row label.
    special : str or None
        Text of the value ``None`` (or ``"auto"``) of an optional field: shown at the
        bottom of a spin box, or as the first entry of a combo box.
    minimum, maximum : int or float or None
        Range of a spin box (default: the field's own bounds).
    step : int or float
        Step of a spin box.
    suffix : str
        Suffix of a spin box (``" steps"``).
    choices : tuple of str
        Entries of a text field (an editable combo box).
    tooltip : str or None
        Tooltip (default: the field's description).
    """

    label: str
    special: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float = 1
    suffix: str = ""
    choices: tuple[str, ...] = ()
    tooltip: str | None = None


class ConfigFields:
    """Controls for some fields of a config model, with its defaults, choices and help.

    Parameters
    ----------
    model : type of pydantic.BaseModel
        The config class (its defaults come from ``model()``).
    views : dict of str to FieldView
        Dotted field name to how it is shown, in form order.
    """

    def __init__(self, model: type[Any], views: dict[str, FieldView]) -> None:
        self.model = model
        self.views = views
        defaults = model()
        self.controls: dict[str, QWidget] = {}
        self._kinds: dict[str, _Kind] = {}
        for name, view in views.items():
            info, default = _field(model, defaults, name)
            kind = self._kinds[name] = _kind(info.annotation)
            control = _make(kind, view, info)
            tooltip = view.tooltip if view.tooltip is not None else info.description
            if tooltip:
                control.setToolTip(tooltip)
            self.controls[name] = control
            self.set_value(name, default)

    def widget(self, name: str) -> Any:
        """The control of a field.

        Parameters
        ----------
        name : str
            Dotted field name.

        Returns
        -------
        QWidget
            The control.
        """
        return self.controls[name]

    def add_rows(self, form: QFormLayout, names: list[str] | None = None) -> None:
        """Add ``label: control`` rows to a form layout.

        Parameters
        ----------
        form : QFormLayout
            The layout.
        names : list of str or None
            The fields (default: all, in order).
        """
        for name in names if names is not None else list(self.views):
            form.addRow(self.views[name].label, self.controls[name])

    def value(self, name: str) -> Any:
        """The value of one field as the config spells it.

        Parameters
        ----------
        name : str
            Dotted field name.

        Returns
        -------
        object
            ``None`` or ``"auto"`` for the special entry, else the control's value
            (enum values as their strings).
        """
        kind = self._kinds[name]
        control: Any = self.controls[name]
        if kind.kind == "bool":
            return bool(control.isChecked())
        if kind.kind in ("int", "float"):
            value = control.value()
            if kind.special and value == control.minimum():
                return kind.special_value  # None or "auto"
            return int(value) if kind.kind == "int" else float(value)
        if kind.kind == "enum" and kind.special and control.currentIndex() == 0:
            return None
        return control.currentText().strip()

    def values(self) -> dict[str, Any]:
        """The values of all fields.

        Returns
        -------
        dict
            Dotted field name to value.
        """
        return {name: self.value(name) for name in self.views}

    def set_value(self, name: str, value: Any) -> None:
        """Show a value in a field's control.

        Parameters
        ----------
        name : str
            Dotted field name.
        value : object
            A value of the field (``None`` / ``"auto"`` selects the special entry).
        """
        kind = self._kinds[name]
        control: Any = self.controls[name]
        if isinstance(value, enum.Enum):
            value = value.value
        if kind.kind == "bool":
            control.setChecked(bool(value))
        elif kind.kind in ("int", "float"):
            special = kind.special and value == kind.special_value
            control.setValue(control.minimum() if special else value)
        elif kind.kind == "enum" and value is None:
            control.setCurrentIndex(0)
        else:
            index = control.findText(str(value))
            if index >= 0:
                control.setCurrentIndex(index)
            else:
                control.setCurrentText(str(value))

    def set_enabled(self, enabled: bool, names: list[str] | None = None) -> None:
        """Enable or disable controls.

        Parameters
        ----------
        enabled : bool
            The new state.
        names : list of str or None
            The fields (default: all).
        """
        for name in names if names is not None else list(self.views):
            self.controls[name].setEnabled(enabled)


def _field(model: type[Any], defaults: Any, name: str) -> tuple[Any, Any]:
    """The pydantic field info of a dotted name, and its value in the default config."""
    owner, value = model, defaults
    parts = name.split(".")
    for part in parts[:-1]:
        value = getattr(value, part)
        owner = type(value)
    return owner.model_fields[parts[-1]], getattr(value, parts[-1])


@dataclass(frozen=True)
class _Kind:
    """What control a field needs: ``kind``, enum ``members``, and its special value."""

    kind: str
    members: tuple[Any, ...] = ()
    special: bool = False
    special_value: Any = None


def _kind(annotation: Any) -> _Kind:
    """Classify an annotation (``int | None``, ``int | Literal["auto"]``, an enum ...)."""
    special, special_value = False, None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                special = True
            elif typing.get_origin(arg) is Literal:
                special, special_value = True, typing.get_args(arg)[0]
            else:
                rest.append(arg)
        (annotation,) = rest
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _Kind("enum", tuple(annotation), special, special_value)
    if annotation is bool:
        return _Kind("bool")
    if annotation in (int, float):
        return _Kind(annotation.__name__, (), special, special_value)
    return _Kind("text")


def _bounds(info: Any) -> tuple[Any, Any]:
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def _make(kind: _Kind, view: FieldView, info: Any) -> QWidget:
    if kind.kind == "bool":
        return QCheckBox()  # its form row carries the label
    if kind.kind == "enum":
        combo = QComboBox()
        first = [view.special or "none"] if kind.special else []
        combo.addItems(first + [m.value for m in kind.members])
        return combo
    if kind.kind == "text":
        combo = QComboBox()
        combo.setEditable(True)
        combo.addItems(list(view.choices))
        return combo
    low, high = _bounds(info)
    low = view.minimum if view.minimum is not None else (0 if low is None else low)
    high = view.maximum if view.maximum is not None else (MAX_INT if high is None else high)
    spin: Any = QSpinBox() if kind.kind == "int" else QDoubleSpinBox()
    # the special value (None, "auto") sits one step below the field's range
    spin.setRange(low - view.step if kind.special else low, high)
    spin.setSingleStep(view.step)
    if view.special:
        spin.setSpecialValueText(view.special)
    if view.suffix:
        spin.setSuffix(view.suffix)
    return spin
