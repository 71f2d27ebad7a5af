"""Small Qt controls shared by the dock widgets: layer pickers, path fields, model picker."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, QSize, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from decrappify import api
from decrappify._napari._layers import find_layer
from decrappify._napari.jobs.models import recent_models

#: Entry of an optional picker meaning "no layer".
NO_LAYER = "(none)"
#: Smallest height of a dock's scrolling body (px): a dock never asks the window for more.
MIN_BODY_HEIGHT = 100


class _VerticalScroll(QScrollArea):
    """A scroll area that scrolls vertically only and is as wide as its content needs."""

    def _extra_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        inner = self.widget().minimumSizeHint()
        return QSize(inner.width() + self._extra_width(), min(inner.height(), MIN_BODY_HEIGHT))

    def sizeHint(self) -> QSize:
        inner = self.widget().sizeHint()
        return QSize(inner.width() + self._extra_width(), inner.height() + 2 * self.frameWidth())


def scroll_body(owner: QWidget) -> QWidget:
    """Give a dock widget a body that scrolls vertically instead of growing the window.

    A dock's minimum height is otherwise the sum of its rows, and a few docks stacked push
    the napari window past a laptop screen; in a scroll area the dock can be as short as
    the window allows, and as wide as its widest row (nothing is cut off on the right).

    Parameters
    ----------
    owner : QWidget
        The dock widget (it must not have a layout yet).

    Returns
    -------
    QWidget
        The body: give it the layout the widget's rows go in.
    """
    area = _VerticalScroll(owner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    body = QWidget()
    area.setWidget(body)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return body


def is_usable_image(layer: Any) -> bool:
    """Whether a layer is a 2D or 3D image layer (the widgets explain what else they refuse).

    RGB layers are listed too, so that choosing one gives a message on how to split
    the channels rather than a silently missing layer.

    Parameters
    ----------
    layer : napari.layers.Layer
        The layer.

    Returns
    -------
    bool
        True for image layers with 2 or 3 (non-channel) dimensions.
    """
    from napari.layers import Image as ImageLayer

    return isinstance(layer, ImageLayer) and layer.ndim in (2, 3)


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers that pass a filter, kept in sync with the viewer.

    The list follows layers being added, removed, moved and renamed; the selection is
    kept by name. Layers are looked up by name when asked for, so a picker never holds
    a removed layer.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    accept : callable, optional
        Filter on layers; default :func:`is_usable_image`.
    optional : bool
        Offer :data:`NO_LAYER` first (and select it by default).
    parent : QWidget or None
        Parent widget.
    """

    #: Emitted with the new layer name (or None) when the selection changes.
    layer_changed = Signal(object)

    def __init__(
        self,
        viewer: Any,
        *,
        accept: Callable[[Any], bool] | None = None,
        optional: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept or is_usable_image
        self.optional = optional
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.moved.connect(self.refresh)
        events.reordered.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_renamed)
            layer.events.data.connect(self.refresh)
        self._names: list[str] = []
        self.currentIndexChanged.connect(lambda *_: self.layer_changed.emit(self.layer_name()))
        self.refresh()

    def names(self) -> list[str]:
        """Names of the layers offered, top layer first (without :data:`NO_LAYER`).

        Returns
        -------
        list of str
            The names.
        """
        return [n for n in self._names if n != NO_LAYER]

    def layer_name(self) -> str | None:
        """Name of the selected layer, or None.

        Returns
        -------
        str or None
            The name.
        """
        text = self.currentText()
        return None if not text or text == NO_LAYER else text

    def layer(self) -> Any:
        """The selected layer, or None.

        Returns
        -------
        napari.layers.Layer or None
            The layer.
        """
        return find_layer(self.viewer, self.layer_name())

    def set_layer(self, layer: Any) -> None:
        """Select a layer (or its name); None selects :data:`NO_LAYER` when optional.

        Parameters
        ----------
        layer : napari.layers.Layer or str or None
            What to select.
        """
        name = layer if isinstance(layer, str) or layer is None else layer.name
        self.refresh()
        if name is None:
            if self.optional:
                self.setCurrentIndex(0)
            return
        index = self.findText(name)
        if index >= 0:
            self.setCurrentIndex(index)

    def refresh(self, *_: Any) -> None:
        """Rebuild the list from the viewer, keeping the selection by name."""
        current = self.currentText()
        names = [layer.name for layer in self.viewer.layers if self.accept(layer)]
        items = ([NO_LAYER] if self.optional else []) + names[::-1]  # top layer first
        if items == self._names:
            return
        self.blockSignals(True)
        try:
            self.clear()
            self.addItems(items)
            self._names = items
            index = self.findText(current) if current else -1
            if index < 0 and not self.optional and names:
                active = self.viewer.layers.selection.active
                index = self.findText(active.name) if active is not None else -1
                index = max(index, 0)
            self.setCurrentIndex(max(index, 0) if items else -1)
        finally:
            self.blockSignals(False)
        if self.currentText() != current:
            self.layer_changed.emit(self.layer_name())

    def showPopup(self) -> None:
        self.refresh()
        super().showPopup()

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        layer.events.name.connect(self._on_renamed)
        layer.events.data.connect(self.refresh)
        self.refresh()

    def _on_renamed(self, event: Any = None) -> None:
        # the selected layer was renamed when its old name vanished: follow it
        old = self.currentText()
        self.refresh()
        layer = getattr(event, "source", None)
        if old and old != NO_LAYER and old not in self._names and layer is not None:
            self.set_layer(layer.name)


