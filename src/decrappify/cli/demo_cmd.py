"""``decrappify demo``: the whole method end to end on generated data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from decrappify.cli._shell import (
    drive,
    err_console,
    handle_errors,
    out_console,
    renamed,
    usage,
    usage_errors,
)
from decrappify.cli.evaluate_cmd import print_metrics
from decrappify.config.choices import SampleKind

#: The demo's budget when none is given.
DEFAULT_BUDGET = "5m"


@handle_errors
def demo(
    out: Path = typer.Option(Path("decrappify-demo"), "--out", "-o", help="Report folder (new)."),
    time_budget: str = typer.Option(
        DEFAULT_BUDGET,
        "--time-budget",
        "-t",
        metavar="DURATION",
        help="Wall-clock budget of the whole demo: 5m, 20m, 1h30m, 3600 (seconds).",
    ),
    kind: SampleKind = typer.Option(
        SampleKind.FLUORESCENCE, "--kind", "-k", help="What to synthesise."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    scale: int = typer.Option(
        4, "--scale", "-s", help="Super-resolution factor; 1 restores on the same grid."
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="KEY=VALUE",
        help="Change a training setting of the demo's recipe: KEY=VALUE, e.g. data.patch_size=256.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    napari: bool = typer.Option(False, "--napari", help="Open the results in napari."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    budget: str | None = typer.Option(None, "--budget", hidden=True, help="Old --time-budget."),
) -> None:
    """Generate data, crappify, train (NoGAN), super-resolve and score against bicubic.

    With --scale 1 the model restores on the same grid and is scored against the noisy
    input and Gaussian smoothing.
    """
    from decrappify import api
    from decrappify.config.base import parse_overrides
    from decrappify.durations import parse_duration

    time_budget = renamed("--budget", "--time-budget", budget, time_budget, DEFAULT_BUDGET)
    if not 1 <= scale <= 8:
        raise usage(f"--scale: expected an integer from 1 to 8 (got {scale})")
    with usage_errors():
        parse_duration(time_budget, name="--time-budget")
        changes = parse_overrides(overrides, name="--set")
    report = drive(
        api.iter_demo(
            out,
            time_budget=time_budget,
            kind=kind.value,
            seed=seed,
            scale=scale,
            overwrite=overwrite,
            overrides=changes,
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
        cmd = [sys.executable, "-m", "napari", *paths, "-w", "decrappify", "All tools"]
        err_console.print("opening napari: " + " ".join(cmd[2:]), highlight=False, markup=False)
        raise typer.Exit(subprocess.call(cmd))
