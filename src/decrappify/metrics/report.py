"""Reports of evaluation results: JSON, CSV, a text table and a comparison figure.

Every writer is atomic: the file is written under a temporary name beside the target
(``.<name>.partial``) and renamed over it at the end, so an interrupted run never leaves a
half-written report. matplotlib is imported inside :func:`comparison_figure` only and
draws on its Agg canvas, without touching pyplot's global state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, OutputError
from decrappify.io.image import Image
from decrappify.metrics.baselines import baseline_label, scale_for, upsample
from decrappify.metrics.core import (
    METRIC_NAMES,
    affine_fit,
    as_plane,
    evaluate_pair,
    gt_range,
    shape_mismatch_message,
)
from decrappify.metrics.frc import FRCResult, frc
from decrappify.metrics.stack import PREDICTION, StackResult, spread

#: Key of the across-image summary in :func:`results_to_json`; not allowed as an image name.
MEAN_KEY = "mean"

#: Column titles of :func:`format_table`, per metric.
METRIC_TITLES: dict[str, str] = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "nrmse": "NRMSE",
    "psnr_norm": "PSNR norm (dB)",
    "ssim_norm": "SSIM norm",
    "si_psnr": "SI-PSNR (dB)",
}

Results = Mapping[str, "StackResult | Mapping[str, Any]"]


def as_stack_result(value: StackResult | Mapping[str, Any], name: str = "image") -> StackResult:
    """Accept a :class:`StackResult` or a dict from :func:`evaluate_pair`.

    Parameters
    ----------
    value : StackResult or dict
        A stack result, or one image's metrics (the six metric keys, optionally with
        ``"baselines": {method: {metric: value}}``).
    name : str
        Name of the image, for messages.

    Returns
    -------
    StackResult
        The same result as a one-plane :class:`StackResult` when a dict was given.

    Raises
    ------
    InputError
        If a dict lacks metric keys.
    """
    if isinstance(value, StackResult):
        return value
    tables = {PREDICTION: value, **dict(value.get("baselines", {}))}
    values = {}
    for method, metrics in tables.items():
        missing = [k for k in METRIC_NAMES if k not in metrics]
        if missing:
            raise InputError(f"{name}: {method} metrics lack {', '.join(missing)}")
        values[method] = {k: np.asarray([float(metrics[k])]) for k in METRIC_NAMES}
    return StackResult(values=values, source=name)


def _checked(results: Results) -> dict[str, StackResult]:
    if not results:
        raise InputError("results: expected at least one evaluated image, got none")
    if MEAN_KEY in results:
        raise InputError(f"results: {MEAN_KEY!r} is reserved for the summary, rename that image")
    return {str(k): as_stack_result(v, str(k)) for k, v in results.items()}


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _metrics_json(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: _json_float(values[k]) for k in METRIC_NAMES}


def _image_json(result: StackResult, per_slice: bool) -> dict[str, Any]:
    entry: dict[str, Any] = _metrics_json(result.mean())
    entry["sd"] = _metrics_json(result.sd())
    entry["n_slices"] = result.n_slices
    entry["axes"] = result.axes
    entry["shape"] = list(result.shape)
    entry["scale"] = result.scale
    entry["data_range"] = result.data_range
    entry["norm_percentiles"] = [result.norm_low, result.norm_high]
    entry["baselines"] = {
        m: {**_metrics_json(result.mean(m)), "sd": _metrics_json(result.sd(m))}
        for m in result.baselines
    }
    if per_slice and result.axes != "YX":
        entry["slices"] = [
            {
                **_metrics_json(result.slice_metrics(i)),
                "baselines": {
                    m: _metrics_json(result.slice_metrics(i, m)) for m in result.baselines
                },
            }
            for i in range(result.n_slices)
        ]
    return entry


def _summary(per_image: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in METRIC_NAMES:
        vals = np.asarray([m[k] for m in per_image], dtype=np.float64)
        out[k] = {"mean": _json_float(np.mean(vals)), "sd": _json_float(spread(vals))}
    return out


def results_to_json(
    results: Results, path: str | os.PathLike[str] | None = None, *, per_slice: bool = True
) -> dict[str, Any]:
    """Turn evaluation results into a JSON-ready dict, and write it if a path is given.

    Parameters
    ----------
    results : mapping of str to StackResult or dict
        Image name → result of :func:`~decrappify.metrics.stack.evaluate_stack` (or of
        :func:`~decrappify.metrics.core.evaluate_pair`).
    path : path-like, optional
        Where to write the JSON (atomically, UTF-8, indented).
    per_slice : bool
        Include the per-plane values of 3D images under ``"slices"``.

    Returns
    -------
    dict
        ``{name: {"psnr", "ssim", "nrmse", "psnr_norm", "ssim_norm", "si_psnr"`` (means
        over the planes), ``"sd"`` (their sample standard deviations), ``"n_slices"``,
        ``"axes"``, ``"shape"``, ``"scale"``, ``"data_range"``, ``"norm_percentiles"``,
        ``"baselines": {method: {same metric keys, "sd"}}``, ``"slices"`` (3D only)},
        ..., "mean": {"n_images", metric: {"mean", "sd"}, "baselines": {method: {"n_images",
        metric: {"mean", "sd"}}}}}``. The ``"mean"`` entry averages the per-image means,
        each image weighing the same, with the sample standard deviation across images.
        Infinite values (PSNR of identical images) are written as ``null``.

    Raises
    ------
    InputError
        For empty results or an image named ``"mean"``.
    OutputError
        If the file cannot be written.
    """
    checked = _checked(results)
    doc: dict[str, Any] = {name: _image_json(r, per_slice) for name, r in checked.items()}
    summary: dict[str, Any] = {"n_images": len(checked)}
    summary.update(_summary([r.mean() for r in checked.values()]))
    baselines: dict[str, Any] = {}
    for method in dict.fromkeys(m for r in checked.values() for m in r.baselines):
        with_method = [r.mean(method) for r in checked.values() if method in r.baselines]
        baselines[method] = {"n_images": len(with_method), **_summary(with_method)}
    summary["baselines"] = baselines
    doc[MEAN_KEY] = summary
    if path is not None:
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return doc


def write_csv(results: Results, path: str | os.PathLike[str], *, per_slice: bool = False) -> Path:
    """Write evaluation results as CSV, one row per image and method.

    Parameters
    ----------
    results : mapping of str to StackResult or dict
        Image name → result.
    path : path-like
        The CSV file (written atomically).
    per_slice : bool
        Write one row per image, method and plane instead (column ``slice``, no
        standard deviations).

    Returns
    -------
    Path
        The written file.

    Notes
    -----
    Columns: ``image, method, n_slices`` then for each metric its mean over the planes
    and ``<metric>_sd`` (sample standard deviation, 0 for one plane). With
    ``per_slice``: ``image, method, slice`` and the metrics. Methods are ``prediction``
    and the baselines. Numbers are written with full precision (``repr``).
    """
    checked = _checked(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if per_slice:
        writer.writerow(["image", "method", "slice", *METRIC_NAMES])
        for name, r in checked.items():
            for method in r.methods:
                for i in range(r.n_slices):
                    values = r.slice_metrics(i, method)
                    writer.writerow([name, method, i, *(repr(values[k]) for k in METRIC_NAMES)])
    else:
        header = ["image", "method", "n_slices"]
        for k in METRIC_NAMES:
            header += [k, f"{k}_sd"]
        writer.writerow(header)
        for name, r in checked.items():
            for method in r.methods:
                mean, sd = r.mean(method), r.sd(method)
                row: list[Any] = [name, method, r.n_slices]
                for k in METRIC_NAMES:
                    row += [repr(mean[k]), repr(sd[k])]
                writer.writerow(row)
    text = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@dataclass(frozen=True)
class MetricsTable:
    """A results table as plain data: column titles and rows of formatted cells.

    Parameters
    ----------
    columns : tuple of str
        Column titles.
    rows : tuple of tuple of str
        One tuple of cell strings per row (``rich.table.Table.add_row(*row)`` takes them
        as they are).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def render(self) -> str:
        """Render as monospaced text: a header, a rule and left-aligned columns.

        Returns
        -------
        str
            The table, lines joined by newlines.
        """
        widths = [
            max(len(cell) for cell in column)
            for column in zip(self.columns, *self.rows, strict=True)
        ]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(self.columns), rule, *(line(r) for r in self.rows)])

    def __str__(self) -> str:
        return self.render()


