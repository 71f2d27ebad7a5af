"""The training log (``RUN_DIR/log.csv``) and its curves (``RUN_DIR/curves.png``); no torch.

One row per training step (and one per validation that is not on a step, such as the
one before the first step), with fixed columns so that the file reads into any
spreadsheet or ``pandas.read_csv``. Empty cells mean "not measured at this row".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from decrappify.errors import OutputError
from decrappify.io.atomic import atomic_write, atomic_write_text

#: Columns of ``log.csv``, in order.
COLUMNS: tuple[str, ...] = (
    "time_s",
    "phase",
    "cycle",
    "step",
    "lr",
    "loss",
    "loss_l1",
    "loss_mse",
    "loss_ssim",
    "loss_ms_ssim",
    "loss_feature",
    "critic_loss",
    "adv_loss",
    "critic_steps",
    "val_psnr",
    "val_ssim",
)

#: Colours of the self-check's classical methods on the validation axes.
CLASSICAL_COLORS = ("tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")

#: Short names of the phases in figures.
PHASE_LABELS = {
    "pretrain_generator": "1 pretrain G",
    "save_outputs": "2 save outputs",
    "pretrain_critic": "3 pretrain critic",
    "gan": "4 GAN",
}


class RunLog:
    """Append-only CSV log that can be cut back to a checkpoint.

    Parameters
    ----------
    path : str or Path
        ``RUN_DIR/log.csv``.
    keep_rows : int or None
        Keep only the first ``keep_rows`` data rows of an existing file (resume: rows
        written after the last checkpoint are dropped, they will be logged again);
        None starts a new file.
    """

    def __init__(self, path: str | Path, keep_rows: int | None = None) -> None:
        self.path = Path(path)
        rows: list[list[str]] = []
        if keep_rows is not None and self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))[1 : keep_rows + 1]
        header = ",".join(COLUMNS) + "\n"
        body = "".join(",".join(row) + "\n" for row in rows)
        atomic_write_text(self.path, header + body)
        self.rows = len(rows)
        try:
            self._file = self.path.open("a", newline="", encoding="utf-8")
        except OSError as err:
            raise OutputError(f"{self.path}: cannot append to the log ({err})") from err
        self._writer = csv.writer(self._file, lineterminator="\n")

    def write(self, **values: Any) -> None:
        """Append one row.

        Parameters
        ----------
        **values
            Column name to value (unknown names are an error; floats are written with
            7 significant digits, None as an empty cell).
        """
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise KeyError(f"log.csv has no columns {sorted(unknown)}")
        self._writer.writerow([_cell(values.get(c)) for c in COLUMNS])
        self.rows += 1

    def flush(self) -> None:
        """Flush to disk (at checkpoints)."""
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if not self._file.closed:
            self._file.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.7g}"
    return str(value)


def read_log(path: str | Path) -> list[dict[str, str]]:
    """Read ``log.csv``.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    list of dict
        One dict per row (strings; empty for missing values).
    """
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def _ema(values: Sequence[float], alpha: float = 0.1) -> list[float]:
    out: list[float] = []
    level = math.nan
    for v in values:
        if math.isnan(v):
            out.append(level)
            continue
        level = v if math.isnan(level) else (1 - alpha) * level + alpha * v
        out.append(level)
    return out


def plot_curves(
    rows: Sequence[Mapping[str, str]],
    path: str | Path,
    *,
    baseline: Mapping[str, float] | None = None,
    baseline_name: str = "bicubic",
    classical: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "NoGAN training",
) -> Path:
    """Draw the loss and validation curves of a run against minutes of training (Agg canvas).

    The x axis is the training time of each row (``time_s``); each phase is labelled with
    its number of steps.

    Parameters
    ----------
    rows : sequence of mapping
        Rows of ``log.csv`` (:func:`read_log`).
    path : str or Path
        Output PNG (written atomically).
    baseline : mapping or None
        The baseline's ``psnr`` / ``ssim`` drawn as dashed lines.
    baseline_name : str
        Its label: ``"bicubic"``, or ``"input"`` at scale 1.
    classical : mapping or None
        The end-of-training self-check's methods (``"bilinear"``, ``"gaussian=1.5"`` ...)
        and their ``psnr`` / ``ssim``, drawn as dotted labelled lines.
    title : str
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.9, wspace=0.2, hspace=0.35)
    FigureCanvasAgg(fig)
    ax_g, ax_c, ax_p, ax_s = fig.subplots(2, 2).ravel()
    x = _minutes(rows)
    xlabel = "minutes of training (phases labelled with their steps)"
    if not any(x):  # a log without times: one step per row
        x, xlabel = [float(i) for i in range(len(rows))], "steps of all phases"
    series = {c: [_num(r.get(c)) for r in rows] for c in COLUMNS if c not in ("phase",)}
    phases = [r.get("phase", "") for r in rows]
    # generator loss (pretraining loss, then the GAN generator's total loss)
    for name, color in (("loss", "tab:blue"),):
        _line(ax_g, x, series[name], color, "generator loss")
    ax_g.set_title("generator loss (faint: per step, solid: moving average)")
    _line(ax_c, x, series["critic_loss"], "tab:red", "critic loss (BCE)")
    _line(ax_c, x, series["adv_loss"], "tab:purple", "adversarial loss of G")
    ax_c.axhline(math.log(2), color="grey", lw=0.8, ls=":", label="chance (ln 2)")
    ax_c.set_title("critic (phases 3-4)")
    for ax, key, label in ((ax_p, "val_psnr", "psnr"), (ax_s, "val_ssim", "ssim")):
        pts = [(xi, v) for xi, v in zip(x, series[key], strict=True) if not math.isnan(v)]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color="tab:green", ms=3, label="model")
        if baseline and label in baseline:
            ax.axhline(baseline[label], color="k", ls="--", lw=1, label=baseline_name)
        _classical_lines(ax, classical or {}, label, skip=baseline_name)
        ax.set_title(f"validation {label.upper()} (normalised)")
    for ax in (ax_g, ax_c, ax_p, ax_s):
        _phase_marks(ax, phases, x)
        if x:
            ax.set_xlim(0.0, max(x[-1], 1e-3) * 1.01)
        ax.set_xlabel(xlabel)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100)

    return atomic_write(path, write)


