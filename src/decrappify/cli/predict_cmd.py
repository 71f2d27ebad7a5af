"""``decrappify predict``: super-resolve images larger than memory with a trained model."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from decrappify.cli._shell import (
    drive,
    err_console,
    fail,
    handle_errors,
    raise_on_failures,
    summary_table,
)


class OutFormat(str, Enum):
    """Output formats."""

    zarr = "zarr"
    tif = "tif"


class Device(str, Enum):
    """Devices (``cuda:N`` is accepted too)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class OutDtype(str, Enum):
    """Output pixel types."""

    uint8 = "uint8"
    uint16 = "uint16"
    float32 = "float32"


class Cluster(str, Enum):
    """Cluster kinds."""

    local = "local"


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
        With ``error: --overlap must be 'auto' or an integer >= 0 (got 'x')``.
    """
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value.isdigit():
        return int(value)
    raise fail(f"--overlap must be 'auto' or an integer >= 0 (got {text!r})")


@handle_errors
def predict(
    model: Path = typer.Argument(
        ..., help="Model file (.safetensors) or folder written by training.", show_default=False
    ),
    inputs: list[Path] = typer.Argument(
        None, help="Low-res images: TIFF, Zarr/OME-Zarr, folders or globs.", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (one <stem>.zarr or <stem>.tif per input)."
    ),
    fmt: OutFormat = typer.Option(OutFormat.zarr, "--format", "-f", help="Output format."),
    tile: int = typer.Option(
        128, "--tile", help="Tile side in input pixels (tile × scale: a multiple of 32)."
    ),
    overlap: str = typer.Option(
        "auto", "--overlap", help="Tile overlap in input pixels, or 'auto' (receptive field)."
    ),
    batch: int = typer.Option(8, "--batch", "-b", help="Tiles per forward pass."),
    device: str = typer.Option(
        "auto", "--device", "-d", help="auto (CUDA if present), cpu, cuda or cuda:N."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Address of a dask.distributed scheduler (tcp://host:8786)."
    ),
    cluster: Cluster | None = typer.Option(
        None, "--cluster", help="Start a local cluster: one worker per GPU, or --workers CPU."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Workers of --cluster local (default: GPUs, or 2 on CPU)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Finish interrupted outputs; keep the finished ones."
    ),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network first."),
    dtype: OutDtype | None = typer.Option(
        None, "--dtype", help="Output pixel type (default: the input's)."
    ),
    report: Path | None = typer.Option(None, "--report", help="Write a JSON report here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch threads on CPU (default: all available cores)."
    ),
    scale: int | None = typer.Option(
        None, "--scale", help="Refuse the model unless it upsamples by this factor."
    ),
    chunk: int | None = typer.Option(
        None, "--chunk", help="OME-Zarr chunk side in output pixels (default 1024)."
    ),
    block: int | None = typer.Option(
        None, "--block", help="Output pixels computed at once per side (default 2048)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Super-resolve images tile by tile into OME-Zarr or BigTIFF (memory bounded by tiles)."""
    from decrappify import api

    if not inputs:
        raise fail("predict: give at least one INPUT image")
    if out is None:
        raise fail("predict: --out DIR is required")
    if scheduler is not None and cluster is not None:
        raise fail("predict: give either --scheduler ADDRESS or --cluster local, not both")
    if workers is not None and cluster is None:
        raise fail("predict: --workers applies to --cluster local")
    settings: dict[str, Any] = {
        "fmt": fmt.value,
        "tile": tile,
        "overlap": parse_overlap(overlap),
        "batch": batch,
        "device": device,
        "resume": resume,
        "scheduler": scheduler,
        "cluster": cluster.value if cluster is not None else None,
        "workers": workers,
        "out_dtype": dtype.value if dtype is not None else None,
        "compile": compile,
        "overwrite": overwrite,
        "threads": threads,
        "scale": scale,
        "chunk": chunk,
        "block": block,
    }
    results = drive(api.iter_predict(model, inputs, out, **settings), quiet=quiet)
    err_console.print(summary_table("predict", COLUMNS, [summary_row(r) for r in results]))
    if report is not None:
        write_report(report, model, settings, results)
        err_console.print(f"report written to {report}", markup=False)
    raise_on_failures(results)


#: Columns of the summary table.
COLUMNS = ["input", "status", "output / error", "shape", "s", "MPix/s"]


def summary_row(result: Any) -> tuple[str, ...]:
    """One row of the summary table.

    Parameters
    ----------
    result : FileResult
        One input's result.

    Returns
    -------
    tuple of str
        Input name, status, output or error, ``in → out`` shape, seconds, MPix/s.
    """
    info = result.info
    status = "ok" if result.ok else "FAILED"
    if result.ok and info.get("skipped"):
        status = "skipped"
    shapes = " → ".join(str(tuple(info[k])) for k in ("input_shape", "output_shape") if k in info)
    rate = f"{info['mpix_per_s']:.3g}" if "mpix_per_s" in info else ""
    return (
        Path(result.input).name,
        status,
        str(result.output or result.error),
        shapes,
        f"{result.seconds:.1f}",
        rate,
    )


def write_report(path: Path, model: Path, settings: dict[str, Any], results: list[Any]) -> None:
    """Write the JSON report of a batch (atomically).

    Parameters
    ----------
    path : Path
        The report file.
    model : Path
        The model used.
    settings : dict
        The command's settings.
    results : list of FileResult
        One per input.
    """
    from decrappify.io import atomic_write_text

    document = {
        "command": "predict",
        "model": str(model),
        "settings": settings,
        "ok": all(r.ok for r in results),
        "results": [r.to_dict() for r in results],
    }
    atomic_write_text(path, json.dumps(document, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
