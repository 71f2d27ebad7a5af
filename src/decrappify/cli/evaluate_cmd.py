"""``decrappify evaluate``: PSNR/SSIM/NRMSE/FRC of predictions against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from decrappify.cli._shell import (
    drive,
    err_console,
    fail,
    handle_errors,
    out_console,
    renamed,
    summary_table,
    warn,
)

if TYPE_CHECKING:
    from decrappify.metrics import MetricsTable


@handle_errors
def evaluate(
    pred: list[Path] = typer.Option(..., "--pred", help="Predictions (files, folders or globs)."),
    gt: list[Path] = typer.Option(
        ..., "--gt", help="Ground truths, paired with --pred by file name."
    ),
    lr: list[Path] | None = typer.Option(
        None, "--lr", help="Low-res inputs, paired by name, for the baselines."
    ),
    baselines: str = typer.Option(
        "auto",
        "--baselines",
        help=(
            "Comma-separated: auto (bicubic; the input itself at scale 1), nearest, bilinear, "
            "bicubic, input, and denoisers gaussian, nl-means, tv, bm3d (NAME=VALUE fixes the "
            "parameter, e.g. gaussian=1.5)."
        ),
    ),
    report_path: Path | None = typer.Option(
        None, "--report", help="Write the metrics as JSON (as predict --report)."
    ),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the metrics as CSV."),
    figure: Path | None = typer.Option(
        None,
        "--figure",
        help="PNG: LR | best baseline | prediction | GT crops, error maps, FRC.",
    ),
    crop: bool = typer.Option(False, "--crop", help="Compare the common region of other grids."),
    resize: bool = typer.Option(False, "--resize", help="Resample the prediction onto the GT."),
    scale: int | None = typer.Option(
        None, "--scale", "-s", help="LR → GT factor (default: inferred)."
    ),
    tune_lr: list[Path] | None = typer.Option(
        None, "--tune-lr", help="Noisy images (not evaluated) to tune the denoisers on."
    ),
    tune_gt: list[Path] | None = typer.Option(
        None, "--tune-gt", help="Ground truths of --tune-lr, paired by name."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    json_path: Path | None = typer.Option(None, "--json", hidden=True, help="Old --report."),
) -> None:
    """Score predictions against ground truth (and interpolation baselines from the LR)."""
    from decrappify import api

    report_path = renamed("--json", "--report", json_path, report_path)
    report = drive(
        api.iter_evaluate(
            pred,
            gt,
            lr or None,
            baselines=baselines if lr else None,
            json_path=report_path,
            csv_path=csv_path,
            figure=figure,
            crop=crop,
            resize=resize,
            scale=scale,
            tune_lr=tune_lr or None,
            tune_gt=tune_gt or None,
        ),
        quiet=quiet,
    )
    for tuned in report.tuned.values():
        err_console.print(
            f"{tuned.name}: {tuned.spec} chosen on {tuned.n_images} tuning images "
            f"({max(tuned.scores.values()):.2f} dB normalised PSNR there)"
        )
    for warning in report.warnings:
        warn(warning)
    for note in report.notes:
        err_console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    print_metrics(report.table, "evaluate")
    for path in report.written:
        err_console.print(f"wrote {path}", markup=False)
    if report.failed:
        for item in report.failed:
            fail(item["error"])
        total = len(report.failed) + len(report.results)
        raise fail(f"{len(report.failed)} of {total} pairs failed")


def print_metrics(table: MetricsTable, title: str) -> None:
    """Print the metrics: one row per image and method, or per image when that is too wide.

    Parameters
    ----------
    table : MetricsTable
        Rows ``image, method, metric...`` (the ``mean`` rows last).
    title : str
        Title of the wide table.
    """
    wide = summary_table(title, table.columns, table.rows)
    unbounded = out_console.options.update_width(10_000)
    if out_console.measure(wide, options=unbounded).maximum <= out_console.width:
        out_console.print(wide)
        return
    # a narrow terminal: each image as a table of metrics (rows) by methods (columns)
    images: dict[str, list[tuple[str, ...]]] = {}
    for row in table.rows:
        images.setdefault(row[0], []).append(row)
    for image, rows in images.items():
        columns = ("metric", *(row[1] for row in rows))
        cells = [
            (title, *(row[j] for row in rows)) for j, title in enumerate(table.columns) if j > 1
        ]
        out_console.print(summary_table(image, columns, cells))
