"""Reports of evaluation results: JSON, CSV and a text table (the figure: :mod:`.figure`).

Every writer is atomic: the file is written under a temporary name beside the target
(``.<name>.partial``) and renamed over it at the end, so an interrupted run never leaves a
half-written report.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io.atomic import atomic_write
from decrappify.metrics.core import METRIC_NAMES
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
    "frc_px": "FRC res. (px)",
}

Results = Mapping[str, "StackResult | Mapping[str, Any]"]


def as_stack_result(value: StackResult | Mapping[str, Any], name: str = "image") -> StackResult:
    """Accept a :class:`StackResult` or a dict from :func:`evaluate_pair`.

    Parameters
    ----------
    value : StackResult or dict
        A stack result, or one image's metrics (the metric keys of ``METRIC_NAMES``, optionally with
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
    entry["pixel_size"] = result.pixel_size
    entry["unit"] = result.unit
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
        ``{name: {"psnr", "ssim", "nrmse", "psnr_norm", "ssim_norm", "si_psnr", "frc_px"``
        (means over the planes), ``"sd"`` (their sample standard deviations),
        ``"n_slices"``, ``"axes"``, ``"shape"``, ``"scale"``, ``"data_range"``,
        ``"norm_percentiles"``, ``"pixel_size"`` and ``"unit"`` (X of the ground truth, or
        None; ``frc_px * pixel_size`` is the FRC resolution as a length),
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
        Columns ``image, method`` and the seven metrics. Cells of stacks read
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
