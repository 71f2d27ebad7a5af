"""What every command shares: the console, error handling, progress bars and summary tables."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from decrappify.cli._signals import interrupted_message
from decrappify.errors import DecrappifyError
from decrappify.events import Progress as ProgressEvent
from decrappify.io.atomic import WRITE_ERRORS, write_errno

#: Exit statuses: success; an input or the run failed; a usage error (bad or missing
#: option or argument); interrupted (Ctrl-C, and SIGTERM where the command handles it).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Width of output that is not a terminal (a pipe, a file): lines are never wrapped there.
UNWRAPPED_WIDTH = 10_000


def _console(stderr: bool) -> Console:
    """A console that wraps to the terminal, and not at all when piped (unless COLUMNS says)."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = UNWRAPPED_WIDTH if piped and "COLUMNS" not in os.environ else None
    return Console(stderr=stderr, width=width, soft_wrap=piped)


#: Progress, logs and errors go to stderr; results (tables, YAML) to stdout.
err_console = _console(stderr=True)
out_console = _console(stderr=False)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int = 0, log_file: str | None = None) -> None:
    """Send the ``decrappify`` logger to stderr (and optionally a file).

    Parameters
    ----------
    verbose : int
        0: decrappify's INFO messages; 1 (``-v``): its DEBUG messages too; 2 (``-vv``):
        also the DEBUG messages of the libraries it calls (tifffile, zarr, dask, torch).
    log_file : str or None
        Also append plain-text log lines to this file.

    Raises
    ------
    typer.Exit
        With ``error: --log-file PATH: cannot write (...)`` when the file cannot be opened.
    """
    logger = logging.getLogger("decrappify")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.handlers.clear()
    handler = RichHandler(console=err_console, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_decrappify", False)]:
        root.removeHandler(old)
    if verbose >= 2:  # the libraries' own loggers, through the root logger
        libraries = RichHandler(console=err_console, show_path=True, markup=False)
        libraries._decrappify = True  # type: ignore[attr-defined]
        root.addHandler(libraries)
        root.setLevel(logging.DEBUG)
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file)
        except OSError as err:
            raise fail(f"--log-file {log_file}: cannot write ({err.strerror or err})") from None
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    logger.propagate = False


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise.

    Parameters
    ----------
    message : str
        One line naming the file or parameter and what was expected.
    code : int
        Exit status.

    Returns
    -------
    typer.Exit
        Raise it.
    """
    try:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    except OSError:  # the terminal is gone (SIGHUP): the exit status still tells
        pass
    return typer.Exit(code)


#: System errors that only writing causes (a permission error may be a read's).
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def usage(message: str) -> typer.Exit:
    """Print a usage error (``error: message``) and return the exit to raise (status 2).

    Parameters
    ----------
    message : str
        One line naming the option or argument and what is expected.

    Returns
    -------
    typer.Exit
        Raise it.
    """
    return fail(message, code=EXIT_USAGE)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr.

    Parameters
    ----------
    message : str
        One line.
    """
    err_console.print(
        f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Report an error in the command line's values as a usage error (exit status 2).

    Wrap the parsing of options (``--set KEY=VALUE``, a duration, the settings the flags
    make); errors in files and inputs stay exit status 1.

    Raises
    ------
    typer.Exit
        With status 2 and the error's message.
    """
    try:
        yield
    except DecrappifyError as err:
        raise usage(str(err)) from None


def renamed(old: str, new: str, old_value: Any, value: Any, default: Any = None) -> Any:
    """The value of an option given under its old name, with a deprecation warning.

    Parameters
    ----------
    old, new : str
        The old (hidden) and the new spelling.
    old_value : object
        What the old option received (None when not given).
    value : object
        What the new option received.
    default : object
        The new option's default (to tell whether it was given).

    Returns
    -------
    object
        ``old_value`` when only the old spelling was given, else ``value``.

    Raises
    ------
    typer.Exit
        A usage error when both spellings are given.
    """
    if old_value is None:
        return value
    if value != default:
        raise usage(f"{old} is the old name of {new}: give only {new}")
    warn(f"{old} is deprecated and will be removed; use {new}")
    return old_value


def handle_errors(func: F) -> F:
    """Turn :class:`DecrappifyError` and Ctrl-C into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DecrappifyError as err:
            raise fail(str(err)) from None
        except KeyboardInterrupt as err:
            raise fail(*interrupted_message(err)) from None
        except OSError as err:  # a full disk ... where no writer named the output
            number = write_errno(err)
            if number not in _FULL:
                raise
            where = f"{err.filename}: " if err.filename else ""
            raise fail(f"{where}cannot write it: {WRITE_ERRORS[number]}") from None

    return wrapper  # type: ignore[return-value]


def drive(events: Generator[ProgressEvent, None, T], *, quiet: bool = False) -> T:
    """Run a generator of progress events with one rich progress bar per phase.

    Parameters
    ----------
    events : generator
        Yields :class:`decrappify.events.Progress`, returns the result.
    quiet : bool
        Show no bars.

    Returns
    -------
    object
        The generator's return value.
    """
    columns = (
        TextColumn("{task.description}", markup=False, style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[str, Any] = {}
    with Progress(*columns, console=err_console, disable=quiet, transient=False) as bar:
        try:
            while True:
                event = next(events)
                key = event.phase
                if key not in tasks:
                    tasks[key] = bar.add_task(event.phase, total=event.total, status="")
                bar.update(
                    tasks[key],
                    completed=event.step,
                    total=event.total,
                    status=status_text(event),
                )
        except StopIteration as stop:
            return stop.value
        except KeyboardInterrupt as stop:
            # came while drawing: unwind the work from inside, so it cleans up and
            # notes what finished (the same exception comes back out)
            _throw(events, stop)
            raise
        finally:
            events.close()


def _throw(events: Generator[Any, None, Any], stop: BaseException) -> None:
    """Raise ``stop`` inside a suspended generator and let it unwind (it re-raises)."""
    try:
        events.throw(stop)
    except BaseException as err:
        if err is not stop:
            raise
    # a generator that swallowed it is closed by the caller


def status_text(event: ProgressEvent) -> str:
    """Short status of an event: its message, losses and metrics.

    Parameters
    ----------
    event : Progress
        The event.

    Returns
    -------
    str
        Text for the progress bar.
    """
    parts = [event.message] if event.message else []
    parts += [f"{k} {v:.4g}" for k, v in event.losses.items()]
    parts += [f"{k} {v:.4g}" for k, v in event.metrics.items()]
    rate = event.info.get("rate")
    if rate:
        parts.append(str(rate))
    return "  ".join(parts)


def summary_table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """Build a rich table.

    Parameters
    ----------
    title : str
        Table title.
    columns : iterable of str
        Column headers.
    rows : iterable of iterables
        Cell values (formatted with ``str``).

    Returns
    -------
    rich.table.Table
        The table.
    """
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    return table


def raise_on_failures(results: list[Any]) -> None:
    """Print one ``error:`` line per failed input and exit 1 if any failed.

    Parameters
    ----------
    results : list of FileResult
        The batch results.

    Raises
    ------
    typer.Exit
        With code 1 when at least one input failed.
    """
    failed = [r for r in results if not r.ok]
    for r in failed:
        err_console.print(
            f"[bold red]error:[/] {escape(str(r.error))}", highlight=False, soft_wrap=True
        )
    if failed:
        raise fail(f"{len(failed)} of {len(results)} inputs failed")


def spread_values(args: list[str], names: frozenset[str]) -> list[str]:
    """Give each value after a multi-file option its own option: ``--gt a b`` → ``--gt a --gt b``.

    A shell expands ``--gt hr/*.tif`` into ``--gt hr/a.tif hr/b.tif``; click would take
    ``hr/b.tif`` for an extra argument. The values run until the next option (or ``--``).

    Parameters
    ----------
    args : list of str
        The command's arguments.
    names : frozenset of str
        The options that take several files (``"--gt"``).

    Returns
    -------
    list of str
        The arguments with the option repeated before each value.
    """
    out: list[str] = []
    current, pending = None, False
    for index, arg in enumerate(args):
        if arg == "--":
            out += args[index:]
            break
        if arg.startswith("-") and len(arg) > 1:
            name, equals, _ = arg.partition("=")
            current = name if name in names else None
            pending = current is not None and not equals
            out.append(arg)
        elif pending:
            out.append(arg)
            pending = False
        elif current is not None:
            out += [current, arg]
        else:
            out.append(arg)
    return out


def greedy_command(*names: str, base: type[TyperCommand] = TyperCommand) -> type[TyperCommand]:
    """A command class whose options ``names`` take every file that follows them.

    Parameters
    ----------
    *names : str
        Option names (``"--pred"``, ``"--gt"``).
    base : type
        The command class to extend (the app's :class:`~decrappify.cli._typer.Command`).

    Returns
    -------
    type
        A :class:`typer.core.TyperCommand` that applies :func:`spread_values` first.
    """
    greedy = frozenset(names)

    class GreedyCommand(base):  # type: ignore[valid-type, misc]
        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            # str(): callers in Python (typer's CliRunner) may pass paths
            return super().parse_args(ctx, spread_values([str(a) for a in args], greedy))

    return GreedyCommand
