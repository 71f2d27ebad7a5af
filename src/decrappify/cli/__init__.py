"""The ``decrappify`` command line: a thin typer shell over :mod:`decrappify.api`.

Importing this module (and ``decrappify --help``) imports neither torch nor napari.
"""

from __future__ import annotations

import typer

from decrappify import __version__
from decrappify.cli import (
    crappify_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    predict_cmd,
    train_cmd,
)
from decrappify.cli._shell import greedy_command

app = typer.Typer(
    name="decrappify",
    help=(
        "Microscopy super-resolution: crappify high-res images into realistic low-res inputs, "
        "train a U-Net generator and critic with NoGAN, super-resolve stacks larger than memory."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"decrappify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output."),
    log_file: str | None = typer.Option(None, "--log-file", help="Also write logs to this file."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    from decrappify.cli._shell import setup_logging

    setup_logging(verbose, log_file)


# options that take several files also take what a shell made of a pattern (--gt hr/*.tif)
_FILES = {
    "crappify": greedy_command("--fit", "--hr"),
    "evaluate": greedy_command("--pred", "--gt", "--lr", "--tune-lr", "--tune-gt"),
    "train": greedy_command("--hr", "--lr"),
}
app.command("crappify", cls=_FILES["crappify"])(crappify_cmd.crappify)
app.command("sample")(crappify_cmd.sample)
app.command("evaluate", cls=_FILES["evaluate"])(evaluate_cmd.evaluate)
app.command("predict")(predict_cmd.predict)
app.command("train", cls=_FILES["train"])(train_cmd.train)
app.command("info")(train_cmd.info)
app.command("export")(export_cmd.export)
app.command("demo")(demo_cmd.demo)


def main() -> None:
    """Entry point of the ``decrappify`` script.

    torch's idle threads sleep (passive waits); SIGTERM and SIGHUP stop it as Ctrl-C does.
    """
    from decrappify.cli._shell import install_signal_handlers
    from decrappify.devices import prefer_passive_waits

    prefer_passive_waits()
    install_signal_handlers()
    app()
