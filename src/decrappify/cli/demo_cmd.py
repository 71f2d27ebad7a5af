"""``decrappify demo``: the whole method end to end on generated data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from decrappify.cli._shell import drive, err_console, fail, handle_errors, out_console
from decrappify.cli.evaluate_cmd import print_metrics


@handle_errors
def demo(
    out: Path = typer.Option(Path("decrappify-demo"), "--out", "-o", help="Report folder (new)."),
    budget: str = typer.Option("5m", "--budget", help="Wall-clock budget, e.g. 5m, 20m, 1h."),
    kind: str = typer.Option("fluorescence", "--kind", help="Synthetic data: fluorescence or em."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    scale: int = typer.Option(
        4, "--scale", "-s", help="Super-resolution factor; 1 restores on the same grid."
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="Change a training setting of the demo's recipe: KEY=VALUE, e.g. data.patch_size=256.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    napari: bool = typer.Option(False, "--napari", help="Open the results in napari."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Generate data, crappify, train (NoGAN), super-resolve and score against bicubic.

    With --scale 1 the model restores on the same grid and is scored against the noisy
    input and Gaussian smoothing.
    """
    from decrappify import api
    from decrappify.config.base import parse_overrides

    if kind not in ("em", "fluorescence"):
        raise fail(f"--kind: expected em or fluorescence (got {kind!r})")
    if not 1 <= scale <= 8:
        raise fail(f"--scale: expected an integer from 1 to 8 (got {scale})")
    report = drive(
        api.iter_demo(
            out,
            budget=budget,
            kind=kind,
            seed=seed,
            scale=scale,
            overwrite=overwrite,
            overrides=parse_overrides(overrides, name="--set"),
        ),
        quiet=quiet,
    )
    print_metrics(report.table, "held-back images")
    verdict = "[green]beats[/]" if report.gain_db > 0 else "[red]does not beat[/]"
    out_console.print(
        f"model {verdict} {report.baseline} by {report.gain_db:+.2f} dB normalised PSNR "
        f"(demo took {report.seconds:.0f} s)"
    )
    for role, path in report.files.items():
        err_console.print(f"  {role:<18} {path}", highlight=False, markup=False)
    if napari:
        files = [
            report.files["test_hr"],
            report.files["test_lr"],
            report.files["predictions"],
        ]
        paths = [str(p) for folder in files for p in sorted(Path(folder).iterdir())]
        cmd = [sys.executable, "-m", "napari", *paths, "-w", "decrappify", "__all__"]
        err_console.print("opening napari: " + " ".join(cmd[2:]), highlight=False, markup=False)
        raise typer.Exit(subprocess.call(cmd))
