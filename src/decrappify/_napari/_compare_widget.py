"""The Compare dock widget: score a prediction layer against a ground-truth layer.

A thin shell over :func:`decrappify.api.iter_compare`, the comparison ``decrappify
evaluate`` runs on each pair of files: the layers become :class:`~decrappify.io.Image`
records, their scale and translate decide whether they lie on one grid (resampling or
refusing otherwise), and the comparison runs in a worker. The widget shows the metrics
of the current plane and the means over the stack in two tables, a per-plane plot, and
adds the absolute-error and bicubic-baseline layers.

When the prediction has trust maps (the layers the Super-resolve widget added with it, or
the maps ``decrappify predict`` wrote beside the file it was opened from), they are shown
as layers too and the widget says how well each points at the error: the Spearman rank
correlation of the map with the absolute error on the current plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from decrappify import api
from decrappify._napari._controls import LayerPicker, is_usable_image, scroll_body
from decrappify._napari._layers import (
    META_KEY,
    derived_role,
    display_kwargs,
    find_layer,
    image_layer_kwargs,
    layer_to_image,
    set_or_add_image,
    trust_layer_kwargs,
)
from decrappify._napari._metric_table import MetricTable
from decrappify._napari._plots import LEGEND_SIZE, qt_figure, style_axes, theme_colors
from decrappify._napari._runner import TaskPanel, report_errors
from decrappify._napari._trust_text import agreement_text
from decrappify._napari._viewer_geometry import current_plane
from decrappify._napari.jobs.compute import safe_name
from decrappify.api import METRIC_NAMES, METRIC_TITLES, PREDICTION
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image

#: Delay before the table follows a change of the current plane (ms).
DEBOUNCE_MS = 150
#: Metric plotted by default.
DEFAULT_PLOT_METRIC = "psnr_norm"
#: File-dialog filters of Export and what they write.
EXPORT_FILTERS = {
    "JSON (*.json)": (".json", False),
    "CSV, one row per method (*.csv)": (".csv", False),
    "CSV, one row per plane (*.csv)": (".csv", True),
}


class CompareWidget(QWidget):
    """Dock widget comparing a prediction with its ground truth (and the bicubic baseline).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer.

    Attributes
    ----------
    comparison : Comparison or None
        The last completed comparison.
    plane : int
        Plane of the ground truth whose metrics the plane table shows.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.comparison: api.Comparison | None = None
        self.plane = 0
        self._names: tuple[str | None, str | None, str | None] = (None, None, None)
        self._partial: dict[int, dict[str, float]] = {}
        self._n_planes = 0
        self._new_maps: dict[str, Image] = {}

        # what each picker offers: no trust map, error or baseline as a prediction, no
        # derived layer as a ground truth
        self.pred_picker = LayerPicker(napari_viewer, accept=_prediction_like)
        self.pred_picker.setToolTip(
            "The restored image (super-resolved or denoised); trust maps, error and "
            "baseline layers are not offered"
        )
        self.gt_picker = LayerPicker(napari_viewer, accept=_acquisition)
        self.gt_picker.setToolTip(
            "The ground truth, on the same field of view (layers the widgets made are not offered)"
        )
        self.lr_picker = LayerPicker(napari_viewer, accept=_input_like, optional=True)
        self.lr_picker.setToolTip("The low-resolution input, for the bicubic baseline")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Score every plane; the plane on screen comes first")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the metrics as JSON or CSV")
        self.export_button.setEnabled(False)
        self.panel = TaskPanel("Compare")
        self.plane_label = QLabel("")
        self.plane_table = MetricTable()
        self.stack_label = QLabel("")
        self.stack_table = MetricTable()
        self.note_label = QLabel("")  # how the layers were put on one grid, intensities
        self.note_label.setWordWrap(True)
        self.trust_label = QLabel("")
        self.trust_label.setWordWrap(True)
        self.trust_label.setToolTip(
            "How well each trust map of the prediction points at its error: Spearman rank "
            "correlation with the absolute error on the current plane (1: it ranks the "
            "pixels as their error does; 0: it says nothing about it)"
        )
        self.plot_metric = QComboBox()
        for metric in METRIC_NAMES:
            self.plot_metric.addItem(METRIC_TITLES[metric], metric)
        self.plot_metric.setCurrentIndex(METRIC_NAMES.index(DEFAULT_PLOT_METRIC))
        self.figure, self.canvas = qt_figure(self, (4.0, 2.6), 200)
        self.axes = self.figure.add_subplot(1, 1, 1)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Prediction", self.pred_picker)
        form.addRow("Ground truth", self.gt_picker)
        form.addRow("LR input", self.lr_picker)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.export_button)
        plot_row = QFormLayout()
        plot_row.addRow("Plot", self.plot_metric)
        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.panel)
        layout.addWidget(self.note_label)
        layout.addWidget(self.plane_label)
        layout.addWidget(self.plane_table)
        layout.addWidget(self.stack_label)
        layout.addWidget(self.stack_table)
        layout.addWidget(self.trust_label)
        layout.addLayout(plot_row)
        layout.addWidget(self.canvas, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_plane)
        napari_viewer.dims.events.current_step.connect(self._on_step)
        for picker in (self.pred_picker, self.gt_picker, self.lr_picker):
            picker.layer_changed.connect(self._on_layers_changed)
            picker.activated.connect(self._user_chose)  # a choice the widget then keeps
        self._chosen_by_user = False
        napari_viewer.layers.events.inserted.connect(self._on_layer_added)
        self.compare_button.clicked.connect(lambda *_: self.compare())
        self.export_button.clicked.connect(lambda *_: self._export_dialog())
        self.plot_metric.currentIndexChanged.connect(lambda *_: self.redraw())
        self.panel.running_changed.connect(lambda busy: self.compare_button.setEnabled(not busy))
        self.choose_defaults()
        self._clear_table()
        self.redraw()

    # -- actions

    @report_errors("Compare")
    def compare(self) -> None:
        """Score the prediction against the ground truth in a worker, current plane first."""
        pred_layer, gt_layer = self.pred_picker.layer(), self.gt_picker.layer()
        if pred_layer is None or gt_layer is None:
            raise InputError("Compare: choose a prediction and a ground-truth layer")
        if pred_layer.name == gt_layer.name:
            raise InputError(
                f"Compare: prediction and ground truth are the same layer {gt_layer.name!r}"
            )
        lr_layer = self.lr_picker.layer()
        pred, gt = layer_to_image(pred_layer), layer_to_image(gt_layer)
        lr = None if lr_layer is None else layer_to_image(lr_layer)
        maps, self._new_maps = self.trust_maps(pred_layer)
        plane = current_plane(self.viewer, gt_layer) if gt.ndim == 3 else 0
        self.comparison = None
        self.export_button.setEnabled(False)
        self._names = (pred_layer.name, gt_layer.name, None if lr_layer is None else lr_layer.name)
        self._partial = {}
        self._n_planes = gt.shape[0] if gt.ndim == 3 else 1
        self.plane = plane
        self._clear_table()
        self.redraw()
        name = pred_layer.name
        self.panel.start(
            lambda: api.iter_compare(
                pred, gt, lr, plane=plane, name=name, maps=maps, overlays=True
            ),
            on_event=self._on_event,
            on_result=self._on_result,
        )

    @report_errors("Export")
    def export(self, path: str | Path, *, per_slice: bool = False) -> Path:
        """Write the last comparison as JSON (``.json``) or CSV (any other suffix).

        Parameters
        ----------
        path : str or Path
            The file.
        per_slice : bool
            CSV only: one row per plane instead of one per method.

        Returns
        -------
        Path
            The written file.

        Raises
        ------
        InputError
            When there is nothing to export yet.
        """
        if self.comparison is None:
            raise InputError("Export: run Compare first")
        results = {self._names[0] or PREDICTION: self.comparison.result}
        return api.write_metrics(results, path, per_slice=per_slice)

    def update_plane(self) -> None:
        """Show the current plane's metrics (after the debounce of a dims change)."""
        gt_layer = find_layer(self.viewer, self._names[1])
        if gt_layer is None or self._n_planes <= 1:
            return
        plane = current_plane(self.viewer, gt_layer)
        if plane == self.plane:
            return
        self.plane = plane
        if self.comparison is not None:
            self._fill_table(self.comparison.result)
        self.redraw()

    def metrics(self, method: str = PREDICTION, scope: str = "plane") -> dict[str, float]:
        """Full-precision values shown in a column of the tables.

        Parameters
        ----------
        method : str
            ``"prediction"`` or a baseline (``"bicubic"``).
        scope : {"plane", "stack"}
            The current plane's table, or the table of means over the stack.

        Returns
        -------
        dict of str to float
            Metric name to value.

        Raises
        ------
        KeyError
            For a method the table does not show.
        """
        table = self.plane_table if scope == "plane" else self.stack_table
        return table.values(method)

    def trust_maps(self, pred_layer: Any) -> tuple[dict[str, Image], dict[str, Image]]:
        """Find a prediction layer's trust maps.

        Parameters
        ----------
        pred_layer : napari.layers.Image
            The prediction.

        Returns
        -------
        maps : dict of str to Image
            ``uncertainty`` and ``consistency`` maps found: the layers the Super-resolve
            widget named in the prediction's metadata, else the maps written beside the
            file the layer was opened from.
        new : dict of str to Image
            Those read from files (not yet layers).
        """
        info = (pred_layer.metadata.get(META_KEY) or {}).get("predict") or {}
        maps = {}
        for key, name in (info.get("maps") or {}).items():
            layer = find_layer(self.viewer, name)
            if layer is not None:
                maps[key] = layer_to_image(layer)
        if maps:
            return maps, {}
        path = getattr(pred_layer.source, "path", None) or info.get("path")
        found = api.trust_maps(path) if path else {}
        return found, found

    # -- worker callbacks (main thread)

    def _on_event(self, event: Progress) -> None:
        if event.phase == "current slice":
            self._show_plane(event.info["result"], 0, event.info["plane"])
        elif event.phase == "evaluate" and event.metrics:
            self._partial[event.step - 1] = dict(event.metrics)
            self.redraw()

    def _on_result(self, comparison: api.Comparison) -> None:
        self.comparison = comparison
        self.export_button.setEnabled(True)
        self._fill_table(comparison.result)
        self.redraw()
        self._add_layers(comparison)
        self._show_agreement(comparison)
        self._show_notes(comparison)

    # -- tables

    def _show_plane(self, result: Any, index: int, plane: int) -> None:
        self.plane_label.setText(f"<b>Plane {plane}</b>" if self._n_planes > 1 else "<b>Image</b>")
        self.plane_table.fill({m: (result.slice_metrics(index, m), None) for m in result.methods})

    def _fill_table(self, result: Any) -> None:
        index = self.plane if self._n_planes > 1 else 0
        self._show_plane(result, index, self.plane)
        if self._n_planes > 1:
            self.stack_label.setText(f"<b>Mean ± sd over {result.n_slices} planes</b>")
            self.stack_table.fill({m: (result.mean(m), result.sd(m)) for m in result.methods})
            self.stack_label.show()
            self.stack_table.show()

    def _show_agreement(self, comparison: api.Comparison) -> None:
        if not comparison.agreement:
            self.trust_label.setText("")
            return
        where = f"plane {self.plane}" if self._n_planes > 1 else "the image"
        self.trust_label.setText(
            "\n".join(agreement_text(key, rho, where) for key, rho in comparison.agreement.items())
        )

    def _show_notes(self, comparison: api.Comparison) -> None:
        lines = [f"Note: {note}." for note in comparison.notes]
        lines += [f"Warning: {warning}." for warning in comparison.warnings]
        self.note_label.setText("\n".join(lines))
        self.note_label.setVisible(bool(lines))

    def _clear_table(self) -> None:
        self.trust_label.setText("")
        self.note_label.setText("")
        self.note_label.hide()
        self.plane_label.setText("")
        self.plane_table.fill({})
        self.stack_label.hide()
        self.stack_table.hide()
        self.stack_table.fill({})

    # -- plot

    def redraw(self) -> None:
        """Redraw the plot: the chosen metric per plane (stacks) or per method (2D)."""
        metric = self.plot_metric.currentData() or DEFAULT_PLOT_METRIC
        ax = self.axes
        ax.clear()
        style_axes(ax, self._colors)
        title = METRIC_TITLES[metric]
        if self.comparison is not None:
            series = {
                method: np.asarray(self.comparison.result.values[method][metric])
                for method in self.comparison.result.methods
            }
        elif self._partial:
            planes = sorted(self._partial)
            full = np.full(self._n_planes, np.nan)
            full[planes] = [self._partial[p][metric] for p in planes]
            series = {PREDICTION: full}
        else:
            series = {}
        if not series:
            ax.text(
                0.5,
                0.5,
                "Compare to see the metrics",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=self._colors["text"],
            )
        elif self._n_planes > 1:
            for method, values in series.items():
                ax.plot(np.arange(len(values)), values, marker=".", label=method)
            ax.axvline(self.plane, color=self._colors["highlight"], lw=1, ls="--")
            ax.set_xlabel("plane")
            ax.set_ylabel(title)
            ax.legend(
                loc="best", fontsize=LEGEND_SIZE, frameon=False, labelcolor=self._colors["text"]
            )
        else:
            names = list(series)
            values = [float(series[m][0]) for m in names]
            ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
            ax.set_ylabel(title)
        self.figure.tight_layout()
        self.canvas.draw_idle()

    @property
    def _colors(self) -> dict[str, str]:
        return theme_colors(self.viewer)

    # -- layers

    def _add_layers(self, comparison: api.Comparison) -> None:
        """Add the error, baseline and trust-map layers, hidden (tick their eye to see them)."""
        gt_layer = find_layer(self.viewer, self._names[1])
        gt_display = display_kwargs(gt_layer) if gt_layer is not None else {}
        added = []
        error_kwargs = image_layer_kwargs(
            comparison.error,
            name=f"{self._names[0]} error",
            colormap="magma",
            contrast_limits=comparison.error_limits,
            gamma=1.0,
            blending="additive",
            metadata={META_KEY: {"role": "error"}},
        )
        if "affine" in gt_display:
            error_kwargs["affine"] = gt_display["affine"]
        added.append(set_or_add_image(self.viewer, comparison.error.data, error_kwargs))
        if comparison.baseline is not None:
            kwargs = image_layer_kwargs(
                comparison.baseline,
                name=f"{self._names[2]} bicubic",
                **{**gt_display, "metadata": {META_KEY: {"role": "baseline"}}},
            )
            added.append(set_or_add_image(self.viewer, comparison.baseline.data, kwargs))
        for key, trust in self._new_maps.items():
            kwargs = trust_layer_kwargs(trust, key, name=f"{self._names[0]} {key}")
            added.append(set_or_add_image(self.viewer, trust.data, kwargs))
        for layer in added:  # hidden: the prediction stays the top visible layer
            layer.visible = False
        pred_layer = find_layer(self.viewer, self._names[0])
        if pred_layer is not None:
            self.viewer.layers.selection.active = pred_layer

    # -- events

    def _on_step(self, event: Any = None) -> None:
        self._timer.start()

    def _on_layers_changed(self, name: Any = None) -> None:
        current = (
            self.pred_picker.layer_name(),
            self.gt_picker.layer_name(),
            self.lr_picker.layer_name(),
        )
        if self.comparison is not None and current != self._names and not self.panel.is_running:
            self.comparison = None
            self._partial = {}
            self.export_button.setEnabled(False)
            self._clear_table()
            self.redraw()

    def choose_defaults(self) -> None:
        """Pick distinct layers to start with: the newest prediction, its input, a ground truth.

        The prediction is the newest super-resolved layer (else the top layer offered), the
        LR input the layer it was made from, and the ground truth the first other layer
        that is no derived layer, so that the three never start on one layer.
        """
        preds = self.pred_picker.names()
        made = [n for n in preds if derived_role(find_layer(self.viewer, n)) == "super-resolved"]
        pred = (made or preds or [None])[0]
        if pred is not None:
            self.pred_picker.set_layer(pred)
        source = _prediction_input(find_layer(self.viewer, pred))
        if source is not None and source in self.lr_picker.names():
            self.lr_picker.set_layer(source)
        others = [n for n in self.gt_picker.names() if n not in (pred, source)]
        if others:
            self.gt_picker.set_layer(others[0])

    def _user_chose(self, *_: Any) -> None:
        self._chosen_by_user = True

    def _on_layer_added(self, event: Any = None) -> None:
        # until the user picks layers: start again from a new super-resolved layer, or when
        # the prediction and the ground truth are one layer (a second layer came)
        if self._chosen_by_user or self.panel.is_running:
            return
        pred, gt = self.pred_picker.layer_name(), self.gt_picker.layer_name()
        layer = getattr(event, "value", None)
        fresh = derived_role(layer) == "super-resolved" if layer is not None else False
        if fresh or pred is None or pred == gt:
            for picker in (self.pred_picker, self.gt_picker, self.lr_picker):
                picker.refresh()
            self.choose_defaults()

    def _export_dialog(self) -> None:
        stem = safe_name(self._names[0] or "prediction")
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export metrics", f"{stem}_metrics.json", ";;".join(EXPORT_FILTERS)
        )
        if not path:
            return
        suffix, per_slice = EXPORT_FILTERS.get(chosen, (".json", False))
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(suffix)
        self.export(target, per_slice=per_slice)


def _prediction_like(layer: Any) -> bool:
    """Layers that can be a prediction: not a trust map, an error map or a baseline."""
    return is_usable_image(layer) and derived_role(layer) not in _NOT_PREDICTIONS


def _acquisition(layer: Any) -> bool:
    """Layers that can be a ground truth: none the widgets derived."""
    return is_usable_image(layer) and derived_role(layer) is None


def _input_like(layer: Any) -> bool:
    """Layers that can be an LR input: acquisitions and crappified layers."""
    return is_usable_image(layer) and derived_role(layer) in (None, "crappified")


def _prediction_input(layer: Any) -> str | None:
    """The layer a super-resolved layer was made from (its metadata), or None."""
    meta = ((getattr(layer, "metadata", None) or {}).get(META_KEY) or {}).get("predict") or {}
    return meta.get("input")


#: Derived layers that are never a prediction.
_NOT_PREDICTIONS = ("uncertainty", "consistency", "error", "baseline", "preview")
