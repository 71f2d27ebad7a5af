"""``decrappify predict``: super-resolve images larger than memory with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from decrappify.cli._shell import (
    drive,
    err_console,
    handle_errors,
    raise_on_failures,
    summary_table,
    usage,
    usage_errors,
)
from decrappify.config.choices import Cluster, OutDtype, OutFormat
from decrappify.config.predict import PredictConfig


def _default(name: str) -> Any:
    return PredictConfig.model_fields[name].default


def _help(name: str) -> str:
    return str(PredictConfig.model_fields[name].description)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether an option was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")


#: The options that are settings of :class:`PredictConfig` (typer parameter -> setting).
SETTINGS = {
    "fmt": "format",
    "tile": "tile",
    "overlap": "overlap",
    "batch": "batch",
    "device": "device",
    "scheduler": "scheduler",
    "cluster": "cluster",
    "workers": "workers",
    "resume": "resume",
    "compile": "compile",
    "dtype": "dtype",
    "overwrite": "overwrite",
    "threads": "threads",
    "scale": "scale",
    "chunk": "chunk",
    "block": "block",
    "tta": "tta",
    "consistency": "consistency",
}


def parse_overlap(text: str) -> int | str:
    """Parse ``--overlap``: ``auto`` or a non-negative integer.

    Parameters
    ----------
    text : str
        What the user typed.

    Returns
    -------
    int or str
        The overlap, or ``"auto"``.

    Raises
    ------
    typer.Exit
        A usage error: ``error: --overlap must be 'auto' or an integer >= 0 (got 'x')``.
    """
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value.isdigit():
        return int(value)
    raise usage(f"--overlap must be 'auto' or an integer >= 0 (got {text!r})")


@handle_errors
def predict(
    ctx: typer.Context,
    model: Path = typer.Argument(
        ..., help="Model file (.safetensors) or folder written by training.", show_default=False
    ),
    inputs: list[Path] = typer.Argument(
        ..., help="Low-res images: TIFF, Zarr/OME-Zarr, folders or globs.", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (one <stem>.zarr or <stem>.tif per input)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Prediction YAML (keys as these flags); flags override it."
    ),
    fmt: OutFormat = typer.Option(_default("format"), "--format", "-f", help=_help("format")),
    tile: int = typer.Option(_default("tile"), "--tile", help=_help("tile")),
    overlap: str = typer.Option(_default("overlap"), "--overlap", help=_help("overlap")),
    batch: int = typer.Option(_default("batch"), "--batch", "-b", help=_help("batch")),
    device: str = typer.Option(_default("device"), "--device", "-d", help=_help("device")),
    scheduler: str | None = typer.Option(None, "--scheduler", help=_help("scheduler")),
    cluster: Cluster | None = typer.Option(None, "--cluster", help=_help("cluster")),
    workers: int | None = typer.Option(None, "--workers", help=_help("workers")),
    resume: bool = typer.Option(False, "--resume", help=_help("resume")),
    compile: bool = typer.Option(False, "--compile", help=_help("compile")),
    dtype: OutDtype | None = typer.Option(None, "--dtype", help=_help("dtype")),
    report: Path | None = typer.Option(None, "--report", help="Write a JSON report here."),
    overwrite: bool = typer.Option(False, "--overwrite", help=_help("overwrite")),
    threads: int | None = typer.Option(None, "--threads", help=_help("threads")),
    scale: int | None = typer.Option(None, "--scale", "-s", help=_help("scale")),
    chunk: int | None = typer.Option(None, "--chunk", help=_help("chunk")),
    block: int | None = typer.Option(None, "--block", help=_help("block")),
    tta: bool = typer.Option(_default("tta"), "--tta/--no-tta", help=_help("tta")),
    consistency: bool = typer.Option(
        _default("consistency"), "--consistency/--no-consistency", help=_help("consistency")
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Super-resolve images tile by tile into OME-Zarr or BigTIFF (memory bounded by tiles)."""
    from decrappify import api

    if out is None:
        raise usage("predict: --out DIR is required")
    given = {
        setting: ctx.params[name]
        for name, setting in SETTINGS.items()
        if _given(ctx, name) and ctx.params[name] is not None
    }
    if "overlap" in given:
        given["overlap"] = parse_overlap(overlap)
    with usage_errors():  # the flags alone: a bad one is a usage error
        api.predict_config(None, **given)
    settings = api.predict_config(config, **given)
    if settings.scheduler is not None and settings.cluster is not None:
        raise usage("predict: give either --scheduler ADDRESS or --cluster local, not both")
    if settings.workers is not None and settings.cluster is None:
        raise usage("predict: --workers applies to --cluster local")
    results = drive(api.iter_predict(model, inputs, out, settings, report=report), quiet=quiet)
    columns = summary_columns(results)
    rows = [summary_row(r, columns) for r in results]
    err_console.print(summary_table("predict", columns, rows))
    if report is not None:
        err_console.print(f"report written to {report}", markup=False)
    raise_on_failures(results)


#: Columns of the summary table (the trust maps' columns follow when there are maps).
COLUMNS = ["input", "status", "output / error", "shape", "s", "MPix/s"]
#: Columns of the trust maps' summaries.
TRUST_COLUMNS = {"consistency": "consistency", "uncertainty": "TTA spread"}


def summary_columns(results: list[Any]) -> list[str]:
    """List the summary table's columns: :data:`COLUMNS`, then one per trust map made.

    Parameters
    ----------
    results : list of FileResult
        The batch's results.

    Returns
    -------
    list of str
        Column titles.
    """
    made = {name for r in results for name in r.info.get("trust", {})}
    return [*COLUMNS, *(title for name, title in TRUST_COLUMNS.items() if name in made)]


def summary_row(result: Any, columns: list[str] = COLUMNS) -> tuple[str, ...]:
    """One row of the summary table.

    Parameters
    ----------
    result : FileResult
        One input's result.
    columns : list of str
        The table's columns (:func:`summary_columns`).

    Returns
    -------
    tuple of str
        Input name, status, output or error, ``in → out`` shape, seconds, MPix/s, then
        the trust maps' summaries: the consistency score (RMS in noise standard
        deviations, about 1 when the input explains the output) with the fraction of
        pixels flagged, and the mean TTA spread in % of the intensity range.
    """
    info = result.info
    status = "ok" if result.ok else "FAILED"
    if result.ok and info.get("skipped"):
        status = "skipped"
    shapes = " → ".join(str(tuple(info[k])) for k in ("input_shape", "output_shape") if k in info)
    rate = f"{info['mpix_per_s']:.3g}" if "mpix_per_s" in info else ""
    trust = info.get("trust", {})
    shown = [trust_cell(n, trust.get(n)) for n, title in TRUST_COLUMNS.items() if title in columns]
    return (
        Path(result.input).name,
        status,
        str(result.output or result.error),
        shapes,
        f"{result.seconds:.1f}",
        rate,
        *shown,
    )


def trust_cell(name: str, summary: dict[str, Any] | None) -> str:
    """Table text of one trust map's summary (empty when there is none).

    Parameters
    ----------
    name : {"consistency", "uncertainty"}
        The map.
    summary : dict or None
        Its summary in the result's ``trust``.

    Returns
    -------
    str
        ``"1.04 (0.02 % > 4σ)"``, ``"0.81 %"``, ``"— (why)"`` or ``""``.
    """
    if not summary:
        return ""
    if "skipped" in summary:
        return f"— ({summary['skipped']})"
    if name == "consistency":
        return f"{summary['score']:.2f} ({100 * summary['flagged_fraction']:.2g} % > 4σ)"
    return f"{100 * summary['mean']:.2g} %"
