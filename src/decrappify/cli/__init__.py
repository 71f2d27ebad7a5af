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
from decrappify.cli._typer import Command, Group

app = typer.Typer(
    name="decrappify",
    help=(
        "Microscopy super-resolution: crappify high-res images into realistic low-res inputs, "
        "train a U-Net generator and critic with NoGAN, super-resolve stacks larger than memory."
    ),
    no_args_is_help=True,
    cls=Group,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"decrappify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="-v: decrappify's debug messages; -vv: also those of the libraries it calls.",
    ),
    log_file: str | None = typer.Option(
        None, "--log-file", metavar="PATH", help="Also append the logs to this file."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    from decrappify.cli._shell import setup_logging

    setup_logging(verbose, log_file)


# options that take several files also take what a shell made of a pattern (--gt hr/*.tif)
_FILES = {
    "crappify": ("--fit", "--hr"),
    "evaluate": ("--pred", "--gt", "--lr", "--tune-lr", "--tune-gt"),
    "train": ("--hr", "--lr"),
}
for name, command in (
    ("crappify", crappify_cmd.crappify),
    ("sample", crappify_cmd.sample),
    ("evaluate", evaluate_cmd.evaluate),
    ("predict", predict_cmd.predict),
    ("train", train_cmd.train),
    ("info", train_cmd.info),
    ("export", export_cmd.export),
    ("demo", demo_cmd.demo),
):
    app.command(name, cls=greedy_command(*_FILES.get(name, ()), base=Command))(command)


def main() -> None:
    """Entry point of the ``decrappify`` script.

    torch's idle threads sleep (passive waits); SIGTERM and SIGHUP stop it as Ctrl-C does.
    """
    from decrappify.cli._signals import install_signal_handlers
    from decrappify.devices import prefer_passive_waits

    prefer_passive_waits()
    install_signal_handlers()
    app()