def _minutes(rows: Sequence[Mapping[str, str]]) -> list[float]:
    """Minutes of training of each row, never decreasing.

    The first validation is logged with the start-up time that the budget then leaves
    out, so rows may go back in time: each row gets the smallest time of the rows from it
    on (the first validation is where training starts).
    """
    times = [_num(r.get("time_s")) for r in rows]
    out: list[float] = []
    low = math.inf
    for t in reversed(times):
        low = min(low, t) if not math.isnan(t) else low
        out.append(low / 60.0 if math.isfinite(low) else 0.0)
    return out[::-1]


def _classical_lines(
    ax: Any, classical: Mapping[str, Mapping[str, float]], key: str, *, skip: str
) -> None:
    """Dotted, labelled lines of the self-check's classical methods on a validation axis."""
    shown = [(n, s[key]) for n, s in classical.items() if n != skip and key in s]
    for (name, value), color in zip(shown, CLASSICAL_COLORS, strict=False):
        ax.axhline(value, color=color, ls=":", lw=1.2, label=name)


def _line(ax: Any, x: list[float], y: list[float], color: str, label: str) -> None:
    pts = [(xi, v) for xi, v in zip(x, y, strict=True) if not math.isnan(v)]
    if not pts:
        return
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, color=color, alpha=0.25, lw=0.7)
    ax.plot(xs, _ema(list(ys)), color=color, lw=1.5, label=label)


def _phase_marks(ax: Any, phases: Sequence[str], x: Sequence[float]) -> None:
    """Shade every other phase and label each at its start with its number of steps."""
    starts = [i for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    ends = [*starts[1:], len(phases)]
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        if k % 2:
            ax.axvspan(x[a], x[b - 1], color="grey", alpha=0.08, lw=0)
        steps = b - a - (1 if a == 0 else 0)  # the first row is the validation before step 1
        ax.text(
            x[a],
            0.98,
            f" {PHASE_LABELS.get(phases[a], phases[a])}: {steps} steps",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color="dimgrey",
            va="top",
            ha="left",
            clip_on=True,
        )
