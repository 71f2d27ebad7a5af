"""What every command shares: the console, error handling, progress bars and summary tables."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Iterable
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

from decrappify.errors import DecrappifyError
from decrappify.events import Progress as ProgressEvent

#: Progress, logs and errors go to stderr; results (tables, YAML) to stdout.
err_console = Console(stderr=True)
out_console = Console()

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int = 0, log_file: str | None = None) -> None:
    """Send the ``decrappify`` logger to stderr (and optionally a file).

    Parameters
    ----------
    verbose : int
        0 for INFO, 1 or more for DEBUG.
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
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file)
        except OSError as err:
            raise fail(f"--log-file {log_file}: cannot write ({err.strerror or err})") from None
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    logger.propagate = False


def fail(message: str, code: int = 1) -> typer.Exit:
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
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn :class:`DecrappifyError` and Ctrl-C into a one-line message and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DecrappifyError as err:
            raise fail(str(err)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; nothing half-written was left behind", code=130) from None

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
        finally:
            events.close()


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
