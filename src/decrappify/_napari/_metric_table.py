"""The metric tables of the Compare widget: seven metrics (rows) by a few methods (columns)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from decrappify.api import METRIC_NAMES, METRIC_TITLES


def format_metric(metric: str, value: float, sd: float | None = None) -> str:
    """Table text of a metric: 2 decimals for dB values, 4 for SSIM and NRMSE.

    Parameters
    ----------
    metric : str
        One of :data:`decrappify.metrics.METRIC_NAMES`.
    value : float
        The value (or mean).
    sd : float or None
        A standard deviation shown as ``± sd``.

    Returns
    -------
    str
        The text (``"inf"`` for a perfect match).
    """
    digits = 4 if metric in ("ssim", "ssim_norm", "nrmse") else 2
    text = f"{value:.{digits}f}"
    return text if sd is None else f"{text} ± {sd:.{digits}f}"


class MetricTable(QTableWidget):
    """A read-only table of the seven metrics (rows) for a few methods (columns).

    Each cell shows the formatted value (``mean ± sd`` when a standard deviation is
    given) and keeps the full-precision value under ``Qt.ItemDataRole.UserRole``.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(len(METRIC_NAMES), 0, parent)
        self.setVerticalHeaderLabels([METRIC_TITLES[m] for m in METRIC_NAMES])
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fit_height()

    def fill(self, columns: dict[str, tuple[dict[str, float], dict[str, float] | None]]) -> None:
        """Show one column per method.

        Parameters
        ----------
        columns : dict
            Method name to ``(values, sds)``; ``sds`` may be None.
        """
        self.setColumnCount(len(columns))
        self.setHorizontalHeaderLabels(list(columns))
        for c, (values, sds) in enumerate(columns.values()):
            for r, metric in enumerate(METRIC_NAMES):
                value = float(values[metric])
                sd = None if sds is None else float(sds[metric])
                item = QTableWidgetItem(format_metric(metric, value, sd))
                item.setData(Qt.ItemDataRole.UserRole, value)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)
        self._fit_height()

    def methods(self) -> list[str]:
        """Column titles (the methods shown).

        Returns
        -------
        list of str
            The methods.
        """
        return [self.horizontalHeaderItem(c).text() for c in range(self.columnCount())]  # type: ignore[union-attr]

    def values(self, method: str) -> dict[str, float]:
        """Full-precision values of a method's column.

        Parameters
        ----------
        method : str
            The column title.

        Returns
        -------
        dict of str to float
            Metric name to value.

        Raises
        ------
        KeyError
            For a method the table does not show.
        """
        methods = self.methods()
        if method not in methods:
            raise KeyError(method)
        c = methods.index(method)
        return {
            metric: float(self.item(r, c).data(Qt.ItemDataRole.UserRole))  # type: ignore[union-attr]
            for r, metric in enumerate(METRIC_NAMES)
        }

    def _fit_height(self) -> None:
        # every row in view: the header's and the rows' heights as laid out (a header that
        # is not shown yet reports 0, so this runs again when the table is shown)
        self.resizeRowsToContents()
        header = max(self.horizontalHeader().height(), self.horizontalHeader().sizeHint().height())
        rows = self.verticalHeader().length()
        self.setFixedHeight(header + rows + 2 * self.frameWidth())

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._fit_height()
