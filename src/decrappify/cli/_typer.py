"""How the ``decrappify`` command reads on a terminal: the conventions of typer/click tools.

- **Metavars a reader knows**: ``PATH``, ``INT``, ``TEXT``, ``[em|fluorescence]``;
  nothing after a flag or a counter (``-v``), arguments in capitals (``MODEL``,
  ``[INPUTS]...``) instead of typer's ``<bool>``, ``<list[Path]>`` and ``{model}``.
- **Usage errors in one line** on stderr, exit status 2, without library prefixes:
  ``error: --kind: 'foo' is not one of 'em', 'fluorescence' (see 'decrappify sample
  --help')``, where typer prints a box with pydantic's ``Value error, ...``.

:class:`Command` and :class:`Group` are the typer command and group classes of the app
(``typer.Typer(cls=Group)``, ``app.command(cls=Command)``).
"""

from __future__ import annotations

import inspect
import sys
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from decrappify.cli._shell import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err_console

try:  # typer >= 0.22 ships its own click
    from typer._click.exceptions import (  # type: ignore[import-not-found]
        BadParameter,
        ClickException,
        MissingParameter,
        NoArgsIsHelpError,
        UsageError,
    )
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import (  # type: ignore[assignment]
        BadParameter,
        ClickException,
        MissingParameter,
        NoArgsIsHelpError,
        UsageError,
    )

#: Metavars of the value types decrappify's options take.
_TYPE_METAVARS = {int: "INT", float: "NUMBER", str: "TEXT", Path: "PATH"}
#: Longest list of choices shown as the metavar (``[em|fluorescence]``); longer lists are
#: named after the option (``PRESET``) and listed in the help text.
MAX_CHOICES_METAVAR = 24


class _Argument(TyperArgument):
    """An argument shown as its metavar alone (``MODEL``, ``[INPUTS]...``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = (self.metavar or self.name.upper()).removesuffix("...")
        if not self.required:
            name = f"[{name}]"
        return f"{name}..." if self.nargs != 1 else name


class _Option(TyperOption):
    """An option shown with a readable metavar, and none for flags and counters."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return self.metavar or None


def option_metavar(param: Any) -> str:
    """The metavar of an option's value: ``PATH``, ``INT``, ``[a|b]``; ``""`` for flags.

    Parameters
    ----------
    param : typer.core.TyperOption
        The option.

    Returns
    -------
    str
        The metavar (an explicit one is kept).
    """
    if param.metavar is not None:
        return str(param.metavar)
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:  # pragma: no cover - older typer
        return str(getattr(param.type, "name", "value")).upper()
    if descriptor.is_choice:
        choices = "[" + "|".join(_choices(param)) + "]"
        if len(choices) <= MAX_CHOICES_METAVAR:
            return choices
        return param.name.upper()
    annotation = descriptor.annotation
    if descriptor.is_list:
        annotation = typing.get_args(annotation)[0]
    if descriptor.is_path:
        return "PATH"
    return _TYPE_METAVARS.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def _choices(param: Any) -> list[str]:
    values = param.type_descriptor.choices or ()
    return [str(c.value if isinstance(c, Enum) else c) for c in values]


def tidy_params(params: list[Any]) -> None:
    """Give a command's parameters readable metavars (in place, once)."""
    for param in params:
        if isinstance(param, TyperArgument) and not isinstance(param, _Argument):
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
        elif isinstance(param, TyperOption) and not isinstance(param, _Option):
            param.__class__ = _Option
            param.metavar = option_metavar(param)
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is not None and descriptor.is_choice and param.metavar.isupper():
                param.help = f"{param.help or ''} One of: {', '.join(_choices(param))}.".strip()
            if param.count:
                param.show_default = False  # "-v, -vv", not "[default: 0]"


def reflow(text: str | None) -> str | None:
    """Join the lines of each paragraph of a help text (typer keeps docstring line breaks)."""
    if not text:
        return text
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


class Command(TyperCommand):
    """A typer command whose help shows readable metavars and flowing paragraphs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        tidy_params(params)  # the help option is made here
        return params


class Group(TyperGroup):
    """The ``decrappify`` group: readable metavars, and usage errors as one line (exit 2)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        tidy_params(params)  # the help and completion options are made here
        return params

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command; a usage error is one line on stderr and exit status 2."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except UsageError as err:
            _print_error(usage_message(err))
            sys.exit(EXIT_USAGE)
        except ClickException as err:
            _print_error(_clean(err.format_message()))
            sys.exit(err.exit_code)
        except typer.Abort:
            _print_error("aborted")
            sys.exit(EXIT_FAILED)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def usage_message(err: Any) -> str:
    """One line for a usage error: the option or argument, what is wrong, where to read more.

    Parameters
    ----------
    err : UsageError
        The error typer raised while parsing the command line.

    Returns
    -------
    str
        ``"--kind: 'foo' is not one of 'em', 'fluorescence' (see 'decrappify sample
        --help')"`` or ``"missing argument MODEL (see ...)"``.
    """
    param = getattr(err, "param", None)
    name = None
    if param is not None:
        long = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        name = long[0] if isinstance(param, TyperOption) and long else param.metavar
        name = name or param.name
    if isinstance(err, MissingParameter):
        kind = "option" if isinstance(param, TyperOption) else "argument"
        message = f"missing {kind} {name}" if name else _clean(err.format_message())
    elif isinstance(err, BadParameter) and name:
        message = f"{name}: {_clean(err.message)}"
    else:
        message = _clean(err.format_message())
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


#: What typer's value parsing says (pydantic's words), and what decrappify says instead.
_REWORDED = {
    "Input should be a valid integer": "expected an integer",
    "Input should be a valid number": "expected a number",
    "Input should be a valid boolean": "expected true or false",
}


def _clean(text: str) -> str:
    """One line without pydantic's ``Value error,`` prefix, lower-case first, no full stop."""
    text = " ".join(str(text).replace("Value error, ", "").split()).rstrip(".")
    for theirs, ours in _REWORDED.items():
        if text.startswith(theirs):
            text = ours
    return text[:1].lower() + text[1:]


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
