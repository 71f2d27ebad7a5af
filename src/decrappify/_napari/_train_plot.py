"""The Train widget's plot: losses and validation metrics over the NoGAN phases.

:class:`TrainCurves` collects the progress events of :func:`decrappify.api.iter_train`
(no Qt); :class:`TrainPlot` draws them (losses on top, validation PSNR and SSIM against
the baseline below: bicubic, or the input at scale 1; the phases marked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qtpy.QtWidgets import QWidget

from decrappify._napari._plots import (
    LABEL_SIZE,
    LEGEND_SIZE,
    MARK_SIZE,
    qt_figure,
    style_axes,
)
from decrappify.events import Progress

#: The NoGAN phases with their titles.
PHASE_TITLES = {
    "pretrain_generator": "generator pretraining",
    "save_outputs": "saving generator outputs",
    "pretrain_critic": "critic pretraining",
    "gan": "GAN",
}
#: Short labels of the training phases on the plot.
PHASE_MARKS = {"pretrain_generator": "G", "pretrain_critic": "C", "gan": "GAN"}
#: Which loss of which phase goes on which curve.
LOSS_CURVES = {
    ("pretrain_generator", "loss"): "content",
    ("gan", "content"): "content",
    ("gan", "adv"): "adversarial",
    ("pretrain_critic", "critic"): "critic",
    ("gan", "critic"): "critic",
}


def base_phase(label: str) -> str:
    """The NoGAN phase of an event's phase label (``"gan 1/2"`` -> ``"gan"``).

    Parameters
    ----------
    label : str
        ``Progress.phase``.

    Returns
    -------
    str
        The phase name.
    """
    return label.split(" ", 1)[0]


def phase_text(label: str, n_phases: int) -> str:
    """Title of a phase for the phase line: ``"Phase 4 of 4 · GAN (cycle 1/2)"``.

    Parameters
    ----------
    label : str
        ``Progress.phase``.
    n_phases : int
        4 for NoGAN, 1 for generator pretraining only.

    Returns
    -------
    str
        The title.
    """
    name = base_phase(label)
    if name not in PHASE_TITLES:
        return label
    index = list(PHASE_TITLES).index(name) + 1
    cycle = label[len(name) :].strip()
    text = f"Phase {min(index, n_phases)} of {n_phases} · {PHASE_TITLES[name]}"
    return f"{text} (cycle {cycle})" if cycle else text


@dataclass
class TrainCurves:
    """Losses and validation metrics of a run, against a step axis over all phases.

    The training phases follow each other on the axis (save_outputs, which trains
    nothing, takes no room): step ``s`` of a phase that started at ``x0`` is at
    ``x0 + s``.

    Attributes
    ----------
    losses : dict of str to (list, list)
        ``content`` (pixel loss of the generator), ``adversarial`` and ``critic``:
        steps and values.
    metrics : dict of str to (list, list)
        Validation ``psnr`` and ``ssim`` (normalised) at the checkpoints.
    baseline : dict of str to float
        The baseline's ``psnr`` / ``ssim`` on the same crops.
    baseline_name : str
        What the baseline is: ``"bicubic"``, or ``"input"`` at scale 1.
    classical : dict of str to dict
        At the end of a run, the self-check's classical methods (``"bilinear"``,
        ``"gaussian=1.5"`` ...) and their ``psnr`` / ``ssim``, drawn as dotted lines.
    phases : list of (int, str)
        Where each training phase starts on the axis, and its short label.
    events : int
        Events seen.
    """

    losses: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    metrics: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_name: str = "bicubic"
    classical: dict[str, dict[str, float]] = field(default_factory=dict)
    phases: list[tuple[int, str]] = field(default_factory=list)
    events: int = 0
    _current: str | None = None
    _offset: int = 0
    _end: int = 0

    @property
    def x_end(self) -> int:
        """The last step on the axis."""
        return self._end

    def add(self, event: Progress) -> None:
        """Record one progress event of :func:`decrappify.api.iter_train`.

        Parameters
        ----------
        event : Progress
            The event.
        """
        self.events += 1
        name = base_phase(event.phase)
        baseline = event.info.get("baseline") if isinstance(event.info, dict) else None
        if baseline:
            self.baseline = {k: float(v) for k, v in baseline.items()}
            self.baseline_name = str(event.info.get("baseline_name", self.baseline_name))
        if name not in PHASE_MARKS:
            return
        if event.phase != self._current:
            self._current, self._offset = event.phase, self._end
            cycle = event.phase[len(name) :].strip()
            mark = PHASE_MARKS[name] + (f" {cycle.split('/')[0]}" if cycle else "")
            self.phases.append((self._offset, mark))
        x = self._offset + int(event.step)
        self._end = max(self._end, x)
        for key, value in event.losses.items():
            curve = LOSS_CURVES.get((name, key))
            if curve is not None and np.isfinite(value):
                xs, ys = self.losses.setdefault(curve, ([], []))
                xs.append(x)
                ys.append(float(value))
        for key in ("psnr", "ssim"):
            if key in event.metrics and np.isfinite(event.metrics[key]):
                xs, ys = self.metrics.setdefault(key, ([], []))
                xs.append(x)
                ys.append(float(event.metrics[key]))


class TrainPlot:
    """The loss (top) and validation (bottom, SSIM on a twin axis) plot, as a Qt widget.

    Parameters
    ----------
    parent : QWidget
        The widget holding the canvas.

    Attributes
    ----------
    canvas : FigureCanvasQTAgg
        The Qt widget to put in a layout.
    loss_axes, metric_axes, ssim_axes : matplotlib.axes.Axes
        Losses; validation PSNR; validation SSIM (twin of the PSNR axis).
    """

    def __init__(self, parent: QWidget) -> None:
        self.figure, self.canvas = qt_figure(parent, (4.0, 3.4), 240)
        self.loss_axes = self.figure.add_subplot(2, 1, 1)
        self.metric_axes = self.figure.add_subplot(2, 1, 2, sharex=self.loss_axes)
        self.ssim_axes = self.metric_axes.twinx()

    def draw(self, curves: TrainCurves, colors: dict[str, str]) -> None:
        """Redraw the plot from the curves.

        Parameters
        ----------
        curves : TrainCurves
            What to show.
        colors : dict of str to str
            The napari theme's colours (:func:`~decrappify._napari._plots.theme_colors`).
        """
        ax, mx, sx = self.loss_axes, self.metric_axes, self.ssim_axes
        for axes in (ax, mx, sx):
            axes.clear()
        style_axes(ax, colors)
        style_axes(mx, colors)
        style_axes(sx, colors)
        sx.patch.set_visible(False)  # the twin axis lies over the PSNR axis
        sx.yaxis.set_label_position("right")
        sx.yaxis.tick_right()
        if not curves.losses and not curves.metrics:
            ax.text(
                0.5,
                0.5,
                "Start training to see the curves",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=colors["text"],
            )
        styles = {"content": "C0", "adversarial": "C2", "critic": "C3"}
        for name, (xs, ys) in curves.losses.items():
            ax.plot(xs, ys, lw=1, color=styles.get(name), label=name)
        if curves.losses:
            ax.legend(
                loc="upper right",
                fontsize=LEGEND_SIZE,
                frameon=False,
                ncols=3,
                labelcolor=colors["text"],
            )
        ax.set_ylabel("loss", fontsize=LABEL_SIZE)
        for key, axes, color, label in (
            ("psnr", mx, "C0", "PSNR (dB)"),
            ("ssim", sx, "C1", "SSIM"),
        ):
            if key in curves.metrics:
                xs, ys = curves.metrics[key]
                axes.plot(xs, ys, marker="o", ms=3, lw=1, color=color, label=f"model {key}")
            if key in curves.baseline:
                axes.axhline(curves.baseline[key], color=color, lw=1, ls="--")
            if key == "psnr":  # the self-check's classical methods, labelled at the right
                for name, scores in curves.classical.items():
                    if name != curves.baseline_name and "psnr" in scores:
                        axes.axhline(scores["psnr"], color=color, lw=0.8, ls=":")
                        axes.annotate(
                            name,
                            (1.0, scores["psnr"]),
                            xycoords=("axes fraction", "data"),
                            ha="right",
                            va="bottom",
                            fontsize="xx-small",
                            color=colors["text"],
                        )
            axes.set_ylabel(label, fontsize=LABEL_SIZE, color=color)
        for x, mark in curves.phases:
            for axes in (ax, mx):
                axes.axvline(x, color=colors["text"], lw=0.6, ls=":", alpha=0.7)
            ax.annotate(
                mark,
                (x, 0.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, 2),
                textcoords="offset points",
                va="bottom",
                fontsize=MARK_SIZE,
                color=colors["text"],
            )
        dotted = ", dotted: classical methods" if curves.classical else ""
        mx.set_xlabel(f"step (dashed: {curves.baseline_name}{dotted})", fontsize=LABEL_SIZE)
        if curves.phases:
            right = max(1.0, curves.x_end)
            ax.set_xlim(0, right)
            mx.set_xlim(0, right)
        self.figure.tight_layout()
        self.canvas.draw_idle()