class PathEdit(QWidget):
    """A line edit with a Browse button for a file or a folder.

    Parameters
    ----------
    mode : {"folder", "open", "save"}
        What the Browse dialog picks.
    placeholder : str
        Grey text shown when empty.
    file_filter : str
        Name filter of the file dialogs (``"YAML (*.yaml *.yml)"``).
    parent : QWidget or None
        Parent widget.
    """

    #: Emitted with the text when the user finishes editing or picks a path.
    path_changed = Signal(str)

    def __init__(
        self,
        mode: str = "folder",
        *,
        placeholder: str = "",
        file_filter: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.mode = mode
        self.file_filter = file_filter
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        self.edit.editingFinished.connect(lambda: self.path_changed.emit(self.text()))
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(lambda *_: self.browse())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def text(self) -> str:
        """The path text, stripped.

        Returns
        -------
        str
            The text.
        """
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        """Set the path and emit :attr:`path_changed`.

        Parameters
        ----------
        text : str
            The path.
        """
        self.edit.setText(text)
        self.path_changed.emit(self.text())

    def browse(self) -> None:
        """Open the file or folder dialog and take the chosen path."""
        start = self.text()
        if self.mode == "folder":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif self.mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Save as", start, self.file_filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open", start, self.file_filter)
        if path:
            self.set_text(path)


class LayerChecklist(QListWidget):
    """A list of the viewer's image layers with a check box each, kept in sync.

    The list follows layers being added, removed, moved and renamed; check marks are
    kept by name. Layers are looked up by name when asked for.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    accept : callable, optional
        Filter on layers; default :func:`is_usable_image`.
    rows : int
        Rows shown without scrolling.
    parent : QWidget or None
        Parent widget.
    """

    #: Emitted when a check mark changes (or a checked layer goes away).
    checked_changed = Signal()

    def __init__(
        self,
        viewer: Any,
        *,
        accept: Callable[[Any], bool] | None = None,
        rows: int = 4,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept or is_usable_image
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self._rows = rows
        self._names: list[str] = []
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.moved.connect(self.refresh)
        events.reordered.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_renamed)
        self.itemChanged.connect(lambda *_: self.checked_changed.emit())
        self.setStyleSheet(_check_mark_style(viewer))
        self.refresh()

    def names(self) -> list[str]:
        """Names of the layers listed, top layer first."""
        return list(self._names)

    def checked_names(self) -> list[str]:
        """Names of the checked layers, in list order."""
        return [
            self.item(i).text()  # type: ignore[union-attr]
            for i in range(self.count())
            if self.item(i).checkState() == Qt.CheckState.Checked  # type: ignore[union-attr]
        ]

    def checked_layers(self) -> list[Any]:
        """The checked layers.

        Returns
        -------
        list of napari.layers.Layer
            The layers, in list order.
        """
        found = (find_layer(self.viewer, name) for name in self.checked_names())
        return [layer for layer in found if layer is not None]

    def set_checked(self, layers: Iterable[Any], checked: bool = True) -> None:
        """Check (or uncheck) layers given as layers or names.

        Parameters
        ----------
        layers : iterable of napari.layers.Layer or str
            What to change.
        checked : bool
            The new state.
        """
        names = {layer if isinstance(layer, str) else layer.name for layer in layers}
        self.refresh()
        state = Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
        for i in range(self.count()):
            item = self.item(i)
            if item is not None and item.text() in names:
                item.setCheckState(state)

    def refresh(self, *_: Any) -> None:
        """Rebuild the list from the viewer, keeping check marks by name."""
        names = [layer.name for layer in self.viewer.layers if self.accept(layer)][::-1]
        if names == self._names:
            return
        checked = set(self.checked_names())
        self.blockSignals(True)
        try:
            self.clear()
            for name in names:
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(
                    Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked
                )
                self.addItem(item)
            self._names = names
        finally:
            self.blockSignals(False)
        self._fit_height()
        if checked - set(names):
            self.checked_changed.emit()

    def _fit_height(self) -> None:
        row = self.sizeHintForRow(0) if self.count() else self.fontMetrics().height() + 4
        self.setFixedHeight(row * self._rows + 2 * self.frameWidth() + 2)

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self._on_renamed)
        self.refresh()

    def _on_renamed(self, event: Any = None) -> None:
        layer = getattr(event, "source", None)
        old = set(self.checked_names())
        self.refresh()
        if layer is not None and old - set(self._names):
            self.set_checked([layer.name])  # the renamed layer keeps its check mark


