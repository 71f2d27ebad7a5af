"""Matplotlib plots inside the dock widgets, coloured like the napari theme."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QWidget

#: Font sizes of the plots, in points at the figures' 90 dpi: axis labels as large as
#: napari's own text, tick labels and legends a little smaller, marks on the curves least.
LABEL_SIZE = 10.0
TICK_SIZE = 9.0
LEGEND_SIZE = 9.0
MARK_SIZE = 8.5


def theme_colors(viewer: Any) -> dict[str, str]:
    """Background, text and highlight colours of the viewer's napari theme (for plots).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.

    Returns
    -------
    dict of str to str
        ``background``, ``text`` and ``highlight`` as hex colours; black on white when
        the theme is unknown.
    """
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return {
            "background": theme.background.as_hex(),
            "text": theme.text.as_hex(),
            "highlight": theme.current.as_hex(),
        }
    except Exception:  # an unknown theme keeps matplotlib's defaults
        return {"background": "#ffffff", "text": "#000000", "highlight": "#4560c4"}


def style_axes(ax: Any, colors: dict[str, str]) -> None:
    """Colour the axes like the napari theme.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes.
    colors : dict of str to str
        :func:`theme_colors`.
    """
    ax.figure.set_facecolor(colors["background"])
    ax.set_facecolor(colors["background"])
    for spine in ax.spines.values():
        spine.set_color(colors["text"])
    ax.tick_params(colors=colors["text"], labelsize=TICK_SIZE)
    ax.xaxis.label.set_color(colors["text"])
    ax.yaxis.label.set_color(colors["text"])
    ax.xaxis.label.set_fontsize(LABEL_SIZE)
    ax.yaxis.label.set_fontsize(LABEL_SIZE)


def qt_figure(parent: QWidget, size: tuple[float, float], min_height: int) -> tuple[Any, Any]:
    """A matplotlib figure embedded as a Qt widget (no pyplot state).

    Parameters
    ----------
    parent : QWidget
        The widget holding it.
    size : (float, float)
        Figure size in inches (90 dpi).
    min_height : int
        Smallest height of the canvas in screen pixels.

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure (add axes to it).
    canvas : FigureCanvasQTAgg
        The Qt widget.
    """
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=90)
    canvas = FigureCanvasQTAgg(figure)
    canvas.setParent(parent)
    canvas.setMinimumHeight(min_height)
    return figure, canvas
