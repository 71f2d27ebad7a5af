"""Layout checks of the dock widgets: text that does not fit, windows taller than the screen.

Used by the screenshot tests (imported as ``from _layout import ...``; pytest puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import re
from typing import Any

from qtpy.QtGui import QTextDocument
from qtpy.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QStyle,
    QStyleOptionComboBox,
    QTableWidget,
    QTabWidget,
    QWidget,
)

#: Pixels of slack before a text counts as cut (rounding of font metrics).
SLACK = 2


def settle(rounds: int = 20) -> None:
    """Let Qt lay out and paint what changed."""
    app = QApplication.instance()
    for _ in range(rounds):
        app.processEvents()


def _plain(text: str) -> str:
    if "<" in text and ">" in text:
        doc = QTextDocument()
        doc.setHtml(text)
        return doc.toPlainText()
    return text


def _label_problem(label: QLabel) -> str | None:
    text = _plain(label.text())
    if not text.strip():
        return None
    rect = label.contentsRect()
    width = rect.width() - 2 * max(label.margin(), 0)
    metrics = label.fontMetrics()
    if label.wordWrap():
        words = [w for w in re.split(r"[\s\u200b]+", text) if w]
        wide = [w for w in words if metrics.horizontalAdvance(w) > width + SLACK]
        if wide:
            return f"word {wide[0]!r} wider than the label ({width} px)"
        needed = label.heightForWidth(rect.width())
        if needed > rect.height() + SLACK:
            return f"needs {needed} px of height, has {rect.height()}"
        return None
    widest = max(metrics.horizontalAdvance(line) for line in text.splitlines())
    if widest > width + SLACK:
        return f"needs {widest} px, has {width}"
    return None


def _combo_problem(combo: QComboBox) -> str | None:
    text = combo.currentText()
    if not text or combo.isEditable():
        return None
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, combo
    )
    needed = combo.fontMetrics().horizontalAdvance(text)
    if needed > field.width() + SLACK:
        return f"needs {needed} px, has {field.width()}"
    return None


def _table_problem(table: QTableWidget) -> str | None:
    shown = table.viewport().height()
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    if rows > shown + SLACK:
        return f"rows need {rows} px, the table shows {shown}"
    metrics = table.fontMetrics()
    for r in range(table.rowCount()):
        for c in range(table.columnCount()):
            item = table.item(r, c)
            if item is None:
                continue
            needed = metrics.horizontalAdvance(item.text()) + 6
            if needed > table.columnWidth(c) + SLACK:
                return f"cell {item.text()!r} needs {needed} px, has {table.columnWidth(c)}"
    header = table.verticalHeader()
    for r in range(table.rowCount()):
        item = table.verticalHeaderItem(r)
        if item is not None:
            needed = metrics.horizontalAdvance(item.text()) + 6
            if needed > header.width() + SLACK:
                return f"row title {item.text()!r} needs {needed} px, has {header.width()}"
    return None


def clipped_texts(root: QWidget) -> list[str]:
    """Describe every visible text under ``root`` that does not fit its widget.

    Labels (wrapped or not: a wrapped label's words and lines), buttons and check boxes,
    combo boxes, line-edit placeholders, group box titles and tables (cells, row titles,
    rows out of view). Widgets on hidden tabs or scrolled out of view vertically count:
    only the width is checked for them.

    Parameters
    ----------
    root : QWidget
        The dock widget (all tabs of a tab widget are checked).

    Returns
    -------
    list of str
        ``"<class> '<text>': <why>"`` for each problem.
    """
    problems = []
    for tabs in [root, *root.findChildren(QTabWidget)]:
        if not isinstance(tabs, QTabWidget):
            continue
        shown = tabs.currentIndex()
        for i in range(tabs.count()):
            tabs.setCurrentIndex(i)
            settle()
            problems += _clipped_in(tabs.widget(i))
        tabs.setCurrentIndex(shown)
        settle()
    return problems or _clipped_in(root)


def _clipped_in(root: QWidget) -> list[str]:
    problems = []
    for widget in [root, *root.findChildren(QWidget)]:
        if not widget.isVisibleTo(root) or widget.width() <= 0:
            continue
        problem, text = None, ""
        if isinstance(widget, QLabel):
            text, problem = widget.text(), _label_problem(widget)
        elif isinstance(widget, QAbstractButton) and widget.text():
            text = widget.text()
            hint = widget.sizeHint().width()
            problem = f"needs {hint} px, has {widget.width()}" if hint > widget.width() else None
        elif isinstance(widget, QComboBox):
            text, problem = widget.currentText(), _combo_problem(widget)
        elif isinstance(widget, QLineEdit) and not widget.text() and widget.placeholderText():
            text = widget.placeholderText()
            needed = widget.fontMetrics().horizontalAdvance(text) + 12
            problem = (
                f"needs {needed} px, has {widget.width()}" if needed > widget.width() else None
            )
        elif isinstance(widget, QGroupBox) and widget.title():
            text = widget.title()
            needed = widget.fontMetrics().horizontalAdvance(text) + 16
            problem = (
                f"needs {needed} px, has {widget.width()}" if needed > widget.width() else None
            )
        elif isinstance(widget, QTableWidget):
            text, problem = "table", _table_problem(widget)
        if problem:
            problems.append(f"{type(widget).__name__} {_plain(text)[:60]!r}: {problem}")
    return problems


def window_height(viewer: Any) -> tuple[int, int]:
    """The main window's height and the least height its docks let it have."""
    window = viewer.window._qt_window
    return window.height(), window.minimumSizeHint().height()