def _check_mark_style(viewer: Any) -> str:
    """Check boxes of list items drawn as napari draws its own (its theme's tick and colours).

    napari's style sheet gives check boxes a themed tick but leaves list items with a
    dark square on a dark background, hard to see ticked or not.
    """
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        box, ticked, tick = theme.primary.as_hex(), theme.current.as_hex(), theme.id
    except Exception:  # an unknown theme keeps Qt's own boxes
        return ""
    return (
        f"QListWidget::indicator {{ width: 16px; height: 16px; border-radius: 2px; "
        f"background-color: {box}; }} "
        f'QListWidget::indicator:checked {{ image: url("theme_{tick}:/check.svg"); '
        f"background-color: {ticked}; }}"
    )


class _RecentModelsNotifier(QObject):
    """Tells every model picker that the recent models list changed."""

    changed = Signal()


_NOTIFIER: list[_RecentModelsNotifier] = []


def recent_models_notifier() -> _RecentModelsNotifier:
    """The process-wide notifier of changes to the recent models list.

    Returns
    -------
    QObject
        Emit its ``changed`` signal after :func:`decrappify._napari.jobs.models.remember_model`.
    """
    if not _NOTIFIER:
        _NOTIFIER.append(_RecentModelsNotifier())
    return _NOTIFIER[0]


class ModelPicker(QWidget):
    """An editable combo box of recent models with a Browse button.

    The list holds the models trained or used recently (most recent first,
    :func:`decrappify._napari.jobs.models.recent_models`), then the starting points
    shipped with decrappify by name (``fluo-denoise``: usable without training data), and
    is refreshed when the recent models change. Browse accepts a ``.safetensors`` model
    file or a model folder's ``model.json`` (the folder is taken).

    Parameters
    ----------
    parent : QWidget or None
        Parent widget.
    """

    #: Emitted with the path text when another model is chosen.
    model_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.combo.setMinimumContentsLength(12)
        line = self.combo.lineEdit()
        if line is not None:
            line.setPlaceholderText("model path or name")
            line.editingFinished.connect(self._emit)
        self.combo.activated.connect(lambda *_: self._emit())
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(lambda *_: self.browse())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.button)
        self._last = ""
        self._n_recent = 0
        recent_models_notifier().changed.connect(self.refresh)
        self.refresh()
        if self._n_recent:  # the most recent model; a starting point is never preselected
            self.combo.setCurrentIndex(0)
            self._last = self.path()

    def path(self) -> str:
        """The chosen model path (text as shown, stripped).

        Returns
        -------
        str
            The path, or ``""``.
        """
        return self.combo.currentText().strip()

    def recent(self) -> list[str]:
        """The recent models listed.

        Returns
        -------
        list of str
            Paths, most recent first.
        """
        return [self.combo.itemText(i) for i in range(self._n_recent)]

    def set_path(self, path: str | Path) -> None:
        """Choose a model and emit :attr:`model_changed`.

        Parameters
        ----------
        path : str or Path
            Model folder or file.
        """
        self.combo.setCurrentText(str(path))
        self._emit()

    def refresh(self) -> None:
        """Reload the recent models, keeping the current text."""
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        try:
            self.combo.clear()
            recent = [str(p) for p in recent_models()]
            self.combo.addItems(recent)
            self._n_recent = len(recent)
            self.combo.addItems([sp.name for sp in api.starting_points()])
            self.combo.setCurrentText(current)
        finally:
            self.combo.blockSignals(False)

    def browse(self) -> None:
        """Open a file dialog for a model file or a model folder's ``model.json``."""
        start = self.path()
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Choose a decrappify model",
            start,
            "decrappify models (*.safetensors model.json);;All files (*)",
        )
        if path:
            chosen = Path(path)
            self.set_path(chosen.parent if chosen.name == "model.json" else chosen)

    def _emit(self) -> None:
        text = self.path()
        if text != self._last:
            self._last = text
            self.model_changed.emit(text)