def _cell(metric: str, mean: float, sd: float | None) -> str:
    digits = 4 if metric in ("ssim", "ssim_norm", "nrmse") else 2
    text = f"{mean:.{digits}f}"
    return text if sd is None else f"{text} ± {sd:.{digits}f}"


def format_table(results: Results) -> MetricsTable:
    """Summarise results as a table: one row per image and method, plus means.

    Parameters
    ----------
    results : mapping of str to StackResult or dict
        Image name → result.

    Returns
    -------
    MetricsTable
        Columns ``image, method`` and the six metrics. Cells of stacks read
        ``mean ± sd`` over the planes, cells of 2D images the value; with several images,
        final rows named ``mean`` give ``mean ± sd`` across the images that have the
        method.
        PSNRs have 2 decimals, SSIM and NRMSE 4.
    """
    checked = _checked(results)
    columns = ("image", "method", *(METRIC_TITLES[k] for k in METRIC_NAMES))
    rows: list[tuple[str, ...]] = []
    for name, r in checked.items():
        for method in r.methods:
            mean, sd = r.mean(method), r.sd(method)
            use_sd = r.n_slices > 1
            rows.append(
                (
                    name,
                    method,
                    *(_cell(k, mean[k], sd[k] if use_sd else None) for k in METRIC_NAMES),
                )
            )
    if len(checked) > 1:
        for method in dict.fromkeys(m for r in checked.values() for m in r.methods):
            per_image = [r.mean(method) for r in checked.values() if method in r.methods]
            cells = []
            for k in METRIC_NAMES:
                vals = np.asarray([m[k] for m in per_image])
                sd = spread(vals) if len(vals) > 1 else None
                cells.append(_cell(k, float(np.mean(vals)), sd))
            rows.append((MEAN_KEY, method, *cells))
    return MetricsTable(columns=columns, rows=tuple(rows))


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Write a file through a temporary name beside it, then rename it into place.

    Parameters
    ----------
    path : path-like
        The target file.
    write : callable
        Called with the temporary path (``.<name>.partial`` in the same folder); must
        create that file.

    Returns
    -------
    Path
        The target path.

    Raises
    ------
    OutputError
        If the folder does not exist or the file cannot be written; the temporary file
        is removed.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: folder {target.parent} does not exist")
    if target.is_dir():
        raise OutputError(f"{target}: expected a file path, got a folder")
    tmp = target.with_name(f".{target.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as err:
        raise OutputError(f"{target}: cannot write ({err.strerror or err})") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _pick_plane(array: Any, plane: int | None, name: str) -> np.ndarray:
    data = array.data if isinstance(array, Image) else array
    if data.ndim == 3:
        index = data.shape[0] // 2 if plane is None else plane
        if not -data.shape[0] <= index < data.shape[0]:
            raise InputError(f"plane: {name} has {data.shape[0]} planes, got index {index}")
        data = data[index]
    return as_plane(data, name)


def comparison_figure(
    lr: Any,
    baseline: Any,
    pred: Any,
    gt: Any,
    *,
    path: str | os.PathLike[str],
    frc_curves: Mapping[str, FRCResult] | None = None,
    scale: int | None = None,
    plane: int | None = None,
    crop_size: int = 256,
    baseline_name: str | None = None,
    figsize: tuple[float, float] = (16.0, 8.0),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Draw LR | baseline | prediction | GT, their error maps and FRC curves to a PNG.

    Top row: central crops of the low-resolution input, the baseline, the prediction and
    the ground truth, covering the same field of view and shown with the same contrast.
    Bottom row: absolute error maps ``|baseline - GT|`` and ``|prediction - GT|`` on one
    colour scale, and the FRC curves with the threshold line.

    Intensities are shown in normalised units: the ground truth is percentile-normalised
    (0.1 / 99.9) and displayed from 0 to 1; the prediction, the baseline and the
    low-resolution input (against the ground truth averaged over each input pixel) are
    mapped onto it by their least-squares affine fit, as for the normalised metrics. The
    error maps thus show what ``psnr_norm`` / ``ssim_norm`` score, which the panel titles
    quote (computed on the whole plane).

    Parameters
    ----------
    lr : array-like or None
        The low-resolution input (2D or 3D), or None to leave its panel empty.
    baseline : array-like or None
        The baseline on the ground-truth grid, or None to interpolate it from ``lr``
        (bicubic).
    pred, gt : array-like
        Prediction and ground truth on the same grid (2D or 3D).
    path : path-like
        The PNG to write (atomically).
    frc_curves : mapping of str to FRCResult, optional
        Curves to plot, by label. Default: the FRC of the prediction and of the baseline
        against the ground truth. An empty mapping leaves the panel out.
    scale : int, optional
        Factor between ``lr`` and ``gt``; inferred when ``gt`` is an exact multiple.
    plane : int, optional
        Plane to show for 3D inputs (default: the middle one).
    crop_size : int
        Side of the central crop, in ground-truth pixels (rounded down to a multiple of
        ``scale`` and to the image size).
    baseline_name : str or None
        Label of the baseline (default: ``"bicubic"``, or ``"input"`` at scale 1).
    figsize : (float, float)
        Figure size in inches; the PNG is ``figsize * dpi`` pixels.
    dpi : int
        Resolution of the PNG.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InputError
        If the prediction, baseline and ground truth are not on the same grid or the
        scale cannot be inferred.
    OutputError
        If the PNG cannot be written.
    """
    gt_p = _pick_plane(gt, plane, "gt").astype(np.float64)
    pred_p = _pick_plane(pred, plane, "pred").astype(np.float64)
    lr_p = None if lr is None else _pick_plane(lr, plane, "lr").astype(np.float64)
    if pred_p.shape != gt_p.shape:
        raise InputError(shape_mismatch_message("pred", pred_p.shape, gt_p.shape))
    if lr_p is not None:
        scale = scale_for(lr_p.shape, gt_p.shape, scale)
    baseline_name = baseline_name or baseline_label(scale)
    if baseline is None:
        if lr_p is None:
            raise InputError("baseline: pass a baseline image or the lr image to compute it")
        assert scale is not None
        base_p = upsample(lr_p, scale, "bicubic").astype(np.float64)
        base_p = base_p[: gt_p.shape[0], : gt_p.shape[1]]
    else:
        base_p = _pick_plane(baseline, plane, baseline_name).astype(np.float64)
    if base_p.shape != gt_p.shape:
        raise InputError(shape_mismatch_message(baseline_name, base_p.shape, gt_p.shape))
    if not isinstance(crop_size, int) or crop_size < 1:
        raise InputError(f"crop_size: expected a positive integer, got {crop_size!r}")

    lo, hi = gt_range(gt_p, 0.1, 99.9)
    gt_n = (gt_p - lo) / (hi - lo)
    pred_n = _fit(pred_p, gt_n)
    base_n = _fit(base_p, gt_n)
    lr_n = None if lr_p is None else _fit_lr(lr_p, gt_n, scale or 1)
    metrics = {
        baseline_name: evaluate_pair(base_p, gt_p),
        PREDICTION: evaluate_pair(pred_p, gt_p),
    }
    if frc_curves is None:
        frc_curves = {PREDICTION: frc(pred_p, gt_p), baseline_name: frc(base_p, gt_p)}

    s = scale or 1
    side = max(s, min(crop_size, *gt_p.shape) // s * s)
    y0 = (gt_p.shape[0] - side) // 2 // s * s
    x0 = (gt_p.shape[1] - side) // 2 // s * s
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    lr_window = (slice(y0 // s, (y0 + side) // s), slice(x0 // s, (x0 + side) // s))
    crops = {
        f"low resolution (×{s})": None if lr_n is None else lr_n[lr_window],
        baseline_name: base_n[window],
        PREDICTION: pred_n[window],
        "ground truth": gt_n[window],
    }
    errors = {
        baseline_name: np.abs(base_n - gt_n)[window],
        PREDICTION: np.abs(pred_n - gt_n)[window],
    }
    fig = _draw(crops, errors, metrics, frc_curves, figsize=figsize, dpi=dpi, title=title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _fit(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    a, b = affine_fit(x, target)
    return a * x + b


def _fit_lr(lr: np.ndarray, gt_n: np.ndarray, scale: int) -> np.ndarray:
    """Map the LR input onto the normalised GT, fitted against GT block means."""
    h = min(lr.shape[0], gt_n.shape[0] // scale)
    w = min(lr.shape[1], gt_n.shape[1] // scale)
    blocks = gt_n[: h * scale, : w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3))
    a, b = affine_fit(lr[:h, :w], blocks)
    return a * lr + b


def _draw(
    crops: Mapping[str, np.ndarray | None],
    errors: Mapping[str, np.ndarray],
    metrics: Mapping[str, Mapping[str, float]],
    frc_curves: Mapping[str, FRCResult],
    *,
    figsize: tuple[float, float],
    dpi: int,
    title: str | None,
) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 4)
    for col, (label, crop) in enumerate(crops.items()):
        ax = fig.add_subplot(grid[0, col])
        ax.set_xticks([])
        ax.set_yticks([])
        if crop is None:
            ax.text(0.5, 0.5, "no low-resolution input", ha="center", va="center")
            ax.set_title(label)
            continue
        ax.imshow(crop, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(_panel_title(label, metrics.get(label)))
    vmax = max(float(np.percentile(e, 99.5)) for e in errors.values()) or 1.0
    error_axes = []
    image = None
    for col, (label, err) in enumerate(errors.items()):
        ax = fig.add_subplot(grid[1, col])
        image = ax.imshow(err, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"|{label} − ground truth|")
        ax.set_xticks([])
        ax.set_yticks([])
        error_axes.append(ax)
    if image is not None:
        fig.colorbar(
            image,
            ax=error_axes,
            location="bottom",
            shrink=0.6,
            aspect=40,
            label="absolute error (normalised units)",
        )
    ax = fig.add_subplot(grid[1, 2:])
    _plot_frc(ax, frc_curves)
    if title:
        fig.suptitle(title)
    return fig


def _panel_title(label: str, values: Mapping[str, float] | None) -> str:
    if values is None:
        return label
    return f"{label}\nPSNR norm {values['psnr_norm']:.2f} dB, SSIM norm {values['ssim_norm']:.3f}"


def _plot_frc(ax: Any, curves: Mapping[str, FRCResult]) -> None:
    if not curves:
        ax.set_axis_off()
        return
    threshold = next(iter(curves.values())).threshold
    for label, curve in curves.items():
        (line,) = ax.plot(curve.frequencies, curve.correlation, label=_frc_label(label, curve))
        if curve.crossing_frequency is not None:
            ax.axvline(curve.crossing_frequency, color=line.get_color(), ls=":", lw=1)
    name = "1/7 threshold" if abs(threshold - 1 / 7) < 1e-9 else f"threshold {threshold:.3g}"
    ax.axhline(threshold, color="black", ls="--", lw=1, label=name)
    ax.set_xlim(0.0, max(float(c.frequencies.max()) for c in curves.values()))
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlabel("spatial frequency (cycles/pixel)")
    ax.set_ylabel("Fourier ring correlation")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


#: Short forms of NGFF unit names for figure labels.
UNIT_SYMBOLS = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "angstrom": "Å"}


def _frc_label(label: str, curve: FRCResult) -> str:
    if curve.resolution_px is None:
        return f"{label} (above threshold)"
    text = f"{label} ({curve.resolution_px:.2f} px"
    if curve.resolution is not None:
        unit = UNIT_SYMBOLS.get(curve.unit or "", curve.unit or "units")
        text += f" = {curve.resolution:.4g} {unit}"
    return text + ")"
