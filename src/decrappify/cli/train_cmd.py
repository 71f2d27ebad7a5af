"""``decrappify train`` (NoGAN training) and ``decrappify info`` (a model's metadata)."""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape

from decrappify.cli._shell import (
    drive,
    err_console,
    handle_errors,
    out_console,
    summary_table,
    usage,
    usage_errors,
)
from decrappify.config.choices import CrappifyPreset, Encoder

T = TypeVar("T")


def with_last_metrics(events: Generator[Any, None, T]) -> Generator[Any, None, T]:
    """Show the last validation metrics on the steps between two checkpoints.

    Parameters
    ----------
    events : generator
        Training progress events.

    Yields
    ------
    Progress
        The events; those without metrics get ``"val psnr .. ssim .."`` as message.

    Returns
    -------
    object
        The training result.
    """
    last = ""
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return stop.value
            if event.metrics:
                last = "val " + " ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
            elif last and not event.message:
                event = replace(event, message=last)
            yield event
    finally:
        events.close()


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@handle_errors
def train(
    inputs: list[Path] = typer.Argument(
        None, help="High-res training images (same as --hr).", show_default=False
    ),
    hr: list[Path] | None = typer.Option(
        None, "--hr", help="High-res training images, folders or globs (repeatable)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run folder (config, log, curves, checkpoints, model/)."
    ),
    lr: list[Path] | None = typer.Option(
        None, "--lr", help="Aligned low-res images for paired data, one per --hr (repeatable)."
    ),
    preset: CrappifyPreset | None = typer.Option(
        None, "--preset", "-p", help="Crappify preset making the LR inputs (default em)."
    ),
    crappify_config: Path | None = typer.Option(
        None, "--crappify-config", help="Crappify YAML (e.g. from crappify --fit)."
    ),
    scale: int | None = typer.Option(None, "--scale", "-s", help="Super-resolution factor."),
    encoder: Encoder | None = typer.Option(None, "--encoder", help="Generator encoder."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Training YAML; options given here override it."
    ),
    time_budget: str | None = typer.Option(
        None,
        "--time-budget",
        "-t",
        metavar="DURATION",
        help="Wall-clock budget: 20m, 1h30m, 3600 (seconds).",
    ),
    device: str | None = typer.Option(
        None, "--device", "-d", help="auto (CUDA if present), cpu, cuda, cuda:N or mps."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default 0)."),
    start_from: str | None = typer.Option(
        None,
        "--from",
        help="Starting weights: auto (the shipped starting point that fits the run, the "
        "default), none (random), em-4x, fluo-4x, fluo-denoise or a model path.",
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="KEY=VALUE",
        help="Override any setting: KEY=VALUE, e.g. gan.max_steps=0.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a super-resolution generator with NoGAN (pretrain G, critic, short GAN)."""
    from decrappify import api
    from decrappify.config.base import parse_overrides
    from decrappify.durations import parse_duration

    if out is None:
        raise usage("train: --out RUN_DIR is required")
    with usage_errors():
        budget = None if time_budget is None else parse_duration(time_budget, name="--time-budget")
        changes = parse_overrides(overrides, name="--set")
    # under torchrun every process runs this command; process 0 alone shows and tells
    main_process = os.environ.get("RANK", "0") == "0"
    images = [*(inputs or []), *(hr or [])]
    if not images and not resume:
        raise usage("train: give the high-res training images with --hr PATH (or as arguments)")
    result = drive(
        with_last_metrics(
            api.iter_train(
                images or None,
                out,
                config=config,
                lr=lr or None,
                resume=resume,
                preset=preset.value if preset is not None else None,
                crappify_file=crappify_config,
                scale=scale,
                encoder=encoder.value if encoder is not None else None,
                time_budget=budget,
                device=device,
                seed=seed,
                start_from=start_from,
                overrides=changes,
            )
        ),
        quiet=quiet or not main_process,
    )
    if main_process:
        print_summary(result, out)


def print_summary(result: Any, out: Path) -> None:
    """Print what a finished run did: validation table, steps, best generator, model file."""
    if result.already_finished:
        err_console.print(f"{out}: this run is already finished; nothing to do", markup=False)
    print_validation(result)
    steps = ", ".join(f"{k} {v}" for k, v in result.steps.items())
    best = result.best
    err_console.print(
        f"steps: {steps}\nbest generator: {best.get('phase')} (cycle "
        f"{(best.get('cycle') or 0) + 1}, step {best.get('step')}); "
        f"{result.seconds / 60:.1f} min of training\nmodel: {result.model_path}",
        highlight=False,
        markup=False,
    )


def print_validation(result: Any) -> None:
    """Print the validation table: the classical methods, the model, and the self-check's verdict.

    Parameters
    ----------
    result : TrainResult
        A finished run (its ``self_check`` when the run made one, else its baseline).
    """
    from decrappify.api import self_check_summary

    check = result.self_check
    if check:
        rows = [
            (name, _fmt(v.get("psnr")), _fmt(v.get("ssim"), 4))
            for name, v in check["baselines"].items()
        ]
    else:  # the baseline is bicubic, or the input itself at scale 1
        b = result.baseline
        rows = [(result.baseline_name, _fmt(b.get("psnr")), _fmt(b.get("ssim"), 4))]
    rows.append(("model", _fmt(result.metrics.get("psnr")), _fmt(result.metrics.get("ssim"), 4)))
    err_console.print(summary_table("validation crops", ["", "PSNR (dB)", "SSIM"], rows))
    _, warning = self_check_summary(check)
    if warning:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    elif check:
        err_console.print("self-check: the model beats every classical method above", markup=False)


@handle_errors
def info(
    model: Path = typer.Argument(
        ..., help="Model folder or .safetensors file.", show_default=False
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the full metadata record as JSON instead."
    ),
) -> None:
    """Summarise a trained model's metadata (network, normalisation, crappifier, training)."""
    from decrappify import api
    from decrappify.models.summary import describe_model

    meta = api.model_info(model)
    text = meta.model_dump_json(indent=2) if as_json else describe_model(meta)
    out_console.print(text, highlight=False, markup=False, soft_wrap=as_json)
