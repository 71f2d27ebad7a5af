"""``decrappify crappify`` and ``decrappify sample``."""

from __future__ import annotations

from pathlib import Path

import typer

from decrappify.cli._shell import (
    drive,
    err_console,
    handle_errors,
    out_console,
    raise_on_failures,
    summary_table,
    usage,
)
from decrappify.config.choices import CrappifyPreset, OutFormat, SampleKind


@handle_errors
def crappify(
    inputs: list[Path] = typer.Argument(
        None, help="High-res images: TIFF, Zarr/OME-Zarr, folders or globs.", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (one file per input)."
    ),
    preset: CrappifyPreset = typer.Option(
        CrappifyPreset.EM, "--preset", "-p", help="Degradation preset."
    ),
    scale: int | None = typer.Option(None, "--scale", "-s", help="Downsampling factor (1-16)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same output)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Crappify YAML config (overrides --preset)."
    ),
    fmt: OutFormat = typer.Option(OutFormat.TIF, "--format", "-f", help="Output format."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    fit: list[Path] | None = typer.Option(
        None,
        "--fit",
        help="Fit the noise model to real low-res images instead: files, folders or quoted "
        "globs (repeatable; without --hr, INPUTS are fitted too).",
    ),
    hr: list[Path] | None = typer.Option(
        None,
        "--hr",
        help="With --fit: the matching high-res images, paired by name (folders, quoted "
        "globs) or in the order given (files, one per --hr).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Turn high-res images into realistic low-res, noisy inputs (or fit a noise model)."""
    from decrappify import api

    if fit:
        # ``--fit a.tif b.tif`` (or a shell glob) leaves b.tif among the INPUTS: fit them all
        result = api.fit_crappifier([*fit, *(inputs or [])], hr, out=out, overwrite=overwrite)
        err_console.print(result.report(), highlight=False, markup=False)
        if out is not None:
            err_console.print(f"fitted config written to {out}", markup=False)
        else:
            out_console.print(result.to_yaml(), highlight=False, markup=False)
        return
    if not inputs:
        raise usage("crappify: give at least one INPUT image (or --fit LR...)")
    if out is None:
        raise usage("crappify: --out DIR is required")
    cfg = api.crappify_config(preset.value, config_file=config, scale=scale)
    results = drive(
        api.iter_crappify(inputs, out, config=cfg, seed=seed, fmt=fmt.value, overwrite=overwrite),
        quiet=quiet,
    )
    rows = [
        (
            Path(r.input).name,
            "ok" if r.ok else "FAILED",
            r.output or r.error,
            " → ".join(
                str(tuple(r.info[k])) for k in ("input_shape", "output_shape") if k in r.info
            ),
            f"{r.seconds:.1f}",
        )
        for r in results
    ]
    err_console.print(
        summary_table("crappify", ["input", "status", "output / error", "shape", "s"], rows)
    )
    raise_on_failures(results)


@handle_errors
def sample(
    kind: SampleKind = typer.Option(SampleKind.EM, "--kind", "-k", help="What to synthesise."),
    size: int = typer.Option(1024, "--size", help="Edge length in pixels (square 2D image)."),
    depth: int = typer.Option(0, "--depth", help="Planes for a ZYX stack (0: a 2D image)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.tif or .zarr)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write synthetic EM or fluorescence data (generated here, no downloads)."""
    from decrappify import api

    shape = (depth, size, size) if depth else (size, size)
    path = drive(
        api.iter_sample(kind.value, out, size=shape, seed=seed, overwrite=overwrite), quiet=quiet
    )
    err_console.print(f"wrote {path}", markup=False)
